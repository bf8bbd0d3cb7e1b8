//! Opaque tokens by RFC 7662 introspection. The gateway authenticates to the endpoint
//! (client_secret_basic or client_secret_post), accepts only `"active": true`, checks
//! `iss`/`aud`/`exp` as for a JWT, and caches answers by the token's SHA-256: positive
//! ones until min(`cache_ttl`, `exp`), negative ones briefly. Concurrent lookups of one
//! token share one request. An endpoint that fails or is slow gives 503 — never an
//! allow, never `invalid_token`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::cache::{HasTtl, OwnTtl};
use super::client_auth;
use super::error::{AuthError, TokenProblem, Unavailability};
use super::principal::{AuthMethod, Principal, Scopes};
use crate::config::IntrospectionConfig;
use crate::telemetry::metrics::{IntrospectionResult, TokenCache, metrics};

/// Largest introspection response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type Answer = Result<Arc<Principal>, TokenProblem>;

#[derive(Clone)]
struct Entry {
    answer: Answer,
    ttl: Duration,
}

impl HasTtl for Entry {
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// What an introspected token must satisfy.
pub struct Introspector {
    config: IntrospectionConfig,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    client: reqwest::Client,
    cache: moka::future::Cache<[u8; 32], Entry>,
}

impl Introspector {
    pub fn new(
        config: IntrospectionConfig,
        issuers: Vec<String>,
        audiences: Vec<String>,
        leeway: Duration,
        client: reqwest::Client,
    ) -> Self {
        Self {
            config,
            issuers,
            audiences,
            leeway,
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .expire_after(OwnTtl)
                .build(),
        }
    }

    /// The principal of an active token; a cached answer when there is one.
    pub async fn introspect(
        &self,
        token: &str,
        digest: [u8; 32],
    ) -> Result<Arc<Principal>, AuthError> {
        let entry = self
            .cache
            .entry(digest)
            .or_try_insert_with(async {
                // Run only when this call has to ask the endpoint.
                metrics().token_cache(TokenCache::Introspection, false);
                let document = self.ask(token).await;
                let result = match &document {
                    Ok(document) if document.get("active") == Some(&Value::Bool(true)) => {
                        IntrospectionResult::Active
                    }
                    Ok(_) => IntrospectionResult::Inactive,
                    Err(_) => IntrospectionResult::Error,
                };
                metrics().introspection_request(result);
                Ok::<_, Unavailability>(self.judge(&document?))
            })
            .await
            .map_err(|why| AuthError::Unavailable(*why))?;
        // Not fresh: answered from the cache, or by a concurrent lookup of the same token.
        if !entry.is_fresh() {
            metrics().token_cache(TokenCache::Introspection, true);
        }
        entry.into_value().answer.map_err(AuthError::InvalidToken)
    }

    async fn ask(&self, token: &str) -> Result<Map<String, Value>, Unavailability> {
        let request = self
            .client
            .post(self.config.url.clone())
            .timeout(self.config.timeout)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        // Built before any await: the form serializer is not `Send`.
        let (request, body) = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token);
            form.append_pair("token_type_hint", "access_token");
            let request = client_auth::authenticate(
                request,
                &mut form,
                self.config.auth_method,
                &self.config.client_id,
                self.config.client_secret.expose(),
            );
            (request, form.finish())
        };
        let outage = |detail: String| {
            tracing::warn!(endpoint = %self.config.url, "introspection failed: {detail}");
            Unavailability::IntrospectionUnavailable
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| outage(crate::error_chain(&error)))?;
        if !response.status().is_success() {
            return Err(outage(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_RESPONSE_BYTES as u64)
        {
            return Err(outage("response too large".to_owned()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| outage(crate::error_chain(&error)))?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(outage("response too large".to_owned()));
        }
        match crate::json::from_slice(&body) {
            Ok(Value::Object(document)) => Ok(document),
            _ => Err(outage("response is not a JSON object".to_owned())),
        }
    }

    /// Turns an introspection response into a cacheable answer.
    fn judge(&self, document: &Map<String, Value>) -> Entry {
        let negative = |problem| Entry {
            answer: Err(problem),
            ttl: self.config.negative_cache_ttl,
        };
        // Only JSON `true` is active: "true", 1 or a missing member are not (RFC 7662 §2.2).
        if document.get("active") != Some(&Value::Bool(true)) {
            return negative(TokenProblem::Inactive);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let exp = match document.get("exp") {
            None => None,
            Some(Value::Number(exp)) => exp.as_f64(),
            Some(_) => return negative(TokenProblem::BadClaims),
        };
        if exp.is_some_and(|exp| now >= exp + self.leeway.as_secs_f64()) {
            return negative(TokenProblem::Expired);
        }
        let issuer = match document.get("iss") {
            None => None,
            Some(Value::String(iss)) => Some(iss.clone()),
            Some(_) => return negative(TokenProblem::BadIssuer),
        };
        if let Some(iss) = &issuer
            && !self.issuers.is_empty()
            && !self.issuers.contains(iss)
        {
            return negative(TokenProblem::BadIssuer);
        }
        let audience_ok = match document.get("aud") {
            None => !self.config.require_audience,
            Some(Value::String(aud)) => self.audiences.contains(aud),
            Some(Value::Array(items)) => items.iter().any(|aud| {
                aud.as_str()
                    .is_some_and(|aud| self.audiences.iter().any(|want| want == aud))
            }),
            Some(_) => false,
        };
        if !audience_ok {
            return negative(TokenProblem::BadAudience);
        }
        let text = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let scopes =
            text("scope").map_or_else(Scopes::default, |scope| Scopes::new(scope.split(' ')));
        let expires_at = exp
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs_f64(exp.clamp(0.0, 1e11))));
        let until_exp = exp.map_or(self.config.cache_ttl, |exp| {
            Duration::from_secs_f64((exp - now).max(0.0))
        });
        Entry {
            answer: Ok(Arc::new(Principal {
                issuer,
                subject: text("sub").or_else(|| text("username")),
                client_id: text("client_id"),
                scopes,
                expires_at,
                method: AuthMethod::Introspection,
                key_id: None,
                api_key_id: None,
            })),
            ttl: until_exp.min(self.config.cache_ttl),
        }
    }
}
