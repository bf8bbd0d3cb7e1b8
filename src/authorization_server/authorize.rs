//! The authorization request (RFC 6749 §4.1.1 as OAuth 2.1 narrows it), checked in
//! the order that keeps the endpoint from being an open redirector: until the client
//! and its redirect URI are verified, every problem is a page shown to the user;
//! only after that does an error go back to the client's redirect URI.

use std::collections::BTreeMap;

use super::clients::Client;
use super::redirect_uri;

/// Longest `state` accepted (clients send 32 to 64 bytes).
const MAX_STATE: usize = 1024;

/// An authorization request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuthorizationRequest {
    pub(crate) client_id: String,
    /// As the client sent it: the code goes back to exactly this URI.
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    /// The PKCE S256 challenge (base64url of a SHA-256 digest).
    pub(crate) code_challenge: String,
    /// Requested scopes, each one the façade offers, in request order without repeats.
    pub(crate) scopes: Vec<String>,
    /// The protected resource the token is for (RFC 8707).
    pub(crate) resource: String,
}

/// A problem shown as a page, never redirected: the client or its redirect URI is
/// not (yet) verified, so its redirect URI cannot be trusted with anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PageError {
    #[error("the request has no client_id")]
    MissingClientId,
    #[error("the request names `{0}` more than once")]
    Repeated(&'static str),
    #[error("the client is not known: {0}")]
    UnknownClient(String),
    /// A URL client id whose document could not be fetched or used; the reason.
    #[error("the client cannot be verified: {0}")]
    MetadataDocument(String),
    #[error("the request has no redirect_uri and the client registered more than one")]
    MissingRedirectUri,
    #[error("the redirect_uri is not one the client registered")]
    RedirectUriMismatch,
    /// The shared state (Redis) could not say whether the client is registered.
    #[error("{0}")]
    Unavailable(String),
}

/// A problem reported to the client at its (verified) redirect URI (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedirectError {
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    /// The OAuth error code.
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

/// What the façade offers, for checking a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offer<'a> {
    /// The protected resources tokens may be issued for; the first is the default.
    pub(crate) resources: &'a [String],
    pub(crate) scopes: &'a [String],
}

/// The query parameters, each at most once where the protocol says so.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    values: BTreeMap<String, Vec<String>>,
}

impl Params {
    /// Parses a query string (`application/x-www-form-urlencoded`).
    pub(crate) fn from_query(query: &str) -> Self {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            values
                .entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        Self { values }
    }

    /// The single value of `name`: `Ok(None)` when absent, `Err` when repeated
    /// (RFC 6749 §3.1: parameters must not appear more than once).
    pub(crate) fn single(&self, name: &'static str) -> Result<Option<&str>, &'static str> {
        match self.values.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([value]) => Ok(Some(value.as_str())),
            Some(_) => Err(name),
        }
    }

    /// The `client_id`, which must be present once.
    pub(crate) fn client_id(&self) -> Result<&str, PageError> {
        match self.single("client_id") {
            Ok(Some(id)) if !id.is_empty() => Ok(id),
            Ok(_) => Err(PageError::MissingClientId),
            Err(name) => Err(PageError::Repeated(name)),
        }
    }

    /// The redirect URI the code goes to: the one requested if the client registered
    /// it, or the client's only one when the request names none.
    pub(crate) fn redirect_uri(&self, client: &Client) -> Result<String, PageError> {
        match self.single("redirect_uri") {
            Err(name) => Err(PageError::Repeated(name)),
            Ok(None) => match client.redirect_uris.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(PageError::MissingRedirectUri),
            },
            Ok(Some(requested)) => redirect_uri::find_match(&client.redirect_uris, requested)
                .map(|_| requested.to_owned())
                .ok_or(PageError::RedirectUriMismatch),
        }
    }

    /// Every other check, once the redirect URI is verified.
    pub(crate) fn check(
        &self,
        client: &Client,
        redirect_uri: String,
        offer: Offer<'_>,
    ) -> Result<AuthorizationRequest, RedirectError> {
        // `state` first: every later error carries it back.
        let state = match self.single("state") {
            Ok(state) => state.map(str::to_owned),
            Err(name) => {
                return Err(RedirectError {
                    redirect_uri,
                    state: None,
                    error: "invalid_request",
                    description: format!("`{name}` appears more than once"),
                });
            }
        };
        let fail = |error: &'static str, description: String| RedirectError {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description,
        };
        let one = |name: &'static str| {
            self.single(name).map_err(|name| {
                fail(
                    "invalid_request",
                    format!("`{name}` appears more than once"),
                )
            })
        };
        if state.as_ref().is_some_and(|state| state.len() > MAX_STATE) {
            return Err(fail("invalid_request", "state is too long".into()));
        }
        match one("response_type")? {
            Some("code") => {}
            Some(_) => {
                return Err(fail(
                    "unsupported_response_type",
                    "only response_type=code is supported".into(),
                ));
            }
            None => return Err(fail("invalid_request", "response_type is required".into())),
        }
        let Some(code_challenge) = one("code_challenge")? else {
            return Err(fail(
                "invalid_request",
                "PKCE is required: code_challenge is missing".into(),
            ));
        };
        match one("code_challenge_method")? {
            Some("S256") => {}
            Some(_) | None => {
                return Err(fail(
                    "invalid_request",
                    "PKCE code_challenge_method must be S256".into(),
                ));
            }
        }
        if !is_s256_challenge(code_challenge) {
            return Err(fail(
                "invalid_request",
                "code_challenge is not a base64url SHA-256 digest".into(),
            ));
        }
        let resource = match self.values.get("resource").map(Vec::as_slice) {
            None | Some([]) => offer.resources.first().cloned().unwrap_or_default(),
            Some([resource]) if offer.resources.contains(resource) => resource.clone(),
            Some([_]) => {
                return Err(fail(
                    "invalid_target",
                    "resource is not a protected resource of this server".into(),
                ));
            }
            Some(_) => {
                return Err(fail(
                    "invalid_target",
                    "tokens are issued for one resource at a time".into(),
                ));
            }
        };
        let mut scopes: Vec<String> = Vec::new();
        for scope in one("scope")?
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if !offer.scopes.iter().any(|offered| offered == scope) {
                return Err(fail(
                    "invalid_scope",
                    format!("scope `{scope}` is not offered"),
                ));
            }
            if !scopes.iter().any(|seen| seen == scope) {
                scopes.push(scope.to_owned());
            }
        }
        Ok(AuthorizationRequest {
            client_id: client.client_id.clone(),
            redirect_uri,
            state,
            code_challenge: code_challenge.to_owned(),
            scopes,
            resource,
        })
    }
}

