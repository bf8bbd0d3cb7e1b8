//! The caller's token exchanged at the identity provider for one meant for the
//! upstream: RFC 8693 token exchange, or Microsoft Entra ID's on-behalf-of grant.
//! The upstream gets a token with its own audience and the caller's subject; the
//! caller's token never leaves mcpgate except to the provider that issued it.
//!
//! Exchanged tokens are cached by the caller's token (see [`TokenExchange::key`]),
//! one exchange in flight per key, bounded in number, and each is dropped
//! `renew_before` ahead of its expiry: a token past its expiry is never sent. With
//! sessions in Redis, replicas share them (`shared`).

mod shared;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::cache::{HasTtl, OwnTtl};
use crate::auth::client_auth::{self, ClientCredentials};
use crate::auth::{AuthMethod, Principal};
use crate::authorization_server::exchange::error_code;
use crate::config::{ApiKeyExchange, ExchangeGrant, TokenExchangeConfig};
use crate::redis::SharedRedis;
use crate::telemetry::metrics::metrics;

use self::shared::SharedExchanges;

/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Lifetime assumed when the answer has no `expires_in`: short, so a token of
/// unknown lifetime is exchanged again soon rather than used past an unseen expiry.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest provider text copied into an answer or a record.
const MAX_DESCRIPTION: usize = 300;

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The caller's token is an access token for mcpgate (RFC 8693 §3).
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Why no exchanged token: each is its own status (docs/errors.md).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// The caller holds nothing the provider can exchange (403).
    #[error("{0}")]
    NoSubjectToken(&'static str),
    /// The provider refused: 401 when it judged the caller's token itself invalid
    /// or expired (`invalid_grant`), 403 otherwise.
    #[error("{}", refused_text(.error, .description.as_deref()))]
    Refused {
        /// The OAuth `error` (`invalid_grant`, `invalid_target`, …).
        error: String,
        /// `error_description`, cut short and stripped of control characters.
        description: Option<String>,
        /// Entra's `suberror` (`consent_required`, …).
        suberror: Option<String>,
    },
    /// The provider is down, slow, overloaded or failing (503).
    #[error("the identity provider could not exchange the token now")]
    Unavailable(String),
    /// The provider answered with something that is not a usable token (502).
    #[error("the identity provider's token exchange answer is unusable")]
    Malformed(String),
}

fn refused_text(error: &str, description: Option<&str>) -> String {
    match description {
        Some(description) => format!(
            "the identity provider refused to exchange the token for the upstream: {error}: {description}"
        ),
        None => {
            format!("the identity provider refused to exchange the token for the upstream: {error}")
        }
    }
}

