//! JWT access-token verification (RFC 7519, RFC 8725, RFC 9068). The token is parsed
//! here — strict JSON, bounded sizes, a closed set of header rules — rather than by
//! `jsonwebtoken::decode`, whose `Validation` skips malformed `aud`, accepts array
//! `iss`, ignores `nbf` by default and keeps the last of two duplicate keys;
//! jsonwebtoken still does the signature arithmetic.

pub mod claims;
pub mod header;

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

pub use claims::ClaimRules;
use header::JoseHeader;

use super::error::{AuthError, TokenProblem, Unavailability};
use super::jwks::Provider;
use super::principal::Principal;

/// Longest base64url claims segment read (16 KiB of JSON).
pub const MAX_PAYLOAD_SEGMENT: usize = 16 * 1024 * 4 / 3 + 4;
/// Keys tried for one token at most (tokens without `kid` against keys without one).
const MAX_CANDIDATE_KEYS: usize = 4;

/// A bearer token with the shape of a JWS: three segments whose first decodes to a
/// JSON object with `alg`. That shape is how a token is routed to the JWT verifier
/// rather than to introspection; the header decoded to tell is the one verified.
pub struct Jws<'a> {
    token: &'a str,
    header: Value,
    header_b64: &'a str,
    payload_b64: &'a str,
    signature: &'a str,
}

impl<'a> Jws<'a> {
    /// `None` when `token` does not have the shape of a JWS.
    pub fn parse(token: &'a str) -> Option<Self> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let header = decode_segment(header_b64, header::MAX_HEADER_SEGMENT).ok()?;
        header.get("alg")?;
        Some(Self {
            token,
            header,
            header_b64,
            payload_b64,
            signature,
        })
    }
}

/// Verifies JWTs against a list of key providers.
pub struct JwtVerifier {
    providers: Vec<Arc<Provider>>,
    rules: ClaimRules,
    client: reqwest::Client,
}

/// The result of trying the providers' keys.
enum KeySearch<'a> {
    Verified(&'a Arc<Provider>),
    Failed(TokenProblem),
    /// Every provider that could hold the key has stale keys.
    Stale,
}

impl JwtVerifier {
    pub(crate) fn new(
        providers: Vec<Arc<Provider>>,
        rules: ClaimRules,
        client: reqwest::Client,
    ) -> Self {
        Self {
            providers,
            rules,
            client,
        }
    }

    pub(crate) fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// Verifies the signature, then the claims. Nothing from an unverified payload
    /// decides the outcome, except `iss` choosing which issuer's keys to try. Returns
    /// the provider whose key verified, so a cached result can be re-checked against it.
    pub async fn verify(
        &self,
        jws: Jws<'_>,
        now: SystemTime,
    ) -> Result<(Principal, Arc<Provider>), AuthError> {
        let Jws {
            token,
            header,
            header_b64,
            payload_b64,
            signature,
        } = jws;
        let header = header::parse(&header)?;
        let claims: Map<String, Value> = match decode_segment(payload_b64, MAX_PAYLOAD_SEGMENT)? {
            Value::Object(claims) => claims,
            _ => return Err(TokenProblem::Malformed.into()),
        };
        let issuer = claims::issuer(&claims)?;
        let exclusive = self
            .providers
            .iter()
            .any(|provider| provider.exclusive && provider.issuer == issuer);
        let providers: Vec<&Arc<Provider>> = self
            .providers
            .iter()
            .filter(|provider| {
                provider.issuer == issuer || (provider.issuer.is_none() && !exclusive)
            })
            .collect();
        if providers.is_empty() {
            return Err(TokenProblem::BadIssuer.into());
        }
        let signing_input = token
            .as_bytes()
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(TokenProblem::Malformed)?;

        let mut search = search_keys(&providers, &header, signing_input, signature);
        // A missing `kid` is not fixed by a refetch; an unknown one may be (rotation).
        if header.kid.is_some() && matches!(search, KeySearch::Failed(TokenProblem::UnknownKid)) {
            // Keys may have rotated: one refetch per provider (single-flight and
            // rate-limited inside), then one more try.
            let mut refreshed = false;
            for provider in providers.iter().filter(|p| p.is_remote()) {
                refreshed |= provider.refetch_for_unknown_kid(&self.client).await;
            }
            if refreshed {
                search = search_keys(&providers, &header, signing_input, signature);
            }
        }
        let provider = match search {
            KeySearch::Verified(provider) => provider,
            KeySearch::Failed(problem) => return Err(problem.into()),
            KeySearch::Stale => {
                return Err(AuthError::Unavailable(Unavailability::KeysUnavailable));
            }
        };
        if provider.require_at_jwt && !header.is_access_token_type {
            return Err(TokenProblem::BadType.into());
        }
        let principal = claims::check(&claims, &self.rules, &provider.profile, header.kid, now)?;
        Ok((principal, Arc::clone(provider)))
    }
}

