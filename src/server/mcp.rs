//! The MCP endpoint: authenticate, authorize, then proxy. Every HTTP method is
//! authenticated (POST, GET for the SSE stream, DELETE).

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};

use super::AppState;
use super::observe::Observation;
use super::origin;
use super::session::{self, Route};
use crate::auth::bearer::{self, Credential};
use crate::auth::{AuthError, Principal};
use crate::gateway::Gateway;
use crate::mcp::filter::ListFilter;
use crate::mcp::headers as mcp_headers;
use crate::mcp::session::SESSION_HEADER;
use crate::mcp::{envelope, sse};
use crate::policy::{Matched, Target};
use crate::telemetry::metrics::metrics;
use crate::upstream::UpstreamError;

/// Largest upstream list answer (or SSE event) held in memory to be filtered.
const MAX_FILTERED_BYTES: usize = 32 * 1024 * 1024;

pub async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let gateway = state.gateway.load_full();
    let (parts, body) = request.into_parts();
    let mut observation = Observation::start(&state, &parts.method, &parts.headers);
    let response = respond(&state, gateway, &mut observation, parts, body).await;
    observation.finish(&state, response).await
}

async fn respond(
    state: &AppState,
    gateway: Arc<Gateway>,
    observation: &mut Observation,
    parts: http::request::Parts,
    body: Body,
) -> Response {
    if let Err(refusal) = origin::check(&gateway.allowed_origins, &parts.headers) {
        observation.refused(refusal.reason());
        return refusal.response();
    }
    let principal =
        match authenticate(&gateway, &parts.headers, parts.uri.query(), observation).await {
            Ok(principal) => principal,
            Err(error) => {
                observation.auth_failed(&error);
                return gateway.challenge.auth_failure(&error);
            }
        };
    if !matches!(parts.method, Method::POST | Method::GET | Method::DELETE) {
        observation.refused("method not allowed");
        let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        return response;
    }
    // Which `rules:` apply to the caller: decided once, for the request and its lists.
    let matched = match &principal {
        Some(principal) => {
            let rules = gateway.policy.principal_rules();
            let matched = rules.matching(principal);
            observation.rules_matched(rules.names(&matched));
            matched
        }
        None => Matched::default(),
    };
    let route = match session::route(&state.sessions, &parts.headers, principal.as_deref()).await {
        Ok(route) => route,
        Err(refusal) => {
            tracing::info!("request refused: {}", refusal.reason());
            observation.refused(refusal.reason());
            return refusal.response();
        }
    };
    let response = match parts.method {
        Method::POST => {
            post(
                &gateway,
                principal.as_ref(),
                &matched,
                &route,
                &parts.headers,
                body,
                observation,
            )
            .await
        }
        _ => {
            // A stream or a session end carries no message: the every-request level.
            if let Some(refusal) = refusal(
                &gateway,
                principal.as_deref(),
                &[Target::CONNECTION],
                observation,
            ) {
                return refusal;
            }
            let filter = principal
                .as_ref()
                .filter(|_| parts.method == Method::GET)
                .and_then(|principal| ListFilter::for_stream(&gateway, principal, &matched));
            match forward(
                &gateway,
                parts.method.clone(),
                &parts.headers,
                &route,
                Bytes::new(),
                observation,
            )
            .await
            {
                Ok(response) => match filter {
                    Some(filter) => filtered(response, filter).await,
                    None => response,
                },
                Err(error) => return upstream_failure(&error, None),
            }
        }
    };
    session::settle(
        &state.sessions,
        &route,
        &parts.method,
        principal.as_deref(),
        response,
    )
    .await
}

