//! One audit record of the authorization-server façade: a step of a sign-in or of a
//! grant's life (a client registered, consent given, a code or token issued, a grant
//! revoked) or a refusal. A sibling of [`super::Record`], written to the same log:
//! an MCP request and a façade step share few fields, and the request records keep
//! their shape. The `event` field, absent from request records, tells them apart.
//!
//! Never holds a secret: no token, code, client secret or provider token; a grant
//! is named by its id.

use std::time::SystemTime;

use serde::Serialize;

/// Every field is always present (null when unknown), as in request records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacadeRecord {
    /// RFC 3339, UTC, milliseconds.
    pub ts: String,
    /// `client_registered`, `consent_shown`, `token_issued`, `authorize_refused`, …
    pub event: &'static str,
    /// The client as it was named; on a refusal, possibly a client that does not exist.
    pub client_id: Option<String>,
    /// `configured`, `metadata_document` or `registered`; null when the client is unknown.
    pub client_kind: Option<&'static str>,
    /// The user, as the identity provider names them, once signed in.
    pub subject: Option<String>,
    /// The grant's id (what its access tokens carry as `gid`).
    pub grant_id: Option<String>,
    /// The peer's IP address, where the request came through mcpgate's listener.
    pub remote_addr: Option<String>,
    /// Space-delimited.
    pub scopes: Option<String>,
    /// The protected resource (RFC 8707) asked for or granted.
    pub resource: Option<String>,
    /// The OAuth error code of a refusal (`invalid_grant`, `access_denied`, …).
    pub error: Option<&'static str>,
    /// Why: a refusal's description, or why a grant was revoked (`client`,
    /// `code_replay`, `refresh_reuse`, `admin`).
    pub reason: Option<String>,
}

impl FacadeRecord {
    /// A record of `event` with only its time filled in.
    pub fn new(event: &'static str, at: SystemTime) -> Self {
        Self {
            ts: humantime::format_rfc3339_millis(at).to_string(),
            event,
            client_id: None,
            client_kind: None,
            subject: None,
            grant_id: None,
            remote_addr: None,
            scopes: None,
            resource: None,
            error: None,
            reason: None,
        }
    }

    /// One JSONL line, without the newline.
    pub fn to_json(&self) -> String {
        // Strings and options only: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn every_field_is_present_and_null_when_unknown() {
        let mut record = FacadeRecord::new("grant_revoked", UNIX_EPOCH + Duration::from_secs(1));
        record.grant_id = Some("g1".into());
        let value: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), 11);
        assert_eq!(value["ts"], "1970-01-01T00:00:01.000Z");
        assert_eq!(value["event"], "grant_revoked");
        assert_eq!(value["grant_id"], "g1");
        assert!(value["subject"].is_null());
        assert!(object.get("request_id").is_none());
    }
}
