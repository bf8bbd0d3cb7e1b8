//! Reading a POST body: within `server.body_read_timeout`, at most
//! `server.max_body_bytes`, and told apart when it is not a valid body at all.

use axum::body::{Body, to_bytes};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::edge::json::json_error;
use crate::gateway::Gateway;

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyRefusal {
    /// Over `server.max_body_bytes` (413).
    TooLarge(usize),
    /// Not complete within `server.body_read_timeout` (408).
    TimedOut(std::time::Duration),
    /// Not a valid HTTP message body, e.g. a bad chunk size or an oversized chunk
    /// extension (400, RFC 9112 §7.1), or cut off by the client.
    Malformed(String),
}

impl BodyRefusal {
    pub fn reason(&self) -> String {
        match self {
            Self::TooLarge(limit) => format!("request body exceeds {limit} bytes"),
            Self::TimedOut(limit) => format!(
                "request body not received within {}",
                humantime::format_duration(*limit)
            ),
            Self::Malformed(detail) => format!("malformed request body: {detail}"),
        }
    }

    pub fn response(&self) -> Response {
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
pub(super) async fn read_body(
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
