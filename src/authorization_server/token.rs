//! The token endpoint (RFC 6749 §3.2, as OAuth 2.1 narrows it) and revocation
//! (RFC 7009): client authentication, the `authorization_code` and `refresh_token`
//! grants, and mcpgate's access tokens (RFC 9068 JWTs signed ES256).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::{Argon2, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};

use super::authorize::{PageError, Params};
use super::clients::Client;
use super::events::{Event, Peer, name, why};
use super::grants::{Grant, GrantError};
use super::id_jag::{self, AssertionError, GRANT_TYPE};
use super::random::random_id;
use super::settings::{Facade, Settings};
use super::shared::Unavailable;
use crate::auth::api_keys::parse_hash;

/// An OAuth error answer of the token or revocation endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
    /// The client authenticated with HTTP Basic: a 401 names the scheme.
    pub(crate) basic_challenge: bool,
}

impl TokenError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    /// A body that is not a form.
    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        )
    }

    fn invalid_client(description: &str, basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.to_owned(),
            basic_challenge: basic,
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

impl From<GrantError> for TokenError {
    fn from(error: GrantError) -> Self {
        Self::new("invalid_grant", error.to_string())
    }
}

/// The token and revocation endpoints' answer: 503, never a guess.
impl From<Unavailable> for TokenError {
    fn from(_: Unavailable) -> Self {
        Self {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: "the authorization server cannot reach its storage; try again".into(),
            basic_challenge: false,
        }
    }
}

/// The token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    /// None for an identity assertion's grant: the client gets a new assertion.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
}

/// An access token's claims (RFC 9068 §2.2), plus `gid`, the grant it belongs to.
#[derive(Debug, Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    scope: String,
    iat: u64,
    exp: u64,
    jti: String,
    gid: &'a str,
}

/// Who is calling the token or revocation endpoint, authenticated.
struct Caller {
    client_id: String,
}

