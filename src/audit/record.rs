//! One audit record: what was asked, by whom, and what mcpgate decided. Every field is
//! always present (null when unknown), so consumers can rely on one fixed shape.

use std::time::{Duration, SystemTime};

use serde::Serialize;

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

    /// One JSONL line, without the newline.
    pub fn to_json(&self) -> String {
        // A Record holds only strings, numbers and options: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