/// A POST: the body is read, checked and authorized as a whole before anything
/// reaches the upstream, so one challenge can name everything the request lacks.
async fn post(
    gateway: &Arc<Gateway>,
    principal: Option<&Arc<Principal>>,
    matched: &Matched,
    route: &Route,
    headers: &http::HeaderMap,
    body: Body,
    observation: &mut Observation,
) -> Response {
    if let Err(problem) = mcp_headers::check_media(headers) {
        let description = problem.to_string();
        observation.refused(description.clone());
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &description,
        );
    }
    let body = match read_body(gateway, headers, body).await {
        Ok(body) => body,
        Err(refusal) => {
            tracing::info!("request refused: {}", refusal.reason());
            observation.refused(refusal.reason());
            return refusal.response();
        }
    };
    let envelope = match envelope::parse(&body, mcp_headers::protocol_version(headers))
        .and_then(|envelope| mcp_headers::check_mirrored(headers, &envelope).map(|()| envelope))
    {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::info!(code = error.code, "request refused: {error}");
            observation.refused(error.to_string());
            return json_response(StatusCode::BAD_REQUEST, &error.to_response());
        }
    };
    observation.messages(&envelope);
    if let Some(refusal) = refusal(
        gateway,
        principal.map(|principal| &**principal),
        &envelope.targets(),
        observation,
    ) {
        return refusal;
    }
    if let Some(refusal) = super::graphql::refusal(
        gateway,
        principal.map(|principal| &**principal),
        &envelope,
        observation,
    ) {
        return refusal;
    }
    // After every scope check: a request short of scopes gets the step-up challenge,
    // which a rule denial would hide.
    if let Some(refusal) = rule_refusal(gateway, matched, &envelope, observation) {
        return refusal;
    }
    let filter = principal
        .and_then(|principal| ListFilter::for_request(gateway, principal, matched, &envelope));
    let forwarded = Bytes::from(envelope.to_bytes());
    match forward(
        gateway,
        Method::POST,
        headers,
        route,
        forwarded,
        observation,
    )
    .await
    {
        Ok(response) => match filter {
            Some(filter) => filtered(response, filter).await,
            None => response,
        },
        Err(error) => upstream_failure(&error, envelope.reply_id()),
    }
}

/// Sends the request upstream, timing the wait for its response head.
async fn forward(
    gateway: &Gateway,
    method: Method,
    headers: &http::HeaderMap,
    route: &Route,
    body: Bytes,
    observation: &mut Observation,
) -> Result<Response, UpstreamError> {
    let mut own_headers = observation.upstream_headers();
    if let Some(value) = route
        .upstream_id()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        own_headers.insert(SESSION_HEADER, value);
    }
    let sent = Instant::now();
    let result = gateway
        .upstream
        .forward(method, headers, own_headers, body)
        .await;
    observation.forwarded(sent.elapsed());
    result
}

/// Authentication. `Ok(None)` when no credential source is configured.
async fn authenticate(
    gateway: &Gateway,
    headers: &http::HeaderMap,
    query: Option<&str>,
    observation: &mut Observation,
) -> Result<Option<Arc<Principal>>, AuthError> {
    let Some(auth) = &gateway.auth else {
        observation.auth_disabled();
        return Ok(None);
    };
    let credential = bearer::extract(headers, query)?;
    let Credential::Bearer(token) = credential else {
        return Err(AuthError::Missing);
    };
    let digest = crate::auth::cache::digest(token);
    observation.token(&digest);
    let principal = auth
        .authenticate(token, digest)
        .await
        .inspect_err(|error| {
            tracing::info!(reason = error.reason(), "request refused: {error}");
        })?;
    observation.authenticated(&principal);
    Ok(Some(principal))
}

