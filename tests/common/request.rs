//! One HTTP request to a test gateway, said the way a test thinks of it:
//! `Request::post(&gateway).token("mcp:connect").json(&tools_call(7, "echo")).send().await`.
//!
//! Every request asks for JSON or SSE (`accept`), as an MCP client does; one with a
//! body says it is JSON unless the test sets another `content-type`.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Gateway, claims, hs256};

pub struct Request {
    method: Method,
    url: String,
    audience: String,
    headers: Vec<(String, String)>,
    body: Option<reqwest::Body>,
    timeout: Option<std::time::Duration>,
}

impl Request {
    /// `method` to the gateway's MCP endpoint.
    pub fn new(method: Method, gateway: &Gateway) -> Self {
        Self::to(method, &gateway.mcp)
    }

    /// `method` to any `url`; tokens minted by [`Self::token`] name it as audience.
    pub fn to(method: Method, url: &str) -> Self {
        Self {
            method,
            url: url.to_owned(),
            audience: url.to_owned(),
            headers: vec![(
                "accept".to_owned(),
                "application/json, text/event-stream".to_owned(),
            )],
            body: None,
            timeout: None,
        }
    }

    pub fn post(gateway: &Gateway) -> Self {
        Self::new(Method::POST, gateway)
    }

    pub fn get(gateway: &Gateway) -> Self {
        Self::new(Method::GET, gateway)
    }

    pub fn delete(gateway: &Gateway) -> Self {
        Self::new(Method::DELETE, gateway)
    }

    /// A bearer token of the dev HMAC key for the standard claims with `scopes`.
    pub fn token(self, scopes: &str) -> Self {
        let token = hs256(&claims(&self.audience, scopes), Some("dev"));
        self.bearer(&token)
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Sets `name` (replacing a default of the same name, such as `accept`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets each of `headers`, in order.
    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        headers
            .iter()
            .fold(self, |request, (name, value)| request.header(name, value))
    }

    /// Leaves out `name`, a default included.
    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    /// The `mcp-session-id` header.
    pub fn session(self, id: &str) -> Self {
        self.header("mcp-session-id", id)
    }

    /// Adds `name` once more, beside any value it already has.
    pub fn append_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.body(body.to_string())
    }

    /// The body as given, byte for byte.
    pub fn body(self, body: impl Into<Vec<u8>>) -> Self {
        self.stream_body(reqwest::Body::from(body.into()))
    }

    /// A body of any kind, a stream included (sent chunked, without a length).
    pub fn stream_body(mut self, body: reqwest::Body) -> Self {
        self.body = Some(body);
        self
    }

    /// Gives up (failing the test) after `limit`.
    pub fn timeout(mut self, limit: std::time::Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    pub async fn send(self) -> reqwest::Response {
        let mut request = Gateway::client().request(self.method, &self.url);
        if let Some(limit) = self.timeout {
            request = request.timeout(limit);
        }
        let has_type = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(body) = self.body {
            if !has_type {
                request = request.header("content-type", "application/json");
            }
            request = request.body(body);
        }
        request.send().await.unwrap()
    }
}

/// `initialize` with empty params.
pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})
}

/// POSTs [`initialize_body`] with `token`, outside any session.
pub async fn post_initialize(gateway: &Gateway, token: &str) -> reqwest::Response {
    Request::post(gateway)
        .bearer(token)
        .json(&initialize_body())
        .send()
        .await
}

/// Opens a session for `token`: the session id mcpgate issued.
pub async fn open_session(gateway: &Gateway, token: &str) -> String {
    let response = post_initialize(gateway, token).await;
    assert_eq!(response.status(), 200, "{}", gateway.stderr());
    response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// POSTs `body` in `session` with `token`.
pub async fn post_in_session(
    gateway: &Gateway,
    token: &str,
    session: &str,
    body: &Value,
) -> reqwest::Response {
    Request::post(gateway)
        .bearer(token)
        .session(session)
        .json(body)
        .send()
        .await
}

/// Asserts the 404 a session the caller may not use gets: JSON-RPC error -32001.
pub async fn assert_session_not_found(response: reqwest::Response) {
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32001, "{body}");
    assert_eq!(body["error"]["message"], "Session not found");
}

/// The JSON document a plain GET of `url` answers (metadata, JWKS…).
pub async fn get_json(url: impl reqwest::IntoUrl) -> Value {
    Gateway::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A JSON-RPC request.
pub fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// `tools/call` of `tool` with no arguments.
pub fn tools_call(id: u64, tool: &str) -> Value {
    rpc(id, "tools/call", json!({"name": tool, "arguments": {}}))
}

/// A list request (`tools/list`, `prompts/list`…) without params.
pub fn list(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method})
}

/// A JSON-RPC error answer: (HTTP status, error code, id).
pub async fn rpc_error(response: reqwest::Response) -> (u16, i64, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_i64().unwrap(),
        body["id"].clone(),
    )
}

/// The JSON-RPC messages of an SSE body (each event's `data` lines joined).
pub fn sse_messages(text: &str) -> Vec<Value> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}
