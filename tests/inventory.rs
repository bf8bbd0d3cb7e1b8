//! `fetch_inventory` against small in-process MCP servers: JSON and SSE answers,
//! pagination, capabilities, sessions, credentials and every way an upstream can fail.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use mcpgate::config::UpstreamConfig;
use mcpgate::upstream::{Inventory, InventoryError, fetch_inventory};
use serde_json::{Value, json};

use crate::common::spawn_router;

// === a recording MCP server ===

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    body: Option<Value>,
}

impl Seen {
    /// The JSON-RPC method, or the HTTP method for a body-less request.
    fn name(&self) -> String {
        self.body
            .as_ref()
            .and_then(|body| body["method"].as_str())
            .map_or_else(|| self.method.to_string(), str::to_owned)
    }

    fn id(&self) -> Value {
        self.body
            .as_ref()
            .map_or(Value::Null, |body| body["id"].clone())
    }

    fn params(&self) -> Value {
        self.body
            .as_ref()
            .map_or(Value::Null, |body| body["params"].clone())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

type Handler = dyn Fn(&Seen) -> Response + Send + Sync;

#[derive(Clone)]
struct ServerState {
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Handler>,
}

struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(handler: impl Fn(&Seen) -> Response + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            seen: seen.clone(),
            handler: Arc::new(handler),
        };
        let router = Router::new().route("/mcp", any(handle)).with_state(state);
        let address = spawn_router(router).await;
        Self {
            url: format!("http://{address}/mcp"),
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn names(&self) -> Vec<String> {
        self.seen().iter().map(Seen::name).collect()
    }
}

async fn handle(
    State(state): State<ServerState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap());
    let seen = Seen {
        method,
        headers,
        body,
    };
    state.seen.lock().unwrap().push(seen.clone());
    (state.handler)(&seen)
}

// === answers ===

fn json_body(status: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

fn result(seen: &Seen, result: Value) -> Response {
    json_body(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": seen.id(), "result": result}),
    )
}

fn accepted() -> Response {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(Body::empty())
        .unwrap()
}

/// An event stream made of `chunks`, left open afterwards (as a server may do).
fn open_event_stream(chunks: Vec<String>) -> Response {
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>))
        .chain(futures_util::stream::pending());
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn initialize_result(version: &str, capabilities: Value) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": {"name": "test-server", "version": "1.0.0"},
    })
}

fn all_capabilities() -> Value {
    json!({"tools": {"listChanged": true}, "prompts": {}, "resources": {"subscribe": true}, "logging": {}})
}

/// The result a well-behaved server gives for `seen`, with one page per list.
fn standard_result(seen: &Seen, capabilities: &Value) -> Option<Value> {
    Some(match seen.name().as_str() {
        "initialize" => initialize_result(
            seen.params()["protocolVersion"].as_str().unwrap(),
            capabilities.clone(),
        ),
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "add", "inputSchema": {"type": "object"}},
        ]}),
        "prompts/list" => json!({"prompts": [{"name": "greeting"}]}),
        "resources/list" => json!({"resources": [
            {"uri": "file:///a.txt", "name": "a"},
            {"uri": "file:///b.txt", "name": "b"},
        ]}),
        "resources/templates/list" => {
            json!({"resourceTemplates": [{"uriTemplate": "file:///{name}", "name": "files"}]})
        }
        _ => return None,
    })
}

/// A well-behaved JSON server with the given capabilities (and no session).
fn standard(capabilities: Value) -> impl Fn(&Seen) -> Response + Send + Sync + 'static {
    move |seen| match standard_result(seen, &capabilities) {
        Some(value) => result(seen, value),
        None if seen.method == Method::POST => accepted(),
        None => Response::new(Body::empty()),
    }
}

fn full_inventory(protocol_version: &str) -> Inventory {
    Inventory {
        server_name: Some("test-server".to_owned()),
        protocol_version: protocol_version.to_owned(),
        tools: vec!["echo".to_owned(), "add".to_owned()],
        prompts: vec!["greeting".to_owned()],
        resources: vec!["file:///a.txt".to_owned(), "file:///b.txt".to_owned()],
        resource_templates: vec!["file:///{name}".to_owned()],
    }
}

// === config ===

fn config(url: &str, extra: &str) -> UpstreamConfig {
    let yaml = format!("upstream:\n  url: {url}\n  timeout: 5s\n{extra}");
    let config = mcpgate::config::load_from_str(&yaml).unwrap();
    mcpgate::config::require_upstream(&config).unwrap().clone()
}

// === tests ===

