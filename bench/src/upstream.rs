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
}

/// Starts the server on an ephemeral loopback port.
pub async fn start(tools: usize, jwks: String) -> Result<Running> {
    let state = Arc::new(Upstream {
        tools_list_result: Bytes::from(tools_list_result(tools).to_string()),
        jwks: Bytes::from(jwks),
    });
    let app = Router::new()
        .route(MCP_PATH, post(mcp).get(no_stream).delete(no_stream))
        .route(JWKS_PATH, get(serve_jwks))
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
            json(
                StatusCode::OK,
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#).into(),
            )
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

/// Stateless: no standing SSE stream and no session to delete.
async fn no_stream() -> Response {
    status(StatusCode::METHOD_NOT_ALLOWED)
}

async fn serve_jwks(State(upstream): State<Arc<Upstream>>) -> Response {
    json(StatusCode::OK, upstream.jwks.clone())
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
