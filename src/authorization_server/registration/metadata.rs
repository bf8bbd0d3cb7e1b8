//! The metadata a client registers (RFC 7591 §2), checked: the redirect URIs any
//! client may have here, the authorization code flow only, and one of the three
//! token endpoint authentication methods mcpgate supports. Fields mcpgate does
//! not use are ignored (and not echoed back, RFC 7591 §3.2.1 allows that).

use serde::Deserialize;

use super::super::metadata_documents::document::clean_name;
use super::super::redirect_uri;

/// Most redirect URIs one client may register.
const MAX_REDIRECT_URIS: usize = 20;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    /// A public client: PKCE only.
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl AuthMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }

    pub(crate) fn has_secret(self) -> bool {
        self != Self::None
    }
}

/// What a client registered, as kept and echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) grant_types: Vec<String>,
    pub(crate) response_types: Vec<String>,
    pub(crate) auth_method: AuthMethod,
    pub(crate) client_name: Option<String>,
}

/// A registration refused, with its RFC 7591 §3.2.2 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub(crate) struct RegistrationError {
    pub(crate) code: &'static str,
    pub(crate) description: String,
}

fn invalid_metadata(description: impl Into<String>) -> RegistrationError {
    RegistrationError {
        code: "invalid_client_metadata",
        description: description.into(),
    }
}

fn invalid_redirect(description: impl Into<String>) -> RegistrationError {
    RegistrationError {
        code: "invalid_redirect_uri",
        description: description.into(),
    }
}

/// The request body; every other field is ignored.
#[derive(Debug, Deserialize)]
struct Request {
    redirect_uris: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    client_name: Option<String>,
}

/// Parses and checks a registration request body. `custom_schemes` are the
/// operator's `allowed_redirect_schemes`.
pub(crate) fn parse(
    body: &[u8],
    custom_schemes: &[String],
) -> Result<Registration, RegistrationError> {
    let request: Request = serde_json::from_slice(body).map_err(|error| {
        invalid_metadata(format!(
            "the body is not a JSON object of client metadata ({})",
            error.classify_text()
        ))
    })?;
    let redirect_uris = request.redirect_uris.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(invalid_redirect("redirect_uris is required"));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid_redirect(format!(
            "at most {MAX_REDIRECT_URIS} redirect_uris"
        )));
    }
    for (index, uri) in redirect_uris.iter().enumerate() {
        redirect_uri::check_registrable(uri, custom_schemes)
            .map_err(|error| invalid_redirect(format!("redirect_uris[{index}]: {error}")))?;
    }
    // Grant types mcpgate does not offer are dropped, not refused (RFC 7591 §3.2.1
    // lets the server substitute values; the answer says what was registered):
    // VS Code, for one, also asks for the device-code grant.
    let grant_types: Vec<String> = match request.grant_types {
        None => vec!["authorization_code".to_owned()],
        Some(requested) => {
            let mut kept: Vec<String> = Vec::new();
            for grant in requested {
                if ["authorization_code", "refresh_token"].contains(&grant.as_str())
                    && !kept.contains(&grant)
                {
                    kept.push(grant);
                }
            }
            kept
        }
    };
    if !grant_types
        .iter()
        .any(|grant| grant == "authorization_code")
    {
        return Err(invalid_metadata(
            "grant_types must include authorization_code",
        ));
    }
    let response_types = one_of(request.response_types, "response_types", &["code"], "code")?;
    // RFC 7591 §2: without a method the client means client_secret_basic.
    let auth_method = match request.token_endpoint_auth_method.as_deref() {
        None | Some("client_secret_basic") => AuthMethod::ClientSecretBasic,
        Some("client_secret_post") => AuthMethod::ClientSecretPost,
        Some("none") => AuthMethod::None,
        Some(_) => {
            return Err(invalid_metadata(
                "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
            ));
        }
    };
    Ok(Registration {
        redirect_uris,
        grant_types,
        response_types,
        auth_method,
        client_name: request.client_name.as_deref().and_then(clean_name),
    })
}

