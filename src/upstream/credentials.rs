//! mcpgate's own credentials for the upstream: an OAuth client_credentials token
//! (RFC 6749 §4.4), fetched by mcpgate, cached, and renewed before it expires. The
//! caller's token is never what the upstream sees.
//!
//! Written here rather than taken from an OAuth crate: what is needed is one grant,
//! one cached value, single-flight renewal that never blocks a request while the
//! current token is still good, and errors that never print the secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use serde::Deserialize;

use crate::auth::client_auth::{self, ClientCredentials};
use crate::config::UpstreamOAuthConfig;

/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Lifetime assumed when the token response has no `expires_in` (RFC 6749 makes it
/// optional): short, so a token of unknown lifetime is renewed soon.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(60);

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot get a token for the upstream from {endpoint}: {detail}")]
pub struct CredentialsError {
    endpoint: String,
    detail: String,
}

#[derive(Debug)]
struct Token {
    header: HeaderValue,
    expires_at: Instant,
}

/// A client_credentials token source.
pub struct UpstreamCredentials {
    config: UpstreamOAuthConfig,
    client: reqwest::Client,
    current: ArcSwapOption<Token>,
    /// Held while fetching: concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
    /// A background renewal is under way: requests in the renewal window start no other.
    renewing: AtomicBool,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

impl std::fmt::Debug for UpstreamCredentials {
    /// Never the token or the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("token_url", &self.config.token_url.as_str())
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl UpstreamCredentials {
    pub(crate) fn new(config: UpstreamOAuthConfig, client: reqwest::Client) -> Arc<Self> {
        Arc::new(Self {
            config,
            client,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
            renewing: AtomicBool::new(false),
        })
    }

    /// The `Authorization` value for the next upstream request. A token inside its
    /// renewal window is still used while a renewal runs in the background; only an
    /// expired (or absent) token makes the request wait for a new one.
    pub async fn authorization(self: &Arc<Self>) -> Result<HeaderValue, CredentialsError> {
        let now = Instant::now();
        if let Some(token) = self.current.load_full()
            && token.expires_at > now
        {
            let header = token.header.clone();
            let renewal_due =
                token.expires_at.saturating_duration_since(now) <= self.config.renew_before;
            if renewal_due && !self.renewing.swap(true, Ordering::AcqRel) {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    if let Err(error) = this.renew(Some(&token)).await {
                        tracing::warn!(
                            "{error}; the current upstream token is used until it expires"
                        );
                    }
                    this.renewing.store(false, Ordering::Release);
                });
            }
            return Ok(header);
        }
        let stale = self.current.load_full();
        self.renew(stale.as_deref()).await
    }

    /// The upstream refused the token (401): the next request fetches a new one.
    pub fn invalidate(&self, refused: &HeaderValue) {
        let current = self.current.load();
        if current
            .as_ref()
            .is_some_and(|token| token.header == *refused)
        {
            self.current.store(None);
        }
    }

    /// Fetches a token unless another caller replaced `seen` while this one waited.
    async fn renew(&self, seen: Option<&Token>) -> Result<HeaderValue, CredentialsError> {
        let _single_flight = self.fetching.lock().await;
        if let Some(token) = self.current.load_full()
            && seen.is_none_or(|seen| !std::ptr::eq(seen, &*token))
            && token.expires_at > Instant::now()
        {
            return Ok(token.header.clone());
        }
        let token = self.fetch().await?;
        let header = token.header.clone();
        self.current.store(Some(Arc::new(token)));
        Ok(header)
    }

    async fn fetch(&self) -> Result<Token, CredentialsError> {
        let fail = |detail: String| CredentialsError {
            endpoint: self.config.token_url.to_string(),
            detail,
        };
        let scope = self.config.scopes.join(" ");
        let mut fields = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            fields.push(("scope", &scope));
        }
        if let Some(resource) = &self.config.resource {
            fields.push(("resource", resource));
        }
        if let Some(audience) = &self.config.audience {
            fields.push(("audience", audience));
        }
        let credentials = ClientCredentials {
            method: self.config.auth_method,
            client_id: &self.config.client_id,
            client_secret: self.config.client_secret.expose(),
        };
        let sent = Instant::now();
        let (status, body) = client_auth::post_form(
            &self.client,
            &self.config.token_url,
            self.config.timeout,
            credentials,
            &fields,
            MAX_RESPONSE_BYTES,
        )
        .await
        .map_err(fail)?;
        if !status.is_success() {
            // An OAuth error answer names the problem (`invalid_client`, `invalid_scope`).
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|value| {
                    value
                        .get("error")
                        .and_then(|e| e.as_str())
                        .map(str::to_owned)
                })
                .map_or_else(String::new, |error| format!(" ({error})"));
            return Err(fail(format!("HTTP {status}{reason}")));
        }
        let answer: TokenResponse = serde_json::from_slice(&body)
            .map_err(|error| fail(format!("not a token response: {error}")))?;
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(fail(format!("token_type {kind} is not Bearer")));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| {
                fail("the access token holds characters not allowed in a header".to_owned())
            })?;
        header.set_sensitive(true);
        // Counted from when the request was sent, so network time shortens it rather
        // than stretching it past the server's expiry.
        let lifetime = answer
            .expires_in
            .map_or(UNKNOWN_LIFETIME, Duration::from_secs);
        tracing::debug!(lifetime = ?lifetime, "upstream token fetched");
        Ok(Token {
            header,
            expires_at: sent + lifetime,
        })
    }
}
