//! Opaque tokens by RFC 7662 introspection. The gateway authenticates to the endpoint
//! (client_secret_basic or client_secret_post), accepts only `"active": true`, checks
//! `iss`/`aud`/`exp` as for a JWT, and caches answers by the token's SHA-256: positive
//! ones until min(`cache_ttl`, `exp`), negative ones briefly. Concurrent lookups of one
//! token share one request. An endpoint that fails or is slow gives 503 — never an
//! allow, never `invalid_token`.
//!
//! With sessions in Redis, a second level is shared by the replicas (see
//! [`super::shared_cache`]): a local miss looks there before asking the endpoint, and
//! the endpoint's answer is written there, under the same lifetimes. Lookups of one
//! token are single-flight within a process, not across replicas: two replicas that
//! miss at the same moment both ask.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::cache::{HasTtl, OwnTtl};
use super::claim_map::{ClaimScopeMap, keep_claims};
use super::client_auth::{self, ClientCredentials};
use super::error::{AuthError, TokenProblem, Unavailability};
use super::principal::{AuthMethod, Principal, Scopes};
use super::shared_cache::{self, SharedCache};
use crate::config::{ClaimScopesConfig, IntrospectionConfig};
use crate::redis::SharedRedis;
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
    /// `auth.oauth.claim_scopes`, then `introspection.claim_scopes`.
    claim_scopes: ClaimScopeMap,
    /// Top-level claims the principal keeps for `rules:`.
    rule_claims: Vec<String>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    client: reqwest::Client,
    cache: moka::future::Cache<[u8; 32], Entry>,
    /// The replicas' cache, when sessions are in Redis.
    shared: Option<SharedCache>,
}

impl Introspector {
    pub(crate) fn new(
        config: IntrospectionConfig,
        global_claim_scopes: &ClaimScopesConfig,
        issuers: Vec<String>,
        audiences: Vec<String>,
        leeway: Duration,
        client: reqwest::Client,
        redis: Option<SharedRedis>,
    ) -> Self {
        let shared = redis.map(|redis| {
            SharedCache::new(
                redis,
                config.url.as_str(),
                &config.client_id,
                config.client_secret.expose(),
            )
        });
        let claim_scopes = ClaimScopeMap::compile([global_claim_scopes, &config.claim_scopes]);
        Self {
            config,
            claim_scopes,
            rule_claims: Vec::new(),
            issuers,
            audiences,
            leeway,
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .expire_after(OwnTtl)
                .build(),
            shared,
        }
    }

    /// Keeps these top-level claims in the principals built (the claims `rules:` read).
    #[must_use]
    pub fn keeping_claims(mut self, roots: &[String]) -> Self {
        self.rule_claims = roots.to_vec();
        self
    }

    /// The claims a shared record must keep beside those judged: what `claim_scopes`
    /// and `rules:` read.
    fn extra_claims(&self) -> impl Iterator<Item = &str> {
        self.claim_scopes
            .roots()
            .chain(self.rule_claims.iter().map(String::as_str))
    }

