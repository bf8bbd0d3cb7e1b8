//! A small in-process MCP server (Streamable HTTP, JSON responses, no sessions) that
//! the demo puts behind the gateway. Stateless on purpose: each POST stands alone, so
//! a single curl `tools/list` works without an `initialize` first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

/// Protocol versions this server speaks, newest first.
const PROTOCOL_VERSIONS: &[&str] = &[
    LATEST_PROTOCOL_VERSION,
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// The answer to a client that asks for a version this server does not speak.
const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
}

/// The router of the embedded server, with its MCP endpoint at `/mcp`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/mcp",
            post(handle)
                .get(method_not_allowed)
                .delete(method_not_allowed),
        )
        .with_state(Arc::new(Counters::default()))
}

async fn method_not_allowed() -> Response {
    // No server-initiated stream: clients fall back to POST-only, as the spec allows.
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

async fn handle(State(counters): State<Arc<Counters>>, body: Bytes) -> Response {
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return rpc_error(Value::Null, -32700, "parse error");
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response to a server request, which this server never sends: accept and ignore.
        return StatusCode::ACCEPTED.into_response();
    };
    let Some(id) = message.get("id").cloned() else {
        // Notifications (`notifications/initialized`, …) need no answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => rpc_result(id, initialize(&params)),
        "ping" => rpc_result(id, json!({})),
        "tools/list" => rpc_result(id, json!({"tools": tools()})),
        "tools/call" => {
            counters.calls.fetch_add(1, Ordering::Relaxed);
            match call_tool(&params, &counters) {
                Ok(result) => rpc_result(id, result),
                Err((code, text)) => rpc_error(id, code, &text),
            }
        }
        _ => rpc_error(id, -32601, "method not found"),
    }
}

fn initialize(params: &Value) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = requested
        .filter(|version| PROTOCOL_VERSIONS.contains(version))
        .unwrap_or(LATEST_PROTOCOL_VERSION);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "mcpgate-demo", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "A demo MCP server behind mcpgate. admin_stats is the tool a policy would reserve for admins.",
    })
}

fn tools() -> Value {
    json!([
        {
            "name": "echo",
            "description": "Returns the message it is given.",
            "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
            "annotations": {"readOnlyHint": true}
        },
        {
            "name": "add",
            "description": "Adds two numbers.",
            "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]},
            "annotations": {"readOnlyHint": true}
        },
        {
            "name": "current_time",
            "description": "The server's current time (UTC, RFC 3339).",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true}
        },
        {
            "name": "admin_stats",
            "description": "Operational counters of the server: meant for administrators only.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true}
        }
    ])
}

fn call_tool(params: &Value, counters: &Counters) -> Result<Value, (i64, String)> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or((-32602, "params.name must be a string".to_owned()))?;
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let text = match name {
        "echo" => match args.get("message").and_then(Value::as_str) {
            Some(message) => format!("Echo: {message}"),
            None => return Ok(tool_error("message must be a string")),
        },
        "add" => match (
            args.get("a").and_then(Value::as_f64),
            args.get("b").and_then(Value::as_f64),
        ) {
            (Some(a), Some(b)) => format!("{}", a + b),
            _ => return Ok(tool_error("a and b must be numbers")),
        },
        "current_time" => humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "admin_stats" => format!(
            "tool calls served: {}",
            counters.calls.load(Ordering::Relaxed)
        ),
        other => return Err((-32602, format!("unknown tool: {other}"))),
    };
    Ok(json!({"content": [{"type": "text", "text": text}], "isError": false}))
}

fn tool_error(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

fn rpc_result(id: Value, result: Value) -> Response {
    json_response(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response {
    json_response(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

fn json_response(body: Value) -> Response {
    let mut response = Response::new(axum::body::Body::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