#[tokio::test]
async fn json_answers_list_everything_the_server_offers() {
    let server = Server::start(standard(all_capabilities())).await;
    let inventory = fetch_inventory(&config(&server.url, "")).await.unwrap();
    assert_eq!(inventory, full_inventory("2025-11-25"));

    assert_eq!(
        server.names(),
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "prompts/list",
            "resources/list",
            "resources/templates/list",
        ],
        "no DELETE without a session id"
    );
    let seen = server.seen();
    let initialize = &seen[0];
    assert_eq!(initialize.body.as_ref().unwrap()["jsonrpc"], "2.0");
    assert_eq!(
        initialize.params(),
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "mcpgate-policy", "version": env!("CARGO_PKG_VERSION")},
        })
    );
    assert_eq!(initialize.header("mcp-protocol-version"), None);
    assert_eq!(
        seen[1].body,
        Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    );
    for request in &seen {
        assert_eq!(request.method, Method::POST);
        assert_eq!(
            request.header("accept"),
            Some("application/json, text/event-stream")
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
    }
    for request in &seen[1..] {
        assert_eq!(request.header("mcp-protocol-version"), Some("2025-11-25"));
    }
    // Distinct, increasing request ids (unique in the process: a session may be
    // shared by concurrent requests); the notification has none. The first page of
    // a list is asked for without params.
    let ids: Vec<Value> = seen.iter().map(Seen::id).collect();
    assert_eq!(ids.len(), 6);
    assert_eq!(ids[1], Value::Null);
    let numbers: Vec<u64> = ids
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 1)
        .map(|(_, id)| id.as_u64().unwrap_or_else(|| panic!("{ids:?}")))
        .collect();
    assert!(numbers.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert!(seen[2].body.as_ref().unwrap().get("params").is_none());
}

#[tokio::test]
async fn event_stream_answers_skip_notifications_and_accept_crlf() {
    let capabilities = all_capabilities();
    let server = Server::start(move |seen| {
        let Some(value) = standard_result(seen, &capabilities) else {
            return accepted();
        };
        let response = json!({"jsonrpc": "2.0", "id": seen.id(), "result": value}).to_string();
        // The response split over two data lines (joined with LF, still one JSON text).
        let (head, tail) = response.split_at(response.find("\"result\"").unwrap());
        let notification = json!({
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "working"},
        });
        // A request from the server with the same id as ours is not the response.
        let server_request = json!({"jsonrpc": "2.0", "id": seen.id(), "method": "ping"});
        open_event_stream(vec![
            ": keep-alive\r\n\r\n".to_owned(),
            "id: prime-1\r\ndata:\r\n\r\n".to_owned(),
            format!("event: message\r\ndata: {notification}\r\n\r\n"),
            format!("data: {server_request}\r\n\r\n"),
            format!(
                "event: other\r\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{}}}\r\n\r\n",
                seen.id()
            ),
            format!("id: 7\r\ndata: {head}\r"),
            format!("\ndata: {tail}\r\n\r"),
            "\n".to_owned(),
        ])
    })
    .await;
    let mut config = config(&server.url, "");
    config.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let inventory = fetch_inventory(&config).await.unwrap();
    assert_eq!(inventory, full_inventory("2025-11-25"));
    // The streams stay open: the answer is taken as soon as it arrives.
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn follows_next_cursor_across_pages() {
    let server = Server::start(|seen| match seen.name().as_str() {
        "initialize" => result(seen, initialize_result("2025-11-25", json!({"tools": {}}))),
        "tools/list" => {
            let page = match seen.params()["cursor"].as_str() {
                None => json!({"tools": [{"name": "a"}, {"name": "b"}], "nextCursor": "page-2"}),
                Some("page-2") => json!({"tools": [{"name": "c"}], "nextCursor": "page-3"}),
                Some("page-3") => json!({"tools": [{"name": "d"}], "nextCursor": null}),
                Some(other) => panic!("unexpected cursor {other}"),
            };
            result(seen, page)
        }
        _ => accepted(),
    })
    .await;
    let inventory = fetch_inventory(&config(&server.url, "")).await.unwrap();
    assert_eq!(inventory.tools, ["a", "b", "c", "d"]);
    let cursors: Vec<Value> = server
        .seen()
        .iter()
        .filter(|seen| seen.name() == "tools/list")
        .map(Seen::params)
        .collect();
    assert_eq!(
        cursors,
        [
            Value::Null,
            json!({"cursor": "page-2"}),
            json!({"cursor": "page-3"}),
        ]
    );
}

