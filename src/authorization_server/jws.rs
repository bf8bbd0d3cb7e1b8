//! Compact JWS signed by someone else (an identity provider's ID token, an
//! enterprise IdP's identity assertion), taken apart and verified one way: bounded
//! size, a header without `crit`, an asymmetric algorithm from a short list, and a
//! signature by one of the given keys, checked before any claim is read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::keys::KeySet;

/// The algorithms accepted: asymmetric only, so neither `none` nor a MAC keyed
/// with something public can pass.
pub(crate) const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];
/// Keys tried for one token at most.
const MAX_CANDIDATES: usize = 4;

/// Why a JWS was refused before its claims were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JwsError {
    /// Too large, not three parts, an unreadable header, or a `crit` header.
    Malformed,
    /// An algorithm outside [`ALGORITHMS`] (its name, cut short).
    Algorithm(String),
    /// No key fits the `kid` and algorithm.
    UnknownKey,
    /// A key fits, but the signature does not verify.
    Signature,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    /// Extensions mcpgate does not understand must not be ignored (RFC 7515 §4.1.11).
    crit: Option<Value>,
}

/// A JWS taken apart, its header read, its signature not yet checked.
pub(crate) struct Jws<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    /// The header's `typ`, as written.
    pub(crate) typ: Option<String>,
    signing_input: &'a [u8],
    payload: &'a str,
    signature: &'a str,
}

impl<'a> Jws<'a> {
    /// Splits `token` (at most `max_len` bytes) and reads its header.
    pub(crate) fn parse(token: &'a str, max_len: usize) -> Result<Self, JwsError> {
        if token.len() > max_len {
            return Err(JwsError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        let header: Header = decode(header_b64).ok_or(JwsError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwsError::Malformed);
        }
        let alg = ALGORITHMS
            .iter()
            .copied()
            .find(|alg| format!("{alg:?}") == header.alg)
            .ok_or_else(|| JwsError::Algorithm(header.alg.chars().take(20).collect()))?;
        let signing_input = token
            .as_bytes()
            .get(..header_b64.len() + 1 + payload.len())
            .ok_or(JwsError::Malformed)?;
        Ok(Self {
            alg,
            kid: header.kid,
            typ: header.typ,
            signing_input,
            payload,
            signature,
        })
    }

    /// Whether the header's `typ` is `expected` or `application/<expected>`,
    /// case-insensitively (RFC 7515 §4.1.9).
    pub(crate) fn typ_is(&self, expected: &str) -> bool {
        self.typ.as_deref().is_some_and(|typ| {
            typ.eq_ignore_ascii_case(expected)
                || typ
                    .to_ascii_lowercase()
                    .strip_prefix("application/")
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(expected))
        })
    }

    /// Checks the signature against `keys` (those fitting its `kid` and algorithm).
    pub(crate) fn verify(&self, keys: &KeySet) -> Result<(), JwsError> {
        let mut tried = 0;
        for key in keys
            .candidates(self.kid.as_deref(), self.alg)
            .take(MAX_CANDIDATES)
        {
            tried += 1;
            if matches!(
                jsonwebtoken::crypto::verify(
                    self.signature,
                    self.signing_input,
                    &key.key,
                    self.alg
                ),
                Ok(true)
            ) {
                return Ok(());
            }
        }
        Err(if tried == 0 {
            JwsError::UnknownKey
        } else {
            JwsError::Signature
        })
    }

    /// The payload read as `T` (after [`Self::verify`]: nothing unverified is believed).
    pub(crate) fn claims<T: DeserializeOwned>(&self) -> Option<T> {
        decode(self.payload)
    }
}

fn decode<T: DeserializeOwned>(part: &str) -> Option<T> {
    URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|bytes| crate::json::from_slice(&bytes).ok())
        .and_then(|value| serde_json::from_value(value).ok())
}