fn search_keys<'a>(
    providers: &[&'a Arc<Provider>],
    header: &JoseHeader,
    signing_input: &[u8],
    signature: &str,
) -> KeySearch<'a> {
    let kid = header.kid.as_deref();
    let mut tried = 0;
    let mut stale = 0;
    // Decoded once, and only when a key is tried (as `jsonwebtoken` does it: a
    // signature that is not base64url verifies under no key).
    let mut decoded: Option<Option<Vec<u8>>> = None;
    for provider in providers {
        let Some(snapshot) = provider.keys() else {
            stale += 1;
            continue;
        };
        for key in snapshot.keys.candidates(kid, header.alg) {
            if tried == MAX_CANDIDATE_KEYS {
                return KeySearch::Failed(TokenProblem::BadSignature);
            }
            tried += 1;
            let decoded = decoded
                .get_or_insert_with(|| URL_SAFE_NO_PAD.decode(signature).ok())
                .as_deref();
            if key.verifies(header.alg, signing_input, (signature, decoded)) {
                return KeySearch::Verified(provider);
            }
        }
    }
    if tried > 0 {
        return KeySearch::Failed(TokenProblem::BadSignature);
    }
    if stale == providers.len() {
        return KeySearch::Stale;
    }
    // No key could even try: tell "known key, wrong algorithm" from "unknown key".
    let known = kid.is_some_and(|kid| {
        providers
            .iter()
            .filter_map(|provider| provider.keys())
            .any(|snapshot| snapshot.keys.has_kid(kid))
    });
    // Without a `kid`, a set of several keys leaves the key unknown (mcpgate does not
    // try them all); only when no key takes the algorithm is the algorithm the problem.
    let ambiguous = kid.is_none()
        && providers
            .iter()
            .filter_map(|provider| provider.keys())
            .any(|snapshot| snapshot.keys.accepts(header.alg));
    if known || (kid.is_none() && !ambiguous) {
        KeySearch::Failed(TokenProblem::BadAlgorithm)
    } else {
        KeySearch::Failed(TokenProblem::UnknownKid)
    }
}

/// base64url (no padding) → strict JSON, bounded before decoding.
fn decode_segment(segment: &str, max_len: usize) -> Result<Value, TokenProblem> {
    if segment.len() > max_len {
        return Err(TokenProblem::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenProblem::Malformed)?;
    crate::json::from_slice(&bytes).map_err(|_| TokenProblem::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn a_jws_is_three_segments_whose_header_has_alg() {
        let header = segment(r#"{"alg":"RS256","kid":"k1"}"#);
        let token = format!("{header}.{}.c2ln", segment(r#"{"sub":"a"}"#));
        let jws = Jws::parse(&token).unwrap();
        // The header routed on is the one verified: decoded once, kept whole.
        assert_eq!(jws.header["kid"], "k1");
        assert_eq!(jws.signature, "c2ln");
        assert_eq!(
            jws.header_b64.len() + jws.payload_b64.len() + 1,
            token.rfind('.').unwrap()
        );
    }

    #[test]
    fn other_shapes_are_not_a_jws() {
        let alg = segment(r#"{"alg":"RS256"}"#);
        for token in [
            // Two segments, four segments.
            format!("{alg}.e30"),
            format!("{alg}.e30.c2ln.c2ln"),
            // A header without `alg`, one that is not JSON, one that is not base64url.
            format!("{}.e30.c2ln", segment(r#"{"typ":"JWT"}"#)),
            format!("{}.e30.c2ln", segment("not json")),
            "*not*base64.e30.c2ln".to_owned(),
            // An opaque token (for introspection).
            "2YotnFZFEjr1zCsicMWpAA".to_owned(),
        ] {
            assert!(Jws::parse(&token).is_none(), "{token}");
        }
    }
}
