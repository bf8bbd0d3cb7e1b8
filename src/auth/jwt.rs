//! JWT access-token verification (RFC 7519, RFC 9068 profile). The token is parsed
//! here rather than by `jsonwebtoken::decode`, whose `Validation` skips malformed
//! `aud`, accepts array `iss` and ignores `nbf` by default; jsonwebtoken still does
//! the signature check.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::TokenProblem;
use super::jwks::Provider;
use super::principal::{AuthMethod, Principal, Scopes};

/// Keys tried for one token at most (tokens without `kid` against keys without one).
const MAX_CANDIDATE_KEYS: usize = 4;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// Exact `iss` values accepted; empty accepts any issuer.
    pub issuers: Vec<String>,
    /// `aud` must contain one of these.
    pub audiences: Vec<String>,
    pub leeway: Duration,
}

/// Verifies JWTs against a list of key providers.
pub struct JwtVerifier {
    providers: Vec<Arc<Provider>>,
    rules: ClaimRules,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
}

impl JwtVerifier {
    pub fn new(providers: Vec<Arc<Provider>>, rules: ClaimRules) -> Self {
        Self { providers, rules }
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// Verifies signature first, claims second: nothing from an unverified payload
    /// influences the outcome or the error reported.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Principal, TokenProblem> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenProblem::Malformed);
        };
        let header: JoseHeader = decode_json(header_b64)?;
        let algorithm = Algorithm::from_str(&header.alg).map_err(|_| TokenProblem::BadAlgorithm)?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        let kid = header.kid.as_deref();

        self.check_signature(kid, algorithm, signing_input.as_bytes(), signature_b64)?;

        let claims: Map<String, Value> = decode_json(payload_b64)?;
        self.principal_from_claims(&claims, header.kid, now)
    }

    fn check_signature(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
        signing_input: &[u8],
        signature: &str,
    ) -> Result<(), TokenProblem> {
        let mut tried = 0;
        for provider in &self.providers {
            let keys = provider.keys();
            for key in keys.candidates(kid, algorithm) {
                if tried == MAX_CANDIDATE_KEYS {
                    return Err(TokenProblem::BadSignature);
                }
                tried += 1;
                if matches!(
                    jsonwebtoken::crypto::verify(signature, signing_input, &key.key, algorithm),
                    Ok(true)
                ) {
                    return Ok(());
                }
            }
        }
        if tried > 0 {
            return Err(TokenProblem::BadSignature);
        }
        // No key could even try: tell "known key, wrong algorithm" from "unknown key".
        let known = kid.is_some_and(|kid| self.providers.iter().any(|p| p.keys().has_kid(kid)));
        if known || kid.is_none() {
            Err(TokenProblem::BadAlgorithm)
        } else {
            Err(TokenProblem::UnknownKid)
        }
    }

    fn principal_from_claims(
        &self,
        claims: &Map<String, Value>,
        key_id: Option<String>,
        now: SystemTime,
    ) -> Result<Principal, TokenProblem> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let leeway = self.rules.leeway.as_secs_f64();

        let exp = numeric_date(claims.get("exp"))?.ok_or(TokenProblem::BadClaims)?;
        if now_secs >= exp + leeway {
            return Err(TokenProblem::Expired);
        }
        if let Some(nbf) = numeric_date(claims.get("nbf"))?
            && now_secs + leeway < nbf
        {
            return Err(TokenProblem::NotYetValid);
        }

        let issuer = optional_string(claims.get("iss")).map_err(|_| TokenProblem::BadIssuer)?;
        if !self.rules.issuers.is_empty()
            && !issuer
                .as_ref()
                .is_some_and(|iss| self.rules.issuers.contains(iss))
        {
            return Err(TokenProblem::BadIssuer);
        }

        if !audience_matches(claims.get("aud"), &self.rules.audiences) {
            return Err(TokenProblem::BadAudience);
        }

        let subject = optional_string(claims.get("sub")).map_err(|_| TokenProblem::BadClaims)?;
        let client_id = match optional_string(claims.get("client_id")) {
            Ok(Some(id)) => Some(id),
            _ => optional_string(claims.get("azp")).ok().flatten(),
        };
        let expires_at = UNIX_EPOCH.checked_add(Duration::from_secs_f64(exp.max(0.0)));

        Ok(Principal {
            issuer,
            subject,
            client_id,
            scopes: token_scopes(claims),
            expires_at,
            method: AuthMethod::Jwt,
            key_id,
        })
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, TokenProblem> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenProblem::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenProblem::Malformed)
}

/// A NumericDate (RFC 7519 §2): a JSON number. A string is malformed, not coerced.
fn numeric_date(value: Option<&Value>) -> Result<Option<f64>, TokenProblem> {
    match value {
        None => Ok(None),
        Some(Value::Number(number)) => number.as_f64().map(Some).ok_or(TokenProblem::BadClaims),
        Some(_) => Err(TokenProblem::BadClaims),
    }
}

fn optional_string(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(()),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); anything else fails.
fn audience_matches(value: Option<&Value>, accepted: &[String]) -> bool {
    match value {
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(items)) => {
            items.iter().all(Value::is_string)
                && items
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|aud| accepted.iter().any(|want| want == aud))
        }
        _ => false,
    }
}

/// Scopes from `scope` (space-delimited, RFC 9068 §2.2.3) and `scp` (string or array,
/// as Okta and Entra ID issue it).
fn token_scopes(claims: &Map<String, Value>) -> Scopes {
    let mut all: Vec<&str> = Vec::new();
    if let Some(Value::String(scope)) = claims.get("scope") {
        all.extend(scope.split(' '));
    }
    match claims.get("scp") {
        Some(Value::String(scp)) => all.extend(scp.split(' ')),
        Some(Value::Array(items)) => all.extend(items.iter().filter_map(Value::as_str)),
        _ => {}
    }
    Scopes::new(all)
}
