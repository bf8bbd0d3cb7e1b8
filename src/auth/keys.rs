//! Verification keys and key sets. A key carries the algorithms it may verify — the
//! intersection of the provider's allowlist, the key's family and the JWK's own `alg` —
//! so the algorithm is never taken from a token header alone (RFC 8725 §3.1).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use std::sync::Arc;

use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384,
    RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384,
    RSA_PSS_2048_8192_SHA512, RsaParameters, RsaPublicKeyComponents,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// Every asymmetric algorithm mcpgate verifies: the default allowlist of a remote JWKS.
pub const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One key and what it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
    /// An RSA key parsed once per algorithm it may verify. `jsonwebtoken` builds the
    /// key from its modulus and exponent again for every signature, which costs
    /// more than the check itself; aws-lc-rs verifies with the same parameters
    /// (key sizes 2048 to 8192 bits) from the parsed key.
    parsed_rsa: Vec<(Algorithm, Arc<ParsedPublicKey>)>,
}

impl VerificationKey {
    /// Whether `signature` (as sent, and decoded from base64url) signs
    /// `signing_input` under this key with `algorithm`, which the caller has
    /// checked the key may verify.
    pub(crate) fn verifies(
        &self,
        algorithm: Algorithm,
        signing_input: &[u8],
        (encoded, decoded): (&str, Option<&[u8]>),
    ) -> bool {
        match self
            .parsed_rsa
            .iter()
            .find(|(parsed, _)| *parsed == algorithm)
        {
            Some((_, key)) => {
                decoded.is_some_and(|signature| key.verify_sig(signing_input, signature).is_ok())
            }
            None => matches!(
                jsonwebtoken::crypto::verify(encoded, signing_input, &self.key, algorithm),
                Ok(true)
            ),
        }
    }
}

/// The aws-lc-rs parameters `jsonwebtoken` verifies each RSA algorithm with.
fn rsa_parameters(algorithm: Algorithm) -> Option<&'static RsaParameters> {
    Some(match algorithm {
        Algorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// `key`'s RSA public key parsed for each of `algorithms`; a key aws-lc-rs will
/// not parse is left to `jsonwebtoken`, which then refuses its signatures.
fn parse_rsa(
    key: &DecodingKey,
    algorithms: &[Algorithm],
) -> Vec<(Algorithm, Arc<ParsedPublicKey>)> {
    let DecodingKeyKind::RsaModulusExponent { n, e } = key.kind() else {
        return Vec::new();
    };
    let components = RsaPublicKeyComponents {
        n: n.as_slice(),
        e: e.as_slice(),
    };
    algorithms
        .iter()
        .filter_map(|algorithm| {
            let parameters = rsa_parameters(*algorithm)?;
            let parsed = components.to_parsed_public_key(parameters).ok()?;
            Some((*algorithm, Arc::new(parsed)))
        })
        .collect()
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// An immutable set of keys; replaced whole when a JWKS is refreshed.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

/// Why a JWK was left out of a set (logged, never fatal for the rest of the set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkippedKey {
    /// Not a JWK mcpgate can read: bad JSON shape, unknown key type, or unusable
    /// parameters.
    Unparseable,
    /// An `oct` key: a shared secret published in a JWKS would let any reader mint tokens.
    Symmetric,
    /// `use` or `alg` says the key is for encryption, not signatures.
    NotForSignatures,
    /// No algorithm both allowed for the provider and fitting the key's type, curve and
    /// `alg`.
    NoAllowedAlgorithm,
}

/// JWKS entries left out, by `kid`, with the reason.
pub type SkippedKeys = Vec<(Option<String>, SkippedKey)>;

impl KeySet {
    pub(crate) fn new(keys: Vec<VerificationKey>) -> Self {
        Self { keys }
    }

    /// The key set of a symmetric `secret`.
    pub fn symmetric(secret: &[u8], algorithm: Algorithm, kid: Option<String>) -> Self {
        Self::new(vec![VerificationKey {
            kid,
            key: DecodingKey::from_secret(secret),
            algorithms: vec![algorithm],
            parsed_rsa: Vec::new(),
        }])
    }

    /// Parses a JWKS document (RFC 7517 §5), keeping the keys usable for signatures
    /// under `allowed`. Entries it cannot use are skipped and reported, so one odd key
    /// (an encryption key, a new `kty`) does not take down the whole set.
    pub fn from_jwks(
        document: &serde_json::Value,
        allowed: &[Algorithm],
    ) -> Result<(Self, SkippedKeys), &'static str> {
        let entries = document
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or("JWKS document has no \"keys\" array")?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for entry in entries {
            let kid = entry
                .get("kid")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            match verification_key(entry, allowed) {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push((kid, reason)),
            }
        }
        Ok((Self::new(keys), skipped))
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// No key at all (none given, or every entry skipped): the set verifies nothing.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys that may verify a token with this `kid` (exact match) and algorithm. A
    /// token without `kid` is tried against keys without one, or against the only key
    /// of a single-key set: a bounded search, never every key of a large set.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        algorithm: Algorithm,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        let single = self.keys.len() == 1;
        self.keys.iter().filter(move |key| {
            let kid_matches = match (kid, key.kid.as_deref()) {
                (Some(wanted), Some(have)) => wanted == have,
                (None, None) => true,
                (None, Some(_)) => single,
                (Some(_), None) => false,
            };
            kid_matches && key.algorithms.contains(&algorithm)
        })
    }

    /// Whether any key may verify this algorithm, whatever its `kid`.
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.keys
            .iter()
            .any(|key| key.algorithms.contains(&algorithm))
    }

    /// Whether any key carries this `kid`, whatever its algorithms.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }
}