/// The scope decision for these messages: `Some` 403 with one challenge when refused.
fn refusal(
    gateway: &Gateway,
    principal: Option<&Principal>,
    targets: &[Target<'_>],
    observation: &mut Observation,
) -> Option<Response> {
    let principal = principal?;
    let denial = gateway
        .policy
        .authorize(
            &principal.scopes,
            targets,
            gateway.challenge.echo_token_scopes,
        )
        .err()?;
    tracing::info!(
        subject = principal.subject.as_deref().unwrap_or("-"),
        "request refused: {}",
        denial.description
    );
    observation.refused(denial.description.clone());
    Some(gateway.challenge.insufficient_scope(&denial))
}

/// The `rules:` decision for these messages: `Some` 403 naming the rule when one of
/// them takes an item the request uses.
fn rule_refusal(
    gateway: &Gateway,
    matched: &Matched,
    envelope: &envelope::Envelope,
    observation: &mut Observation,
) -> Option<Response> {
    let items = envelope
        .messages
        .iter()
        .filter_map(|message| message.target().item);
    let denial = gateway
        .policy
        .principal_rules()
        .check_all(matched, items)
        .err()?;
    tracing::info!(rule = %denial.rule, "request refused: {}", denial.description);
    observation.denied_by_rule(&denial);
    Some(gateway.challenge.rule_denied(&denial, envelope.reply_id()))
}

/// Cuts list answers to what the caller may use: SSE event by event, JSON whole.
async fn filtered(response: Response, filter: ListFilter) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if content_type.starts_with("text/event-stream") {
        let stream = sse::edit_events(body.into_data_stream(), filter, MAX_FILTERED_BYTES);
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    if !content_type.starts_with("application/json") {
        return Response::from_parts(parts, body);
    }
    let mut filter = filter;
    match to_bytes(body, MAX_FILTERED_BYTES).await {
        Ok(bytes) => {
            let body = match filter.filter_document(&bytes) {
                Some(edited) => Body::from(edited),
                None => Body::from(bytes),
            };
            Response::from_parts(parts, body)
        }
        Err(error) => {
            tracing::warn!("upstream list answer not filtered: {error}");
            json_error(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the upstream's answer could not be read in full",
            )
        }
    }
}

/// Why a request body was not read.
#[derive(Debug)]
enum BodyRefusal {
    /// Over `server.max_body_bytes` (413).
    TooLarge(usize),
    /// Not complete within `server.body_read_timeout` (408).
    TimedOut(std::time::Duration),
    /// Not a valid HTTP message body, e.g. a bad chunk size or an oversized chunk
    /// extension (400, RFC 9112 §7.1), or cut off by the client.
    Malformed(String),
}

impl BodyRefusal {
    fn reason(&self) -> String {
        match self {
            Self::TooLarge(limit) => format!("request body exceeds {limit} bytes"),
            Self::TimedOut(limit) => format!(
                "request body not received within {}",
                humantime::format_duration(*limit)
            ),
            Self::Malformed(detail) => format!("malformed request body: {detail}"),
        }
    }

    fn response(&self) -> Response {
        let (status, code) = match self {
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
            Self::TimedOut(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Malformed(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        };
        let mut response = json_error(status, code, &self.reason());
        // What is left of the body cannot be found (bad framing) or waited for:
        // the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Reads the body within `server.body_read_timeout`, refusing one over
/// `server.max_body_bytes` (from `Content-Length` before reading, or while reading
/// a chunked body) apart from one that is not a valid body at all.
async fn read_body(
    gateway: &Gateway,
    headers: &http::HeaderMap,
    body: Body,
) -> Result<Bytes, BodyRefusal> {
    let server = &gateway.config.server;
    let limit = server.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyRefusal::TooLarge(limit));
    }
    match tokio::time::timeout(server.body_read_timeout, to_bytes(body, limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error)) if over_limit(&error) => Err(BodyRefusal::TooLarge(limit)),
        Ok(Err(error)) => Err(BodyRefusal::Malformed(
            crate::char_prefix(&innermost(&error), 200).to_owned(),
        )),
        Err(_) => Err(BodyRefusal::TimedOut(server.body_read_timeout)),
    }
}

/// The body went past the limit (as opposed to failing to decode).
fn over_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The most precise message in an error's chain (hyper's own: "invalid chunk size").
fn innermost(error: &axum::Error) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// 502 or 504, as a JSON-RPC error when the request had an id (so the client can tie
/// it to its call), else as a plain JSON error.
fn upstream_failure(error: &UpstreamError, id: Option<&Value>) -> Response {
    let status = match error {
        UpstreamError::Unreachable(_) | UpstreamError::Credentials(_) => StatusCode::BAD_GATEWAY,
        UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
    };
    tracing::warn!(status = status.as_u16(), "{}", error.detail());
    metrics().upstream_error(match error {
        UpstreamError::Unreachable(_) => "unreachable",
        UpstreamError::Timeout(_) => "timeout",
        UpstreamError::Credentials(_) => "credentials",
    });
    let message = error.to_string();
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

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
