//! Enterprise-managed authorization (MCP extension, the Identity Assertion JWT
//! Authorization Grant, "ID-JAG"): an enterprise identity provider mcpgate trusts
//! signs a short-lived grant naming the user, the client, this authorization
//! server and the MCP resource; the client redeems it at the token endpoint with
//! the RFC 7523 `jwt-bearer` grant, no browser involved.
//!
//! Checked here, before anything is issued: the `typ` header (RFC 8725 §3.11), an
//! asymmetric signature by one of the issuer's keys, the issuer trusted, `aud`
//! this authorization server, `client_id` the authenticated client, `resource` one
//! this gateway serves, and a lifetime that has not run out and is not
//! implausibly long. Single use of `jti` is the grants store's concern.

use serde::Deserialize;

use super::id_token::same_issuer;
use super::jws::{Jws, JwsError};
use super::redirect_uri::is_loopback_host;
use crate::auth::keys::KeySet;
use crate::config::{ConfigError, IdentityAssertionIssuerConfig};

/// The grant type the assertion comes with (RFC 7523 §2.1).
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `typ` an ID-JAG's header must carry.
const TYP: &str = "oauth-id-jag+jwt";
/// Clock difference tolerated between mcpgate and the identity provider.
pub(crate) const LEEWAY_SECS: u64 = 60;
/// The longest an assertion may still be valid for: they are meant to live
/// minutes, and each `jti` is remembered until its `exp`.
pub(crate) const MAX_LIFETIME_SECS: u64 = 3600;
/// Longest assertion read.
const MAX_ASSERTION: usize = 32 * 1024;

/// Why an assertion was refused: `invalid_grant` to the client, this in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AssertionError {
    #[error("the assertion is not a well-formed JWS")]
    Malformed,
    #[error("the assertion's typ is not oauth-id-jag+jwt")]
    Type,
    #[error("the assertion's algorithm `{0}` is not one of RS256, ES256, PS256, EdDSA")]
    Algorithm(String),
    #[error("the assertion's issuer is not a trusted identity provider")]
    UntrustedIssuer,
    #[error("no key of the issuer's JWKS fits the assertion's kid and algorithm")]
    UnknownKey,
    #[error("the assertion's signature does not verify")]
    Signature,
    #[error("the assertion is not for this authorization server (aud)")]
    Audience,
    #[error("the assertion was issued to another client")]
    OtherClient,
    #[error("this client may not redeem the issuer's assertions")]
    ClientNotAllowed,
    #[error("the assertion's resource is not an MCP resource this server serves")]
    Resource,
    #[error("the assertion has expired")]
    Expired,
    #[error("the assertion is valid for too long (more than an hour ahead)")]
    TooLong,
    #[error("the assertion was issued in the future")]
    IssuedInFuture,
    #[error("the assertion has no usable sub")]
    Subject,
    #[error("the assertion has no usable jti")]
    Id,
    #[error("the assertion was already used")]
    Replayed,
}

/// What the assertion must say besides its issuer's.
pub(crate) struct Expected<'a> {
    /// mcpgate's issuer.
    pub(crate) audience: &'a str,
    /// The authenticated client.
    pub(crate) client_id: &'a str,
    /// The MCP resources the gateway serves.
    pub(crate) resources: &'a [String],
}

/// A verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assertion {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) resource: String,
    /// The scopes the identity provider allowed (its `scope`, split).
    pub(crate) scopes: Vec<String>,
    pub(crate) jti: String,
    pub(crate) exp: u64,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    client_id: String,
    resource: String,
    jti: String,
    exp: u64,
    iat: u64,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The configured issuer an assertion names, read before its signature is
/// checked only to choose whose keys check it.
pub(crate) fn trusted_issuer<'a>(
    token: &str,
    trusted: &'a [IdentityAssertionIssuerConfig],
) -> Result<(&'a IdentityAssertionIssuerConfig, Option<String>), AssertionError> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    let jws = Jws::parse(token, MAX_ASSERTION).map_err(AssertionError::from)?;
    let Iss { iss } = jws.claims().ok_or(AssertionError::Malformed)?;
    let issuer = trusted
        .iter()
        .find(|config| same_issuer(&iss, config.issuer.as_str()))
        .ok_or(AssertionError::UntrustedIssuer)?;
    Ok((issuer, jws.kid))
}