/// Authenticates the client (RFC 6749 §2.3): HTTP Basic or `client_secret` in the
/// form for confidential clients, `client_id` alone for public ones; a secret from a
/// public client, or none from a confidential one, is refused.
async fn authenticate(
    facade: &Facade,
    settings: &Settings,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(Caller, Client), TokenError> {
    let form_id = params.single("client_id").map_err(|name| {
        TokenError::new(
            "invalid_request",
            format!("`{name}` appears more than once"),
        )
    })?;
    let form_secret = params.single("client_secret").map_err(|name| {
        TokenError::new(
            "invalid_request",
            format!("`{name}` appears more than once"),
        )
    })?;
    let basic = basic_credentials(headers)?;
    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, form_id, form_secret) {
        (Some(_), _, Some(_)) => {
            return Err(TokenError::new(
                "invalid_request",
                "client credentials are sent one way only (RFC 6749 §2.3.1)",
            ));
        }
        (Some((id, _)), Some(form), None) if form != id => {
            return Err(TokenError::new(
                "invalid_request",
                "client_id differs from the Basic credentials",
            ));
        }
        (Some((id, secret)), _, None) => (id, Some(secret)),
        (None, Some(id), secret) => (id.to_owned(), secret.map(str::to_owned)),
        (None, None, _) => {
            return Err(TokenError::invalid_client(
                "no client identification",
                false,
            ));
        }
    };
    let client = facade
        .find_client(settings, &client_id)
        .await
        .map_err(|error| match error {
            PageError::Unavailable(cause) => Unavailable(cause).into(),
            _ => TokenError::invalid_client("unknown client", used_basic),
        })?;
    match (&client.secret_hash, secret) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(TokenError::invalid_client(
                "a public client has no secret",
                used_basic,
            ));
        }
        (Some(_), None) => {
            return Err(TokenError::invalid_client(
                "the client secret is missing",
                used_basic,
            ));
        }
        (Some(hash), Some(secret)) => {
            let hash = hash.clone();
            // argon2 is deliberately slow: off the request threads.
            let matched = tokio::task::spawn_blocking(move || {
                parse_hash(&hash).is_ok_and(|parsed| {
                    Argon2::default()
                        .verify_password(secret.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await
            .unwrap_or(false);
            if !matched {
                return Err(TokenError::invalid_client(
                    "the client secret is wrong",
                    used_basic,
                ));
            }
        }
    }
    Ok((Caller { client_id }, client))
}

/// `Authorization: Basic` credentials, each part form-decoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TokenError::new(
            "invalid_request",
            "more than one Authorization header",
        ));
    }
    let malformed = || TokenError::invalid_client("malformed Basic credentials", true);
    let text = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(malformed());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let decode = |part: &str| {
        url::form_urlencoded::parse(format!("x={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
    };
    let (Some(id), Some(secret)) = (decode(id), decode(secret)) else {
        return Err(malformed());
    };
    Ok(Some((id, secret)))
}

/// `POST /oauth/token`.
pub(crate) async fn token(
    facade: &Facade,
    headers: &HeaderMap,
    body: &str,
    peer: Peer,
) -> Result<TokenResponse, TokenError> {
    let settings = facade.settings();
    let params = Params::from_query(body);
    let (caller, client) = authenticate(facade, &settings, headers, &params).await?;
    let one = |name: &'static str| {
        params.single(name).map_err(|name| {
            TokenError::new(
                "invalid_request",
                format!("`{name}` appears more than once"),
            )
        })
    };
    let resource = one("resource")?;
    match one("grant_type")? {
        Some("authorization_code") => {
            let code = one("code")?
                .ok_or_else(|| TokenError::new("invalid_request", "code is required"))?;
            let verifier = one("code_verifier")?.ok_or_else(|| {
                TokenError::new("invalid_request", "code_verifier is required (PKCE)")
            })?;
            let redirect_uri = one("redirect_uri")?;
            let redeemed = facade
                .grants
                .redeem_code(code, &caller.client_id, redirect_uri, verifier, resource)
                .await?;
            let grant = match redeemed {
                Ok(grant) => grant,
                Err(error) => {
                    tracing::warn!(client_id = %caller.client_id, "code refused: {error}");
                    if error == GrantError::CodeReplayed {
                        let grant_id = facade.grants.grant_of_used_code(code).await?;
                        replayed(facade, &client, peer, grant_id, name::CODE_REPLAYED).await;
                    }
                    return Err(error.into());
                }
            };
            let redeemed = Event::new(name::CODE_REDEEMED)
                .client(&client)
                .grant(&grant);
            facade.audit(redeemed.peer(peer)).await;
            let refresh = facade.grants.issue_refresh_token(&grant).await?;
            tracing::info!(client_id = %caller.client_id, subject = %grant.subject, "tokens issued");
            let answer = issue(&settings, &grant, &grant.scopes, Some(refresh))?;
            let issued = Event::new(name::TOKEN_ISSUED).client(&client).grant(&grant);
            facade.audit(issued.peer(peer)).await;
            Ok(answer)
        }
        Some("refresh_token") => {
            let token = one("refresh_token")?
                .ok_or_else(|| TokenError::new("invalid_request", "refresh_token is required"))?;
            let rotated = facade
                .grants
                .rotate_refresh_token(token, &caller.client_id)
                .await?;
            let (grant, refresh) = match rotated {
                Ok(rotated) => rotated,
                Err(error) => {
                    tracing::warn!(client_id = %caller.client_id, "refresh refused: {error}");
                    if error == GrantError::RefreshTokenReused {
                        let grant_id = facade.grants.grant_of_rotated_token(token).await?;
                        replayed(facade, &client, peer, grant_id, name::REFRESH_TOKEN_REUSED).await;
                    }
                    return Err(error.into());
                }
            };
            if resource.is_some_and(|resource| resource != grant.resource) {
                return Err(TokenError::new(
                    "invalid_target",
                    "resource differs from the grant's",
                ));
            }
            // A refresh may narrow the scopes (RFC 6749 §6), never widen them.
            let scopes = match one("scope")? {
                None => grant.scopes.clone(),
                Some(requested) => {
                    let requested: Vec<String> = requested
                        .split(' ')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if let Some(extra) =
                        requested.iter().find(|scope| !grant.scopes.contains(scope))
                    {
                        return Err(TokenError::new(
                            "invalid_scope",
                            format!("scope `{extra}` was not granted"),
                        ));
                    }
                    requested
                }
            };
            tracing::info!(client_id = %caller.client_id, subject = %grant.subject, "tokens refreshed");
            let answer = issue(&settings, &grant, &scopes, Some(refresh))?;
            let refreshed = Event::new(name::TOKEN_REFRESHED)
                .client(&client)
                .grant(&grant)
                .scopes(&scopes);
            facade.audit(refreshed.peer(peer)).await;
            Ok(answer)
        }
        Some(GRANT_TYPE) if !settings.config.identity_assertion_issuers.is_empty() => {
            let assertion = one("assertion")?
                .ok_or_else(|| TokenError::new("invalid_request", "assertion is required"))?;
            let requested = one("scope")?;
            redeem_assertion(facade, &settings, &client, assertion, requested, peer).await
        }
        Some(other) => Err(TokenError::new(
            "unsupported_grant_type",
            format!(
                "grant_type `{}` is not supported",
                other.chars().take(64).collect::<String>()
            ),
        )),
        None => Err(TokenError::new("invalid_request", "grant_type is required")),
    }
}