fn verification_key(
    entry: &serde_json::Value,
    allowed: &[Algorithm],
) -> Result<VerificationKey, SkippedKey> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|_| SkippedKey::Unparseable)?;
    if matches!(jwk.common.public_key_use, Some(ref usage) if *usage != PublicKeyUse::Signature) {
        return Err(SkippedKey::NotForSignatures);
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        // A shared secret published in a JWKS would let anyone who reads it mint tokens.
        AlgorithmParameters::OctetKey(_) => return Err(SkippedKey::Symmetric),
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err(SkippedKey::NoAllowedAlgorithm),
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err(SkippedKey::NoAllowedAlgorithm),
        },
        _ => return Err(SkippedKey::Unparseable),
    };
    let declared = match jwk.common.key_algorithm {
        Some(declared) => {
            Some(Algorithm::try_from(declared).map_err(|_| SkippedKey::NotForSignatures)?)
        }
        None => None,
    };
    let algorithms: Vec<Algorithm> = family
        .iter()
        .copied()
        .filter(|alg| allowed.contains(alg) && declared.is_none_or(|declared| declared == *alg))
        .collect();
    if algorithms.is_empty() {
        return Err(SkippedKey::NoAllowedAlgorithm);
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| SkippedKey::Unparseable)?;
    let parsed_rsa = parse_rsa(&key, &algorithms);
    Ok(VerificationKey {
        kid: jwk.common.key_id,
        key,
        algorithms,
        parsed_rsa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    fn rsa(extra: serde_json::Value) -> serde_json::Value {
        let mut key = json!({"kty": "RSA", "kid": "r1", "n": RSA_N, "e": "AQAB"});
        if let (Some(key), Some(extra)) = (key.as_object_mut(), extra.as_object()) {
            key.extend(extra.clone());
        }
        key
    }

    #[test]
    fn keeps_signature_keys_and_skips_the_rest_without_failing() {
        let doc = json!({"keys": [
            rsa(json!({})),
            rsa(json!({"kid": "enc", "use": "enc"})),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "weird", "kid": "new"},
        ]});
        let (set, skipped) = KeySet::from_jwks(&doc, ASYMMETRIC_ALGORITHMS).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.has_kid("r1"));
        assert_eq!(
            skipped,
            vec![
                (Some("enc".to_owned()), SkippedKey::NotForSignatures),
                (Some("hmac".to_owned()), SkippedKey::Symmetric),
                (Some("new".to_owned()), SkippedKey::Unparseable),
            ]
        );
    }

    #[test]
    fn a_jwk_alg_narrows_what_the_key_verifies() {
        let doc = json!({"keys": [rsa(json!({"alg": "PS256"}))]});
        let (set, _) = KeySet::from_jwks(&doc, ASYMMETRIC_ALGORITHMS).unwrap();
        assert_eq!(set.candidates(Some("r1"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(Some("r1"), Algorithm::PS256).count(), 1);
    }

    #[test]
    fn the_provider_allowlist_narrows_too() {
        let doc = json!({"keys": [rsa(json!({}))]});
        let (set, _) = KeySet::from_jwks(&doc, &[Algorithm::ES256]).unwrap();
        assert!(set.is_empty());
    }

    #[test]
    fn kid_must_match_exactly() {
        let doc = json!({"keys": [rsa(json!({}))]});
        let (set, _) = KeySet::from_jwks(&doc, ASYMMETRIC_ALGORITHMS).unwrap();
        assert_eq!(set.candidates(Some("R1"), Algorithm::RS256).count(), 0);
        assert_eq!(set.candidates(Some("r1"), Algorithm::RS256).count(), 1);
        // A single-key set may verify a token without kid.
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 1);
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(KeySet::from_jwks(&json!({"nope": []}), ASYMMETRIC_ALGORITHMS).is_err());
    }

    /// Entra ID and Cognito publish RSA keys without `alg` (Entra's carry `issuer`,
    /// `x5t` and `x5c` too): such a key verifies the RSA algorithms the provider
    /// allows, and only those, with no option needed.
    #[test]
    fn a_jwk_without_alg_takes_its_algorithms_from_its_type_within_the_allowlist() {
        let entra = rsa(json!({
            "kid": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "use": "sig",
            "x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "x5c": ["MIIC8TCCAdmgAwIBAgIQ"],
            "issuer": "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
        }));
        let doc = json!({"keys": [entra]});
        let (set, skipped) = KeySet::from_jwks(&doc, &[Algorithm::RS256]).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let kid = Some("nOo3ZDrODXEK1jKWhXslHR_KXEg");
        assert_eq!(set.candidates(kid, Algorithm::RS256).count(), 1);
        for outside in [
            Algorithm::PS256,
            Algorithm::RS512,
            Algorithm::ES256,
            Algorithm::HS256,
        ] {
            assert_eq!(set.candidates(kid, outside).count(), 0, "{outside:?}");
        }
        // An EC key without alg verifies its curve's algorithm only.
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "e1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let (set, _) = KeySet::from_jwks(&json!({"keys": [ec]}), ASYMMETRIC_ALGORITHMS).unwrap();
        assert_eq!(set.candidates(Some("e1"), Algorithm::ES256).count(), 1);
        assert_eq!(set.candidates(Some("e1"), Algorithm::ES384).count(), 0);
        let (set, _) =
            KeySet::from_jwks(&json!({"keys": [rsa(json!({}))]}), &[Algorithm::ES256]).unwrap();
        assert!(
            set.is_empty(),
            "an allowlist without RSA leaves the key unusable"
        );
    }

    /// The parsed RSA keys decide as `jsonwebtoken` does, for every RSA algorithm:
    /// the same signatures verify, and the same ones fail.
    #[test]
    fn parsed_rsa_keys_verify_exactly_what_jsonwebtoken_verifies() {
        let pem = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa_private.pem"),
        )
        .unwrap();
        let signer = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&signer, Algorithm::RS256).unwrap();
        let mut jwk = serde_json::to_value(jwk).unwrap();
        jwk.as_object_mut().unwrap().remove("alg");
        let (set, _) = KeySet::from_jwks(&json!({"keys": [jwk]}), ASYMMETRIC_ALGORITHMS).unwrap();
        let key = &set.keys[0];
        let rsa = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ];
        assert_eq!(key.parsed_rsa.len(), rsa.len(), "parsed once per algorithm");
        let input = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
        for signed_with in rsa {
            let signature = jsonwebtoken::crypto::sign(input, &signer, signed_with).unwrap();
            let mut tampered = signature.clone().into_bytes();
            tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            for checked_as in rsa {
                for (text, message) in [
                    (signature.as_str(), &input[..]),
                    (tampered.as_str(), &input[..]),
                    (
                        signature.as_str(),
                        &b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ"[..],
                    ),
                    ("not base64!", &input[..]),
                ] {
                    let decoded = URL_SAFE_NO_PAD.decode(text).ok();
                    let ours = key.verifies(checked_as, message, (text, decoded.as_deref()));
                    let theirs = matches!(
                        jsonwebtoken::crypto::verify(text, message, &key.key, checked_as),
                        Ok(true)
                    );
                    assert_eq!(ours, theirs, "{signed_with:?} as {checked_as:?}: {text}");
                    let expected =
                        text == signature && message == input && checked_as == signed_with;
                    assert_eq!(ours, expected, "{signed_with:?} as {checked_as:?}: {text}");
                }
            }
        }
    }
}
