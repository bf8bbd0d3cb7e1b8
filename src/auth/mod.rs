//! Credentials → `Principal`: bearer extraction, then dispatch by what the bearer
//! value is — an API key (by prefix), a JWS (JWT verifier) — with verified tokens
//! cached. Only this module builds a `Principal`.

pub mod api_keys;
pub mod bearer;
pub mod cache;
pub mod claim_map;
pub mod client_auth;
pub mod error;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod key_source;
pub mod keys;
pub mod mint;
mod oauth_config;
pub mod principal;
pub(crate) mod seal;
pub mod shared_cache;
pub(crate) mod signing;

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::join_all;

pub use error::{AuthError, RequestProblem, TokenProblem, Unavailability};
pub use principal::{AuthMethod, MappedScope, Principal, Scopes};

use crate::config::ValidationMode;
use crate::config::{Config, ConfigError};
use crate::redis::SharedRedis;
use crate::telemetry::metrics::{TokenCache, metrics};
use api_keys::ApiKeyStore;
use cache::VerifiedTokens;
use introspection::Introspector;
use jwks::Provider;
use jwt::{ClaimRules, Jws, JwtVerifier};

/// Turns a bearer token into a `Principal`.
pub struct Authenticator {
    /// `None` when OAuth is off (API keys only).
    jwt: Option<JwtVerifier>,
    /// `None` when no API key is configured.
    api_keys: Option<ApiKeyStore>,
    /// `None` without `auth.oauth.introspection`.
    introspector: Option<Introspector>,
    validation: ValidationMode,
    verified: VerifiedTokens,
}

/// An issuer whose keys mcpgate holds itself: its own authorization server. Its
/// tokens are verified without a network fetch, by these keys alone.
#[derive(Debug, Clone)]
pub struct LocalIssuer {
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Its public keys, as the JWKS it publishes.
    pub jwks: serde_json::Value,
    /// The resources it issues tokens for (their `aud`).
    pub audiences: Vec<String>,
}

