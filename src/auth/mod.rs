//! Credentials → `Principal`: bearer extraction, JWT verification against key
//! providers. Only this module builds a `Principal`.

pub mod bearer;
pub mod error;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod mint;
pub mod principal;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::join_all;

pub use error::{AuthError, RequestProblem, TokenProblem};
pub use principal::{AuthMethod, Principal, Scopes};

use crate::config::{Config, ConfigError};
use jwks::Provider;
use jwt::{ClaimRules, JwtVerifier};

/// Turns a bearer token into a `Principal`.
pub struct Authenticator {
    jwt: JwtVerifier,
}

impl Authenticator {
    /// Builds the verifier and fetches every remote JWKS concurrently. A JWKS that
    /// cannot be fetched is a startup error naming its key (exit 78).
    pub async fn build(config: &Config, client: &reqwest::Client) -> Result<Self, ConfigError> {
        let oauth = &config.auth.oauth;
        let providers: Vec<Arc<Provider>> = oauth
            .jwks
            .iter()
            .enumerate()
            .map(|(index, provider)| {
                Arc::new(Provider::from_config(
                    format!("auth.oauth.jwks[{index}]"),
                    provider,
                ))
            })
            .collect();
        let fetches = providers.iter().map(|provider| async move {
            provider
                .fetch(client)
                .await
                .map_err(|error| {
                    ConfigError::invalid(
                        format!("{}.url", provider.label),
                        format!("cannot fetch JWKS at start: {error}"),
                    )
                })
                .map(|count| (provider, count))
        });
        for result in join_all(fetches).await {
            let (provider, count) = result?;
            if provider.is_remote() {
                if count == 0 {
                    tracing::warn!(provider = %provider.label, "JWKS holds no usable signing key");
                } else {
                    tracing::info!(provider = %provider.label, keys = count, "JWKS loaded");
                }
            }
        }
        let rules = ClaimRules {
            issuers: oauth.issuers.clone(),
            audiences: config.accepted_audiences(),
            leeway: oauth.leeway,
        };
        Ok(Self {
            jwt: JwtVerifier::new(providers, rules),
        })
    }

    /// Starts the background JWKS refreshers; they stop when the handles are aborted.
    pub fn spawn_refreshers(&self, client: &reqwest::Client) -> Vec<tokio::task::JoinHandle<()>> {
        self.jwt
            .providers()
            .iter()
            .filter_map(|provider| provider.spawn_refresh(client.clone()))
            .collect()
    }

    /// Verifies a bearer token.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.jwt
            .verify(token, SystemTime::now())
            .map_err(AuthError::InvalidToken)
    }
}
