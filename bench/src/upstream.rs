//! A fast MCP server for the gateway to sit in front of: Streamable HTTP, stateless,
//! every answer `application/json`. It does as little work per request as an MCP
//! server can, so what the measurements show is the gateway's cost, not its own. The
//! same listener serves the JWKS, standing in for the identity provider.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const MCP_PATH: &str = "/mcp";
pub const JWKS_PATH: &str = "/jwks.json";
pub const INTROSPECTION_PATH: &str = "/introspect";
pub const SESSION_HEADER: &str = "mcp-session-id";

static NEXT_SESSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
/// The opaque token the introspection endpoint calls active.
pub const OPAQUE_TOKEN: &str = "bench-opaque-token-0123456789abcdef";

/// Tools whose names start with this are hidden by the list scenario's policy.
pub const HIDDEN_PREFIX: &str = "hidden_";

struct Upstream {
    /// `{"tools":[…]}`, serialised once: a 1,000-tool list costs the upstream a copy.
    tools_list_result: Bytes,
    jwks: Bytes,
}

/// A running upstream; it lives as long as the harness's runtime.
pub struct Running {
    pub addr: SocketAddr,
}

impl Running {
    pub fn mcp_url(&self) -> String {
        format!("http://{}{MCP_PATH}", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.addr)
    }

    pub fn introspection_url(&self) -> String {
        format!("http://{}{INTROSPECTION_PATH}", self.addr)
    }
}

/// Starts the server on an ephemeral loopback port.
pub async fn start(tools: usize, jwks: String) -> Result<Running> {
    let state = Arc::new(Upstream {
        tools_list_result: Bytes::from(tools_list_result(tools).to_string()),
        jwks: Bytes::from(jwks),
    });
    let app = Router::new()
        .route(MCP_PATH, post(mcp).get(standing_stream).delete(no_stream))
        .route(JWKS_PATH, get(serve_jwks))
        .route(INTROSPECTION_PATH, post(introspect))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the upstream")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("upstream stopped: {error}");
        }
    });
    Ok(Running { addr })
}

/// The tool list: `echo`, then tools named so that exactly `tools / 2` of them
/// (rounded down) start with [`HIDDEN_PREFIX`].
pub fn tools_list_result(tools: usize) -> Value {
    let visible = tools - tools / 2;
    let list: Vec<Value> = (0..tools)
        .map(|i| {
            let name = match i {
                0 => "echo".to_owned(),
                i if i < visible => format!("tool_{i:04}"),
                i => format!("{HIDDEN_PREFIX}{i:04}"),
            };
            json!({
                "name": name,
                "description": format!("Benchmark tool {i}: returns its message argument unchanged."),
                "inputSchema": {
                    "type": "object",
                    "properties": { "message": { "type": "string", "description": "Text to echo" } },
                    "required": ["message"],
                },
            })
        })
        .collect();
    json!({ "tools": list })
}

/// How many tools a caller without `admin` should see.
pub fn visible_tools(tools: usize) -> usize {
    tools - tools / 2
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(default)]
    id: Option<Value>,
    method: String,
    #[serde(default)]
    params: Option<Value>,
}

async fn mcp(State(upstream): State<Arc<Upstream>>, body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Incoming>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}})
                .to_string()
                .into(),
        );
    };
    // A notification (no id) gets no answer, as the transport specifies.
    let Some(id) = message.id else {
        return status(StatusCode::ACCEPTED);
    };
    let id = id.to_string();
    match message.method.as_str() {
        "tools/list" => {
            // Spliced rather than re-serialised: the list is the same every time.
            let prefix = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"#);
            let mut out = Vec::with_capacity(prefix.len() + upstream.tools_list_result.len() + 1);
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(&upstream.tools_list_result);
            out.push(b'}');
            json(StatusCode::OK, out.into())
        }
        "tools/call" => {
            let text = message
                .params
                .as_ref()
                .and_then(|params| params.pointer("/arguments/message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let result = json!({"content": [{"type": "text", "text": text}], "isError": false});
            json(
                StatusCode::OK,
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#).into(),
            )
        }
        "initialize" => {
            // Every initialize opens a session (an id, nothing kept): the
            // idle-sessions measurement needs ids to open streams on.
            let session = format!(
                "bench-{}",
                NEXT_SESSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let version = message
                .params
                .as_ref()
                .and_then(|params| params.get("protocolVersion"))
                .and_then(Value::as_str)
                .unwrap_or("2025-06-18");
            let result = json!({
                "protocolVersion": version,
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": "mcpgate-bench-upstream", "version": env!("CARGO_PKG_VERSION") },
            });
            let mut response = json(
                StatusCode::OK,
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#).into(),
            );
            if let Ok(value) = header::HeaderValue::from_str(&session) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
            response
        }
        "ping" => json(
            StatusCode::OK,
            format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#).into(),
        ),
        _ => json(
            StatusCode::OK,
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"Method not found"}}}}"#
            )
            .into(),
        ),
    }
}

/// No session to delete: sessions here are only ids handed out.
async fn no_stream() -> Response {
    status(StatusCode::METHOD_NOT_ALLOWED)
}

/// The standalone SSE stream of a session (idle-sessions): opened, then silent
/// until the client goes away, as a server with nothing to notify keeps it. Without
/// a session id, 405, as a stateless server answers.
async fn standing_stream(headers: http::HeaderMap) -> Response {
    if !headers.contains_key(SESSION_HEADER) {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let mut response = Response::new(Body::new(Silent));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// A body that never yields a frame nor ends.
struct Silent;

impl http_body::Body for Silent {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

async fn serve_jwks(State(upstream): State<Arc<Upstream>>) -> Response {
    json(StatusCode::OK, upstream.jwks.clone())
}

/// RFC 7662 for the one opaque token the scenario uses; any other is inactive. With
/// the gateway's cache, it is asked once per token and cache period.
async fn introspect(body: Bytes) -> Response {
    let active = url_form_has(&body, "token", OPAQUE_TOKEN);
    let answer = if active {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.as_secs())
            + 3600;
        json!({
            "active": true,
            "iss": crate::gateway::ISSUER,
            "aud": crate::gateway::AUDIENCE,
            "sub": "bench-user",
            "client_id": "bench-client",
            "scope": crate::keys::TOKEN_SCOPES,
            "exp": exp,
        })
    } else {
        json!({"active": false})
    };
    json(StatusCode::OK, answer.to_string().into())
}

/// Whether an `application/x-www-form-urlencoded` body has `name=value` (the values
/// used here need no decoding).
fn url_form_has(body: &[u8], name: &str, value: &str) -> bool {
    let wanted = format!("{name}={value}");
    body.split(|&b| b == b'&')
        .any(|pair| pair == wanted.as_bytes())
}

fn json(code: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_of_the_tools_are_hidden() {
        for tools in [1, 2, 7, 1000] {
            let list = tools_list_result(tools);
            let names: Vec<&str> = list["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|tool| tool["name"].as_str().unwrap())
                .collect();
            assert_eq!(names.len(), tools);
            assert_eq!(names[0], "echo");
            let shown = names
                .iter()
                .filter(|name| !name.starts_with(HIDDEN_PREFIX))
                .count();
            assert_eq!(shown, visible_tools(tools));
        }
    }
}
