//! Parser-differential bypasses at the gateway, against the real binary: methods
//! and names that a careless upstream folds into a ruled one are refused and never
//! reach it, unknown methods can be refused outright, and numbers reach the
//! upstream as written.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::common::*;

const POLICY: &str = r#"
  initialize: [mcp:connect]
  tools_call: [mcp:tools:execute]
  tools:
    get-env: [[mcp:admin]]
    "admin_*": mcp:admin
  prompts:
    "secret_*": mcp:admin
  resources:
    "file:///secret/*": mcp:admin
"#;

/// An MCP server that reads method and tool names the way a careless one does:
/// case-insensitively, trimmed, with `\` for `/` and repeated separators ignored.
/// Every request it receives is recorded, and so is every tool it would run.
#[derive(Clone, Default)]
struct FoldingUpstream {
    bodies: Arc<Mutex<Vec<String>>>,
    ran: Arc<Mutex<Vec<String>>>,
}

fn careless_fold(text: &str) -> String {
    let lowered = text.trim().to_lowercase().replace('\\', "/");
    let parts: Vec<&str> = lowered.split('/').filter(|part| !part.is_empty()).collect();
    parts.join("/")
}

async fn folding_handler(State(upstream): State<FoldingUpstream>, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    upstream
        .bodies
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&body).into_owned());
    let messages = match &message {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    for message in &messages {
        let method = careless_fold(message["method"].as_str().unwrap_or(""));
        if method == "tools/call" {
            let tool = careless_fold(message["params"]["name"].as_str().unwrap_or(""));
            upstream.ran.lock().unwrap().push(tool);
        }
    }
    let id = messages.first().map_or(Value::Null, |m| m["id"].clone());
    (
        [("content-type", "application/json")],
        json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}).to_string(),
    )
        .into_response()
}

struct Setup {
    upstream: FoldingUpstream,
    gateway: Gateway,
}

async fn setup(scopes_extra: &str) -> Setup {
    let upstream = FoldingUpstream::default();
    let router = Router::new()
        .route("/mcp", any(folding_handler))
        .with_state(upstream.clone());
    let addr = spawn_router(router).await;
    let config = TestConfig::oauth(&format!("http://{addr}/mcp"))
        .scopes(POLICY)
        .scopes(scopes_extra);
    let gateway = Gateway::start(&config.build()).await;
    Setup { upstream, gateway }
}

impl Setup {
    async fn send(&self, scopes: &str, body: &str) -> reqwest::Response {
        Request::post(&self.gateway)
            .token(scopes)
            .body(body)
            .send()
            .await
    }

    fn received(&self) -> usize {
        self.upstream.bodies.lock().unwrap().len()
    }

    fn ran(&self) -> Vec<String> {
        self.upstream.ran.lock().unwrap().clone()
    }
}

async fn rpc_error(response: reqwest::Response) -> (u16, i64, Value, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_i64().unwrap_or(0),
        body["id"].clone(),
        body["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

const BASIC: &str = "mcp:connect mcp:tools:execute";

#[tokio::test]
async fn method_look_alikes_never_reach_a_folding_upstream() {
    let setup = setup("").await;
    // The folding upstream is not a strawman: the exact method runs the tool.
    let call =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get-env"}});
    let response = setup
        .send(&format!("{BASIC} mcp:admin"), &call.to_string())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(setup.ran(), ["get-env"]);

    let spellings = [
        "Tools/Call",
        "tools/call ",
        "TOOLS/CALL",
        "tools\\call",
        "tools//call",
        "tools/call\t",
        " tools/call",
        "tools/call\n",
        "/tools/call",
        "ｔｏｏｌｓ/ｃａｌｌ",
        "tools\u{200B}/call",
    ];
    for method in spellings {
        let single =
            json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": {"name": "get-env"}});
        let (status, code, id, message) =
            rpc_error(setup.send("mcp:connect", &single.to_string()).await).await;
        assert_eq!((status, code, id), (400, -32601, json!(7)), "{method:?}");
        assert!(message.contains("tools/call"), "{method:?}: {message}");
        // In a batch (2025-03-26, the one revision with batches), behind an
        // innocent message.
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 2, "method": method, "params": {"name": "get-env"}}
        ]);
        let (status, code, _, _) = rpc_error(setup.send(BASIC, &batch.to_string()).await).await;
        assert_eq!((status, code), (400, -32601), "batched {method:?}");
    }
    // Notifications too: a look-alike of one the gateway accepts.
    let notification = json!({"jsonrpc": "2.0", "method": "Notifications/Initialized"});
    let (status, code, _, _) = rpc_error(setup.send(BASIC, &notification.to_string()).await).await;
    assert_eq!((status, code), (400, -32601));
    assert_eq!(
        setup.received(),
        1,
        "only the exact call reached the upstream"
    );
    assert_eq!(setup.ran(), ["get-env"]);
}

