//! Where the façade's endpoints are, and the RFC 8414 document that says so. The
//! same document is served at the OpenID discovery path, which several MCP
//! clients try first.

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The façade's URLs, all under the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoints {
    /// Verbatim, as the metadata's `issuer` and the `iss` of codes and tokens.
    pub(crate) issuer: String,
    /// The issuer's path without a trailing `/` (`""` for a bare origin).
    pub(crate) base_path: String,
    pub(crate) registration_enabled: bool,
}

impl Endpoints {
    pub(crate) fn new(issuer: &str, registration_enabled: bool) -> Self {
        let after_scheme = issuer.split_once("://").map_or("", |(_, rest)| rest);
        let base_path = after_scheme
            .find('/')
            .and_then(|start| after_scheme.get(start..))
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        Self {
            issuer: issuer.to_owned(),
            base_path,
            registration_enabled,
        }
    }

    /// The path of an endpoint (`authorize`, `token`, …) on this listener.
    pub(crate) fn path(&self, endpoint: &str) -> String {
        format!("{}/oauth/{endpoint}", self.base_path)
    }

    /// The absolute URL of an endpoint.
    pub(crate) fn url(&self, endpoint: &str) -> String {
        format!("{}/oauth/{endpoint}", self.issuer.trim_end_matches('/'))
    }

    /// Where the metadata is served: the RFC 8414 location (the well-known segment
    /// before the issuer's path) and both OpenID discovery forms.
    pub(crate) fn metadata_paths(&self) -> Vec<String> {
        let mut paths = vec![
            format!("/.well-known/oauth-authorization-server{}", self.base_path),
            format!("/.well-known/openid-configuration{}", self.base_path),
        ];
        if !self.base_path.is_empty() {
            paths.push(format!(
                "{}/.well-known/openid-configuration",
                self.base_path
            ));
        }
        paths
    }
}

/// The RFC 8414 document, rendered once per configuration.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizationServerMetadata {
    body: Bytes,
}

impl AuthorizationServerMetadata {
    /// `scopes` are the policy's `scopes_supported` (so `offline_access` only when
    /// configured there).
    /// `assertions`: trusted ID-JAG issuers are configured (the `jwt-bearer` grant).
    pub(crate) fn new(
        endpoints: &Endpoints,
        scopes: &[String],
        metadata_documents: bool,
        assertions: bool,
    ) -> Self {
        let mut doc = Map::new();
        doc.insert("issuer".into(), json!(endpoints.issuer));
        doc.insert(
            "authorization_endpoint".into(),
            json!(endpoints.url("authorize")),
        );
        doc.insert("token_endpoint".into(), json!(endpoints.url("token")));
        if endpoints.registration_enabled {
            doc.insert(
                "registration_endpoint".into(),
                json!(endpoints.url("register")),
            );
        }
        doc.insert("revocation_endpoint".into(), json!(endpoints.url("revoke")));
        doc.insert("jwks_uri".into(), json!(endpoints.url("jwks")));
        doc.insert("response_types_supported".into(), json!(["code"]));
        doc.insert("response_modes_supported".into(), json!(["query"]));
        let mut grant_types = vec!["authorization_code", "refresh_token"];
        if assertions {
            grant_types.push(super::id_jag::GRANT_TYPE);
        }
        doc.insert("grant_types_supported".into(), json!(grant_types));
        doc.insert("code_challenge_methods_supported".into(), json!(["S256"]));
        let auth_methods = json!(["none", "client_secret_basic", "client_secret_post"]);
        doc.insert(
            "token_endpoint_auth_methods_supported".into(),
            auth_methods.clone(),
        );
        doc.insert(
            "revocation_endpoint_auth_methods_supported".into(),
            auth_methods,
        );
        if !scopes.is_empty() {
            doc.insert("scopes_supported".into(), json!(scopes));
        }
        doc.insert(
            "client_id_metadata_document_supported".into(),
            json!(metadata_documents),
        );
        doc.insert(
            "authorization_response_iss_parameter_supported".into(),
            json!(true),
        );
        let body = serde_json::to_vec(&Value::Object(doc)).unwrap_or_default();
        Self {
            body: Bytes::from(body),
        }
    }

    pub(crate) fn document(&self) -> &Bytes {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_sit_under_the_issuer() {
        let root = Endpoints::new("https://mcp.example.com", false);
        assert_eq!(root.base_path, "");
        assert_eq!(
            root.url("authorize"),
            "https://mcp.example.com/oauth/authorize"
        );
        assert_eq!(root.path("token"), "/oauth/token");
        assert_eq!(
            root.metadata_paths(),
            [
                "/.well-known/oauth-authorization-server",
                "/.well-known/openid-configuration"
            ]
        );
        let nested = Endpoints::new("https://mcp.example.com/as/", true);
        assert_eq!(nested.base_path, "/as");
        assert_eq!(nested.path("authorize"), "/as/oauth/authorize");
        assert_eq!(
            nested.url("authorize"),
            "https://mcp.example.com/as/oauth/authorize"
        );
        assert!(
            nested
                .metadata_paths()
                .contains(&"/.well-known/oauth-authorization-server/as".to_owned())
        );
        assert!(
            nested
                .metadata_paths()
                .contains(&"/as/.well-known/openid-configuration".to_owned())
        );
    }

    #[test]
    fn the_document_has_what_mcp_clients_read() {
        let endpoints = Endpoints::new("https://mcp.example.com", false);
        let metadata =
            AuthorizationServerMetadata::new(&endpoints, &["mcp:read".into()], true, false);
        let doc: Value = serde_json::from_slice(metadata.document()).unwrap();
        assert_eq!(doc["issuer"], "https://mcp.example.com");
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:read"]));
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert!(doc.get("registration_endpoint").is_none());
        assert_eq!(
            doc["grant_types_supported"],
            json!(["authorization_code", "refresh_token"])
        );
        let with_assertions = AuthorizationServerMetadata::new(&endpoints, &[], true, true)
            .document()
            .clone();
        let doc: Value = serde_json::from_slice(&with_assertions).unwrap();
        assert_eq!(
            doc["grant_types_supported"],
            json!([
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:jwt-bearer"
            ])
        );
        let with_dcr = Endpoints::new("https://mcp.example.com", true);
        let doc: Value = serde_json::from_slice(
            AuthorizationServerMetadata::new(&with_dcr, &[], true, false).document(),
        )
        .unwrap();
        assert_eq!(
            doc["registration_endpoint"],
            "https://mcp.example.com/oauth/register"
        );
        assert!(doc.get("scopes_supported").is_none());
    }
}
