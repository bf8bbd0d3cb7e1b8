//! The JOSE header of a JWS access token (RFC 7515 §4, RFC 8725, RFC 9068 §4).
//! Only `alg`, `kid`, `typ`, `crit` and `cty` are read; `jku`, `x5u`, `jwk` and `x5c`
//! are never fetched or used, since a key named by the token itself proves nothing.

use std::str::FromStr;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::auth::error::TokenProblem;

/// Longest base64url header segment read (real ones are under 300 bytes).
pub const MAX_HEADER_SEGMENT: usize = 2048;
/// Longest `kid` accepted.
pub const MAX_KID_BYTES: usize = 256;

/// What the verifier needs from a header that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    /// `typ` was `at+jwt` (or `application/at+jwt`), the RFC 9068 access-token type.
    pub is_access_token_type: bool,
}

/// Checks a decoded header object.
pub fn parse(header: &Value) -> Result<JoseHeader, TokenProblem> {
    let header = header.as_object().ok_or(TokenProblem::Malformed)?;
    // A JWE (RFC 7516) or a compressed payload: not a signed access token.
    if header.contains_key("enc") || header.contains_key("zip") {
        return Err(TokenProblem::BadHeader);
    }
    // mcpgate understands no header extension, so any `crit` entry must be refused
    // (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(TokenProblem::BadHeader);
    }
    // A nested JWT (RFC 7519 §5.2) would verify the outer signature only.
    if let Some(cty) = header.get("cty") {
        let cty = cty.as_str().ok_or(TokenProblem::BadHeader)?;
        if cty.eq_ignore_ascii_case("jwt") || cty.eq_ignore_ascii_case("application/jwt") {
            return Err(TokenProblem::BadHeader);
        }
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(TokenProblem::BadAlgorithm)?;
    // `Algorithm::from_str` is exact and knows no "none".
    let alg = Algorithm::from_str(alg).map_err(|_| TokenProblem::BadAlgorithm)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if is_acceptable_kid(kid) => Some(kid.clone()),
        Some(_) => return Err(TokenProblem::Malformed),
    };
    let is_access_token_type = match header.get("typ") {
        None => false,
        Some(Value::String(typ)) => match media_type(typ).as_str() {
            "at+jwt" => true,
            "jwt" => false,
            _ => return Err(TokenProblem::BadType),
        },
        Some(_) => return Err(TokenProblem::BadType),
    };
    Ok(JoseHeader {
        alg,
        kid,
        is_access_token_type,
    })
}

/// 1 to 256 bytes of printable ASCII: enough for UUIDs, thumbprints and standard
/// base64 (`+ / =`), nothing that could smuggle control characters into logs.
fn is_acceptable_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_BYTES && kid.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// `typ` compares case-insensitively, with an optional `application/` prefix
/// (RFC 7515 §4.1.9).
fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_alg_kid_and_typ() {
        let header =
            parse(&json!({"alg": "RS256", "kid": "k+/=1", "typ": "application/AT+JWT"})).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("k+/=1"));
        assert!(header.is_access_token_type);
        for typ in [json!("JWT"), json!("jwt")] {
            assert!(
                !parse(&json!({"alg": "ES256", "typ": typ}))
                    .unwrap()
                    .is_access_token_type
            );
        }
        assert!(
            !parse(&json!({"alg": "ES256"}))
                .unwrap()
                .is_access_token_type
        );
    }

    #[test]
    fn rfc8725_3_1_refuses_none_and_unknown_algorithms() {
        for alg in [
            json!("none"),
            json!("None"),
            json!("rs256"),
            json!(""),
            json!(1),
            Value::Null,
        ] {
            assert_eq!(
                parse(&json!({"alg": alg})),
                Err(TokenProblem::BadAlgorithm),
                "{alg}"
            );
        }
        assert_eq!(parse(&json!({"kid": "x"})), Err(TokenProblem::BadAlgorithm));
    }

    #[test]
    fn rfc7515_4_1_11_refuses_any_crit() {
        assert_eq!(
            parse(&json!({"alg": "RS256", "crit": ["exp"], "exp": 1})),
            Err(TokenProblem::BadHeader)
        );
        assert_eq!(
            parse(&json!({"alg": "RS256", "crit": []})),
            Err(TokenProblem::BadHeader)
        );
    }

    #[test]
    fn refuses_nested_jwts_and_jwe_headers() {
        for header in [
            json!({"alg": "RS256", "cty": "JWT"}),
            json!({"alg": "RS256", "cty": "application/jwt"}),
            json!({"alg": "RS256", "enc": "A256GCM"}),
            json!({"alg": "RS256", "zip": "DEF"}),
        ] {
            assert_eq!(parse(&header), Err(TokenProblem::BadHeader), "{header}");
        }
    }

    #[test]
    fn rfc9068_4_refuses_other_types() {
        for typ in [json!("id_token+jwt"), json!("JOSE"), json!(["at+jwt"])] {
            assert_eq!(
                parse(&json!({"alg": "RS256", "typ": typ})),
                Err(TokenProblem::BadType),
                "{typ}"
            );
        }
    }

    #[test]
    fn kid_is_bounded_printable_ascii() {
        let long = "k".repeat(MAX_KID_BYTES + 1);
        for kid in [
            json!(""),
            json!(long),
            json!("a\nb"),
            json!("ключ"),
            json!(7),
        ] {
            assert_eq!(
                parse(&json!({"alg": "RS256", "kid": kid})),
                Err(TokenProblem::Malformed),
                "{kid}"
            );
        }
        let max = "k".repeat(MAX_KID_BYTES);
        assert!(parse(&json!({"alg": "RS256", "kid": max})).is_ok());
    }

    #[test]
    fn embedded_keys_and_key_urls_are_ignored_not_used() {
        let header = parse(&json!({
            "alg": "RS256", "kid": "k",
            "jku": "https://attacker.example/jwks", "x5u": "https://attacker.example/cert",
            "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "x5c": ["MIIB"]
        }))
        .unwrap();
        assert_eq!(
            header,
            JoseHeader {
                alg: Algorithm::RS256,
                kid: Some("k".into()),
                is_access_token_type: false
            }
        );
    }
}
