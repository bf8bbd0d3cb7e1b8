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

pub use error::{AuthError, RequestProblem, TokenProblem, Unavailability};
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
        let fetches = providers
            .iter()
            .zip(&oauth.jwks)
            .filter(|(provider, _)| provider.is_remote())
            .map(|(provider, provider_config)| async move {
                let result = provider.fetch(client).await;
                (provider, provider_config.start_not_ready, result)
            });
        let mut not_ready = Vec::new();
        for (provider, start_not_ready, result) in join_all(fetches).await {
            match result {
                Ok(_) if provider.key_count() == 0 => {
                    tracing::warn!(provider = %provider.label, "JWKS holds no usable signing key")
                }
                Ok(_) => {
                    tracing::info!(provider = %provider.label, keys = provider.key_count(), "JWKS loaded")
                }
                Err(error) if start_not_ready => {
                    tracing::warn!(
                        provider = %provider.label,
                        %error,
                        "JWKS not available at start; not ready until it is fetched (retrying)"
                    );
                    not_ready.push(provider.label.clone());
                }
                Err(error) => {
                    return Err(ConfigError::invalid(
                        format!("{}.url", provider.label),
                        format!("cannot fetch JWKS at start: {error}"),
                    ));
                }
            }
        }
        let rules = ClaimRules {
            issuers: oauth.issuers.clone(),
            audiences: config.accepted_audiences(),
            leeway: oauth.leeway,
        };
        Ok(Self {
            jwt: JwtVerifier::new(providers, rules, client.clone()),
        })
    }

    /// Starts the background JWKS refreshers; they stop when the handles are aborted.
    /// A provider without keys yet (started not-ready) is retried at once.
    pub fn spawn_refreshers(&self, client: &reqwest::Client) -> Vec<tokio::task::JoinHandle<()>> {
        self.jwt
            .providers()
            .iter()
            .filter_map(|provider| {
                let first = if provider.key_count() == 0 {
                    std::time::Duration::ZERO
                } else {
                    provider.refresh_interval()
                };
                provider.spawn_refresh(client.clone(), first)
            })
            .collect()
    }

    /// Verifies a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        self.jwt.verify(token, SystemTime::now()).await
    }
}