#[tokio::test]
async fn names_folding_into_a_ruled_name_never_reach_a_folding_upstream() {
    let setup = setup("").await;
    for name in ["GET-ENV", " get-env", "get-env ", "Get-Env", "ADMIN_stats"] {
        let call =
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name}});
        let (status, code, id, message) =
            rpc_error(setup.send(BASIC, &call.to_string()).await).await;
        assert_eq!((status, code, id), (400, -32602, json!(9)), "{name:?}");
        // The message names only what was sent, never the ruled name.
        assert_eq!(
            message,
            format!(
                "tool {name:?} differs from a name the policy rules only by case, width or \
                 whitespace; names are matched exactly"
            )
        );
    }
    let prompt = json!({"jsonrpc": "2.0", "id": 3, "method": "prompts/get", "params": {"name": "SECRET_plan"}});
    let (status, code, _, _) = rpc_error(setup.send(BASIC, &prompt.to_string()).await).await;
    assert_eq!((status, code), (400, -32602));
    let read = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "FILE:///secret/a"}});
    let (status, code, _, _) = rpc_error(setup.send(BASIC, &read.to_string()).await).await;
    assert_eq!((status, code), (400, -32602));
    // Fullwidth letters are refused by the parser before any rule is consulted.
    let wide = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "ｇｅｔ-env"}});
    let (status, code, _, _) = rpc_error(setup.send(BASIC, &wide.to_string()).await).await;
    assert_eq!((status, code), (400, -32602));
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "GET-ENV"}}
    ]);
    let (status, code, _, _) = rpc_error(setup.send(BASIC, &batch.to_string()).await).await;
    assert_eq!((status, code), (400, -32602));
    assert_eq!(setup.received(), 0);
    // A name no rule resembles is an ordinary tool.
    let call =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "Echo"}});
    assert_eq!(setup.send(BASIC, &call.to_string()).await.status(), 200);
    assert_eq!(setup.ran(), ["echo"]);
}

#[tokio::test]
async fn unknown_methods_take_the_default_level_or_are_refused() {
    let lenient = setup("").await;
    let vendor = json!({"jsonrpc": "2.0", "id": 1, "method": "x-vendor/export", "params": {}});
    let response = lenient.send("mcp:connect", &vendor.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(lenient.received(), 1);

    let strict = setup("unknown_methods: refuse").await;
    let (status, code, id, message) =
        rpc_error(strict.send("mcp:connect", &vendor.to_string()).await).await;
    assert_eq!((status, code, id), (400, -32601, json!(1)));
    assert!(message.contains("x-vendor/export"), "{message}");
    // Methods MCP defines still pass, whatever level they need.
    let task =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": "t1"}});
    assert_eq!(
        strict.send("mcp:connect", &task.to_string()).await.status(),
        200
    );
    assert_eq!(strict.received(), 1);
}

#[tokio::test]
async fn a_bad_unknown_methods_value_names_the_key() {
    let (code, _, stderr) = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcpgate.yaml");
        std::fs::write(
            &path,
            "upstream:\n  url: http://127.0.0.1:9/mcp\nscopes:\n  unknown_methods: deny\n",
        )
        .unwrap();
        run_cli(&["check", "--config", path.to_str().unwrap()], &[])
    };
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("unknown_methods"), "{stderr}");
}

#[tokio::test]
async fn numbers_reach_the_upstream_as_written() {
    let setup = setup("").await;
    let body = r#"{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456789012345678901234567890,"f":1.10,"z":-0,"e":2.5e-3}}}"#;
    let response = setup.send(BASIC, body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["id"].to_string(), "12345678901234567890");
    let text = setup.upstream.bodies.lock().unwrap()[0].clone();
    for number in [
        "123456789012345678901234567890",
        "\"f\":1.10",
        "\"z\":-0",
        "2.5e-3",
    ] {
        assert!(text.contains(number), "{number} not in {text}");
    }
}
