//! RFC 9728 protected-resource metadata, served without authentication.

use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::policy::Policy;

/// The metadata document, rendered once per configuration.
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadata {
    body: Bytes,
}

impl ProtectedResourceMetadata {
    /// `authorization_servers` are the issuers clients are sent to (mcpgate's own
    /// when it is the authorization server).
    pub(crate) fn new(config: &Config, policy: &Policy, authorization_servers: &[String]) -> Self {
        let mut doc = Map::new();
        doc.insert("resource".into(), json!(config.public_url().as_str()));
        doc.insert("authorization_servers".into(), json!(authorization_servers));
        doc.insert("bearer_methods_supported".into(), json!(["header"]));
        let scopes = policy.scopes_supported();
        if !scopes.is_empty() {
            doc.insert("scopes_supported".into(), json!(scopes));
        }
        if let Some(docs) = &config.server.resource_documentation {
            doc.insert("resource_documentation".into(), json!(docs.as_str()));
        }
        let body = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
        Self {
            body: Bytes::from(body),
        }
    }

    /// The RFC 9728 JSON, ready to send as the response body.
    pub fn document(&self) -> &Bytes {
        &self.body
    }

    pub(crate) fn response(&self) -> Response {
        super::json::public_document(self.body.clone())
    }
}
