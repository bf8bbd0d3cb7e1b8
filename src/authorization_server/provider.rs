//! The identity provider's side: where its endpoints are (OpenID discovery, or the
//! configuration for plain OAuth providers) and the authorization request mcpgate
//! sends the user to with its own client, PKCE pair, `state` and `nonce`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::future::Cache;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::config::{ConfigError, ProviderConfig};

/// Largest discovery document read.
const MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// The provider's endpoints mcpgate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderEndpoints {
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) jwks_uri: Option<Url>,
    pub(crate) userinfo_endpoint: Option<Url>,
    /// The provider says it puts `iss` in every authorization response (RFC 9207),
    /// so an answer without one is refused.
    pub(crate) sends_iss: bool,
}

/// Why the provider's endpoints are not known.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("OpenID discovery at {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the provider's discovery document is not usable: {0}")]
    Document(String),
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Option<Url>,
    userinfo_endpoint: Option<Url>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Discovered endpoints, by provider issuer, kept an hour; one fetch in flight.
#[derive(Clone)]
pub(crate) struct Discovery {
    cache: Cache<String, Arc<ProviderEndpoints>>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(16)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }
}

impl Discovery {
    /// The endpoints: those configured when both main ones are, else discovered.
    pub(crate) async fn endpoints(
        &self,
        http: &reqwest::Client,
        provider: &ProviderConfig,
    ) -> Result<Arc<ProviderEndpoints>, DiscoveryError> {
        if let (Some(authorization), Some(token)) =
            (&provider.authorization_endpoint, &provider.token_endpoint)
        {
            return Ok(Arc::new(ProviderEndpoints {
                issuer: provider.issuer.as_str().to_owned(),
                authorization_endpoint: authorization.clone(),
                token_endpoint: token.clone(),
                jwks_uri: provider.jwks_uri.clone(),
                userinfo_endpoint: provider.userinfo_endpoint.clone(),
                sends_iss: false,
            }));
        }
        let key = provider.issuer.as_str().to_owned();
        self.cache
            .try_get_with(key, discover(http, provider))
            .await
            .map_err(|error| (*error).clone())
    }
}

/// `mcpgate check`: whether the provider's endpoints can be known as a sign-in
/// would learn them, with a client like the façade's (no redirects). Fetches the
/// discovery document unless both main endpoints are configured. The answer says
/// which; the error names `authorization_server.provider.issuer`.
pub(crate) async fn check(provider: &ProviderConfig) -> Result<String, ConfigError> {
    let configured = provider.authorization_endpoint.is_some() && provider.token_endpoint.is_some();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    Discovery::default()
        .endpoints(&http, provider)
        .await
        .map_err(|error| ConfigError::Invalid {
            key: "authorization_server.provider.issuer".into(),
            message: format!("the identity provider cannot be reached: {error}"),
        })?;
    let issuer = provider.issuer.as_str().trim_end_matches('/');
    Ok(if configured {
        format!("identity provider {issuer} (endpoints configured)")
    } else {
        format!("identity provider {issuer} (discovery document read)")
    })
}

async fn discover(
    http: &reqwest::Client,
    provider: &ProviderConfig,
) -> Result<Arc<ProviderEndpoints>, DiscoveryError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        provider.issuer.as_str().trim_end_matches('/')
    );
    let fetch_error = |reason: String| DiscoveryError::Fetch {
        url: url.clone(),
        reason,
    };
    let response = http
        .get(&url)
        .timeout(provider.timeout)
        .send()
        .await
        .map_err(|error| fetch_error(error.to_string()))?;
    if !response.status().is_success() {
        return Err(fetch_error(format!("status {}", response.status())));
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| fetch_error(error.to_string()))?;
    if body.len() > MAX_DISCOVERY_BYTES {
        return Err(DiscoveryError::Document("larger than 256 KiB".into()));
    }
    let document: DiscoveryDocument = serde_json::from_slice(&body)
        .map_err(|error| DiscoveryError::Document(error.to_string()))?;
    // OpenID Connect Discovery §4.3: the document must be the issuer's own.
    let expected = provider.issuer.as_str().trim_end_matches('/');
    if document.issuer.trim_end_matches('/') != expected {
        return Err(DiscoveryError::Document(format!(
            "its issuer `{}` is not the configured `{expected}`",
            document.issuer
        )));
    }
    Ok(Arc::new(ProviderEndpoints {
        issuer: document.issuer,
        authorization_endpoint: provider
            .authorization_endpoint
            .clone()
            .unwrap_or(document.authorization_endpoint),
        token_endpoint: provider
            .token_endpoint
            .clone()
            .unwrap_or(document.token_endpoint),
        jwks_uri: provider.jwks_uri.clone().or(document.jwks_uri),
        userinfo_endpoint: provider
            .userinfo_endpoint
            .clone()
            .or(document.userinfo_endpoint),
        sends_iss: document.authorization_response_iss_parameter_supported,
    }))
}

