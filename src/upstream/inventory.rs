//! The upstream seen from the other side: mcpgate as an MCP client, asking the
//! upstream what it offers (tools, prompts, resources) so that `mcpgate policy` can
//! show what each requires and where the config and the server disagree.
//!
//! One short session: `initialize`, `notifications/initialized`, the lists the
//! server's capabilities advertise (every page), then `DELETE` of the session.
//! Answers may be JSON or an event stream; nothing in them can make this panic or
//! hang: every exchange is bounded in time, bodies in size and lists in pages.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};

use super::{Upstream, UpstreamError};
use crate::config::{ConfigError, UpstreamConfig};

/// An upstream answer, its body still streaming.
type Answer = http::Response<Body>;

/// What an MCP server offers, as listed by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    /// `serverInfo.name` from the `initialize` result.
    pub server_name: Option<String>,
    /// `protocolVersion` from the `initialize` result: the negotiated version.
    pub protocol_version: String,
    /// `tools/list` → `tools[].name`, in server order.
    pub tools: Vec<String>,
    /// `prompts/list` → `prompts[].name`.
    pub prompts: Vec<String>,
    /// `resources/list` → `resources[].uri`.
    pub resources: Vec<String>,
    /// `resources/templates/list` → `resourceTemplates[].uriTemplate`.
    pub resource_templates: Vec<String>,
}

/// Why the upstream could not be listed. Meant for an operator: it names the MCP
/// method and, where there is one, the upstream's own words.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
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
const PROTOCOL_VERSION: &str = "2025-11-25";
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

/// Connects to the configured upstream as an MCP client and lists what it offers.
/// A GraphQL upstream is built with the default `max_scope_combinations`; to list
/// one built from a whole configuration, build it and call [`inventory_of`].
pub async fn fetch_inventory(config: &UpstreamConfig) -> Result<Inventory, InventoryError> {
    // The same upstream the gateway forwards to: its credentials, its transport (a
    // stdio child is started for this one session and stopped after it).
    let upstream = Upstream::from_config(config, crate::config::DEFAULT_MAX_SCOPE_COMBINATIONS)?;
    upstream.check_credentials().await?;
    let inventory = inventory_of(&upstream, config.timeout).await;
    upstream.shutdown().await;
    inventory
}

/// Lists what an upstream already built offers, in one short MCP session (a
/// GraphQL upstream answers in-process). `timeout` bounds each exchange.
pub async fn inventory_of(
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Inventory, InventoryError> {
    let mut client = Client {
        upstream,
        timeout,
        session_id: None,
        protocol_version: None,
        next_id: 1,
    };
    let inventory = client.inventory().await;
    // Also after a failure: the server may hold state for the session.
    client.end_session().await;
    inventory
}

/// One MCP client session against the upstream.
struct Client<'a> {
    upstream: &'a Upstream,
    timeout: Duration,
    session_id: Option<HeaderValue>,
    protocol_version: Option<HeaderValue>,
    next_id: u64,
}