impl Authenticator {
    /// Builds the verifiers, fetching every remote JWKS concurrently. A JWKS that
    /// cannot be fetched is a startup error naming its key (exit 78). `None` when no
    /// credential source is configured (requests pass unauthenticated). With `redis`
    /// (the session store's connection), introspection answers are shared by replicas.
    pub async fn build(
        config: &Config,
        client: &reqwest::Client,
        redis: Option<SharedRedis>,
        local: Option<&LocalIssuer>,
    ) -> Result<Option<Self>, ConfigError> {
        let auth = &config.auth;
        let oauth = &auth.oauth;
        let jwt = if oauth.enabled() && (!oauth.jwks.is_empty() || local.is_some()) {
            Some(Self::build_jwt(config, client, local).await?)
        } else {
            None
        };
        let introspector = oauth
            .introspection
            .as_ref()
            .filter(|_| oauth.enabled())
            .map(|introspection| {
                Introspector::new(
                    introspection.clone(),
                    &oauth.claim_scopes,
                    oauth.issuers.clone(),
                    config.accepted_audiences(),
                    oauth.leeway,
                    client.clone(),
                    redis,
                )
                .keeping_claims(&crate::config::claim_roots(config))
            });
        let api_keys = ApiKeyStore::from_config(&auth.api_keys, auth.api_key_cache_ttl)?;
        let api_keys = (!api_keys.is_empty()).then_some(api_keys);
        if jwt.is_none() && api_keys.is_none() && introspector.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            jwt,
            api_keys,
            introspector,
            validation: oauth.validation,
            verified: VerifiedTokens::new(auth.oauth.token_cache_size, auth.oauth.token_cache_ttl),
        }))
    }

    async fn build_jwt(
        config: &Config,
        client: &reqwest::Client,
        local: Option<&LocalIssuer>,
    ) -> Result<JwtVerifier, ConfigError> {
        let oauth = &config.auth.oauth;
        // Only the claims `rules:` and limits read are kept in principals (none:
        // nothing kept).
        let rule_claims: Arc<[String]> = crate::config::claim_roots(config).into();
        let mut providers: Vec<Arc<Provider>> = oauth
            .jwks
            .iter()
            .enumerate()
            .map(|(index, provider)| {
                let mut provider = Provider::with_global_claims(
                    format!("auth.oauth.jwks[{index}]"),
                    provider,
                    &oauth.claim_scopes,
                )?;
                provider.profile.rule_claims = Arc::clone(&rule_claims);
                Ok(Arc::new(provider))
            })
            .collect::<Result<_, ConfigError>>()?;
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
        let mut issuers = oauth.issuers.clone();
        if let Some(local) = local {
            providers.push(Arc::new(Provider::local(
                local,
                &oauth.claim_scopes,
                Arc::clone(&rule_claims),
            )?));
            // An allowlist of issuers includes mcpgate's own; an empty one stays open.
            if !issuers.is_empty() {
                issuers.push(local.issuer.clone());
            }
        }
        let rules = ClaimRules {
            issuers,
            audiences: config.accepted_audiences(),
            leeway: oauth.leeway,
        };
        Ok(JwtVerifier::new(providers, rules, client.clone()))
    }

    /// Starts the background JWKS refreshers; they stop when the handles are aborted.
    /// A provider without keys yet (started not-ready) is retried at once.
    pub fn spawn_refreshers(&self, client: &reqwest::Client) -> Vec<tokio::task::JoinHandle<()>> {
        self.jwt
            .iter()
            .flat_map(|jwt| jwt.providers())
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

    /// Whether tokens can be verified: not while a remote JWKS provider has no usable
    /// keys (never fetched, stale beyond `max_stale`, or empty). The error names every
    /// such provider.
    pub fn readiness(&self) -> Result<(), String> {
        let problems: Vec<String> = self
            .jwt
            .iter()
            .flat_map(|jwt| jwt.providers())
            .filter_map(|provider| provider.unready_reason())
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Whether checking `token` costs only a cache look-up: it was verified (or, for
    /// introspection, answered) before and is still remembered. Anything else may
    /// cost argon2, an introspection call or a JWKS fetch, and is what the
    /// per-address limits count before it is checked.
    pub fn is_cached(&self, token: &str, digest: &[u8; 32]) -> bool {
        if api_keys::is_api_key(token) {
            return self
                .api_keys
                .as_ref()
                .is_some_and(|store| store.is_cached(digest));
        }
        let introspected = || {
            self.introspector
                .as_ref()
                .is_some_and(|introspector| introspector.is_cached(digest))
        };
        let jwt_path = self.jwt.is_some() && self.validation != ValidationMode::Introspection;
        if jwt_path && self.verified.contains(digest) {
            return self.validation != ValidationMode::Both
                || self.introspector.is_none()
                || introspected();
        }
        introspected()
    }

    /// Verifies a bearer token by what it is: an API key (by prefix, never by shape),
    /// a JWS (verified locally unless `validation: introspection`), else an opaque
    /// token for introspection when configured; anything else is refused. `digest`
    /// is the token's SHA-256 ([`cache::digest`]), the key of every token cache.
    ///
    /// A token verified before is found by its digest before anything else is done
    /// with it: the cache only ever holds verified JWTs, so a hit needs no parsing.
    /// The paths that wait on something (a JWKS fetch, an introspection call, an
    /// argon2 hash on the blocking pool) are boxed: their futures are large, and
    /// inline they would make every request's future as large (copied on every
    /// request), while a cached token needs none of them.
    pub async fn authenticate(
        &self,
        token: &str,
        digest: [u8; 32],
    ) -> Result<Arc<Principal>, AuthError> {
        if api_keys::is_api_key(token) {
            return match &self.api_keys {
                Some(store) => Box::pin(store.verify(token, digest)).await,
                None => Err(TokenProblem::UnknownApiKey.into()),
            };
        }
        if let Some(jwt) = &self.jwt
            && self.validation != ValidationMode::Introspection
        {
            let principal = if let Some(remembered) = self.verified.get(&digest) {
                metrics().token_cache(TokenCache::Verified, true);
                Some(remembered?)
            } else if let Some(jws) = Jws::parse(token) {
                metrics().token_cache(TokenCache::Verified, false);
                let (principal, provider) = Box::pin(jwt.verify(jws, SystemTime::now())).await?;
                let principal = Arc::new(principal);
                self.verified
                    .insert(digest, Arc::clone(&principal), Some(provider));
                Some(principal)
            } else {
                None
            };
            if let Some(principal) = principal {
                // `both`: a valid signature is not enough; the AS must still call it
                // active (revocation takes effect within the introspection cache TTL).
                if self.validation == ValidationMode::Both
                    && let Some(introspector) = &self.introspector
                {
                    Box::pin(introspector.introspect(token, digest)).await?;
                }
                return Ok(principal);
            }
        }
        match &self.introspector {
            Some(introspector) => Box::pin(introspector.introspect(token, digest)).await,
            None => Err(TokenProblem::Malformed.into()),
        }
    }
}
