//! The back channel to the identity provider after its redirect: the code redeemed
//! at its token endpoint with mcpgate's own client credentials and PKCE verifier,
//! and, for providers that issue no ID token, the user read from `userinfo`.
//! The provider's tokens never reach a log: errors carry only its error code.

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::header;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use super::provider::ProviderEndpoints;
use crate::auth::client_auth::{ClientCredentials, post_form_as};
use crate::config::{ClientAuthMethod, ProviderAuthMethod, ProviderConfig};

/// Largest token or userinfo response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Longest provider error code repeated on the page and in logs.
const MAX_ERROR_CODE: usize = 64;

/// What the token endpoint answered.
pub(crate) struct ProviderTokens {
    pub(crate) access_token: String,
    pub(crate) id_token: Option<String>,
}

impl fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderTokens").finish_non_exhaustive()
    }
}

/// Why the provider's answer gave no user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("the identity provider's answer is not usable: {0}")]
    Answer(String),
}

impl ExchangeError {
    /// The code on the error page: the provider's own when it sent one.
    pub(crate) fn code(&self) -> &str {
        match self {
            Self::Refused(code) => code,
            Self::Unreachable(_) => "temporarily_unavailable",
            Self::Answer(_) => "server_error",
        }
    }
}

/// What mcpgate sends to redeem the provider's code.
pub(crate) struct Redemption<'a> {
    pub(crate) code: &'a str,
    pub(crate) redirect_uri: &'a str,
    pub(crate) code_verifier: &'a str,
    pub(crate) resource: &'a str,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
}

/// mcpgate's authentication at `provider`'s token endpoints: its id and secret,
/// Basic or in the form; a public client has none and names itself in `fields`.
pub(crate) fn authenticate_as<'a>(
    provider: &'a ProviderConfig,
    fields: &mut Vec<(&'a str, &'a str)>,
) -> Option<ClientCredentials<'a>> {
    let method = match provider.auth_method {
        ProviderAuthMethod::ClientSecretBasic => ClientAuthMethod::ClientSecretBasic,
        ProviderAuthMethod::ClientSecretPost => ClientAuthMethod::ClientSecretPost,
        ProviderAuthMethod::None => {
            fields.push(("client_id", &provider.client_id));
            return None;
        }
    };
    Some(ClientCredentials {
        method,
        client_id: &provider.client_id,
        client_secret: provider
            .client_secret
            .as_ref()
            .map_or("", |secret| secret.expose()),
    })
}

/// Redeems the code (RFC 6749 §4.1.3 with PKCE).
pub(crate) async fn redeem(
    http: &reqwest::Client,
    endpoints: &ProviderEndpoints,
    provider: &ProviderConfig,
    redemption: &Redemption<'_>,
) -> Result<ProviderTokens, ExchangeError> {
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", redemption.code),
        ("redirect_uri", redemption.redirect_uri),
        ("code_verifier", redemption.code_verifier),
    ];
    let credentials = authenticate_as(provider, &mut fields);
    if provider.send_resource {
        fields.push(("resource", redemption.resource));
    }
    let (status, body) = post_form_as(
        http,
        &endpoints.token_endpoint,
        provider.timeout,
        credentials,
        &fields,
        MAX_RESPONSE_BYTES,
    )
    .await
    .map_err(ExchangeError::Unreachable)?;
    let answer: Option<TokenAnswer> = crate::json::from_slice(&body)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok());
    if let Some(code) = answer.as_ref().and_then(|answer| answer.error.as_deref()) {
        return Err(ExchangeError::Refused(error_code(code)));
    }
    if !status.is_success() {
        return Err(ExchangeError::Answer(format!(
            "token endpoint status {status}"
        )));
    }
    let answer = answer
        .ok_or_else(|| ExchangeError::Answer("the token response is not a JSON object".into()))?;
    let access_token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ExchangeError::Answer("the token response has no access_token".into()))?;
    Ok(ProviderTokens {
        access_token,
        id_token: answer.id_token,
    })
}

/// The user's id from the `userinfo` endpoint: `claim` as a string, or a number
/// written out (GitHub's `id`).
pub(crate) async fn userinfo_subject(
    http: &reqwest::Client,
    url: &Url,
    provider: &ProviderConfig,
    access_token: &str,
) -> Result<(String, Map<String, Value>), ExchangeError> {
    let response = http
        .get(url.clone())
        .timeout(provider.timeout)
        .header(header::ACCEPT, "application/json")
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|error| ExchangeError::Unreachable(crate::error_chain(&error)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(ExchangeError::Answer(format!("userinfo status {status}")));
    }
    let body = read_bounded(response, MAX_RESPONSE_BYTES)
        .await
        .map_err(ExchangeError::Unreachable)?;
    let document = crate::json::from_slice(&body)
        .map_err(|_| ExchangeError::Answer("userinfo is not JSON".into()))?;
    let Value::Object(claims) = document else {
        return Err(ExchangeError::Answer(
            "userinfo is not a JSON object".into(),
        ));
    };
    let claim = &provider.subject_claim;
    let subject = match claims.get(claim) {
        Some(Value::String(text)) if !text.is_empty() && text.len() <= 255 => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => {
            return Err(ExchangeError::Answer(format!(
                "userinfo has no usable `{claim}`"
            )));
        }
    };
    Ok((subject, claims))
}

/// Reads a body of at most `limit` bytes, chunk by chunk, whatever its length says.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, String> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err("response too large".into());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| crate::error_chain(&error))?
    {
        if body.len() + chunk.len() > limit {
            return Err("response too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A provider's error code as mcpgate repeats it: OAuth codes are printable ASCII
/// without quotes or backslashes (RFC 6749 §5.2); anything else becomes `server_error`.
pub(crate) fn error_code(code: &str) -> String {
    let fits = !code.is_empty()
        && code.len() <= MAX_ERROR_CODE
        && code.bytes().all(|byte| {
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || byte == b'.'
        });
    if fits {
        code.to_owned()
    } else {
        "server_error".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_codes_are_repeated_only_when_plain() {
        assert_eq!(error_code("invalid_grant"), "invalid_grant");
        assert_eq!(error_code("<script>"), "server_error");
        assert_eq!(error_code(""), "server_error");
        assert_eq!(error_code(&"a".repeat(65)), "server_error");
    }
}
