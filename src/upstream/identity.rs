//! Who calls, told to the upstream without the caller's token: a short-lived JWT
//! mcpgate signs (ES256) and publishes the key of, and, for upstreams on a trusted
//! network, plain headers. The client's own copies of these headers never reach
//! the upstream, so none of them can be spoofed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::auth::Principal;
use crate::auth::signing::{KeySources, SigningKeys};
use crate::config::{ConfigError, Secret, UpstreamIdentityConfig};

/// The assertion key made for this process when none is configured: kept across
/// reloads, so the published key does not change under a running upstream.
static PROCESS_KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// Where the assertion's public keys are published, on the MCP listener. Under
/// `/.well-known/` (RFC 8615) so that it sits beside the metadata documents and
/// outside any MCP path, and prefixed with `mcpgate-` so it cannot collide with a
/// registered name. A fixed path: an upstream derives it from mcpgate's origin.
pub const JWKS_PATH: &str = "/.well-known/mcpgate-identity-jwks.json";

/// The assertion's JWT `typ` (RFC 8725 §3.11 explicit typing): neither an access
/// token (`at+jwt`) nor an ID-JAG, so no verifier of one can be handed the other.
pub const ASSERTION_TYPE: &str = "mcpgate-identity+jwt";

/// Header names mcpgate sets or passes itself: an identity header under one of
/// them would be overwritten or be the client's.
const RESERVED: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-type",
    "content-length",
    "accept",
    "user-agent",
    "last-event-id",
    "connection",
    "transfer-encoding",
    "x-request-id",
    "traceparent",
    "tracestate",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// `upstream.identity`, built.
pub struct Identity {
    /// Every name configured: the client's copies are removed.
    names: Vec<HeaderName>,
    assertion: Option<Assertion>,
    plain: Option<Plain>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("names", &self.names)
            .field("assertion", &self.assertion.is_some())
            .field("plain", &self.plain.is_some())
            .finish()
    }
}

struct Assertion {
    header: HeaderName,
    ttl: Duration,
    issuer: String,
    audience: String,
    keys: SigningKeys,
}

struct Plain {
    subject: HeaderName,
    client_id: HeaderName,
    scopes: HeaderName,
}

/// The assertion's claims.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    scope: String,
    iat: u64,
    exp: u64,
    jti: String,
    /// The MCP session id the upstream request carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    /// mcpgate's request id, as in `X-Request-Id` and the audit record.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl Identity {
    /// From the checked section; `issuer` is mcpgate's public URL, `upstream` the
    /// upstream URL (the default audience).
    pub fn from_config(
        config: &UpstreamIdentityConfig,
        issuer: &str,
        upstream: &str,
    ) -> Result<Self, ConfigError> {
        let mut names = Vec::new();
        let assertion = match &config.assertion {
            Some(section) => {
                let header = name("upstream.identity.assertion.header", &section.header)?;
                names.push(header.clone());
                Some(Assertion {
                    header,
                    ttl: section.ttl,
                    issuer: issuer.to_owned(),
                    audience: section
                        .audience
                        .clone()
                        .unwrap_or_else(|| upstream.to_owned()),
                    keys: SigningKeys::from_sources(
                        KeySources {
                            inline: section.signing_key.as_ref(),
                            file: section.signing_key_file.as_deref(),
                            previous: &section.previous_signing_keys,
                            process_key: &PROCESS_KEY,
                        },
                        "upstream.identity.assertion",
                        ASSERTION_TYPE,
                    )?,
                })
            }
            None => None,
        };
        let plain = match &config.headers {
            Some(section) => {
                let subject = name("upstream.identity.headers.subject", &section.subject)?;
                let client_id = name("upstream.identity.headers.client_id", &section.client_id)?;
                let scopes = name("upstream.identity.headers.scopes", &section.scopes)?;
                names.extend([subject.clone(), client_id.clone(), scopes.clone()]);
                section.enabled.then_some(Plain {
                    subject,
                    client_id,
                    scopes,
                })
            }
            None => None,
        };
        // The connection's header is set per call (`connections`); a client's copy
        // of it is removed like the others. The client's `Authorization` never
        // passes anyway.
        if let Some(connection) = &config.connection {
            let header = name("upstream.identity.connection.header", &connection.header)?;
            if header != http::header::AUTHORIZATION {
                names.push(header);
            }
        }
        Ok(Self {
            names,
            assertion,
            plain,
        })
    }

    /// What `add` sends for a caller, as the audit record names it.
    pub fn mechanisms(&self) -> impl Iterator<Item = &'static str> {
        [
            self.assertion.as_ref().map(|_| "assertion"),
            self.plain.as_ref().map(|_| "identity_headers"),
        ]
        .into_iter()
        .flatten()
    }

    /// The published JWKS, when assertions are on.
    pub fn jwks(&self) -> Option<&Bytes> {
        self.assertion
            .as_ref()
            .map(|assertion| assertion.keys.jwks())
    }

    /// `client` without the identity headers it carries, or `None` when it
    /// carries none (the common case: no copy is made).
    pub fn strip(&self, client: &HeaderMap) -> Option<HeaderMap> {
        if !self.names.iter().any(|name| client.contains_key(name)) {
            return None;
        }
        let mut stripped = client.clone();
        for name in &self.names {
            stripped.remove(name);
        }
        Some(stripped)
    }

    /// Adds the caller's identity to `own` (mcpgate's headers for the upstream
    /// request, which already hold the request id and any session id). Nothing
    /// without a principal (authentication off). An assertion that cannot be signed
    /// is an error: the request is not sent without it.
    pub fn add(&self, principal: Option<&Principal>, own: &mut HeaderMap) -> Result<(), String> {
        let Some(principal) = principal else {
            return Ok(());
        };
        if let Some(assertion) = &self.assertion {
            let session_id = text(own, crate::mcp::session::SESSION_HEADER.as_str());
            let request_id = text(own, "x-request-id");
            let value = assertion
                .sign(principal, session_id, request_id, SystemTime::now())
                .ok_or_else(|| "upstream.identity: the assertion could not be signed".to_owned())?;
            own.insert(assertion.header.clone(), value);
        }
        if let Some(plain) = &self.plain {
            let scopes = principal.scopes.to_claim();
            for (name, value) in [
                (&plain.subject, principal.subject.as_deref()),
                (&plain.client_id, principal.client_id.as_deref()),
                (&plain.scopes, Some(scopes.as_str())),
            ] {
                // A value that is not a valid header value is left out, never sent raw.
                if let Some(value) = value.and_then(|value| HeaderValue::from_str(value).ok()) {
                    own.insert(name.clone(), value);
                }
            }
        }
        Ok(())
    }
}