/// Checks `token`, issued by `issuer` (see [`trusted_issuer`]) and verified with
/// `keys`, against `expected` at `now` (seconds since the epoch). The signature
/// is checked before any claim is believed.
pub(crate) fn verify(
    token: &str,
    issuer: &IdentityAssertionIssuerConfig,
    keys: &KeySet,
    expected: &Expected<'_>,
    now: u64,
) -> Result<Assertion, AssertionError> {
    let jws = Jws::parse(token, MAX_ASSERTION).map_err(AssertionError::from)?;
    // RFC 8725 §3.11: the type keeps an ID token or access token from passing as a grant.
    if !jws.typ_is(TYP) {
        return Err(AssertionError::Type);
    }
    jws.verify(keys).map_err(AssertionError::from)?;
    let claims: Claims = jws.claims().ok_or(AssertionError::Malformed)?;
    check_claims(&claims, issuer, expected, now)?;
    Ok(Assertion {
        issuer: claims.iss,
        subject: claims.sub,
        resource: claims.resource,
        scopes: claims
            .scope
            .unwrap_or_default()
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect(),
        jti: claims.jti,
        exp: claims.exp,
    })
}

impl From<JwsError> for AssertionError {
    fn from(error: JwsError) -> Self {
        match error {
            JwsError::Malformed => Self::Malformed,
            JwsError::Algorithm(alg) => Self::Algorithm(alg),
            JwsError::UnknownKey => Self::UnknownKey,
            JwsError::Signature => Self::Signature,
        }
    }
}

fn check_claims(
    claims: &Claims,
    issuer: &IdentityAssertionIssuerConfig,
    expected: &Expected<'_>,
    now: u64,
) -> Result<(), AssertionError> {
    if !same_issuer(&claims.iss, issuer.issuer.as_str()) {
        return Err(AssertionError::UntrustedIssuer);
    }
    let audience = match &claims.aud {
        Audience::One(one) => std::slice::from_ref(one),
        Audience::Many(many) => many.as_slice(),
    };
    if !audience
        .iter()
        .any(|aud| same_issuer(aud, expected.audience))
    {
        return Err(AssertionError::Audience);
    }
    if claims.client_id != expected.client_id {
        return Err(AssertionError::OtherClient);
    }
    if !issuer.allowed_clients.is_empty()
        && !issuer
            .allowed_clients
            .iter()
            .any(|allowed| allowed == expected.client_id)
    {
        return Err(AssertionError::ClientNotAllowed);
    }
    if !expected
        .resources
        .iter()
        .any(|resource| resource == &claims.resource)
    {
        return Err(AssertionError::Resource);
    }
    if now >= claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(AssertionError::Expired);
    }
    if claims.exp > now.saturating_add(MAX_LIFETIME_SECS + LEEWAY_SECS) {
        return Err(AssertionError::TooLong);
    }
    if claims.iat > now.saturating_add(LEEWAY_SECS) {
        return Err(AssertionError::IssuedInFuture);
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(AssertionError::Subject);
    }
    if claims.jti.is_empty() || claims.jti.len() > 255 {
        return Err(AssertionError::Id);
    }
    Ok(())
}

/// `mcpgate check`: each trusted issuer's JWKS can be fetched and holds a key
/// mcpgate can verify assertions with. The error names the issuer's `jwks_uri`.
pub(crate) async fn check_reachable(
    issuers: &[IdentityAssertionIssuerConfig],
    timeout: std::time::Duration,
) -> Result<usize, ConfigError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let keys = super::id_token::ProviderKeys::default();
    for (index, issuer) in issuers.iter().enumerate() {
        let invalid = |message: String| ConfigError::Invalid {
            key: format!("authorization_server.identity_assertion_issuers[{index}].jwks_uri"),
            message,
        };
        let fetched = keys
            .get(&http, &issuer.jwks_uri, timeout, None)
            .await
            .map_err(|error| invalid(format!("cannot be read: {error}")))?;
        if fetched.0.is_empty() {
            return Err(invalid(
                "holds no key for RS256, ES256, PS256 or EdDSA".to_owned(),
            ));
        }
    }
    Ok(issuers.len())
}