impl Client<'_> {
    async fn inventory(&mut self) -> Result<Inventory, InventoryError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcpgate-policy", "version": env!("CARGO_PKG_VERSION")},
        });
        let init = self.request("initialize", Some(params)).await?;
        let protocol_version = init
            .get("protocolVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| not_mcp("initialize", "the result has no protocolVersion string"))?
            .to_owned();
        let header = HeaderValue::from_str(&protocol_version).map_err(|_| {
            not_mcp(
                "initialize",
                "protocolVersion cannot be sent as an HTTP header",
            )
        })?;
        self.protocol_version = Some(header);
        let server_name = init
            .get("serverInfo")
            .and_then(|info| info.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let capabilities = init
            .get("capabilities")
            .and_then(Value::as_object)
            .ok_or_else(|| not_mcp("initialize", "the result has no capabilities object"))?;
        let offers = |name: &str| capabilities.get(name).is_some_and(|value| !value.is_null());
        let (tools, prompts, resources) = (offers("tools"), offers("prompts"), offers("resources"));

        self.notify("notifications/initialized").await?;

        let mut inventory = Inventory {
            server_name,
            protocol_version,
            ..Inventory::default()
        };
        if tools {
            inventory.tools = self.list("tools/list", "tools", "name").await?;
        }
        if prompts {
            inventory.prompts = self.list("prompts/list", "prompts", "name").await?;
        }
        if resources {
            inventory.resources = self.list("resources/list", "resources", "uri").await?;
            inventory.resource_templates = self
                .list(
                    "resources/templates/list",
                    "resourceTemplates",
                    "uriTemplate",
                )
                .await?;
        }
        Ok(inventory)
    }

    /// Every page of a list: `result[key][].field`, in server order.
    async fn list(
        &mut self,
        method: &str,
        key: &str,
        field: &str,
    ) -> Result<Vec<String>, InventoryError> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map(|cursor| json!({ "cursor": cursor }));
            let result = self.request(method, params).await?;
            let items = result
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| not_mcp(method, format!("the result has no {key} array")))?;
            for (index, item) in items.iter().enumerate() {
                let name = item.get(field).and_then(Value::as_str).ok_or_else(|| {
                    not_mcp(method, format!("{key}[{index}].{field} is not a string"))
                })?;
                names.push(name.to_owned());
            }
            match result.get("nextCursor") {
                // An empty cursor ends the list too, as it does for JavaScript clients.
                None | Some(Value::Null) => return Ok(names),
                Some(Value::String(next)) if next.is_empty() => return Ok(names),
                Some(Value::String(next)) => cursor = Some(next.clone()),
                Some(_) => return Err(not_mcp(method, "nextCursor is not a string")),
            }
        }
        Err(InventoryError::TooManyPages {
            method: method.to_owned(),
            pages: MAX_PAGES,
        })
    }

    /// Sends one request and returns its `result`.
    async fn request(
        &mut self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, InventoryError> {
        let id = self.next_id;
        self.next_id += 1;
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
                Err(InventoryError::Timeout {
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
    ) -> Result<Value, InventoryError> {
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
    async fn notify(&mut self, method: &str) -> Result<(), InventoryError> {
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
                Err(InventoryError::Timeout {
                    method: method.to_owned(),
                    timeout,
                })
            })
    }

    /// Ends the session, if the server started one. Failures do not matter: the
    /// server would expire it anyway.
    async fn end_session(&self) {
        if self.session_id.is_some() {
            let _ = tokio::time::timeout(self.timeout, self.send(Method::DELETE, None)).await;
        }
    }

    async fn send(&self, method: Method, body: Option<&Value>) -> Result<Answer, InventoryError> {
        let mut headers = HeaderMap::new();
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
                    InventoryError::Unreachable(error.detail())
                }
                UpstreamError::Credentials(detail) => {
                    ConfigError::invalid("upstream.oauth.token_url", detail).into()
                }
            })
    }
}

fn not_mcp(method: &str, reason: impl Into<String>) -> InventoryError {
    InventoryError::NotMcp {
        method: method.to_owned(),
        reason: reason.into(),
    }
}

async fn next_chunk(response: &mut Answer, method: &str) -> Result<Option<Bytes>, InventoryError> {
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
                return Err(InventoryError::Unreachable(format!(
                    "connection failed while reading the answer to {method}: {}",
                    crate::error_chain(&error)
                )));
            }
        }
    }
}

fn too_large(method: &str) -> InventoryError {
    InventoryError::TooLarge {
        method: method.to_owned(),
        limit: MAX_BODY_BYTES,
    }
}

/// The whole body, refused past [`MAX_BODY_BYTES`].
async fn read_capped(mut response: Answer, method: &str) -> Result<Vec<u8>, InventoryError> {
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
async fn status_error(method: &str, mut response: Answer) -> InventoryError {
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
    InventoryError::Status {
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
) -> Result<Value, InventoryError> {
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

/// A response's `result`, or its `error` as an [`InventoryError`].
fn outcome(method: &str, mut response: Map<String, Value>) -> Result<Value, InventoryError> {
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
        return Err(InventoryError::JsonRpc {
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
        assert!(matches!(
            error,
            InventoryError::JsonRpc { code: -32700, .. }
        ));
        let bad = outcome(
            "x",
            take_response(json!({"id": 3, "result": []}), 3).unwrap(),
        );
        assert!(matches!(bad, Err(InventoryError::NotMcp { .. })));
    }
}