/// The `jwt-bearer` grant with an ID-JAG (see [`super::id_jag`]): a new grant
/// for the assertion's user, an access token, and no refresh token (the client
/// asks its identity provider for a new assertion instead, so the provider's
/// policy is consulted again).
async fn redeem_assertion(
    facade: &Facade,
    settings: &Settings,
    client: &Client,
    assertion: &str,
    requested: Option<&str>,
    peer: Peer,
) -> Result<TokenResponse, TokenError> {
    let refused = |error: AssertionError| {
        tracing::warn!(client_id = %client.client_id, "assertion refused: {error}");
        TokenError::new("invalid_grant", error.to_string())
    };
    let trusted = &settings.config.identity_assertion_issuers;
    let (issuer, kid) = id_jag::trusted_issuer(assertion, trusted).map_err(refused)?;
    let keys = facade
        .provider_keys
        .get(
            &facade.http,
            &issuer.jwks_uri,
            settings.config.provider.timeout,
            kid.as_deref(),
        )
        .await
        .map_err(|error| {
            tracing::warn!("the identity assertion issuer's keys: {error}");
            TokenError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "temporarily_unavailable",
                description: "the keys of the assertion's issuer cannot be fetched; try again"
                    .into(),
                basic_challenge: false,
            }
        })?;
    let expected = id_jag::Expected {
        audience: &settings.endpoints.issuer,
        client_id: &client.client_id,
        resources: &settings.resources,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let verified = id_jag::verify(assertion, issuer, &keys.0, &expected, now).map_err(refused)?;
    // What the provider allowed, of what this server knows; a request may narrow it.
    let mut scopes: Vec<String> = verified
        .scopes
        .iter()
        .filter(|scope| settings.scopes.contains(scope))
        .cloned()
        .collect();
    if let Some(requested) = requested {
        let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
        if let Some(extra) = requested
            .iter()
            .find(|scope| !scopes.iter().any(|allowed| allowed == *scope))
        {
            return Err(TokenError::new(
                "invalid_scope",
                format!(
                    "scope `{}` is not in the assertion",
                    extra.chars().take(64).collect::<String>()
                ),
            ));
        }
        scopes.retain(|scope| requested.contains(&scope.as_str()));
    }
    // Spent last, so a refused request does not burn a good assertion.
    let remember = Duration::from_secs(
        verified
            .exp
            .saturating_add(id_jag::LEEWAY_SECS)
            .saturating_sub(now)
            .max(1),
    );
    if !facade
        .grants
        .spend_assertion(&verified.issuer, &verified.jti, remember)
        .await?
    {
        return Err(refused(AssertionError::Replayed));
    }
    let mut grant = Grant::new(
        client.client_id.clone(),
        verified.subject,
        verified.resource,
        scopes,
    );
    grant.by_assertion = true;
    let grant = facade.grants.record(grant).await?;
    let redeemed = Event::new(name::ASSERTION_REDEEMED)
        .client(client)
        .grant(&grant)
        .reason(verified.issuer);
    facade.audit(redeemed.peer(peer)).await;
    tracing::info!(client_id = %client.client_id, subject = %grant.subject, "token issued for an identity assertion");
    let answer = issue(settings, &grant, &grant.scopes, None)?;
    let issued = Event::new(name::TOKEN_ISSUED).client(client).grant(&grant);
    facade.audit(issued.peer(peer)).await;
    Ok(answer)
}

/// A spent code or refresh token came again: the event, and the grant it ended.
async fn replayed(
    facade: &Facade,
    client: &Client,
    peer: Peer,
    grant_id: Option<String>,
    event: &'static str,
) {
    let reason = if event == name::CODE_REPLAYED {
        why::CODE_REPLAY
    } else {
        why::REFRESH_REUSE
    };
    let replay = Event::new(event)
        .client(client)
        .grant_id(grant_id.clone())
        .peer(peer);
    facade.audit(replay).await;
    let revoked = Event::new(name::GRANT_REVOKED)
        .client(client)
        .grant_id(grant_id)
        .peer(peer)
        .reason(reason);
    facade.audit(revoked).await;
}