#[tokio::test]
async fn lists_only_what_the_capabilities_advertise() {
    let server = Server::start(|seen| match seen.name().as_str() {
        // No serverInfo either: the name is optional.
        "initialize" => result(
            seen,
            json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}, "logging": {}}}),
        ),
        "tools/list" => result(seen, json!({"tools": [{"name": "only"}]})),
        "notifications/initialized" => accepted(),
        other => panic!("the server was asked for {other}"),
    })
    .await;
    let inventory = fetch_inventory(&config(&server.url, "")).await.unwrap();
    assert_eq!(
        inventory,
        Inventory {
            server_name: None,
            protocol_version: "2025-06-18".to_owned(),
            tools: vec!["only".to_owned()],
            ..Inventory::default()
        }
    );
    assert_eq!(
        server.names(),
        ["initialize", "notifications/initialized", "tools/list"]
    );

    let server = Server::start(standard(json!({"resources": {}}))).await;
    let inventory = fetch_inventory(&config(&server.url, "")).await.unwrap();
    assert!(inventory.tools.is_empty() && inventory.prompts.is_empty());
    assert_eq!(inventory.resources.len(), 2);
    assert_eq!(
        server.names(),
        [
            "initialize",
            "notifications/initialized",
            "resources/list",
            "resources/templates/list",
        ]
    );
}

/// A server with sessions, answering with an older protocol version than asked.
fn session_server(seen: &Seen) -> Response {
    if seen.method == Method::DELETE {
        return Response::new(Body::empty());
    }
    let mut response = match standard_result(seen, &all_capabilities()) {
        Some(_) if seen.name() == "initialize" => {
            result(seen, initialize_result("2025-06-18", all_capabilities()))
        }
        Some(value) => result(seen, value),
        None => accepted(),
    };
    if seen.name() == "initialize" {
        response
            .headers_mut()
            .insert("mcp-session-id", "session-Abc.123".parse().unwrap());
    }
    response
}

#[tokio::test]
async fn session_id_is_echoed_and_the_session_deleted() {
    let server = Server::start(session_server).await;
    let inventory = fetch_inventory(&config(&server.url, "")).await.unwrap();
    assert_eq!(inventory, full_inventory("2025-06-18"));

    let seen = server.seen();
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0].header("mcp-session-id"), None);
    assert_eq!(seen[0].header("mcp-protocol-version"), None);
    for request in &seen[1..] {
        assert_eq!(
            request.header("mcp-session-id"),
            Some("session-Abc.123"),
            "{}",
            request.name()
        );
        assert_eq!(
            request.header("mcp-protocol-version"),
            Some("2025-06-18"),
            "the negotiated version, on {}",
            request.name()
        );
    }
    let last = seen.last().unwrap();
    assert_eq!(last.method, Method::DELETE);
    assert!(last.body.is_none());
}

#[tokio::test]
async fn configured_headers_are_sent_on_every_request() {
    let server = Server::start(session_server).await;
    let extra = "  headers:\n    Authorization: Bearer upstream-own-token\n    X-Tenant: blue\n";
    fetch_inventory(&config(&server.url, extra)).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.last().unwrap().method, Method::DELETE);
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer upstream-own-token"),
            "{}",
            request.name()
        );
        assert_eq!(
            request.header("x-tenant"),
            Some("blue"),
            "{}",
            request.name()
        );
    }
}

#[tokio::test]
async fn a_json_rpc_error_names_the_method_and_the_session_is_still_deleted() {
    let server = Server::start(|seen| {
        if seen.name() == "prompts/list" {
            return json_body(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": seen.id(), "error": {"code": -32601, "message": "Method not found"}}),
            );
        }
        session_server(seen)
    })
    .await;
    let error = fetch_inventory(&config(&server.url, "")).await.unwrap_err();
    assert!(
        matches!(
            &error,
            InventoryError::JsonRpc { method, code: -32601, message }
                if method == "prompts/list" && message == "Method not found"
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "upstream returned JSON-RPC error -32601 for prompts/list: Method not found"
    );
    assert_eq!(
        server.names(),
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "prompts/list",
            "DELETE",
        ]
    );
}

#[tokio::test]
async fn an_unreachable_upstream_says_why() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error = fetch_inventory(&config(&format!("http://{address}/mcp"), ""))
        .await
        .unwrap_err();
    let InventoryError::Unreachable(cause) = &error else {
        panic!("{error:?}");
    };
    assert!(
        cause.to_lowercase().contains("refused"),
        "the cause is named: {cause}"
    );
    assert!(error.to_string().starts_with("upstream unreachable: "));
}