    /// Whether an answer for the token is held here (positive or negative).
    pub(crate) fn is_cached(&self, digest: &[u8; 32]) -> bool {
        self.cache.contains_key(digest)
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
                // Run only on a local miss, once for concurrent lookups of one token.
                metrics().token_cache(TokenCache::Introspection, false);
                if let Some(entry) = self.shared_answer(&digest).await {
                    return Ok(entry);
                }
                let document = self.ask(token).await;
                let result = match &document {
                    Ok(document) if document.get("active") == Some(&Value::Bool(true)) => {
                        IntrospectionResult::Active
                    }
                    Ok(_) => IntrospectionResult::Inactive,
                    Err(_) => IntrospectionResult::Error,
                };
                metrics().introspection_request(result);
                let document = document?;
                let entry = self.judge(&document);
                if let Some(shared) = &self.shared {
                    // Awaited (bounded by the cache's short timeout) so that the next
                    // request, on whichever replica, finds it.
                    shared
                        .put(
                            &digest,
                            &shared_cache::claims_of(&document, self.extra_claims()),
                            entry.ttl,
                        )
                        .await;
                }
                Ok::<_, Unavailability>(entry)
            })
            .await
            .map_err(|why| AuthError::Unavailable(*why))?;
        // Not fresh: answered from the cache, or by a concurrent lookup of the same token.
        if !entry.is_fresh() {
            metrics().token_cache(TokenCache::Introspection, true);
        }
        entry.into_value().answer.map_err(AuthError::InvalidToken)
    }

    /// An answer another replica (or this one, before a reload) got from the endpoint:
    /// its claims judged again here, for no longer than the writer would keep them.
    async fn shared_answer(&self, digest: &[u8; 32]) -> Option<Entry> {
        let (claims, left) = self.shared.as_ref()?.get(digest).await?;
        // A record written under other mappings or rules may lack a claim this
        // replica reads; judged without it, a rule on that claim would not apply.
        if !shared_cache::covers(&claims, self.extra_claims()) {
            return None;
        }
        let mut entry = self.judge(&claims);
        entry.ttl = entry.ttl.min(left);
        Some(entry)
    }

    async fn ask(&self, token: &str) -> Result<Map<String, Value>, Unavailability> {
        let outage = |detail: String| {
            tracing::warn!(endpoint = %self.config.url, "introspection failed: {detail}");
            Unavailability::IntrospectionUnavailable
        };
        let credentials = ClientCredentials {
            method: self.config.auth_method,
            client_id: &self.config.client_id,
            client_secret: self.config.client_secret.expose(),
        };
        let fields = [("token", token), ("token_type_hint", "access_token")];
        let (status, body) = client_auth::post_form(
            &self.client,
            &self.config.url,
            self.config.timeout,
            credentials,
            &fields,
            MAX_RESPONSE_BYTES,
        )
        .await
        .map_err(outage)?;
        if !status.is_success() {
            return Err(outage(format!("HTTP {status}")));
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
        let mut scopes =
            text("scope").map_or_else(Scopes::default, |scope| Scopes::new(scope.split(' ')));
        self.claim_scopes.apply(document, &mut scopes);
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
                claims: keep_claims(document, &self.rule_claims),
                grant_id: None,
                _verified: crate::auth::principal::Verified,
            })),
            ttl: until_exp.min(self.config.cache_ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientAuthMethod, Secret};
    use serde_json::json;

    fn introspector() -> Introspector {
        introspector_mapping(crate::config::ClaimScopesConfig::default())
    }

    fn introspector_mapping(claim_scopes: crate::config::ClaimScopesConfig) -> Introspector {
        let config = IntrospectionConfig {
            url: "https://as.example/introspect".parse().unwrap(),
            client_id: "mcpgate".into(),
            client_secret: Secret::new("s3cret"),
            auth_method: ClientAuthMethod::default(),
            cache_ttl: Duration::from_secs(30),
            negative_cache_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            require_audience: true,
            claim_scopes,
        };
        Introspector::new(
            config,
            &crate::config::ClaimScopesConfig::default(),
            vec!["https://issuer.test".into()],
            vec!["https://mcp.example/mcp".into()],
            Duration::from_secs(30),
            reqwest::Client::new(),
            None,
        )
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    /// A replica that reads a record builds the principal the writer built from the
    /// endpoint's answer, and refuses what the writer refused, for the same reason.
    #[test]
    fn a_shared_record_rebuilds_the_same_answer() {
        let introspector = introspector();
        let exp = now() + 300.5;
        let answers = [
            json!({"active": true, "iss": "https://issuer.test", "sub": "alice",
                   "client_id": "c1", "scope": "b a b  c", "exp": exp,
                   "aud": ["x", "https://mcp.example/mcp"], "ext": {"k": 1}}),
            json!({"active": true, "username": "bob", "aud": "https://mcp.example/mcp"}),
            json!({"active": true, "sub": "alice", "aud": "https://mcp.example/mcp",
                   "iss": "https://evil.test"}),
            json!({"active": true, "sub": "alice", "aud": "https://elsewhere"}),
            json!({"active": true, "aud": "https://mcp.example/mcp", "exp": now() - 100.0}),
            json!({"active": true, "aud": "https://mcp.example/mcp", "exp": "soon"}),
            json!({"active": false, "sub": "alice", "aud": "https://mcp.example/mcp"}),
            json!({"active": "true", "aud": "https://mcp.example/mcp"}),
        ];
        for answer in answers {
            let answer = object(answer);
            let direct = introspector.judge(&answer);
            let shared = shared_cache::through_a_record(&shared_cache::claims_of(&answer, []))
                .expect("the record reads back");
            let shared = introspector.judge(&shared);
            // Principal has no PartialEq; its Debug form shows every field.
            assert_eq!(
                format!("{:?}", direct.answer),
                format!("{:?}", shared.answer),
                "{answer:?}"
            );
            let drift = direct.ttl.abs_diff(shared.ttl);
            assert!(drift < Duration::from_secs(1), "{answer:?}: {drift:?}");
        }
    }

    /// The claims `rules:` read are kept in the principal, directly and through a
    /// shared record; a record written without them is a miss for this replica.
    #[test]
    fn the_claims_rules_read_are_kept_and_a_record_without_them_is_a_miss() {
        let introspector = introspector().keeping_claims(&["groups".to_owned()]);
        let answer = object(json!({"active": true, "sub": "alice", "scope": "openid",
            "aud": "https://mcp.example/mcp", "groups": ["staff"], "other": 1}));
        let record = shared_cache::claims_of(&answer, introspector.extra_claims());
        assert!(shared_cache::covers(&record, introspector.extra_claims()));
        let shared = shared_cache::through_a_record(&record).unwrap();
        for entry in [introspector.judge(&answer), introspector.judge(&shared)] {
            let principal = entry.answer.expect("active");
            assert_eq!(
                Value::Object(principal.claims.clone()),
                json!({"groups": ["staff"]})
            );
        }
        let older = shared_cache::claims_of(&answer, []);
        assert!(!shared_cache::covers(&older, introspector.extra_claims()));
    }

    /// A mapping applies to introspection answers, and a replica reading the shared
    /// record grants the same mapped scopes (the claims it reads are kept).
    #[test]
    fn claim_values_of_an_answer_map_to_scopes_through_the_shared_record_too() {
        let config: crate::config::Config = crate::config::load_from_str(
            "auth:\n  oauth:\n    claim_scopes: { realm_access.roles: { admin: [mcp:admin] } }\n",
        )
        .unwrap();
        let introspector = introspector_mapping(config.auth.oauth.claim_scopes);
        let answer = object(json!({"active": true, "sub": "alice", "scope": "openid",
            "aud": "https://mcp.example/mcp", "realm_access": {"roles": ["admin", "user"]}}));
        let direct = introspector.judge(&answer);
        let record = shared_cache::claims_of(&answer, introspector.claim_scopes.roots());
        let shared = introspector.judge(&shared_cache::through_a_record(&record).unwrap());
        for entry in [direct, shared] {
            let principal = entry.answer.expect("active");
            assert_eq!(principal.scopes.to_claim(), "openid mcp:admin");
            let mapped = principal.scopes.mapped();
            assert_eq!(mapped.len(), 1);
            assert_eq!(&*mapped[0].claim, "realm_access.roles");
            assert_eq!(mapped[0].value, "admin");
        }
    }
}