fn issue(
    settings: &Settings,
    grant: &Grant,
    scopes: &[String],
    refresh_token: Option<String>,
) -> Result<TokenResponse, TokenError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let lifetime = settings.config.access_token_ttl.as_secs();
    let scope = scopes.join(" ");
    let claims = AccessTokenClaims {
        iss: &settings.endpoints.issuer,
        sub: &grant.subject,
        aud: &grant.resource,
        client_id: &grant.client_id,
        scope: scope.clone(),
        iat: now,
        exp: now + lifetime,
        jti: random_id(),
        gid: &grant.id,
    };
    let access_token = settings.signing.sign(&claims).map_err(|error| {
        tracing::error!("access token not signed: {error}");
        TokenError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "the token could not be issued".into(),
            basic_challenge: false,
        }
    })?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        refresh_token,
        scope,
    })
}

/// `POST /oauth/revoke` (RFC 7009): a refresh token or an access token of the
/// calling client ends its whole grant. Unknown tokens are not an error (§2.2).
pub(crate) async fn revoke(
    facade: &Facade,
    headers: &HeaderMap,
    body: &str,
    peer: Peer,
) -> Result<(), TokenError> {
    let settings = facade.settings();
    let params = Params::from_query(body);
    let (caller, client) = authenticate(facade, &settings, headers, &params).await?;
    let token = params
        .single("token")
        .map_err(|name| {
            TokenError::new(
                "invalid_request",
                format!("`{name}` appears more than once"),
            )
        })?
        .ok_or_else(|| TokenError::new("invalid_request", "token is required"))?;
    let grant = match facade.grants.grant_of_refresh_token(token).await? {
        Some(grant) => Some(grant),
        None => match grant_id_of_access_token(&settings, token) {
            Some(id) => facade.grants.get(&id).await?,
            None => None,
        },
    };
    // Another client's token is left alone, and the answer does not say so (§2.1).
    if let Some(grant) = grant.filter(|grant| grant.client_id == caller.client_id) {
        facade.grants.revoke(&grant.id).await?;
        tracing::info!(client_id = %caller.client_id, subject = %grant.subject, "grant revoked by the client");
        let revoked = Event::new(name::GRANT_REVOKED)
            .client(&client)
            .grant(&grant)
            .peer(peer)
            .reason(why::CLIENT);
        facade.audit(revoked).await;
    }
    Ok(())
}

