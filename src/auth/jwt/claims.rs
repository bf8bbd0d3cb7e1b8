//! Claim checks of an access token whose signature already verified (RFC 7519 §4.1,
//! RFC 9068 §4), and the principal they describe.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::auth::error::TokenProblem;
use crate::auth::principal::{AuthMethod, Principal, Scopes};

/// Most `aud` entries read; more is refused rather than scanned.
pub const MAX_AUDIENCES: usize = 16;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// Exact `iss` values accepted; empty accepts any (the key still has to verify).
    pub issuers: Vec<String>,
    /// `aud` must contain one of these.
    pub audiences: Vec<String>,
    pub leeway: Duration,
}

/// Checks the claims and builds the principal.
pub fn check(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    key_id: Option<String>,
    now: SystemTime,
) -> Result<Principal, TokenProblem> {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let leeway = rules.leeway.as_secs_f64();

    let exp = numeric_date(claims.get("exp"))?.ok_or(TokenProblem::BadClaims)?;
    if now_secs >= exp + leeway {
        return Err(TokenProblem::Expired);
    }
    if let Some(nbf) = numeric_date(claims.get("nbf"))?
        && now_secs + leeway < nbf
    {
        return Err(TokenProblem::NotYetValid);
    }
    // A token issued in the future was minted by a skewed or hostile clock.
    if let Some(iat) = numeric_date(claims.get("iat"))?
        && now_secs + leeway < iat
    {
        return Err(TokenProblem::NotYetValid);
    }

    let issuer = issuer(claims)?;
    if !rules.issuers.is_empty()
        && !issuer
            .as_ref()
            .is_some_and(|iss| rules.issuers.contains(iss))
    {
        return Err(TokenProblem::BadIssuer);
    }
    if !audience_matches(claims.get("aud"), &rules.audiences) {
        return Err(TokenProblem::BadAudience);
    }

    let subject = optional_string(claims.get("sub")).map_err(|()| TokenProblem::BadClaims)?;
    let client_id = match optional_string(claims.get("client_id")) {
        Ok(Some(id)) => Some(id),
        _ => optional_string(claims.get("azp")).ok().flatten(),
    };
    let expires_at = UNIX_EPOCH.checked_add(Duration::from_secs_f64(exp.clamp(0.0, 1e11)));
    Ok(Principal {
        issuer,
        subject,
        client_id,
        scopes: token_scopes(claims),
        expires_at,
        method: AuthMethod::Jwt,
        key_id,
        api_key_id: None,
    })
}

/// `iss`: absent, or one string. An array (which some libraries accept on any match)
/// is refused.
pub fn issuer(claims: &Map<String, Value>) -> Result<Option<String>, TokenProblem> {
    optional_string(claims.get("iss")).map_err(|()| TokenProblem::BadIssuer)
}

/// A NumericDate (RFC 7519 §2): a JSON number. A string is malformed, not coerced.
fn numeric_date(value: Option<&Value>) -> Result<Option<f64>, TokenProblem> {
    match value {
        None => Ok(None),
        Some(Value::Number(number)) => number
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or(TokenProblem::BadClaims),
        Some(_) => Err(TokenProblem::BadClaims),
    }
}

fn optional_string(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(()),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); anything else fails.
fn audience_matches(value: Option<&Value>, accepted: &[String]) -> bool {
    match value {
        Some(Value::String(aud)) => accepted.contains(aud),
        Some(Value::Array(items)) => {
            items.len() <= MAX_AUDIENCES
                && items.iter().all(Value::is_string)
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
