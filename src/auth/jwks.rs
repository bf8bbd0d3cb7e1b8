//! Key providers: a symmetric secret (fixed) or a remote JWKS, fetched at start and
//! refreshed in the background. Key sets are published with `arc-swap`, so verifying
//! a token reads the current set without ever waiting on a lock or the network.
//!
//! Written here rather than taken from a crate: the JWKS crates either refetch on
//! every unknown `kid` without a rate limit or pin old jsonwebtoken/reqwest versions,
//! and this module is where #3's refetch-on-miss, stale-while-error and
//! `Cache-Control` handling grow.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use jsonwebtoken::Algorithm;
use url::Url;

use super::keys::{ASYMMETRIC_ALGORITHMS, KeySet};
use crate::config::JwksProviderConfig;

/// Largest JWKS document read; real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest a JWKS fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("document larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JSON document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Shape(&'static str),
}

/// One configured key source.
pub struct Provider {
    /// The config key naming this provider, for logs and errors.
    pub label: String,
    keys: ArcSwap<KeySet>,
    remote: Option<RemoteSource>,
}

struct RemoteSource {
    url: Url,
    refresh_interval: Duration,
    allowed: Vec<Algorithm>,
}

impl Provider {
    /// Builds a provider from config. A remote one starts empty: call [`Provider::fetch`].
    pub fn from_config(label: String, config: &JwksProviderConfig) -> Self {
        let (keys, remote) = match (&config.secret, &config.url) {
            (Some(secret), _) => {
                let algorithm = config.symmetric_algorithm.unwrap_or(Algorithm::HS256);
                let set = KeySet::symmetric(
                    secret.expose().as_bytes(),
                    algorithm,
                    config.header_key_id.clone(),
                );
                (set, None)
            }
            (None, Some(url)) => {
                let allowed = if config.algorithms.is_empty() {
                    ASYMMETRIC_ALGORITHMS.to_vec()
                } else {
                    config.algorithms.clone()
                };
                let remote = RemoteSource {
                    url: url.clone(),
                    refresh_interval: config.refresh_interval,
                    allowed,
                };
                (KeySet::default(), Some(remote))
            }
            // Validation guarantees one of the two; an empty provider verifies nothing.
            (None, None) => (KeySet::default(), None),
        };
        Self {
            label,
            keys: ArcSwap::from_pointee(keys),
            remote,
        }
    }

    /// The current key set (a cheap, lock-free snapshot).
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Fetches the remote JWKS and publishes it. A no-op for a symmetric provider.
    pub async fn fetch(&self, client: &reqwest::Client) -> Result<usize, FetchError> {
        let Some(remote) = &self.remote else {
            return Ok(self.keys().len());
        };
        let document = fetch_document(client, &remote.url).await?;
        let (set, skipped) =
            KeySet::from_jwks(&document, &remote.allowed).map_err(FetchError::Shape)?;
        for (kid, reason) in skipped {
            tracing::debug!(provider = %self.label, ?kid, ?reason, "JWK skipped");
        }
        let count = set.len();
        self.keys.store(Arc::new(set));
        Ok(count)
    }

    /// Refreshes the remote JWKS every `refresh_interval` until the returned handle is
    /// aborted. A failed refresh keeps the previous keys.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        client: reqwest::Client,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self.remote.as_ref()?.refresh_interval;
        let provider = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match provider.fetch(&client).await {
                    Ok(count) => {
                        tracing::debug!(provider = %provider.label, keys = count, "JWKS refreshed")
                    }
                    Err(error) => tracing::warn!(
                        provider = %provider.label,
                        %error,
                        "JWKS refresh failed; keeping the previous keys"
                    ),
                }
            }
        }))
    }
}

/// The HTTP client for identity-provider calls: no redirects (a JWKS URL that
/// redirects is a misconfiguration or an attack), no ambient proxy, short timeouts.
pub fn idp_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

async fn fetch_document(
    client: &reqwest::Client,
    url: &Url,
) -> Result<serde_json::Value, FetchError> {
    let response = client
        .get(url.clone())
        .header(
            http::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(serde_json::from_slice(&body)?)
}
