//! The MCP endpoint: authenticate, authorize, then proxy. Every HTTP method is
//! authenticated (POST, GET for the SSE stream, DELETE).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use super::AppState;
use super::challenge::ChallengeParams;
use crate::auth::bearer::{self, Credential};
use crate::auth::{AuthError, Principal};
use crate::gateway::Gateway;
use crate::policy::Denial;
use crate::upstream::UpstreamError;

pub async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let gateway = state.gateway.load_full();
    let (parts, body) = request.into_parts();
    // The principal is not used further yet; per-message policy and audit take it next.
    let _principal = match check_access(&gateway, &parts.headers, parts.uri.query()).await {
        Ok(principal) => principal,
        Err(refusal) => return refusal.into_response(&gateway.challenge),
    };
    if !matches!(parts.method, Method::POST | Method::GET | Method::DELETE) {
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        return response;
    }
    let body = match read_body(&gateway, &parts.headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    match gateway
        .upstream
        .forward(parts.method, &parts.headers, body.clone())
        .await
    {
        Ok(response) => response,
        Err(error) => upstream_failure(&error, &body),
    }
}

/// Why a request does not reach the upstream.
enum Refusal {
    Auth(AuthError),
    Scope(Denial),
}

impl Refusal {
    fn into_response(self, challenge: &ChallengeParams) -> Response {
        match self {
            Self::Auth(error) => challenge.auth_failure(&error),
            Self::Scope(denial) => challenge.insufficient_scope(&denial),
        }
    }
}

/// Authentication and the every-request scope check. `Ok(None)` when OAuth is off.
async fn check_access(
    gateway: &Gateway,
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Result<Option<Arc<Principal>>, Refusal> {
    let Some(auth) = &gateway.auth else {
        return Ok(None);
    };
    let credential = bearer::extract(headers, query).map_err(Refusal::Auth)?;
    let Credential::Bearer(token) = credential else {
        return Err(Refusal::Auth(AuthError::Missing));
    };
    let principal = auth.authenticate(token).await.map_err(|error| {
        tracing::info!(reason = error.reason(), "request refused: {error}");
        Refusal::Auth(error)
    })?;
    gateway
        .policy
        .authorize_request(&principal, gateway.challenge.echo_token_scopes)
        .map_err(|denial| {
            tracing::info!(
                subject = principal.subject.as_deref().unwrap_or("-"),
                "request refused: {}",
                denial.description
            );
            Refusal::Scope(denial)
        })?;
    Ok(Some(principal))
}

/// Reads the body, refusing one over `server.max_body_bytes` with 413 (from
/// `Content-Length` before reading, or while reading a chunked body).
async fn read_body(
    gateway: &Gateway,
    headers: &http::HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let limit = gateway.config.server.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            &format!("request body exceeds {limit} bytes"),
        )
    };
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    to_bytes(body, limit).await.map_err(|_| too_large())
}

/// 502 or 504, as a JSON-RPC error when the request had an id (so the client can tie
/// it to its call), else as a plain JSON error.
fn upstream_failure(error: &UpstreamError, request_body: &Bytes) -> Response {
    let status = match error {
        UpstreamError::Unreachable(_) => StatusCode::BAD_GATEWAY,
        UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
    };
    tracing::warn!(status = status.as_u16(), "{}", error.detail());
    let message = error.to_string();
    let id = serde_json::from_slice::<Value>(request_body)
        .ok()
        .and_then(|message| message.get("id").cloned())
        .filter(|id| !id.is_null());
    let body = match id {
        Some(id) => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32000, "message": message},
        }),
        None => json!({"error": "upstream_error", "error_description": message}),
    };
    json_response(status, &body)
}

pub(crate) fn json_error(status: StatusCode, code: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