/// A list of values each in `allowed`, without repeats; `default` alone when absent.
fn one_of(
    values: Option<Vec<String>>,
    field: &str,
    allowed: &[&str],
    default: &str,
) -> Result<Vec<String>, RegistrationError> {
    let Some(values) = values else {
        return Ok(vec![default.to_owned()]);
    };
    if values.is_empty() {
        return Err(invalid_metadata(format!("{field} must not be empty")));
    }
    let mut kept: Vec<String> = Vec::new();
    for value in values {
        if !allowed.contains(&value.as_str()) {
            return Err(invalid_metadata(format!(
                "{field} may only contain {}",
                allowed.join(", ")
            )));
        }
        if !kept.contains(&value) {
            kept.push(value);
        }
    }
    Ok(kept)
}

/// What kind of problem a JSON error is, without echoing the body.
trait Classify {
    fn classify_text(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Data => "a field has the wrong type",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            serde_json::error::Category::Io => "unreadable",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn register(body: &Value) -> Result<Registration, RegistrationError> {
        parse(&serde_json::to_vec(body).unwrap(), &["cursor".to_owned()])
    }

    #[test]
    fn a_typical_mcp_client_registers() {
        let registration = register(&json!({
            "client_name": "Inspector\u{0}",
            "redirect_uris": ["http://localhost:6274/oauth/callback", "cursor://cb"],
            "grant_types": ["authorization_code", "refresh_token", "authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp:read",
            "software_statement": "ignored",
        }))
        .unwrap();
        assert_eq!(registration.auth_method, AuthMethod::None);
        assert_eq!(
            registration.grant_types,
            ["authorization_code", "refresh_token"]
        );
        assert_eq!(registration.client_name.as_deref(), Some("Inspector"));
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let registration = register(&json!({"redirect_uris": ["https://app.example/cb"]})).unwrap();
        assert_eq!(registration.grant_types, ["authorization_code"]);
        assert_eq!(registration.response_types, ["code"]);
        assert_eq!(registration.auth_method, AuthMethod::ClientSecretBasic);
        assert!(registration.auth_method.has_secret());
        assert_eq!(registration.client_name, None);
    }

    #[test]
    fn bad_redirect_uris_are_invalid_redirect_uri() {
        for uris in [
            json!(null),
            json!([]),
            json!(["javascript:alert(1)"]),
            json!(["http://evil.example/cb"]),
            json!(["https://app.example/cb#frag"]),
            json!(["https://app.example/cb", "data:text/html,x"]),
            json!(["vscode://cb"]),
        ] {
            let error =
                register(&json!({"redirect_uris": uris, "token_endpoint_auth_method": "none"}))
                    .unwrap_err();
            assert_eq!(error.code, "invalid_redirect_uri", "{uris}");
        }
    }

    #[test]
    fn grant_types_mcpgate_does_not_offer_are_dropped() {
        let registration = register(&json!({
            "redirect_uris": ["http://127.0.0.1:33418/"],
            "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .unwrap();
        assert_eq!(
            registration.grant_types,
            ["authorization_code", "refresh_token"]
        );
    }

    #[test]
    fn other_bad_metadata_is_invalid_client_metadata() {
        let uris = json!(["https://app.example/cb"]);
        for body in [
            json!({"redirect_uris": uris, "grant_types": ["client_credentials"]}),
            json!({"redirect_uris": uris, "grant_types": ["implicit"]}),
            json!({"redirect_uris": uris, "grant_types": ["refresh_token"]}),
            json!({"redirect_uris": uris, "grant_types": ["refresh_token", "urn:ietf:params:oauth:grant-type:device_code"]}),
            json!({"redirect_uris": uris, "grant_types": []}),
            json!({"redirect_uris": uris, "response_types": ["token"]}),
            json!({"redirect_uris": uris, "token_endpoint_auth_method": "private_key_jwt"}),
            json!({"redirect_uris": "https://app.example/cb"}),
            json!({"redirect_uris": uris, "client_name": 3}),
            json!([1, 2]),
        ] {
            let error = register(&body).unwrap_err();
            assert_eq!(error.code, "invalid_client_metadata", "{body}");
        }
        let error = parse(b"{not json", &[]).unwrap_err();
        assert_eq!(error.code, "invalid_client_metadata");
    }
}
