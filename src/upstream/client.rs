//! mcpgate as an MCP client of an upstream it has built: one session
//! (`initialize`, `notifications/initialized`, requests, `DELETE`), over the
//! upstream's own transport (HTTP, a stdio child, the in-process GraphQL server).
//! Answers may be JSON or an event stream; nothing in them can make this panic or
//! hang: every exchange is bounded in time, bodies in size and lists in pages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};

use super::{Upstream, UpstreamError};
use crate::config::ConfigError;

/// An upstream answer, its body still streaming.
type Answer = http::Response<Body>;

/// Why an exchange with the upstream failed. Meant for an operator: it names the
/// MCP method and, where there is one, the upstream's own words.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The upstream section cannot be used (a header that is not a valid HTTP header).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The upstream could not be reached, or the connection broke; the cause on one line.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No answer within the upstream's request timeout.
    #[error("upstream did not answer {method} within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The MCP method asked (`initialize`, `tools/list`, …).
        method: String,
        /// How long mcpgate waited.
        timeout: Duration,
    },
    /// A non-success HTTP status.
    #[error("upstream answered {method} with HTTP {status}{}", excerpt_suffix(.body))]
    Status {
        /// The MCP method asked.
        method: String,
        /// The status the upstream answered with.
        status: StatusCode,
        /// The start of the response body, on one line (may be empty).
        body: String,
    },
    /// An answer that is not a JSON-RPC response of the expected shape.
    #[error("upstream's answer to {method} is not an MCP answer: {reason}")]
    NotMcp {
        /// The MCP method asked.
        method: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// A JSON-RPC error response.
    #[error("upstream returned JSON-RPC error {code} for {method}: {message}")]
    JsonRpc {
        /// The MCP method asked.
        method: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The upstream's `error.message`.
        message: String,
    },
    /// An answer larger than mcpgate reads.
    #[error("upstream's answer to {method} exceeds {limit} bytes")]
    TooLarge {
        /// The MCP method asked.
        method: String,
        /// The most bytes read, in one answer.
        limit: usize,
    },
    /// One failure met by several requests at once (a session they all waited
    /// for): each is told the same.
    #[error("{0}")]
    Shared(std::sync::Arc<ClientError>),
    /// Pagination that does not end: a `nextCursor` still present after `pages` pages.
    #[error(
        "upstream's {method} still had a next page after {pages} pages (a looping nextCursor?)"
    )]
    TooManyPages {
        /// The list method being paged.
        method: String,
        /// How many pages were read before giving up.
        pages: usize,
    },
}

fn excerpt_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// The protocol version mcpgate asks for; the server may answer with another.
pub(crate) const PROTOCOL_VERSION: &str = "2025-11-25";
/// Most pages read from one list: a server that keeps returning a cursor cannot
/// keep us forever.
const MAX_PAGES: usize = 1000;
/// Largest response body (JSON or the event stream up to the response) read.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error response's body is read, and how much of it is shown.
const ERROR_BODY_BYTES: usize = 4096;
const EXCERPT_CHARS: usize = 200;

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Request ids, unique in this process: a session may be shared by concurrent
/// requests, and a server may not tell two requests with one id apart.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a session is, once opened: enough to go on with it in a later request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The server's `Mcp-Session-Id`; `None` when it keeps no sessions.
    pub(crate) id: Option<HeaderValue>,
    /// The negotiated protocol version, sent as `MCP-Protocol-Version`.
    pub(crate) protocol_version: HeaderValue,
}

/// One MCP client session against the upstream.
pub(crate) struct Client<'a> {
    upstream: &'a Upstream,
    timeout: Duration,
    session_id: Option<HeaderValue>,
    protocol_version: Option<HeaderValue>,
    /// mcpgate's own headers for every exchange (request id, trace context).
    own_headers: HeaderMap,
}

impl<'a> Client<'a> {
    /// A client with no session yet: [`Self::initialize`] opens one.
    pub(crate) fn new(upstream: &'a Upstream, timeout: Duration) -> Self {
        Self {
            upstream,
            timeout,
            session_id: None,
            protocol_version: None,
            own_headers: HeaderMap::new(),
        }
    }

    /// A client going on with a session opened earlier.
    pub(crate) fn resume(upstream: &'a Upstream, timeout: Duration, session: &Session) -> Self {
        Self {
            upstream,
            timeout,
            session_id: session.id.clone(),
            protocol_version: Some(session.protocol_version.clone()),
            own_headers: HeaderMap::new(),
        }
    }