/// A S256 challenge is the unpadded base64url encoding of 32 bytes: 43 characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::super::clients::ClientKind;
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const RESOURCE: &str = "https://mcp.example.com/mcp";

    fn client() -> Client {
        Client {
            client_id: "tool".into(),
            client_name: None,
            redirect_uris: vec![
                "https://tool.example/cb".into(),
                "http://127.0.0.1/cb".into(),
            ],
            kind: ClientKind::Configured,
            secret_hash: None,
        }
    }

    fn check(query: &str) -> Result<AuthorizationRequest, RedirectError> {
        let params = Params::from_query(query);
        let client = client();
        let redirect = params.redirect_uri(&client).unwrap();
        let resources = vec![RESOURCE.to_owned()];
        let scopes = vec!["mcp:read".to_owned(), "mcp:write".to_owned()];
        params.check(
            &client,
            redirect,
            Offer {
                resources: &resources,
                scopes: &scopes,
            },
        )
    }

    fn base() -> String {
        format!(
            "client_id=tool&redirect_uri=https%3A%2F%2Ftool.example%2Fcb&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256&state=xyz"
        )
    }

    #[test]
    fn a_good_request_passes() {
        let request = check(&format!("{}&scope=mcp:read%20mcp:read%20mcp:write", base())).unwrap();
        assert_eq!(request.redirect_uri, "https://tool.example/cb");
        assert_eq!(request.state.as_deref(), Some("xyz"));
        assert_eq!(request.scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(request.resource, RESOURCE);
        let request = check(&format!("{}&resource={RESOURCE}", base())).unwrap();
        assert_eq!(request.resource, RESOURCE);
    }

    #[test]
    fn unverified_problems_are_pages() {
        let client = client();
        assert_eq!(
            Params::from_query("").client_id(),
            Err(PageError::MissingClientId)
        );
        assert_eq!(
            Params::from_query("client_id=a&client_id=b").client_id(),
            Err(PageError::Repeated("client_id"))
        );
        for query in [
            "redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
            "redirect_uri=https%3A%2F%2Ftool.example%2Fcb%2F",
            "redirect_uri=https%3A%2F%2Ftool.example%2Fcb%23x",
            "redirect_uri=http%3A%2F%2F127.0.0.1.evil.example%2Fcb",
        ] {
            assert_eq!(
                Params::from_query(query).redirect_uri(&client),
                Err(PageError::RedirectUriMismatch),
                "{query}"
            );
        }
        assert_eq!(
            Params::from_query("").redirect_uri(&client),
            Err(PageError::MissingRedirectUri)
        );
        assert_eq!(
            Params::from_query("redirect_uri=a&redirect_uri=b").redirect_uri(&client),
            Err(PageError::Repeated("redirect_uri"))
        );
        assert_eq!(
            Params::from_query("redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2Fcb")
                .redirect_uri(&client)
                .as_deref(),
            Ok("http://127.0.0.1:5555/cb")
        );
    }

    #[test]
    fn verified_problems_go_back_with_state() {
        let cases = [
            (
                base().replace("response_type=code", "response_type=token"),
                "unsupported_response_type",
            ),
            (
                base().replace("method=S256", "method=plain"),
                "invalid_request",
            ),
            (format!("{}&response_type=code", base()), "invalid_request"),
            (format!("{}&scope=mcp:admin", base()), "invalid_scope"),
            (
                format!("{}&resource=https%3A%2F%2Fother.example%2Fmcp", base()),
                "invalid_target",
            ),
            (
                format!("{}&resource={RESOURCE}&resource={RESOURCE}", base()),
                "invalid_target",
            ),
        ];
        for (query, code) in cases {
            let error = check(&query).unwrap_err();
            assert_eq!(error.error, code, "{query}");
            assert_eq!(error.state.as_deref(), Some("xyz"));
            assert_eq!(error.redirect_uri, "https://tool.example/cb");
        }
        let repeated_state = format!("{}&state=other", base());
        let error = check(&repeated_state).unwrap_err();
        assert_eq!((error.error, error.state), ("invalid_request", None));
    }

    #[test]
    fn pkce_is_required_and_well_formed() {
        let without = base().replace(&format!("&code_challenge={CHALLENGE}"), "");
        assert_eq!(check(&without).unwrap_err().error, "invalid_request");
        let no_method = base().replace("&code_challenge_method=S256", "");
        assert_eq!(check(&no_method).unwrap_err().error, "invalid_request");
        let short = base().replace(CHALLENGE, "abc");
        assert_eq!(check(&short).unwrap_err().error, "invalid_request");
        let bad_chars = base().replace(CHALLENGE, &format!("{}+", &CHALLENGE[..42]));
        assert_eq!(check(&bad_chars).unwrap_err().error, "invalid_request");
    }
}