/// The client a token or revocation request names (Basic credentials, else the
/// form), unauthenticated: for the record of a refusal.
pub(crate) fn named_client(headers: &HeaderMap, body: &str) -> Option<String> {
    if let Ok(Some((id, _))) = basic_credentials(headers) {
        return Some(id);
    }
    Params::from_query(body)
        .single("client_id")
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// The `gid` of one of our access tokens, verified with our keys (expiry aside:
/// revoking an expired token is harmless).
fn grant_id_of_access_token(settings: &Settings, token: &str) -> Option<String> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[&settings.endpoints.issuer]);
    validation.required_spec_claims.clear();
    settings.signing.public_keys().find_map(|key| {
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(&key.x, &key.y).ok()?;
        let data = jsonwebtoken::decode::<Value>(token, &decoding, &validation).ok()?;
        data.claims.get("gid")?.as_str().map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn basic(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = STANDARD.encode("my%20client:s%3Acret");
        assert_eq!(
            basic_credentials(&basic(&format!("Basic {encoded}"))).unwrap(),
            Some(("my client".to_owned(), "s:cret".to_owned()))
        );
        assert_eq!(basic_credentials(&HeaderMap::new()).unwrap(), None);
        for bad in [
            "Basic",
            "Basic !!!",
            "Bearer abc",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            let error = basic_credentials(&basic(bad)).unwrap_err();
            assert_eq!(error.error, "invalid_client", "{bad}");
            assert!(error.basic_challenge);
        }
    }
}

/// The endpoint's logic against a façade built from a configuration, with the
/// gateway's own authenticator verifying what it issues.
#[cfg(test)]
mod flow_tests {
    use std::sync::Arc;

    use http::HeaderValue;

    use super::*;
    use crate::auth::{AuthError, Authenticator, TokenProblem};
    use crate::authorization_server::grants::Grant;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "http://127.0.0.1/cb";

    struct Setup {
        facade: Arc<Facade>,
        auth: Authenticator,
        resource: String,
    }

    async fn setup() -> Setup {
        let config = crate::config::load_from_str(
            "server:\n  public_url: https://mcp.example.com/mcp\nupstream:\n  url: http://127.0.0.1:9/mcp\nauth:\n  oauth:\n    enabled: true\n    issuers: [https://other-idp.example.com]\nscopes:\n  initialize: [mcp:read]\n  tools:\n    echo: [mcp:write]\nauthorization_server:\n  provider:\n    issuer: https://idp.example.com\n    client_id: m\n    client_secret: s\n  clients:\n    - client_id: tool\n      redirect_uris: [\"http://127.0.0.1/cb\"]\n",
        )
        .unwrap();
        let settings = Settings::from_config(&config, vec!["mcp:read".into(), "mcp:write".into()])
            .unwrap()
            .unwrap();
        let local = settings.local_issuer_for("https://mcp.example.com/mcp");
        let client = reqwest::Client::new();
        let auth = Authenticator::build(&config, &client, None, Some(&local))
            .await
            .unwrap()
            .unwrap();
        Setup {
            facade: Facade::new(Arc::new(settings), None, crate::audit::AuditLog::disabled()),
            auth,
            resource: "https://mcp.example.com/mcp".into(),
        }
    }

    async fn code(setup: &Setup, client: &str) -> String {
        let grant = Grant::new(
            client.into(),
            "alice".into(),
            setup.resource.clone(),
            vec!["mcp:read".into(), "mcp:write".into()],
        );
        setup
            .facade
            .grants
            .issue_code(grant, REDIRECT.into(), CHALLENGE.into())
            .await
            .unwrap()
    }

    fn form(fields: &[(&str, &str)]) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in fields {
            form.append_pair(name, value);
        }
        form.finish()
    }

    /// A fresh code of `tool`'s, redeemed.
    async fn redeemed(setup: &Setup) -> TokenResponse {
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", &code(setup, "tool").await),
            ("code_verifier", VERIFIER),
            ("client_id", "tool"),
        ]);
        token(&setup.facade, &HeaderMap::new(), &body, Peer::default())
            .await
            .unwrap()
    }

    async fn verify(setup: &Setup, token: &str) -> Result<Arc<crate::auth::Principal>, AuthError> {
        let principal = setup
            .auth
            .authenticate(token, crate::auth::cache::digest(token))
            .await?;
        if setup.facade.revoked(&principal).await.unwrap() {
            return Err(AuthError::InvalidToken(TokenProblem::Revoked));
        }
        Ok(principal)
    }

    #[tokio::test]
    async fn a_code_becomes_tokens_the_gateway_accepts_until_the_grant_is_revoked() {
        let setup = setup().await;
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("code", &code(&setup, "tool").await),
            ("code_verifier", VERIFIER),
            ("redirect_uri", REDIRECT),
            ("client_id", "tool"),
            ("resource", &setup.resource),
        ]);
        let answer = token(&setup.facade, &HeaderMap::new(), &body, Peer::default())
            .await
            .unwrap();
        assert_eq!(answer.scope, "mcp:read mcp:write");
        let principal = verify(&setup, &answer.access_token).await.unwrap();
        assert_eq!(principal.subject.as_deref(), Some("alice"));
        assert_eq!(principal.client_id.as_deref(), Some("tool"));
        assert!(principal.scopes.contains("mcp:write"));

        // A refresh rotates; the old refresh token used again revokes everything,
        // including the access token verified (and cached) a moment ago.
        let refresh = |token: &str| {
            form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "tool"),
            ])
        };
        let refreshed = token(
            &setup.facade,
            &HeaderMap::new(),
            &refresh(answer.refresh_token.as_deref().unwrap()),
            Peer::default(),
        )
        .await
        .unwrap();
        assert!(verify(&setup, &refreshed.access_token).await.is_ok());
        let reuse = token(
            &setup.facade,
            &HeaderMap::new(),
            &refresh(answer.refresh_token.as_deref().unwrap()),
            Peer::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(reuse.error, "invalid_grant");
        for access in [&answer.access_token, &refreshed.access_token] {
            assert_eq!(
                verify(&setup, access).await.unwrap_err(),
                AuthError::InvalidToken(TokenProblem::Revoked)
            );
        }
        let after = token(
            &setup.facade,
            &HeaderMap::new(),
            &refresh(refreshed.refresh_token.as_deref().unwrap()),
            Peer::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(after.error, "invalid_grant");
    }

    #[tokio::test]
    async fn revocation_by_the_client_ends_the_grant() {
        let setup = setup().await;
        let answer = redeemed(&setup).await;
        assert!(verify(&setup, &answer.access_token).await.is_ok());
        revoke(
            &setup.facade,
            &HeaderMap::new(),
            &form(&[("token", &answer.access_token), ("client_id", "tool")]),
            Peer::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            verify(&setup, &answer.access_token).await.unwrap_err(),
            AuthError::InvalidToken(TokenProblem::Revoked)
        );
        // Unknown tokens are fine (RFC 7009 §2.2).
        revoke(
            &setup.facade,
            &HeaderMap::new(),
            &form(&[("token", "nonsense"), ("client_id", "tool")]),
            Peer::default(),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn the_token_endpoint_refuses() {
        let setup = setup().await;
        let good_code = code(&setup, "tool").await;
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("grant_type", "password"), ("client_id", "tool")],
                "unsupported_grant_type",
            ),
            (
                vec![("grant_type", "authorization_code"), ("client_id", "tool")],
                "invalid_request",
            ),
            // No identity assertion issuer is configured.
            (
                vec![
                    ("grant_type", GRANT_TYPE),
                    ("client_id", "tool"),
                    ("assertion", "a.b.c"),
                ],
                "unsupported_grant_type",
            ),
            (
                vec![
                    ("grant_type", "authorization_code"),
                    ("client_id", "nobody"),
                    ("code", &good_code),
                    ("code_verifier", VERIFIER),
                ],
                "invalid_client",
            ),
            (
                vec![
                    ("grant_type", "authorization_code"),
                    ("client_id", "tool"),
                    ("client_secret", "x"),
                    ("code", &good_code),
                    ("code_verifier", VERIFIER),
                ],
                "invalid_client",
            ),
            (
                vec![
                    ("grant_type", "authorization_code"),
                    ("code", &good_code),
                    ("code_verifier", VERIFIER),
                ],
                "invalid_client",
            ),
            (
                vec![
                    ("grant_type", "authorization_code"),
                    ("grant_type", "authorization_code"),
                    ("client_id", "tool"),
                ],
                "invalid_request",
            ),
            (
                vec![
                    ("grant_type", "authorization_code"),
                    ("client_id", "tool"),
                    ("code", "forged"),
                    ("code_verifier", VERIFIER),
                ],
                "invalid_grant",
            ),
        ];
        for (fields, expected) in cases {
            let error = token(
                &setup.facade,
                &HeaderMap::new(),
                &form(&fields),
                Peer::default(),
            )
            .await
            .unwrap_err();
            assert_eq!(error.error, expected, "{fields:?}");
        }
        // None of those spent the good code.
        let body = form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "tool"),
            ("code", &good_code),
            ("code_verifier", VERIFIER),
        ]);
        assert!(
            token(&setup.facade, &HeaderMap::new(), &body, Peer::default())
                .await
                .is_ok()
        );
        // The same code again: refused, and its grant's tokens are dead.
        let error = token(&setup.facade, &HeaderMap::new(), &body, Peer::default())
            .await
            .unwrap_err();
        assert_eq!(error.error, "invalid_grant");
        // A secret sent both ways.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("tool:x"))).unwrap(),
        );
        let both = form(&[
            ("grant_type", "refresh_token"),
            ("client_secret", "x"),
            ("refresh_token", "r"),
        ]);
        assert_eq!(
            token(&setup.facade, &headers, &both, Peer::default())
                .await
                .unwrap_err()
                .error,
            "invalid_request"
        );
    }

    #[tokio::test]
    async fn tokens_of_another_issuer_signed_with_our_key_are_not_ours() {
        let setup = setup().await;
        let answer = redeemed(&setup).await;
        // Our key signs only our issuer's tokens: a token naming another issuer but
        // signed by the façade's key is refused.
        let settings = setup.facade.settings();
        let forged = settings
            .signing
            .sign(&json!({"iss": "https://other-idp.example.com", "sub": "mallory", "aud": setup.resource, "exp": 4_000_000_000u64, "scope": "mcp:write"}))
            .unwrap();
        assert!(verify(&setup, &forged).await.is_err());
        assert!(verify(&setup, &answer.access_token).await.is_ok());
    }
}