    /// Adds `headers` to every exchange (a request's id and trace context).
    #[must_use]
    pub(crate) fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.own_headers = headers;
        self
    }

    /// `initialize` and `notifications/initialized`: the `initialize` result.
    pub(crate) async fn initialize(&mut self, client_name: &str) -> Result<Value, ClientError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": client_name, "version": env!("CARGO_PKG_VERSION")},
        });
        let init = self.request("initialize", Some(params)).await?;
        let protocol_version = init
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| not_mcp("initialize", "the result has no protocolVersion string"))?;
        let header = HeaderValue::from_str(protocol_version).map_err(|_| {
            not_mcp(
                "initialize",
                "protocolVersion cannot be sent as an HTTP header",
            )
        })?;
        self.protocol_version = Some(header);
        self.notify("notifications/initialized").await?;
        Ok(init)
    }

    /// The session, once [`Self::initialize`] opened it.
    pub(crate) fn session(&self) -> Option<Session> {
        Some(Session {
            id: self.session_id.clone(),
            protocol_version: self.protocol_version.clone()?,
        })
    }

    /// Every item of every page of a list (`result[key]`), in server order.
    pub(crate) async fn list_all(
        &mut self,
        method: &str,
        key: &str,
    ) -> Result<Vec<Value>, ClientError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map(|cursor| json!({ "cursor": cursor }));
            let mut result = self.request(method, params).await?;
            match result.get_mut(key).map(Value::take) {
                Some(Value::Array(items)) => all.extend(items),
                _ => return Err(not_mcp(method, format!("the result has no {key} array"))),
            }
            match result.get("nextCursor") {
                // An empty cursor ends the list too, as it does for JavaScript clients.
                None | Some(Value::Null) => return Ok(all),
                Some(Value::String(next)) if next.is_empty() => return Ok(all),
                Some(Value::String(next)) => cursor = Some(next.clone()),
                Some(_) => return Err(not_mcp(method, "nextCursor is not a string")),
            }
        }
        Err(ClientError::TooManyPages {
            method: method.to_owned(),
            pages: MAX_PAGES,
        })
    }

    /// Sends one request and returns its `result`.
    pub(crate) async fn request(
        &mut self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, ClientError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut message = Map::new();
        message.insert("jsonrpc".to_owned(), Value::from("2.0"));
        message.insert("id".to_owned(), Value::from(id));
        message.insert("method".to_owned(), Value::from(method));
        if let Some(params) = params {
            message.insert("params".to_owned(), params);
        }
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(method, id, &Value::Object(message)))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    method: method.to_owned(),
                    timeout,
                })
            })
    }

    async fn exchange(
        &mut self,
        method: &str,
        id: u64,
        message: &Value,
    ) -> Result<Value, ClientError> {
        let response = self.send(Method::POST, Some(message)).await?;
        if method == "initialize" {
            // Kept even if the answer turns out to be an error, so the session is ended.
            self.session_id = response.headers().get(SESSION_ID).cloned();
        }
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(method, response).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let media_type = content_type.as_deref().map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match media_type.as_deref() {
            Some("text/event-stream") => read_event_stream(response, method, id).await,
            Some("application/json") => {
                let body = read_capped(response, method).await?;
                let message = crate::json::from_slice(&body)
                    .map_err(|error| not_mcp(method, format!("the body is not JSON: {error}")))?;
                let response = take_response(message, id)
                    .ok_or_else(|| not_mcp(method, format!("no JSON-RPC response with id {id}")))?;
                outcome(method, response)
            }
            _ => Err(not_mcp(
                method,
                format!(
                    "HTTP {status} with Content-Type {}, neither application/json nor text/event-stream",
                    content_type.as_deref().unwrap_or("(none)")
                ),
            )),
        }
    }

    /// Sends one notification; the server acknowledges it with 202 (or 200).
    async fn notify(&mut self, method: &str) -> Result<(), ClientError> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        let timeout = self.timeout;
        let exchange = async {
            let response = self.send(Method::POST, Some(&message)).await?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(status_error(method, response).await)
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    method: method.to_owned(),
                    timeout,
                })
            })
    }

    /// Ends the session, if the server started one. Failures do not matter: the
    /// server would expire it anyway.
    pub(crate) async fn end_session(&self) {
        if self.session_id.is_some() {
            let _ = tokio::time::timeout(self.timeout, self.send(Method::DELETE, None)).await;
        }
    }

    async fn send(&self, method: Method, body: Option<&Value>) -> Result<Answer, ClientError> {
        let mut headers = self.own_headers.clone();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("mcpgate/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(session_id) = &self.session_id {
            headers.insert(SESSION_ID, session_id.clone());
        }
        if let Some(version) = &self.protocol_version {
            headers.insert(PROTOCOL_VERSION_HEADER, version.clone());
        }
        let body = match body {
            Some(body) => {
                headers.insert(
                    ACCEPT,
                    HeaderValue::from_static("application/json, text/event-stream"),
                );
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        self.upstream
            .forward(method, &HeaderMap::new(), headers, body)
            .await
            .map_err(|error| match error {
                UpstreamError::Timeout(_) | UpstreamError::Unreachable(_) => {
                    ClientError::Unreachable(error.detail())
                }
                UpstreamError::Credentials(detail) => {
                    ConfigError::invalid("upstream.oauth.token_url", detail).into()
                }
            })
    }
}

fn not_mcp(method: &str, reason: impl Into<String>) -> ClientError {
    ClientError::NotMcp {
        method: method.to_owned(),
        reason: reason.into(),
    }
}

async fn next_chunk(response: &mut Answer, method: &str) -> Result<Option<Bytes>, ClientError> {
    loop {
        match response.body_mut().frame().await {
            None => return Ok(None),
            Some(Ok(frame)) => {
                // Trailers carry nothing an MCP answer needs.
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
            Some(Err(error)) => {
                return Err(ClientError::Unreachable(format!(
                    "connection failed while reading the answer to {method}: {}",
                    crate::error_chain(&error)
                )));
            }
        }
    }
}

fn too_large(method: &str) -> ClientError {
    ClientError::TooLarge {
        method: method.to_owned(),
        limit: MAX_BODY_BYTES,
    }
}

/// The whole body, refused past [`MAX_BODY_BYTES`].
async fn read_capped(mut response: Answer, method: &str) -> Result<Vec<u8>, ClientError> {
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large(method));
    }
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(&mut response, method).await? {
        if body.len().saturating_add(chunk.len()) > MAX_BODY_BYTES {
            return Err(too_large(method));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A non-2xx answer, with the start of its body on one line.
async fn status_error(method: &str, mut response: Answer) -> ClientError {
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match next_chunk(&mut response, method).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let words: Vec<&str> = text.split_whitespace().collect();
    let line: String = words
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let mut excerpt: String = line.chars().take(EXCERPT_CHARS).collect();
    if excerpt.len() < line.len() {
        excerpt.push('…');
    }
    ClientError::Status {
        method: method.to_owned(),
        status,
        body: excerpt,
    }
}

/// Reads events until the response to request `id` arrives; notifications, server
/// requests and other events before it are skipped. The stream is not read further.
async fn read_event_stream(
    mut response: Answer,
    method: &str,
    id: u64,
) -> Result<Value, ClientError> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut total = 0usize;
    loop {
        let chunk = next_chunk(&mut response, method).await?;
        let ended = match chunk {
            Some(chunk) => {
                total = total.saturating_add(chunk.len());
                if total > MAX_BODY_BYTES {
                    return Err(too_large(method));
                }
                parser.feed(&chunk, &mut events);
                false
            }
            None => {
                parser.finish(&mut events);
                true
            }
        };
        for data in events.drain(..) {
            // A priming event (an id and an empty data field) carries no message.
            if data.trim().is_empty() {
                continue;
            }
            let message = crate::json::from_slice(data.as_bytes()).map_err(|error| {
                not_mcp(method, format!("an event's data is not JSON: {error}"))
            })?;
            if let Some(response) = take_response(message, id) {
                return outcome(method, response);
            }
        }
        if ended {
            return Err(not_mcp(
                method,
                format!("the event stream ended without a response to request {id}"),
            ));
        }
    }
}

/// The response to request `id` in `message` (one JSON-RPC message or a batch). An
/// error response with a null id is taken as ours: the server could not read the id.
fn take_response(message: Value, id: u64) -> Option<Map<String, Value>> {
    let is_ours = |object: &Map<String, Value>| {
        if object.contains_key("method") {
            return false; // a request or notification from the server
        }
        match object.get("id") {
            Some(Value::Null) => object.contains_key("error"),
            Some(other) => other.as_u64() == Some(id),
            None => false,
        }
    };
    match message {
        Value::Object(object) if is_ours(&object) => Some(object),
        Value::Array(items) => items.into_iter().find_map(|item| match item {
            Value::Object(object) if is_ours(&object) => Some(object),
            _ => None,
        }),
        _ => None,
    }
}

/// A response's `result`, or its `error` as an [`ClientError`].
fn outcome(method: &str, mut response: Map<String, Value>) -> Result<Value, ClientError> {
    if let Some(error) = response.get("error") {
        let code = error
            .get("code")
            .and_then(Value::as_i64)
            .ok_or_else(|| not_mcp(method, "a JSON-RPC error without an integer code"))?;
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_owned();
        return Err(ClientError::JsonRpc {
            method: method.to_owned(),
            code,
            message,
        });
    }
    match response.remove("result") {
        Some(result @ Value::Object(_)) => Ok(result),
        Some(_) => Err(not_mcp(method, "the result is not an object")),
        None => Err(not_mcp(
            method,
            "a JSON-RPC response with neither result nor error",
        )),
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Splits a `text/event-stream` into the data of its events (WHATWG rules: lines end
/// with CRLF, LF or CR; `data` lines are joined with LF; only events of type
/// `message`, named or not, carry MCP messages).
#[derive(Default)]
struct SseParser {
    /// Bytes of a line not yet complete.
    pending: Vec<u8>,
    /// The stream's first bytes were checked for a BOM.
    started: bool,
    /// The last line ended with CR: an LF right after it is the same line ending.
    after_cr: bool,
    data: String,
    event: String,
}

impl SseParser {
    fn feed(&mut self, chunk: &[u8], events: &mut Vec<String>) {
        self.pending.extend_from_slice(chunk);
        if !self.started {
            if self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) {
                return; // a BOM may arrive split
            }
            if self.pending.starts_with(BOM) {
                self.pending.drain(..BOM.len());
            }
            self.started = true;
        }
        let buffer = std::mem::take(&mut self.pending);
        let mut rest: &[u8] = &buffer;
        loop {
            if self.after_cr {
                match rest.split_first() {
                    Some((b'\n', tail)) => {
                        rest = tail;
                        self.after_cr = false;
                    }
                    Some(_) => self.after_cr = false,
                    None => break,
                }
            }
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                break;
            };
            let (line, tail) = rest.split_at(end);
            if let Some((&terminator, tail)) = tail.split_first() {
                self.after_cr = terminator == b'\r';
                rest = tail;
            } else {
                rest = tail;
            }
            self.line(line, events);
        }
        self.pending = rest.to_vec();
    }

    /// End of stream: an event left without its closing blank line is still looked at.
    fn finish(&mut self, events: &mut Vec<String>) {
        self.started = true;
        let line = std::mem::take(&mut self.pending);
        if !line.is_empty() {
            self.line(&line, events);
        }
        self.dispatch(events);
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<String>) {
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return, // a comment
            Some(colon) => {
                let (field, value) = line.split_at(colon);
                let value = value.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            _ => {} // id, retry and unknown fields
        }
    }

    fn dispatch(&mut self, events: &mut Vec<String>) {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        if data.ends_with('\n') {
            data.pop();
        }
        if event.is_empty() || event == "message" {
            events.push(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut events);
        }
        parser.finish(&mut events);
        events
    }

    #[test]
    fn splits_events_on_any_line_ending_across_chunks() {
        let stream: &[u8] = b"\xEF\xBB\xBF: comment\r\ndata: a\r\ndata:b\r\n\r\nevent: other\ndata: skip\n\ndata: c\r\rdata\n\n";
        let whole = parse(&[stream]);
        assert_eq!(whole, ["a\nb", "c", ""]);
        // Every split point, including between a CR and its LF and inside the BOM.
        for at in 0..=stream.len() {
            let (head, tail) = stream.split_at(at);
            assert_eq!(parse(&[head, tail]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes), whole);
    }

    #[test]
    fn an_unterminated_last_event_is_still_seen() {
        assert_eq!(parse(&[b"data: {\"x\":1}"]), ["{\"x\":1}"]);
        assert_eq!(parse(&[b"data: x\r"]), ["x"]);
    }

    #[test]
    fn picks_the_response_to_the_request() {
        let message = json!([
            {"jsonrpc": "2.0", "method": "ping", "id": 3},
            {"jsonrpc": "2.0", "id": 2, "result": {"a": 1}},
            {"jsonrpc": "2.0", "id": 3, "result": {"b": 1}},
        ]);
        let response = take_response(message, 3).unwrap();
        assert_eq!(outcome("x", response).unwrap(), json!({"b": 1}));
        assert!(take_response(json!({"id": "3", "result": {}}), 3).is_none());
        let error = json!({"id": null, "error": {"code": -32700, "message": "Parse error"}});
        let error = outcome("x", take_response(error, 3).unwrap()).unwrap_err();
        assert!(matches!(error, ClientError::JsonRpc { code: -32700, .. }));
        let bad = outcome(
            "x",
            take_response(json!({"id": 3, "result": []}), 3).unwrap(),
        );
        assert!(matches!(bad, Err(ClientError::NotMcp { .. })));
    }
}
