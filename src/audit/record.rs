//! One audit record: what was asked, by whom, and what mcpgate decided. Every field is
//! always present (null when unknown), so consumers can rely on one fixed shape.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::line::Object;
use crate::auth::MappedScope;
use crate::telemetry::RequestFacts;

/// Allowed through to the upstream, or refused by mcpgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Passed every check and was forwarded to the upstream.
    Allow,
    /// Not forwarded: refused before it reached the upstream.
    Deny,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One JSON-RPC message of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchEntry {
    pub(crate) method: String,
    pub(crate) name: Option<String>,
}

/// One decision: one HTTP request to the MCP endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    /// mcpgate's own id for the request, also sent back as `x-request-id`.
    pub request_id: String,
    /// The route (`routes[].name`) the request was for; null without `routes:`
    /// and for a path no route serves.
    pub route: Option<Arc<str>>,
    /// The client-facing `Mcp-Session-Id`; null without a session (stateless, or before
    /// `initialize`).
    pub session_id: Option<String>,
    /// `POST`, `GET` (the SSE stream) or `DELETE`.
    pub http_method: String,
    /// The JSON-RPC method; null when it was not read (authentication failed first, or
    /// a body that is not JSON-RPC) and for GET/DELETE; `batch` for a batch.
    pub method: Option<String>,
    /// The tool a `tools/call` names; null for every other message.
    pub tool: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) prompt: Option<String>,
    /// The messages of a batch (null otherwise).
    pub batch: Option<Vec<BatchEntry>>,
    /// Whether the request was forwarded.
    pub action: Action,
    /// `ok`, or the authentication failure's reason code (`expired`, `bad_audience`, …).
    pub auth_result: String,
    /// `jwt`, `introspection` or `api_key`; null when unauthenticated.
    pub auth_method: Option<&'static str>,
    /// The token's `sub` (`api-key:<id>` for an API key); null when unauthenticated.
    pub subject: Option<String>,
    pub(crate) issuer: Option<String>,
    /// The token's `client_id` claim, `azp` as a fallback.
    pub oauth_client_id: Option<String>,
    pub(crate) api_key_id: Option<String>,
    /// Space-delimited granted scopes (`*` for an API key with every scope), mapped
    /// ones included.
    pub scopes: Option<String>,
    /// The scopes of `scopes` granted by `claim_scopes` rather than carried by the
    /// token, each with the claim and value that granted it; `[]` when none, null
    /// when unauthenticated.
    pub mapped_scopes: Option<Vec<MappedScope>>,
    /// The names of the `rules:` entries whose `when` held for the caller, in the
    /// order written; `[]` when none, null when unauthenticated.
    pub rules_matched: Option<Vec<String>>,
    /// The rule that refused the request (its `reason` says which item and list).
    pub denied_by_rule: Option<String>,
    /// The HTTP status the client got.
    pub status: u16,
    /// Why it was refused (or what failed), in the words the client was given.
    pub reason: Option<String>,
    /// From the request's arrival to its response head.
    pub latency_ms: f64,
    /// Of which waiting for the upstream's response head.
    pub upstream_latency_ms: Option<f64>,
    /// The first 16 hex digits of the token's SHA-256: ties records to one token
    /// without revealing it.
    pub token_fingerprint: Option<String>,
    /// How the upstream was told who calls, space-separated in the order applied:
    /// `assertion`, `identity_headers`, `token_exchange` or `entra_obo`,
    /// `connection:<name>`; null when none was. Never a token.
    pub upstream_identity: Option<String>,
    /// The audience (or resource, or scopes) of the token the upstream got.
    pub upstream_audience: Option<String>,
}

/// What metrics and the trace span read: the record is the one set of facts the
/// three outputs share.
impl<'a> From<&'a Record> for RequestFacts<'a> {
    fn from(record: &'a Record) -> Self {
        Self {
            request_id: &record.request_id,
            http_method: &record.http_method,
            method: record.method.as_deref(),
            tool: record.tool.as_deref(),
            resource: record.resource.as_deref(),
            prompt: record.prompt.as_deref(),
            route: record.route.as_ref(),
            session_id: record.session_id.as_deref(),
            oauth_client_id: record.oauth_client_id.as_deref(),
            scopes: record.scopes.as_deref(),
            subject: record.subject.as_deref(),
            auth_result: &record.auth_result,
            auth_method: record.auth_method,
            decision: record.action.as_str(),
            status: record.status,
            reason: record.reason.as_deref(),
            latency_ms: record.latency_ms,
            upstream_latency_ms: record.upstream_latency_ms,
        }
    }
}

impl Record {
    /// A record with only the request's identity filled in.
    pub fn new(request_id: String, http_method: &str, at: SystemTime) -> Self {
        Self {
            ts: humantime::format_rfc3339_millis(at).to_string(),
            request_id,
            route: None,
            session_id: None,
            http_method: http_method.to_owned(),
            method: None,
            tool: None,
            resource: None,
            prompt: None,
            batch: None,
            action: Action::Deny,
            auth_result: "ok".to_owned(),
            auth_method: None,
            subject: None,
            issuer: None,
            oauth_client_id: None,
            api_key_id: None,
            scopes: None,
            mapped_scopes: None,
            rules_matched: None,
            denied_by_rule: None,
            status: 0,
            reason: None,
            latency_ms: 0.0,
            upstream_latency_ms: None,
            token_fingerprint: None,
            upstream_identity: None,
            upstream_audience: None,
        }
    }

