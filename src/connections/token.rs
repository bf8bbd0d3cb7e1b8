//! The third-party service's token endpoint: a code redeemed (with PKCE) when the
//! user connects, a refresh token spent later. Nothing of an answer but its
//! error code reaches a log.

use std::fmt;

use serde::Deserialize;

use crate::auth::client_auth::post_form_as;
use crate::authorization_server::exchange::authenticate_as;
use crate::config::ProviderConfig;

/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What the service granted.
pub(crate) struct Granted {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) expires_in: Option<u64>,
    pub(crate) scope: Option<String>,
}

impl fmt::Debug for Granted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Granted")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why no token came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// The service answered with an OAuth error (`invalid_grant`, …).
    #[error("the service refused: {0}")]
    Refused(String),
    #[error("the service could not be reached: {0}")]
    Unreachable(String),
    #[error("the service's answer is not usable: {0}")]
    Answer(String),
}

#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    scope: Option<String>,
    error: Option<String>,
}

/// `authorization_code` with PKCE.
pub(crate) async fn redeem(
    http: &reqwest::Client,
    provider: &ProviderConfig,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Granted, TokenError> {
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    call(http, provider, &fields).await
}

/// `refresh_token`.
pub(crate) async fn refresh(
    http: &reqwest::Client,
    provider: &ProviderConfig,
    refresh_token: &str,
) -> Result<Granted, TokenError> {
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    call(http, provider, &fields).await
}

async fn call(
    http: &reqwest::Client,
    provider: &ProviderConfig,
    fields: &[(&str, &str)],
) -> Result<Granted, TokenError> {
    let Some(endpoint) = &provider.token_endpoint else {
        return Err(TokenError::Answer("no token endpoint".into()));
    };
    let (status, body) = post(http, provider, endpoint, fields.to_vec()).await?;
    let answer: Option<Answer> = crate::json::from_slice(&body)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok());
    // GitHub answers errors with 200: the `error` member decides, not the status.
    if let Some(code) = answer.as_ref().and_then(|answer| answer.error.as_deref()) {
        return Err(TokenError::Refused(
            crate::authorization_server::exchange::error_code(code),
        ));
    }
    if !status.is_success() {
        return Err(TokenError::Answer(format!(
            "token endpoint status {status}"
        )));
    }
    let answer = answer
        .ok_or_else(|| TokenError::Answer("the token response is not a JSON object".into()))?;
    let access_token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| TokenError::Answer("the token response has no access_token".into()))?;
    // A number, or a number in a string (some providers).
    let expires_in = match answer.expires_in {
        Some(serde_json::Value::Number(number)) => number.as_u64(),
        Some(serde_json::Value::String(text)) => text.parse().ok(),
        _ => None,
    };
    Ok(Granted {
        access_token,
        refresh_token: answer.refresh_token.filter(|token| !token.is_empty()),
        expires_in,
        scope: answer.scope,
    })
}

/// `fields` posted to `endpoint` as mcpgate's client at `provider`.
async fn post(
    http: &reqwest::Client,
    provider: &ProviderConfig,
    endpoint: &url::Url,
    mut fields: Vec<(&str, &str)>,
) -> Result<(http::StatusCode, bytes::Bytes), TokenError> {
    let credentials = authenticate_as(provider, &mut fields);
    post_form_as(
        http,
        endpoint,
        provider.timeout,
        credentials,
        &fields,
        MAX_RESPONSE_BYTES,
    )
    .await
    .map_err(TokenError::Unreachable)
}

/// Revokes `token` at the service (RFC 7009), authenticated as mcpgate's client.
/// Best effort: an error is for the log, the connection is forgotten anyway.
pub(crate) async fn revoke(
    http: &reqwest::Client,
    provider: &ProviderConfig,
    endpoint: &url::Url,
    (token, hint): (&str, &str),
) -> Result<(), TokenError> {
    let fields = vec![("token", token), ("token_type_hint", hint)];
    let (status, _) = post(http, provider, endpoint, fields).await?;
    // RFC 7009 §2.2: 200 whether or not the token was valid.
    if status.is_success() {
        Ok(())
    } else {
        Err(TokenError::Answer(format!(
            "revocation endpoint status {status}"
        )))
    }
}
