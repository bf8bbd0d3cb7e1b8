//! The identity provider's ID token (OpenID Connect Core §3.1.3.7), checked before
//! its `sub` names anyone: signed by one of the provider's keys with an asymmetric
//! algorithm from a short list, issued by the provider, for mcpgate's client there,
//! fresh, and carrying the nonce of this sign-in (so a token from another sign-in
//! cannot be replayed into it). The provider's keys are fetched from its `jwks_uri`
//! and kept a while, refetched early when a token names a key not yet seen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use super::jws::{ALGORITHMS, Jws, JwsError};
use crate::auth::keys::KeySet;

/// Clock difference tolerated between mcpgate and the provider.
const LEEWAY_SECS: u64 = 60;
/// Longest ID token read (they are a few hundred bytes to a few KiB).
const MAX_ID_TOKEN: usize = 32 * 1024;
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long fetched keys are used before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(3600);
/// A `kid` not in the set refetches it, at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(30);

/// What the ID token must say.
pub(crate) struct Expected<'a> {
    /// The provider's issuer.
    pub(crate) issuer: &'a str,
    /// mcpgate's client id at the provider.
    pub(crate) client_id: &'a str,
    /// The nonce sent with this sign-in's authorization request.
    pub(crate) nonce: &'a str,
}

/// Why an ID token was refused (logged; the user sees a generic page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdTokenError {
    #[error("the ID token is not a well-formed JWS")]
    Malformed,
    #[error("the token is an access token (typ at+jwt), not an ID token")]
    AccessToken,
    #[error("the ID token's algorithm `{0}` is not one of RS256, ES256, PS256, EdDSA")]
    Algorithm(String),
    #[error("no key of the provider's JWKS fits the ID token's kid and algorithm")]
    UnknownKey,
    #[error("the ID token's signature does not verify")]
    Signature,
    #[error("the ID token was issued by `{0}`, not the provider")]
    Issuer(String),
    #[error("the ID token is not for mcpgate's client at the provider")]
    Audience,
    #[error("the ID token's azp is not mcpgate's client at the provider")]
    AuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token was issued in the future")]
    IssuedInFuture,
    #[error("the ID token's nonce is not this sign-in's")]
    Nonce,
    #[error("the ID token has no usable sub")]
    Subject,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    azp: Option<String>,
    nonce: Option<String>,
    exp: u64,
    iat: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// Checks `token` against `keys` and `expected` at `now` (seconds since the epoch)
/// and returns its `sub` and all its claims. The signature is checked before any
/// claim is read.
pub(crate) fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expected<'_>,
    now: u64,
) -> Result<(String, Map<String, Value>), IdTokenError> {
    let jws = Jws::parse(token, MAX_ID_TOKEN).map_err(IdTokenError::from)?;
    // RFC 9068 §2.1 marks JWT access tokens so that they are not taken for others.
    if jws.typ_is("at+jwt") {
        return Err(IdTokenError::AccessToken);
    }
    jws.verify(keys).map_err(IdTokenError::from)?;
    let all: Map<String, Value> = jws.claims().ok_or(IdTokenError::Malformed)?;
    let claims: Claims =
        serde_json::from_value(Value::Object(all.clone())).map_err(|_| IdTokenError::Malformed)?;
    check_claims(&claims, expected, now)?;
    Ok((claims.sub, all))
}

impl From<JwsError> for IdTokenError {
    fn from(error: JwsError) -> Self {
        match error {
            JwsError::Malformed => Self::Malformed,
            JwsError::Algorithm(alg) => Self::Algorithm(alg),
            JwsError::UnknownKey => Self::UnknownKey,
            JwsError::Signature => Self::Signature,
        }
    }
}

fn check_claims(claims: &Claims, expected: &Expected<'_>, now: u64) -> Result<(), IdTokenError> {
    if !same_issuer(&claims.iss, expected.issuer) {
        return Err(IdTokenError::Issuer(claims.iss.chars().take(200).collect()));
    }
    let audience = claims.aud.as_slice();
    if !audience.iter().any(|aud| aud == expected.client_id) {
        return Err(IdTokenError::Audience);
    }
    // §3.1.3.7 items 4 and 5: with other audiences, mcpgate must be the party the
    // token was issued to; an `azp` present must name mcpgate in any case.
    match &claims.azp {
        Some(azp) if azp != expected.client_id => return Err(IdTokenError::AuthorizedParty),
        None if audience.len() > 1 => return Err(IdTokenError::AuthorizedParty),
        _ => {}
    }
    if now >= claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::Expired);
    }
    if claims.iat > now.saturating_add(LEEWAY_SECS) {
        return Err(IdTokenError::IssuedInFuture);
    }
    if claims.nonce.as_deref() != Some(expected.nonce) {
        return Err(IdTokenError::Nonce);
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(IdTokenError::Subject);
    }
    Ok(())
}

/// Issuers compare as strings (RFC 9207 §2.4), except for the `/` a URL parser
/// adds to a bare origin in the configuration.
pub(crate) fn same_issuer(got: &str, expected: &str) -> bool {
    got == expected || got.trim_end_matches('/') == expected.trim_end_matches('/')
}

/// The provider's keys, by `jwks_uri`.
#[derive(Clone)]
pub(crate) struct ProviderKeys {
    cache: Cache<String, Arc<(KeySet, Instant)>>,
}

impl Default for ProviderKeys {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(16)
                .time_to_live(KEYS_TTL)
                .build(),
        }
    }
}