    /// The token fingerprint from its SHA-256 digest.
    pub fn fingerprint(digest: &[u8; 32]) -> String {
        hex::encode(digest.get(..8).unwrap_or_default())
    }

    /// Milliseconds with microsecond precision.
    pub fn millis(duration: Duration) -> f64 {
        (duration.as_micros() as f64) / 1000.0
    }

    /// One JSONL line, without the newline: what `serde_json` makes of the record
    /// (the derived `Serialize`), written member by member.
    pub fn to_json(&self) -> String {
        let mut line = Object::with_capacity(768);
        line.string("ts", &self.ts);
        line.string("request_id", &self.request_id);
        line.optional_string("route", self.route.as_deref());
        line.optional_string("session_id", self.session_id.as_deref());
        line.string("http_method", &self.http_method);
        line.optional_string("method", self.method.as_deref());
        line.optional_string("tool", self.tool.as_deref());
        line.optional_string("resource", self.resource.as_deref());
        line.optional_string("prompt", self.prompt.as_deref());
        match &self.batch {
            Some(batch) => line.serialized("batch", batch),
            None => line.null("batch"),
        }
        line.string("action", self.action.as_str());
        line.string("auth_result", &self.auth_result);
        line.optional_string("auth_method", self.auth_method);
        line.optional_string("subject", self.subject.as_deref());
        line.optional_string("issuer", self.issuer.as_deref());
        line.optional_string("oauth_client_id", self.oauth_client_id.as_deref());
        line.optional_string("api_key_id", self.api_key_id.as_deref());
        line.optional_string("scopes", self.scopes.as_deref());
        match &self.mapped_scopes {
            Some(mapped) => line.serialized("mapped_scopes", mapped),
            None => line.null("mapped_scopes"),
        }
        match &self.rules_matched {
            Some(rules) => line.serialized("rules_matched", rules),
            None => line.null("rules_matched"),
        }
        line.optional_string("denied_by_rule", self.denied_by_rule.as_deref());
        line.unsigned("status", self.status);
        line.optional_string("reason", self.reason.as_deref());
        line.float("latency_ms", self.latency_ms);
        line.optional_float("upstream_latency_ms", self.upstream_latency_ms);
        line.optional_string("token_fingerprint", self.token_fingerprint.as_deref());
        line.optional_string("upstream_identity", self.upstream_identity.as_deref());
        line.optional_string("upstream_audience", self.upstream_audience.as_deref());
        line.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    use proptest::prelude::*;

    use super::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[a-z\"\\\\\\x00-\\x1f é😀/:._-]{0,24}"]
    }

    fn record() -> impl Strategy<Value = Record> {
        let strings = (
            text(),
            text(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        );
        let more = (
            proptest::option::of(proptest::collection::vec(
                (text(), proptest::option::of(text())),
                0..3,
            )),
            any::<bool>(),
            proptest::option::of(proptest::collection::vec((text(), text(), text()), 0..3)),
            proptest::option::of(proptest::collection::vec(text(), 0..3)),
            any::<u16>(),
            any::<f64>(),
            proptest::option::of(any::<f64>()),
            proptest::option::of(text()),
        );
        (strings, more).prop_map(
            |(
                (ts, request_id, session_id, method, tool, subject, scopes, reason),
                (batch, allowed, mapped, rules, status, latency, upstream, identity),
            )| {
                let mut record = Record::new(request_id, "POST", UNIX_EPOCH);
                record.ts = ts;
                record.route = session_id.as_deref().map(Arc::from);
                record.session_id = session_id;
                record.method = method.clone();
                record.tool = tool.clone();
                record.resource = tool;
                record.prompt = method;
                record.batch = batch.map(|entries| {
                    entries
                        .into_iter()
                        .map(|(method, name)| BatchEntry { method, name })
                        .collect()
                });
                record.action = if allowed { Action::Allow } else { Action::Deny };
                record.auth_method = subject.as_ref().map(|_| "jwt");
                record.subject = subject.clone();
                record.issuer = subject;
                record.oauth_client_id = scopes.clone();
                record.api_key_id = reason.clone();
                record.scopes = scopes;
                record.mapped_scopes = mapped.map(|entries| {
                    entries
                        .into_iter()
                        .map(|(scope, claim, value)| MappedScope {
                            scope,
                            claim: Arc::from(claim),
                            value,
                        })
                        .collect()
                });
                record.rules_matched = rules;
                record.denied_by_rule = reason.clone();
                record.status = status;
                record.reason = reason;
                record.latency_ms = latency;
                record.upstream_latency_ms = upstream;
                record.token_fingerprint = identity.clone();
                record.upstream_identity = identity.clone();
                record.upstream_audience = identity;
                record
            },
        )
    }

    #[test]
    fn an_empty_record_is_written_as_serde_writes_it() {
        let record = Record::new("r-1".into(), "GET", UNIX_EPOCH);
        assert_eq!(record.to_json(), serde_json::to_string(&record).unwrap());
    }

    proptest! {
        /// The hand-written line is exactly the derived serialisation, so the
        /// record's documented shape (field order, nulls, escapes) is serde's.
        #[test]
        fn every_record_is_written_as_serde_writes_it(record in record()) {
            prop_assert_eq!(record.to_json(), serde_json::to_string(&record).unwrap());
        }
    }
}