#[tokio::test]
async fn a_looping_cursor_stops_after_too_many_pages() {
    let server = Server::start(|seen| match seen.name().as_str() {
        "initialize" => result(seen, initialize_result("2025-11-25", json!({"tools": {}}))),
        "tools/list" => result(
            seen,
            json!({"tools": [{"name": "t"}], "nextCursor": "again"}),
        ),
        _ => accepted(),
    })
    .await;
    let started = Instant::now();
    let error = fetch_inventory(&config(&server.url, "")).await.unwrap_err();
    assert!(
        matches!(&error, InventoryError::TooManyPages { method, pages: 1000 } if method == "tools/list"),
        "{error:?}"
    );
    assert!(error.to_string().contains("tools/list"));
    let pages = server
        .names()
        .iter()
        .filter(|name| *name == "tools/list")
        .count();
    assert_eq!(pages, 1000);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_http_error_shows_the_status_and_the_start_of_the_body() {
    let long = "x".repeat(5000);
    let server = Server::start(move |_| {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::from(format!("  invalid\r\n  token\t{long}")))
            .unwrap()
    })
    .await;
    let error = fetch_inventory(&config(&server.url, "")).await.unwrap_err();
    let InventoryError::Status {
        method,
        status,
        body,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(method, "initialize");
    assert_eq!(*status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with("invalid token xxx"), "{body}");
    assert!(body.ends_with('…'));
    assert_eq!(body.chars().count(), 201);
    assert!(
        error.to_string().starts_with(
            "upstream answered initialize with HTTP 401 Unauthorized: invalid token x"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_notification_refused_is_an_error() {
    let server = Server::start(|seen| match seen.name().as_str() {
        "notifications/initialized" => Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Body::empty())
            .unwrap(),
        _ => standard(all_capabilities())(seen),
    })
    .await;
    let error = fetch_inventory(&config(&server.url, "")).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "upstream answered notifications/initialized with HTTP 400 Bad Request"
    );
}

#[tokio::test]
async fn an_answer_that_never_comes_times_out() {
    let server = Server::start(|_| open_event_stream(vec![": waiting\n\n".to_owned()])).await;
    let mut config = config(&server.url, "");
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let error = fetch_inventory(&config).await.unwrap_err();
    assert!(
        matches!(&error, InventoryError::Timeout { method, .. } if method == "initialize"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "upstream did not answer initialize within 300ms"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn answers_that_are_not_mcp_are_refused() {
    let cases: Vec<(&str, Arc<Handler>, &str)> = vec![
        (
            "html",
            Arc::new(|_: &Seen| {
                Response::builder()
                    .header("content-type", "text/html; charset=utf-8")
                    .body(Body::from("<html>login</html>"))
                    .unwrap()
            }),
            "Content-Type text/html; charset=utf-8",
        ),
        (
            "duplicate keys",
            Arc::new(|seen: &Seen| {
                let id = seen.id();
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from(format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"result":{{}},"result":{{}}}}"#
                    )))
                    .unwrap()
            }),
            "duplicate key",
        ),
        (
            "wrong id",
            Arc::new(|_: &Seen| {
                json_body(
                    StatusCode::OK,
                    &json!({"jsonrpc": "2.0", "id": 99, "result": {}}),
                )
            }),
            "no JSON-RPC response with id 1",
        ),
        (
            "stream ends early",
            Arc::new(|_: &Seen| {
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from(
                        "data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n",
                    ))
                    .unwrap()
            }),
            "ended without a response to request 1",
        ),
        (
            "no capabilities",
            Arc::new(|seen: &Seen| result(seen, json!({"protocolVersion": "2025-11-25"}))),
            "no capabilities object",
        ),
        (
            "tool without a name",
            Arc::new(|seen: &Seen| match seen.name().as_str() {
                "tools/list" => result(seen, json!({"tools": [{"name": "a"}, {"title": "b"}]})),
                _ => standard(json!({"tools": {}}))(seen),
            }),
            "tools[1].name is not a string",
        ),
    ];
    for (case, handler, expected) in cases {
        let server = Server::start(move |seen| handler(seen)).await;
        let error = fetch_inventory(&config(&server.url, "")).await.unwrap_err();
        assert!(
            matches!(error, InventoryError::NotMcp { .. }),
            "{case}: {error:?}"
        );
        assert!(error.to_string().contains(expected), "{case}: {error}");
    }
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let server = Server::start(|_| {
        let chunk = format!(":{}\n", "x".repeat(1024 * 1024 - 2));
        open_event_stream(vec![chunk; 17])
    })
    .await;
    let error = fetch_inventory(&config(&server.url, "")).await.unwrap_err();
    assert!(
        matches!(&error, InventoryError::TooLarge { method, limit: 16_777_216 } if method == "initialize"),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_invalid_configured_header_is_a_config_error() {
    let extra = "  headers:\n    \"Bad Header\": x\n";
    let error = fetch_inventory(&config("http://127.0.0.1:9/mcp", extra))
        .await
        .unwrap_err();
    assert!(matches!(error, InventoryError::Config(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "upstream.headers.Bad Header: not a valid HTTP header name"
    );
}
