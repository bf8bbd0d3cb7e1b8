//! What both stdio test files use: the fixture server, its child processes, and the
//! messages of a session (`stdio_upstream` drives the upstream directly,
//! `stdio_gateway` through the binary).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Node MCP server the stdio tests run as a child.
pub fn stdio_script() -> PathBuf {
    super::fixture("stdio-server.mjs")
}

/// Whether a process with this pid exists (a zombie would still count: mcpgate
/// must reap its children).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls `check` every 20 ms; fails the test naming `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A JSON-RPC request whose id may be a number or a string.
pub fn request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params})
}

/// `tools/call` of `tool` with `arguments`.
pub fn call(id: impl Into<Value>, tool: &str, arguments: Value) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
}

/// A 2025-06-18 `initialize` from `client` offering `capabilities`.
pub fn init_request(client: &str, capabilities: Value) -> Value {
    request(
        0,
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": capabilities,
            "clientInfo": {"name": client, "version": "0"},
        }),
    )
}

/// `notifications/initialized`, which completes the handshake.
pub fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}