impl ProviderKeys {
    /// The key set at `url`, fetched once and kept. With `kid` not in it and the set
    /// older than `MIN_REFETCH`, it is fetched again first (the provider rotated).
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        url: &Url,
        timeout: Duration,
        kid: Option<&str>,
    ) -> Result<Arc<(KeySet, Instant)>, String> {
        let key = url.as_str().to_owned();
        let current = self
            .cache
            .try_get_with(key.clone(), fetch(http, url, timeout))
            .await
            .map_err(|error| (*error).clone())?;
        let unknown = kid.is_some_and(|kid| !current.0.has_kid(kid));
        if !unknown || current.1.elapsed() < MIN_REFETCH {
            return Ok(current);
        }
        self.cache.invalidate(&key).await;
        self.cache
            .try_get_with(key, fetch(http, url, timeout))
            .await
            .map_err(|error| (*error).clone())
    }
}

async fn fetch(
    http: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<Arc<(KeySet, Instant)>, String> {
    let response = http
        .get(url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| {
            format!(
                "JWKS fetch from {url} failed: {}",
                crate::error_chain(&error)
            )
        })?;
    if !response.status().is_success() {
        return Err(format!(
            "JWKS fetch from {url}: status {}",
            response.status()
        ));
    }
    let body = super::exchange::read_bounded(response, MAX_JWKS_BYTES).await?;
    let document: Value = crate::json::from_slice(&body)
        .map_err(|error| format!("JWKS from {url} is not JSON: {error}"))?;
    let (keys, _skipped) = KeySet::from_jwks(&document, ALGORITHMS)
        .map_err(|error| format!("JWKS from {url}: {error}"))?;
    Ok(Arc::new((keys, Instant::now())))
}

/// The `kid` a token's header names, for choosing whether to refetch the keys.
pub(crate) fn kid_of(token: &str) -> Option<String> {
    Jws::parse(token, MAX_ID_TOKEN).ok().and_then(|jws| jws.kid)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::Algorithm;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

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

    fn claims() -> Value {
        json!({
            "iss": "https://idp.test",
            "sub": "alice",
            "aud": "mcpgate",
            "nonce": "n-1",
            "iat": NOW,
            "exp": NOW + 300,
        })
    }

    fn sign(claims: &Value, key_name: &str) -> String {
        let mut header = JwtHeader::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &key(key_name)).unwrap()
    }

    fn check(token: &str) -> Result<String, IdTokenError> {
        let expected = Expected {
            issuer: "https://idp.test/",
            client_id: "mcpgate",
            nonce: "n-1",
        };
        verify(token, &keys(), &expected, NOW + 10).map(|(subject, _)| subject)
    }

    fn with(field: &str, value: Value) -> Value {
        let mut claims = claims();
        claims[field] = value;
        claims
    }

    #[test]
    fn a_good_id_token_names_its_subject() {
        assert_eq!(check(&sign(&claims(), "rsa_private.pem")).unwrap(), "alice");
        let several = with("aud", json!(["mcpgate", "other"]));
        let several = {
            let mut claims = several;
            claims["azp"] = json!("mcpgate");
            claims
        };
        assert_eq!(check(&sign(&several, "rsa_private.pem")).unwrap(), "alice");
    }

    #[test]
    fn each_wrong_claim_is_refused() {
        let cases = [
            (with("nonce", json!("n-2")), IdTokenError::Nonce),
            (
                claims().as_object().map_or_else(Value::default, |claims| {
                    let mut claims = claims.clone();
                    claims.remove("nonce");
                    Value::Object(claims)
                }),
                IdTokenError::Nonce,
            ),
            (with("aud", json!("someone-else")), IdTokenError::Audience),
            (
                with("aud", json!(["mcpgate", "other"])),
                IdTokenError::AuthorizedParty,
            ),
            (with("azp", json!("other")), IdTokenError::AuthorizedParty),
            (
                with("iss", json!("https://evil.test")),
                IdTokenError::Issuer("https://evil.test".into()),
            ),
            (with("exp", json!(NOW - 120)), IdTokenError::Expired),
            (with("iat", json!(NOW + 600)), IdTokenError::IssuedInFuture),
            (with("sub", json!("")), IdTokenError::Subject),
        ];
        for (claims, error) in cases {
            assert_eq!(
                check(&sign(&claims, "rsa_private.pem")),
                Err(error),
                "{claims}"
            );
        }
        // Within the leeway an expired token still passes.
        let just = with("exp", json!(NOW));
        assert!(check(&sign(&just, "rsa_private.pem")).is_ok());
    }

    #[test]
    fn wrong_keys_and_algorithms_are_refused() {
        assert_eq!(
            check(&sign(&claims(), "rsa2_private.pem")),
            Err(IdTokenError::Signature)
        );
        let part = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let none = format!(
            "{}.{}.",
            part(&json!({"alg": "none", "kid": "k1"})),
            part(&claims())
        );
        assert_eq!(check(&none), Err(IdTokenError::Algorithm("none".into())));
        let hs256 = jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"public"),
        )
        .unwrap();
        assert_eq!(check(&hs256), Err(IdTokenError::Algorithm("HS256".into())));
        let mut unknown = JwtHeader::new(Algorithm::RS256);
        unknown.kid = Some("k9".into());
        let unknown = jsonwebtoken::encode(&unknown, &claims(), &key("rsa_private.pem")).unwrap();
        assert_eq!(check(&unknown), Err(IdTokenError::UnknownKey));
        assert_eq!(check("a.b"), Err(IdTokenError::Malformed));
        let mut access = JwtHeader::new(Algorithm::RS256);
        access.kid = Some("k1".into());
        access.typ = Some("at+jwt".into());
        let access = jsonwebtoken::encode(&access, &claims(), &key("rsa_private.pem")).unwrap();
        assert_eq!(check(&access), Err(IdTokenError::AccessToken));
    }
}
