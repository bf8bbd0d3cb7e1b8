//! Claim checks of an access token whose signature already verified (RFC 7519 §4.1,
//! RFC 9068 §4), and the principal they describe.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::auth::claim_map::TokenProfile;
use crate::auth::error::TokenProblem;
use crate::auth::principal::{AuthMethod, Principal};

/// Most `aud` entries read; more is refused rather than scanned.
pub const MAX_AUDIENCES: usize = 16;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// Exact `iss` values accepted; empty accepts any (the key still has to verify).
    pub issuers: Vec<String>,
    /// `aud` must contain one of these (unless the provider names its own).
    pub audiences: Vec<String>,
    pub(crate) leeway: Duration,
}

/// Checks the claims and builds the principal, reading them as the verifying
/// provider's `profile` says.
pub fn check(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    profile: &TokenProfile,
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
    // A provider may carry its audience in another claim (Cognito's `client_id`) with
    // its own allowlist; the check is the same, and a missing claim fails it.
    let audiences = profile.audiences.as_ref().unwrap_or(&rules.audiences);
    if !audience_matches(claims.get(&profile.audience_claim), audiences) {
        return Err(TokenProblem::BadAudience);
    }

    let subject = optional_string(claims.get("sub")).map_err(|()| TokenProblem::BadClaims)?;
    let expires_at = UNIX_EPOCH.checked_add(Duration::from_secs_f64(exp.clamp(0.0, 1e11)));
    Ok(Principal {
        issuer,
        subject,
        client_id: profile.client_id(claims),
        scopes: profile.scopes(claims),
        expires_at,
        method: AuthMethod::Jwt,
        key_id,
        api_key_id: None,
        claims: profile.kept_claims(claims),
        grant_id: claims.get("gid").and_then(Value::as_str).map(str::to_owned),
        _verified: crate::auth::principal::Verified,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RESOURCE: &str = "https://mcp.example/mcp";

    fn rules() -> ClaimRules {
        ClaimRules {
            issuers: vec!["https://issuer.test".into()],
            audiences: vec![RESOURCE.into()],
            leeway: Duration::from_secs(5),
        }
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    fn cognito(extra: Value) -> Map<String, Value> {
        let exp = now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 300;
        let mut claims = json!({
            "iss": "https://issuer.test", "sub": "u-1", "token_use": "access",
            "client_id": "5ab1c2d3", "scope": "mcp/read", "exp": exp,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        match claims {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn check_with(
        profile: &TokenProfile,
        claims: &Map<String, Value>,
    ) -> Result<Principal, TokenProblem> {
        check(claims, &rules(), profile, None, now())
    }

    #[test]
    fn without_an_audience_claim_a_token_without_aud_is_refused() {
        let result = check_with(&TokenProfile::default(), &cognito(json!({})));
        assert_eq!(result.err(), Some(TokenProblem::BadAudience));
        let with_aud = cognito(json!({"aud": RESOURCE}));
        assert!(check_with(&TokenProfile::default(), &with_aud).is_ok());
    }

    #[test]
    fn an_audience_claim_is_checked_against_the_providers_allowlist() {
        let profile = TokenProfile {
            audience_claim: "client_id".into(),
            audiences: Some(vec!["5ab1c2d3".into()]),
            ..TokenProfile::default()
        };
        let principal = check_with(&profile, &cognito(json!({}))).unwrap();
        assert_eq!(principal.client_id.as_deref(), Some("5ab1c2d3"));
        assert_eq!(principal.scopes.to_claim(), "mcp/read");
        for refused in [
            json!({"client_id": "another-client"}),
            json!({"client_id": ["5ab1c2d3", 7]}),
            json!({"client_id": 5}),
            // The resource URL in `aud` does not stand in for the configured claim.
            json!({"client_id": null, "aud": RESOURCE}),
        ] {
            let result = check_with(&profile, &cognito(refused.clone()));
            assert_eq!(result.err(), Some(TokenProblem::BadAudience), "{refused}");
        }
        let mut missing = cognito(json!({"aud": RESOURCE}));
        missing.remove("client_id");
        assert_eq!(
            check_with(&profile, &missing).err(),
            Some(TokenProblem::BadAudience)
        );
    }

    #[test]
    fn a_providers_audiences_replace_the_global_ones() {
        let profile = TokenProfile {
            audiences: Some(vec!["api://mcp".into()]),
            ..TokenProfile::default()
        };
        assert!(check_with(&profile, &cognito(json!({"aud": "api://mcp"}))).is_ok());
        assert_eq!(
            check_with(&profile, &cognito(json!({"aud": RESOURCE}))).err(),
            Some(TokenProblem::BadAudience)
        );
    }
}