/// The trusted issuers, checked at load: `https` (or `http` on a loopback host)
/// issuer and key URLs, each issuer once.
pub(crate) fn check_config(issuers: &[IdentityAssertionIssuerConfig]) -> Result<(), ConfigError> {
    for (index, issuer) in issuers.iter().enumerate() {
        let key = |field: &str| {
            format!("authorization_server.identity_assertion_issuers[{index}].{field}")
        };
        for (field, url) in [("issuer", &issuer.issuer), ("jwks_uri", &issuer.jwks_uri)] {
            let secure = url.scheme() == "https"
                || (url.scheme() == "http" && url.host_str().is_some_and(is_loopback_host));
            if !secure || url.host().is_none() {
                return Err(ConfigError::invalid(
                    key(field),
                    "must be an https:// URL (http:// only on a loopback host)",
                ));
            }
        }
        if issuer.issuer.query().is_some() || issuer.issuer.fragment().is_some() {
            return Err(ConfigError::invalid(
                key("issuer"),
                "must not have a query or fragment",
            ));
        }
        if issuers
            .iter()
            .take(index)
            .any(|other| same_issuer(other.issuer.as_str(), issuer.issuer.as_str()))
        {
            return Err(ConfigError::invalid(
                key("issuer"),
                "is listed more than once",
            ));
        }
        if let Some(empty) = issuer
            .allowed_clients
            .iter()
            .position(|client| client.is_empty())
        {
            return Err(ConfigError::invalid(
                key(&format!("allowed_clients[{empty}]")),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::Algorithm;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use serde_json::{Value, json};

    use crate::authorization_server::jws::ALGORITHMS;
    use url::Url;

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const IDP: &str = "https://idp.example.com";

    fn key(name: &str) -> EncodingKey {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        EncodingKey::from_rsa_pem(&std::fs::read(path).unwrap()).unwrap()
    }

    fn keys() -> KeySet {
        let mut jwk = Jwk::from_encoding_key(&key("rsa_private.pem"), Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("k1".into());
        let document = json!({"keys": [serde_json::to_value(jwk).unwrap()]});
        KeySet::from_jwks(&document, ALGORITHMS).unwrap().0
    }

    fn trusted(allowed_clients: &[&str]) -> Vec<IdentityAssertionIssuerConfig> {
        vec![IdentityAssertionIssuerConfig {
            issuer: Url::parse(IDP).unwrap(),
            jwks_uri: Url::parse("https://idp.example.com/jwks").unwrap(),
            allowed_clients: allowed_clients.iter().map(|c| (*c).to_owned()).collect(),
        }]
    }

    fn claims() -> Value {
        json!({
            "iss": IDP,
            "sub": "alice",
            "aud": "https://mcp.example.com",
            "client_id": "tool",
            "resource": "https://mcp.example.com/mcp",
            "scope": "mcp:read mcp:write",
            "jti": "j-1",
            "iat": NOW,
            "exp": NOW + 300,
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[field] = value;
        claims
    }

    fn without(field: &str) -> Value {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(field);
        claims
    }

    fn sign_with(claims: &Value, typ: Option<&str>, key_name: &str) -> String {
        let mut header = JwtHeader::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key(key_name)).unwrap()
    }

    fn sign(claims: &Value) -> String {
        sign_with(claims, Some("oauth-id-jag+jwt"), "rsa_private.pem")
    }

    fn check_with(
        token: &str,
        trusted: &[IdentityAssertionIssuerConfig],
    ) -> Result<Assertion, AssertionError> {
        let (issuer, _) = trusted_issuer(token, trusted)?;
        let resources = vec!["https://mcp.example.com/mcp".to_owned()];
        let expected = Expected {
            audience: "https://mcp.example.com",
            client_id: "tool",
            resources: &resources,
        };
        verify(token, issuer, &keys(), &expected, NOW + 10)
    }

    fn check(token: &str) -> Result<Assertion, AssertionError> {
        check_with(token, &trusted(&[]))
    }

    #[test]
    fn a_good_assertion_names_user_resource_and_scopes() {
        let assertion = check(&sign(&claims())).unwrap();
        assert_eq!(
            assertion,
            Assertion {
                issuer: IDP.into(),
                subject: "alice".into(),
                resource: "https://mcp.example.com/mcp".into(),
                scopes: vec!["mcp:read".into(), "mcp:write".into()],
                jti: "j-1".into(),
                exp: NOW + 300,
            }
        );
        // An audience list naming this server, and no scope at all, are fine too.
        let several = with(
            "aud",
            json!(["https://other.example", "https://mcp.example.com/"]),
        );
        assert!(check(&sign(&several)).is_ok());
        assert_eq!(
            check(&sign(&without("scope"))).unwrap().scopes,
            Vec::<String>::new()
        );
        // An allow-list naming the client.
        assert!(check_with(&sign(&claims()), &trusted(&["tool"])).is_ok());
    }

    #[test]
    fn each_wrong_claim_is_refused() {
        let cases = [
            (
                with("iss", json!("https://evil.example")),
                AssertionError::UntrustedIssuer,
            ),
            (
                with("aud", json!("https://other.example")),
                AssertionError::Audience,
            ),
            (
                with("aud", json!(["https://other.example"])),
                AssertionError::Audience,
            ),
            (
                with("client_id", json!("someone-else")),
                AssertionError::OtherClient,
            ),
            (
                with("resource", json!("https://elsewhere.example/mcp")),
                AssertionError::Resource,
            ),
            (with("exp", json!(NOW - 120)), AssertionError::Expired),
            (with("exp", json!(NOW + 2 * 3600)), AssertionError::TooLong),
            (
                with("iat", json!(NOW + 600)),
                AssertionError::IssuedInFuture,
            ),
            (with("sub", json!("")), AssertionError::Subject),
            (with("jti", json!("")), AssertionError::Id),
        ];
        for (claims, error) in cases {
            assert_eq!(check(&sign(&claims)), Err(error), "{claims}");
        }
        for missing in ["sub", "aud", "client_id", "resource", "jti", "exp", "iat"] {
            assert_eq!(
                check(&sign(&without(missing))),
                Err(AssertionError::Malformed),
                "{missing}"
            );
        }
        assert_eq!(
            check_with(&sign(&claims()), &trusted(&["other-tool"])),
            Err(AssertionError::ClientNotAllowed)
        );
        // Within the leeway an expired assertion still passes.
        assert!(check(&sign(&with("exp", json!(NOW)))).is_ok());
    }

    #[test]
    fn wrong_types_keys_and_algorithms_are_refused() {
        for typ in [None, Some("JWT"), Some("at+jwt")] {
            assert_eq!(
                check(&sign_with(&claims(), typ, "rsa_private.pem")),
                Err(AssertionError::Type),
                "{typ:?}"
            );
        }
        assert!(
            check(&sign_with(
                &claims(),
                Some("application/oauth-id-jag+jwt"),
                "rsa_private.pem"
            ))
            .is_ok()
        );
        assert_eq!(
            check(&sign_with(
                &claims(),
                Some("oauth-id-jag+jwt"),
                "rsa2_private.pem"
            )),
            Err(AssertionError::Signature)
        );
        let part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let none = format!(
            "{}.{}.",
            part(&json!({"alg": "none", "kid": "k1", "typ": "oauth-id-jag+jwt"})),
            part(&claims())
        );
        assert_eq!(check(&none), Err(AssertionError::Algorithm("none".into())));
        let mut hs = JwtHeader::new(Algorithm::HS256);
        hs.typ = Some("oauth-id-jag+jwt".into());
        let hs256 =
            jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(b"public")).unwrap();
        assert_eq!(
            check(&hs256),
            Err(AssertionError::Algorithm("HS256".into()))
        );
        let mut unknown = JwtHeader::new(Algorithm::RS256);
        unknown.kid = Some("k9".into());
        unknown.typ = Some("oauth-id-jag+jwt".into());
        let unknown = jsonwebtoken::encode(&unknown, &claims(), &key("rsa_private.pem")).unwrap();
        assert_eq!(check(&unknown), Err(AssertionError::UnknownKey));
        assert_eq!(check("a.b"), Err(AssertionError::Malformed));
        assert_eq!(check(&"a".repeat(40_000)), Err(AssertionError::Malformed));
    }

    #[test]
    fn trusted_issuers_are_checked_at_load() {
        let issuer = |issuer: &str, jwks: &str| IdentityAssertionIssuerConfig {
            issuer: Url::parse(issuer).unwrap(),
            jwks_uri: Url::parse(jwks).unwrap(),
            allowed_clients: Vec::new(),
        };
        assert!(check_config(&[issuer(IDP, "https://idp.example.com/jwks")]).is_ok());
        assert!(check_config(&[issuer("http://127.0.0.1:9", "http://localhost:9/jwks")]).is_ok());
        let cases = [
            (
                vec![issuer(
                    "http://idp.example.com",
                    "https://idp.example.com/jwks",
                )],
                "authorization_server.identity_assertion_issuers[0].issuer",
            ),
            (
                vec![issuer(IDP, "http://idp.example.com/jwks")],
                "authorization_server.identity_assertion_issuers[0].jwks_uri",
            ),
            (
                vec![
                    issuer(IDP, "https://idp.example.com/jwks"),
                    issuer("https://idp.example.com/", "https://idp.example.com/k"),
                ],
                "authorization_server.identity_assertion_issuers[1].issuer",
            ),
            (
                vec![issuer(
                    "https://idp.example.com/?x=1",
                    "https://idp.example.com/jwks",
                )],
                "authorization_server.identity_assertion_issuers[0].issuer",
            ),
        ];
        for (issuers, expected) in cases {
            match check_config(&issuers) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
        let mut empty = issuer(IDP, "https://idp.example.com/jwks");
        empty.allowed_clients = vec![String::new()];
        assert!(check_config(&[empty]).is_err());
    }
}