impl Assertion {
    fn sign(
        &self,
        principal: &Principal,
        session_id: Option<&str>,
        request_id: Option<&str>,
        now: SystemTime,
    ) -> Option<HeaderValue> {
        let iat = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: principal.subject.as_deref(),
            client_id: principal.client_id.as_deref(),
            scope: principal.scopes.to_claim(),
            iat,
            exp: iat.saturating_add(self.ttl.as_secs()),
            jti: crate::random_id(),
            session_id,
            request_id,
        };
        let token = self.keys.sign(&claims).ok()?;
        let mut value = HeaderValue::from_str(&token).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn name(key: &str, value: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(value.as_bytes())
        .map_err(|_| ConfigError::invalid(key, "not a valid HTTP header name"))
}

/// Every configured name is a header name, not one mcpgate already sets or passes,
/// not one of `upstream.headers`, and used once. The connection's header may be
/// `Authorization` unless `upstream.oauth` sets it (`oauth`).
pub(crate) fn check_names(
    config: &UpstreamIdentityConfig,
    static_headers: &BTreeMap<String, Secret>,
    oauth: bool,
) -> Result<(), ConfigError> {
    if let Some(connection) = &config.connection {
        connection.check()?;
    }
    if let Some(section) = &config.assertion
        && section.ttl.is_zero()
    {
        return Err(ConfigError::invalid(
            "upstream.identity.assertion.ttl",
            "must be more than zero",
        ));
    }
    let mut named: Vec<(&str, &str)> = Vec::new();
    if let Some(section) = &config.assertion {
        named.push(("upstream.identity.assertion.header", &section.header));
    }
    if let Some(section) = &config.headers {
        named.push(("upstream.identity.headers.subject", &section.subject));
        named.push(("upstream.identity.headers.client_id", &section.client_id));
        named.push(("upstream.identity.headers.scopes", &section.scopes));
    }
    let connection = config.connection.as_ref().map(|connection| {
        (
            "upstream.identity.connection.header",
            connection.header.as_str(),
        )
    });
    if let Some((key, value)) = connection {
        let header = name(key, value)?;
        let other = if oauth {
            Some("upstream.oauth")
        } else if config.exchange.is_some() {
            Some("upstream.identity.exchange")
        } else {
            None
        };
        if let (true, Some(other)) = (header == http::header::AUTHORIZATION, other) {
            return Err(ConfigError::invalid(
                key,
                format!("{other} sets Authorization too; choose another header for one of them"),
            ));
        }
    }
    let mut seen: Vec<HeaderName> = Vec::new();
    for (key, value) in named.into_iter().chain(connection) {
        let header = name(key, value)?;
        let own =
            key == "upstream.identity.connection.header" && header == http::header::AUTHORIZATION;
        if RESERVED.contains(&header.as_str()) && !own {
            return Err(ConfigError::invalid(
                key,
                format!("{value} is a header mcpgate sets or passes itself; choose another name"),
            ));
        }
        if static_headers
            .keys()
            .any(|other| other.eq_ignore_ascii_case(header.as_str()))
        {
            return Err(ConfigError::invalid(
                key,
                format!("{value} is also in upstream.headers"),
            ));
        }
        if seen.contains(&header) {
            return Err(ConfigError::invalid(
                key,
                format!("{value} names another identity header too"),
            ));
        }
        seen.push(header);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::Scopes;

    fn section(yaml: Value) -> UpstreamIdentityConfig {
        serde_json::from_value(yaml).unwrap()
    }

    fn built(yaml: Value) -> Identity {
        Identity::from_config(&section(yaml), "https://gw.example/mcp", "http://up/mcp").unwrap()
    }

    fn principal() -> Principal {
        let mut principal = Principal::for_tests("alice", Scopes::new(["a", "b"]));
        principal.client_id = Some("app".to_owned());
        principal
    }

    /// The claims of `token`, checked against the identity's own JWKS (expiry left
    /// to the caller: `now` may be in the past).
    fn claims(identity: &Identity, token: &str) -> Value {
        let jwks: Value = serde_json::from_slice(identity.jwks().unwrap()).unwrap();
        let jwk = &jwks["keys"][0];
        let key =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_audience(&["http://up/mcp"]);
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some(ASSERTION_TYPE));
        assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn the_assertion_carries_who_calls_for_ttl_from_now() {
        let identity = built(json!({"assertion": {"ttl": "45s"}}));
        let assertion = identity.assertion.as_ref().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let value = assertion
            .sign(&principal(), Some("s-1"), Some("r-1"), now)
            .unwrap();
        assert!(value.is_sensitive(), "kept out of debug output");
        let claims = claims(&identity, value.to_str().unwrap());
        assert_eq!(claims["iss"], "https://gw.example/mcp");
        assert_eq!(claims["aud"], "http://up/mcp");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["client_id"], "app");
        assert_eq!(claims["scope"], "a b");
        assert_eq!(claims["iat"], 1_000_000);
        assert_eq!(claims["exp"], 1_000_045);
        assert_eq!(claims["session_id"], "s-1");
        assert_eq!(claims["request_id"], "r-1");
        let other = assertion.sign(&principal(), None, None, now).unwrap();
        let other = super::tests::claims(&identity, other.to_str().unwrap());
        assert_ne!(claims["jti"], other["jti"], "each assertion has its own id");
        assert!(other.get("session_id").is_none(), "no session, no claim");
    }

    #[test]
    fn an_expired_assertion_does_not_verify() {
        let identity = built(json!({"assertion": {}}));
        let assertion = identity.assertion.as_ref().unwrap();
        // Minted two minutes ago with the default ttl (60 s).
        let then = SystemTime::now() - Duration::from_secs(120);
        let value = assertion.sign(&principal(), None, None, then).unwrap();
        let jwks: Value = serde_json::from_slice(identity.jwks().unwrap()).unwrap();
        let jwk = &jwks["keys"][0];
        let key =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 0;
        validation.set_audience(&["http://up/mcp"]);
        let error =
            jsonwebtoken::decode::<Value>(value.to_str().unwrap(), &key, &validation).unwrap_err();
        assert_eq!(
            error.kind(),
            &jsonwebtoken::errors::ErrorKind::ExpiredSignature
        );
    }

    #[test]
    fn a_rotated_key_set_signs_with_the_new_key_and_publishes_both() {
        let (new, old) = (
            crate::auth::signing::test_pem(),
            crate::auth::signing::test_pem(),
        );
        let identity = built(json!({"assertion": {
            "signing_key": new.expose(),
            "previous_signing_keys": [old.expose()],
        }}));
        let jwks: Value = serde_json::from_slice(identity.jwks().unwrap()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{jwks}");
        assert_ne!(keys[0]["kid"], keys[1]["kid"]);
        let value = identity
            .assertion
            .as_ref()
            .unwrap()
            .sign(&principal(), None, None, SystemTime::now())
            .unwrap();
        // `claims` checks the token's kid is the first (current) key's.
        assert_eq!(claims(&identity, value.to_str().unwrap())["sub"], "alice");
        let again = built(json!({"assertion": {"signing_key": new.expose()}}));
        let again: Value = serde_json::from_slice(again.jwks().unwrap()).unwrap();
        assert_eq!(
            again["keys"][0]["kid"], keys[0]["kid"],
            "the same PEM, the same key"
        );

        let bad = Identity::from_config(
            &section(json!({"assertion": {"previous_signing_keys": ["not a key"]}})),
            "https://gw.example/mcp",
            "http://up/mcp",
        );
        match bad {
            Err(ConfigError::Invalid { key, .. }) => {
                assert_eq!(key, "upstream.identity.assertion.previous_signing_keys[0]")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_configured_key_a_rebuild_keeps_the_process_key() {
        let first = built(json!({"assertion": {}}));
        let second = built(json!({"assertion": {"ttl": "30s"}}));
        assert_eq!(
            first.jwks(),
            second.jwks(),
            "a reload keeps the published key"
        );
    }

    #[test]
    fn default_names_are_stripped_and_plain_headers_wait_for_enabled() {
        let identity = built(json!({"assertion": {}, "headers": {}}));
        let mut client = HeaderMap::new();
        client.insert("x-mcpgate-identity", HeaderValue::from_static("forged"));
        client.insert("X-Mcpgate-Scopes", HeaderValue::from_static("admin"));
        client.insert("accept", HeaderValue::from_static("*/*"));
        let stripped = identity.strip(&client).unwrap();
        assert_eq!(stripped.len(), 1);
        assert!(stripped.contains_key("accept"));
        let mut own = HeaderMap::new();
        identity.add(Some(&principal()), &mut own).unwrap();
        assert!(own.contains_key("x-mcpgate-identity"));
        assert!(
            !own.contains_key("x-mcpgate-subject"),
            "plain headers are off"
        );
        let mut without = HeaderMap::new();
        identity.add(None, &mut without).unwrap();
        assert!(without.is_empty(), "no principal, no identity");
        let mut clean = HeaderMap::new();
        clean.insert("accept", HeaderValue::from_static("*/*"));
        assert!(
            identity.strip(&clean).is_none(),
            "nothing to strip, no copy"
        );
    }

    #[test]
    fn names_are_checked_and_each_error_names_its_key() {
        let key_of =
            |yaml: Value| match check_names(&section(yaml.clone()), &BTreeMap::new(), false) {
                Err(ConfigError::Invalid { key, .. }) => key,
                other => panic!("{yaml}: {other:?}"),
            };
        assert_eq!(
            key_of(json!({"assertion": {"header": "a b"}})),
            "upstream.identity.assertion.header"
        );
        assert_eq!(
            key_of(json!({"assertion": {"ttl": "0s"}})),
            "upstream.identity.assertion.ttl"
        );
        assert_eq!(
            key_of(json!({"headers": {"client_id": "Mcp-Session-Id"}})),
            "upstream.identity.headers.client_id"
        );
        assert_eq!(
            key_of(json!({"headers": {"subject": "X-A", "scopes": "x-a"}})),
            "upstream.identity.headers.scopes"
        );
        let mut headers = BTreeMap::new();
        headers.insert("X-Mcpgate-Identity".to_owned(), Secret::new("k"));
        assert!(check_names(&section(json!({"assertion": {}})), &headers, false).is_err());
        assert!(
            check_names(
                &section(json!({"assertion": {}, "headers": {}})),
                &BTreeMap::new(),
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn the_connection_header_clashes_with_oauth_and_other_headers() {
        let connection = |header: &str| {
            json!({"connection": {
                "name": "github",
                "header": header,
                "provider": {
                    "issuer": "https://github.com",
                    "authorization_endpoint": "https://github.com/login/oauth/authorize",
                    "token_endpoint": "https://github.com/login/oauth/access_token",
                    "client_id": "app",
                },
            }})
        };
        let key = "upstream.identity.connection.header";
        let refused =
            |yaml: Value, headers: &BTreeMap<String, Secret>, oauth: bool| match check_names(
                &section(yaml.clone()),
                headers,
                oauth,
            ) {
                Err(ConfigError::Invalid { key, .. }) => key,
                other => panic!("{yaml}: {other:?}"),
            };
        let none = BTreeMap::new();
        assert!(check_names(&section(connection("Authorization")), &none, false).is_ok());
        assert_eq!(refused(connection("Authorization"), &none, true), key);
        assert!(check_names(&section(connection("X-Github-Token")), &none, true).is_ok());
        let mut headers = BTreeMap::new();
        headers.insert("authorization".to_owned(), Secret::new("Bearer fixed"));
        assert_eq!(refused(connection("Authorization"), &headers, false), key);
        assert_eq!(refused(connection("Mcp-Session-Id"), &none, false), key);
        let mut both = connection("X-Mcpgate-Identity");
        both["assertion"] = json!({});
        assert_eq!(refused(both, &none, false), key);
        // The client's copy of a custom header is stripped.
        let identity = built(connection("X-Github-Token"));
        let mut client = HeaderMap::new();
        client.insert("x-github-token", HeaderValue::from_static("forged"));
        assert!(identity.strip(&client).unwrap().is_empty());
    }
}