impl ExchangeError {
    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoSubjectToken(_) => StatusCode::FORBIDDEN,
            Self::Refused { .. } if self.token_refused() => StatusCode::UNAUTHORIZED,
            Self::Refused { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Malformed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The provider refused the caller's token itself (expired, revoked, not
    /// meant for mcpgate): a new token from the client may succeed. A `suberror`
    /// (Entra's consent or interaction required) asks for something a new token
    /// alone does not give.
    pub fn token_refused(&self) -> bool {
        matches!(self, Self::Refused { error, suberror: None, .. } if error == "invalid_grant")
    }

    /// What the log and the audit record say: the client's text, and for what
    /// failed on the way the cause (never a token).
    pub fn detail(&self) -> String {
        match self {
            Self::Refused {
                suberror: Some(suberror),
                ..
            } => format!("{self} (suberror {suberror})"),
            Self::Unavailable(cause) | Self::Malformed(cause) => format!("{self}: {cause}"),
            _ => self.to_string(),
        }
    }

    /// The metric label.
    fn outcome(&self) -> &'static str {
        match self {
            Self::NoSubjectToken(_) => "no_subject_token",
            Self::Refused { .. } => "refused",
            Self::Unavailable(_) => "unavailable",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// One exchanged token.
#[derive(Debug)]
struct Exchanged {
    header: HeaderValue,
    /// The provider's expiry, counted from when the request was sent.
    expires_at: Instant,
    /// `renew_before` ahead of `expires_at`: no cache hit after this.
    reuse_until: Instant,
}

impl HasTtl for Arc<Exchanged> {
    fn ttl(&self) -> Duration {
        self.reuse_until.saturating_duration_since(Instant::now())
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
    error_description: Option<String>,
    suberror: Option<String>,
}

/// `upstream.identity.exchange`, built: the provider client and the cache.
pub struct TokenExchange {
    config: TokenExchangeConfig,
    client: reqwest::Client,
    cache: moka::future::Cache<[u8; 32], Arc<Exchanged>>,
    /// What the exchanged token is for, for the audit record.
    audience: String,
    /// The façade's issuer: tokens it issued are mcpgate's own, unknown to the provider.
    local_issuer: Option<String>,
    /// The replicas' shared store, when sessions are in Redis.
    shared: Option<SharedExchanges>,
}

impl std::fmt::Debug for TokenExchange {
    /// Never a token or the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("token_url", &self.config.token_url.as_str())
            .field("grant", &self.config.grant)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenExchange {
    /// From the checked section; `local_issuer` is the façade's issuer, when it runs;
    /// `redis` the sessions' connection, through which replicas share exchanges.
    pub fn new(
        config: TokenExchangeConfig,
        client: reqwest::Client,
        local_issuer: Option<String>,
        redis: Option<SharedRedis>,
    ) -> Self {
        let shared = redis.map(|redis| SharedExchanges::new(redis, &config));
        let audience = config
            .audience
            .clone()
            .or_else(|| config.resource.clone())
            .unwrap_or_else(|| config.scopes.join(" "));
        let cache = moka::future::Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(OwnTtl)
            .build();
        Self {
            config,
            client,
            cache,
            audience,
            local_issuer,
            shared,
        }
    }

    /// `token_exchange` or `entra_obo`, for the audit record.
    pub fn mechanism(&self) -> &'static str {
        self.config.grant.as_str()
    }

    /// What the exchanged token is for (its audience, resource or scopes).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The upstream's `Authorization` for this caller, whose verified bearer
    /// credential is `token`: a cached exchanged token, or a new one. `None` for an
    /// API key where `api_keys: without_token` lets it through without one.
    pub async fn authorization(
        &self,
        principal: &Principal,
        token: &str,
    ) -> Result<Option<HeaderValue>, ExchangeError> {
        if principal.method == AuthMethod::ApiKey {
            return match self.config.api_keys {
                ApiKeyExchange::WithoutToken => Ok(None),
                ApiKeyExchange::Refuse => Err(ExchangeError::NoSubjectToken(
                    "this upstream acts as the user: it takes an OAuth token mcpgate can \
                     exchange, and an API key is none; sign in with OAuth instead",
                )),
            };
        }
        if principal.grant_id.is_some()
            || (self.local_issuer.is_some() && principal.issuer == self.local_issuer)
        {
            return Err(ExchangeError::NoSubjectToken(
                "a token issued by mcpgate's own authorization server cannot be exchanged at \
                 the identity provider; present a token of the identity provider",
            ));
        }
        let key = self.key(principal, token);
        for _ in 0..2 {
            let exchanged = self
                .cache
                .try_get_with(key, self.exchange(&key, token))
                .await
                .map_err(|error| ExchangeError::clone(&error))?;
            if exchanged.expires_at > Instant::now() {
                return Ok(Some(exchanged.header.clone()));
            }
            // Expired between the exchange and now (a lifetime of zero): never sent.
            self.cache.invalidate(&key).await;
        }
        Err(ExchangeError::Malformed(
            "the exchanged token expired before it could be used".to_owned(),
        ))
    }

    /// The upstream answered `401` to `sent`, the exchanged token for this caller:
    /// it is dropped here and from Redis, so that the next request exchanges anew
    /// rather than reuse a token the upstream refuses until it expires.
    pub async fn refused_by_upstream(
        &self,
        principal: &Principal,
        token: &str,
        sent: &HeaderValue,
    ) {
        let key = self.key(principal, token);
        // Another request may have replaced it already: that one is left alone.
        if self
            .cache
            .get(&key)
            .await
            .is_some_and(|cached| cached.header == *sent)
        {
            self.cache.invalidate(&key).await;
        }
        if let Some(shared) = &self.shared {
            shared.delete(&key).await;
        }
    }

    /// The cache key: the caller (issuer, subject, client) and the digest of the
    /// very token presented, and what the exchange asks for. Two tokens of one user
    /// never share an exchanged token: the provider may narrow what it issues by the
    /// subject token's scopes, client or authentication strength, so a token with
    /// fewer rights must not inherit the result of one with more.
    fn key(&self, principal: &Principal, token: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [
            "mcpgate token exchange v1",
            self.config.grant.as_str(),
            self.config.token_url.as_str(),
            self.config.client_id.as_str(),
            &self.audience,
            self.config.resource.as_deref().unwrap_or_default(),
            &self.config.scopes.join(" "),
            principal.issuer.as_deref().unwrap_or_default(),
            principal.subject.as_deref().unwrap_or_default(),
            principal.client_id.as_deref().unwrap_or_default(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(crate::auth::cache::digest(token));
        hash.finalize().into()
    }

    /// Another replica's exchanged token, else one request to the token endpoint
    /// (whose token the other replicas then find).
    async fn exchange(&self, key: &[u8; 32], token: &str) -> Result<Arc<Exchanged>, ExchangeError> {
        if let Some(shared) = &self.shared
            && let Some(found) = shared
                .get(key)
                .await
                .and_then(|(token, expires_at)| self.reusable(&token, expires_at))
        {
            return Ok(found);
        }
        let result = self.request(token).await;
        let outcome = match &result {
            Ok(_) => "exchanged",
            Err(error) => error.outcome(),
        };
        metrics().token_exchange(outcome);
        if let (Some(shared), Ok(exchanged)) = (&self.shared, &result)
            && let Some(access_token) = exchanged
                .header
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
        {
            let now = Instant::now();
            let expires_at =
                SystemTime::now() + exchanged.expires_at.saturating_duration_since(now);
            let ttl = exchanged.reuse_until.saturating_duration_since(now);
            shared.put(key, access_token, expires_at, ttl).await;
        }
        result
    }

    /// A token another replica stored, while more than `renew_before` of its life is left.
    fn reusable(&self, access_token: &str, expires_at: SystemTime) -> Option<Arc<Exchanged>> {
        let left = expires_at.duration_since(SystemTime::now()).ok()?;
        if left <= self.config.renew_before {
            return None;
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {access_token}")).ok()?;
        header.set_sensitive(true);
        let now = Instant::now();
        let expires_at = now + left;
        Some(Arc::new(Exchanged {
            header,
            expires_at,
            reuse_until: expires_at - self.config.renew_before,
        }))
    }

    async fn request(&self, token: &str) -> Result<Arc<Exchanged>, ExchangeError> {
        let config = &self.config;
        let scope = config.scopes.join(" ");
        let mut fields: Vec<(&str, &str)> = Vec::new();
        match config.grant {
            ExchangeGrant::TokenExchange => {
                fields.push(("grant_type", TOKEN_EXCHANGE_GRANT));
                fields.push(("subject_token", token));
                fields.push(("subject_token_type", ACCESS_TOKEN_TYPE));
                fields.push(("requested_token_type", &config.requested_token_type));
                if let Some(audience) = &config.audience {
                    fields.push(("audience", audience));
                }
                if let Some(resource) = &config.resource {
                    fields.push(("resource", resource));
                }
            }
            // Entra takes the caller's token as an assertion, and the target only as
            // a scope (`api://…/.default`): no audience, no resource.
            ExchangeGrant::EntraObo => {
                fields.push(("grant_type", JWT_BEARER_GRANT));
                fields.push(("assertion", token));
                fields.push(("requested_token_use", "on_behalf_of"));
            }
        }
        if !scope.is_empty() {
            fields.push(("scope", &scope));
        }
        let credentials = ClientCredentials {
            method: config.auth_method,
            client_id: &config.client_id,
            client_secret: config.client_secret.expose(),
        };
        let sent = Instant::now();
        let (status, body) = client_auth::post_form(
            &self.client,
            &config.token_url,
            config.timeout,
            credentials,
            &fields,
            MAX_RESPONSE_BYTES,
        )
        .await
        .map_err(ExchangeError::Unavailable)?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ExchangeError::Unavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorResponse>(&body) {
                Ok(answer) if status.is_client_error() => ExchangeError::Refused {
                    // Codes as the façade reads a provider's: a token of safe characters.
                    error: error_code(&answer.error),
                    description: answer.error_description.as_deref().map(clean),
                    suberror: answer.suberror.as_deref().map(error_code),
                },
                _ => ExchangeError::Malformed(format!("HTTP {status} without an OAuth error")),
            });
        }
        let answer: TokenResponse = serde_json::from_slice(&body)
            .map_err(|error| ExchangeError::Malformed(format!("not a token response: {error}")))?;
        // RFC 8693 §2.2.1: `N_A` for a token that is not an access token of a
        // known type; it is still sent as a bearer token, which is what was asked.
        if let Some(kind) = &answer.token_type
            && !kind.eq_ignore_ascii_case("bearer")
            && !kind.eq_ignore_ascii_case("n_a")
        {
            return Err(ExchangeError::Malformed(format!(
                "token_type {} is not Bearer",
                clean(kind)
            )));
        }
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| {
                ExchangeError::Malformed(
                    "the access token holds characters not allowed in a header".to_owned(),
                )
            })?;
        header.set_sensitive(true);
        let lifetime = answer
            .expires_in
            .map_or(UNKNOWN_LIFETIME, Duration::from_secs);
        let expires_at = sent + lifetime;
        Ok(Arc::new(Exchanged {
            header,
            expires_at,
            reuse_until: expires_at
                .checked_sub(config.renew_before)
                .unwrap_or(sent)
                .max(sent),
        }))
    }
}

/// Provider text, bounded and without control characters, for answers and logs.
fn clean(text: &str) -> String {
    crate::char_prefix(text, MAX_DESCRIPTION)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;

    /// An exchange at a port nothing listens on: any call to the provider fails.
    fn exchange_with(extra: &str) -> TokenExchange {
        let yaml = format!(
            "token_url: http://127.0.0.1:9/token\nclient_id: gw\nclient_secret: s\n\
             audience: api\nrenew_before: 30s\n{extra}"
        );
        let config: TokenExchangeConfig = serde_saphyr::from_str(&yaml).unwrap();
        TokenExchange::new(
            config,
            reqwest::Client::new(),
            Some("https://gw.example".to_owned()),
            None,
        )
    }

    #[tokio::test]
    async fn callers_without_a_token_of_the_provider_are_refused_before_any_exchange() {
        let exchange = exchange_with("");
        let mut api_key = Principal::for_tests("api-key:ci", Scopes::new(["a"]));
        api_key.method = AuthMethod::ApiKey;
        let mut facade = Principal::for_tests("alice", Scopes::new(["a"]));
        facade.issuer = Some("https://gw.example".to_owned());
        let mut granted = Principal::for_tests("alice", Scopes::new(["a"]));
        granted.grant_id = Some("g-1".to_owned());
        for principal in [api_key, facade, granted] {
            let error = exchange
                .authorization(&principal, "token")
                .await
                .unwrap_err();
            assert!(
                matches!(error, ExchangeError::NoSubjectToken(_)),
                "{principal:?}: {error:?}"
            );
            assert_eq!(error.status(), 403);
        }
        let mut api_key = Principal::for_tests("api-key:ci", Scopes::new(["a"]));
        api_key.method = AuthMethod::ApiKey;
        let without = exchange_with("api_keys: without_token");
        assert!(matches!(
            without.authorization(&api_key, "mcpk_x").await,
            Ok(None)
        ));
        // A caller of the provider gets as far as the provider (down here): 503.
        let user = Principal::for_tests("alice", Scopes::new(["a"]));
        let error = exchange.authorization(&user, "token").await.unwrap_err();
        assert_eq!(error.status(), 503, "{error:?}");
    }

    #[test]
    fn a_shared_token_is_reused_only_with_more_than_renew_before_left() {
        let exchange = exchange_with("");
        let now = SystemTime::now();
        assert!(
            exchange
                .reusable("t", now + Duration::from_secs(20))
                .is_none()
        );
        assert!(
            exchange
                .reusable("t", now - Duration::from_secs(1))
                .is_none()
        );
        let reused = exchange
            .reusable("t", now + Duration::from_secs(90))
            .unwrap();
        assert_eq!(reused.header, "Bearer t");
        assert!(reused.header.is_sensitive());
        let left = reused.reuse_until.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(60));
    }

    #[test]
    fn the_cache_key_separates_tokens_and_callers() {
        let exchange = exchange_with("");
        let alice = Principal::for_tests("alice", Scopes::new(["a"]));
        let bob = Principal::for_tests("bob", Scopes::new(["a"]));
        let key = exchange.key(&alice, "t1");
        assert_eq!(key, exchange.key(&alice, "t1"));
        assert_ne!(key, exchange.key(&alice, "t2"));
        assert_ne!(key, exchange.key(&bob, "t1"));
        assert_ne!(key, exchange_with("scopes: [x]").key(&alice, "t1"));
    }

    fn refused(error: &str, suberror: Option<&str>) -> ExchangeError {
        ExchangeError::Refused {
            error: error.to_owned(),
            description: Some("why".to_owned()),
            suberror: suberror.map(str::to_owned),
        }
    }

    #[test]
    fn each_failure_has_its_status() {
        assert_eq!(refused("invalid_grant", None).status(), 401);
        assert_eq!(
            refused("invalid_grant", Some("consent_required")).status(),
            403
        );
        assert_eq!(refused("invalid_target", None).status(), 403);
        assert_eq!(refused("unauthorized_client", None).status(), 403);
        assert_eq!(ExchangeError::NoSubjectToken("x").status(), 403);
        assert_eq!(ExchangeError::Unavailable("down".into()).status(), 503);
        assert_eq!(ExchangeError::Malformed("odd".into()).status(), 502);
        assert_eq!(
            refused("invalid_target", None).to_string(),
            "the identity provider refused to exchange the token for the upstream: \
             invalid_target: why"
        );
        assert!(
            refused("invalid_grant", Some("consent_required"))
                .detail()
                .ends_with("(suberror consent_required)")
        );
    }

    #[test]
    fn provider_text_is_bounded_and_single_line() {
        assert_eq!(clean("a\r\nb\u{7}"), "ab");
        assert_eq!(clean(&"x".repeat(1000)).len(), MAX_DESCRIPTION);
    }
}