/// mcpgate's PKCE pair for the provider leg.
#[derive(Debug, Clone)]
pub(crate) struct Pkce {
    pub(crate) verifier: String,
    pub(crate) challenge: String,
}

impl Pkce {
    /// A fresh pair: 256 random bits as the verifier.
    pub(crate) fn generate() -> Self {
        let verifier = URL_SAFE_NO_PAD.encode(super::random::random_bytes::<32>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

/// What the provider's authorization request carries besides the endpoint.
pub(crate) struct ProviderRequest<'a> {
    pub(crate) redirect_uri: &'a str,
    pub(crate) state: &'a str,
    pub(crate) nonce: &'a str,
    pub(crate) code_challenge: &'a str,
    /// The MCP resource, sent only when `send_resource` is on.
    pub(crate) resource: &'a str,
}

/// The URL the user's browser is sent to at the provider.
pub(crate) fn authorization_url(
    endpoints: &ProviderEndpoints,
    provider: &ProviderConfig,
    request: &ProviderRequest<'_>,
) -> Url {
    let mut url = endpoints.authorization_endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        // Operator extras first, so that nothing below can be overridden by them.
        for (name, value) in &provider.authorization_params {
            if !RESERVED.contains(&name.as_str()) {
                query.append_pair(name, value);
            }
        }
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", &provider.scopes.join(" "))
            .append_pair("state", request.state)
            .append_pair("nonce", request.nonce)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256");
        if provider.send_resource {
            query.append_pair("resource", request.resource);
        }
    }
    url
}

/// Parameters mcpgate sets itself; `authorization_params` cannot replace them
/// (configuration validation names the key).
pub(crate) const RESERVED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "resource",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_request_carries_mcpgates_own_parameters() {
        let provider: ProviderConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example.com",
            "client_id": "mcpgate",
            "scopes": ["openid", "email"],
            "authorization_params": {"prompt": "select_account", "state": "evil"},
        }))
        .unwrap();
        let endpoints = ProviderEndpoints {
            issuer: "https://idp.example.com".into(),
            authorization_endpoint: Url::parse("https://idp.example.com/authorize?tenant=x")
                .unwrap(),
            token_endpoint: Url::parse("https://idp.example.com/token").unwrap(),
            jwks_uri: None,
            userinfo_endpoint: None,
            sends_iss: false,
        };
        let pkce = Pkce::generate();
        let url = authorization_url(
            &endpoints,
            &provider,
            &ProviderRequest {
                redirect_uri: "https://mcp.example.com/oauth/callback",
                state: "st",
                nonce: "no",
                code_challenge: &pkce.challenge,
                resource: "https://mcp.example.com/mcp",
            },
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |name: &str| -> Vec<&str> {
            pairs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("tenant"), ["x"]);
        assert_eq!(get("state"), ["st"]);
        assert_eq!(get("prompt"), ["select_account"]);
        assert_eq!(get("scope"), ["openid email"]);
        assert_eq!(get("code_challenge_method"), ["S256"]);
        assert_eq!(get("code_challenge"), [pkce.challenge.as_str()]);
        assert!(get("resource").is_empty(), "resource is off by default");
        assert_ne!(pkce.verifier, pkce.challenge);
        assert_eq!(pkce.challenge.len(), 43);
    }
}
