//! The GraphQL upstream as an MCP server, through its public API (`forward`, as the
//! gateway calls it), against a GraphQL endpoint faked in the test: it records every
//! request it gets and answers by path (data, errors, HTTP 500, not JSON, too slow,
//! too large), so each test points the upstream at the answer it needs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::BodyExt;
use mcpgate::config::Secret;
use mcpgate::graphql::GraphqlError;
use mcpgate::upstream::graphql::{
    GraphqlSetupError, GraphqlUpstream, GraphqlUpstreamConfig, MAX_RESPONSE_BYTES,
};
use serde_json::{Value, json};
use url::Url;

use crate::common::spawn_router;

const LIMIT: usize = 2048;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphql")
}

/// One request as the fake endpoint got it.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Recorded>>>);

impl Recorder {
    fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }

    fn only(&self) -> Recorded {
        let all = self.all();
        assert_eq!(all.len(), 1, "expected exactly one request: {all:?}");
        all.into_iter().next().unwrap()
    }
}

/// The fake endpoint: answers by path.
struct Endpoint {
    base: Url,
    recorder: Recorder,
}

impl Endpoint {
    async fn start() -> Self {
        let recorder = Recorder::default();
        let router = Router::new().fallback(answer).with_state(recorder.clone());
        let address = spawn_router(router).await;
        Self {
            base: Url::parse(&format!("http://{address}/")).unwrap(),
            recorder,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }
}

async fn answer(
    State(recorder): State<Recorder>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> http::Response<Body> {
    let path = uri.path().to_owned();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    recorder.0.lock().unwrap().push(Recorded {
        path: path.clone(),
        headers,
        body: parsed.clone(),
    });
    let json = |status: u16, value: Value| {
        http::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/graphql-response+json")
            .body(Body::from(value.to_string()))
            .unwrap()
    };
    match path.as_str() {
        "/data" => json(
            200,
            json!({"data": {"facts": [{"title": "Water is wet", "body": null}]}}),
        ),
        "/echo" => json(200, json!({"data": {"received": parsed}})),
        "/errors" => json(
            200,
            json!({
                "data": {"facts": null, "status": {"healthy": true}},
                "errors": [
                    {"message": "facts are sealed", "path": ["facts"]},
                    {"message": "try again later"},
                ],
            }),
        ),
        "/null-data" => json(
            200,
            json!({"data": null, "errors": [{"message": "nothing at all"}]}),
        ),
        "/400" => json(
            400,
            json!({"errors": [{"message": "Variable \"$limit\" got invalid value \"x\"."}]}),
        ),
        "/500" => http::Response::builder()
            .status(500)
            .header(header::CONTENT_TYPE, "text/html")
            .body(Body::from("<html>upstream exploded at 10.9.9.9</html>"))
            .unwrap(),
        "/not-json" => http::Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/html")
            .body(Body::from("<html>a login page</html>"))
            .unwrap(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json(200, json!({"data": {"late": true}}))
        }
        "/huge" => http::Response::builder()
            .status(200)
            .body(Body::from(vec![b' '; MAX_RESPONSE_BYTES + 1]))
            .unwrap(),
        "/huge-stream" => {
            // No Content-Length: the cap must hold while reading.
            let chunk = Bytes::from(vec![b' '; 1024 * 1024]);
            let chunks = (0..=MAX_RESPONSE_BYTES / chunk.len())
                .map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
            http::Response::builder()
                .status(200)
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap()
        }
        _ => json(404, json!({"errors": [{"message": "no such path"}]})),
    }
}

fn config(endpoint: Url) -> GraphqlUpstreamConfig {
    GraphqlUpstreamConfig::new(
        endpoint,
        fixtures().join("schema.graphql"),
        fixtures().join("operations"),
    )
}

fn upstream(config: &GraphqlUpstreamConfig) -> GraphqlUpstream {
    GraphqlUpstream::from_config(
        config,
        LIMIT,
        Duration::from_millis(500),
        Duration::from_secs(2),
    )
    .unwrap()
}

/// A fake endpoint, and an upstream of `config` pointed at its `path`.
async fn serve(
    path: &str,
    config: fn(Url) -> GraphqlUpstreamConfig,
) -> (Endpoint, GraphqlUpstream) {
    let endpoint = Endpoint::start().await;
    let upstream = upstream(&config(endpoint.url(path)));
    (endpoint, upstream)
}

fn everything_on(endpoint: Url) -> GraphqlUpstreamConfig {
    let mut config = config(endpoint);
    config.expose_schema = true;
    config.enable_arbitrary_operations = true;
    config
}

/// What mcpgate hands the upstream besides the body: the request id and trace
/// context (which may go on), and the upstream session id (which must not).
fn own_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", HeaderValue::from_static("req-42"));
    headers.insert(
        "traceparent",
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    headers.insert("tracestate", HeaderValue::from_static("vendor=1"));
    headers.insert(
        "mcp-session-id",
        HeaderValue::from_static("upstream-session"),
    );
    headers
}

/// What an MCP client sends, credentials included.
fn client_headers() -> HeaderMap {
    client_headers_of(Some("2025-06-18"))
}

/// The same with another `MCP-Protocol-Version` header, or none.
fn client_headers_of(version: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer client-token"),
    );
    headers.insert(header::COOKIE, HeaderValue::from_static("session=client"));
    headers.insert("x-api-key", HeaderValue::from_static("client-key"));
    if let Some(version) = version {
        headers.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(version).unwrap(),
        );
    }
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(header::USER_AGENT, HeaderValue::from_static("client/1.0"));
    headers
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

async fn send(upstream: &GraphqlUpstream, method: Method, body: Bytes) -> Reply {
    send_with(upstream, method, client_headers(), body).await
}

async fn send_with(
    upstream: &GraphqlUpstream,
    method: Method,
    client_headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let response = upstream
        .forward(method, &client_headers, own_headers(), body)
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn post(upstream: &GraphqlUpstream, body: &Value) -> Reply {
    send(upstream, Method::POST, Bytes::from(body.to_string())).await
}

/// One request's whole JSON-RPC answer.
async fn rpc(upstream: &GraphqlUpstream, method: &str, params: Value) -> Value {
    let reply = post(
        upstream,
        &json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    let answer = reply.json();
    assert_eq!(answer["jsonrpc"], "2.0");
    assert_eq!(answer["id"], 7);
    answer
}

/// A `tools/call` that must succeed at the JSON-RPC level: its result.
async fn call(upstream: &GraphqlUpstream, name: &str, arguments: Value) -> Value {
    let answer = rpc(
        upstream,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
    .await;
    assert!(answer.get("error").is_none(), "{answer}");
    answer["result"].clone()
}

/// `execute_graphql` with `arguments`: its result.
async fn execute_graphql(upstream: &GraphqlUpstream, arguments: Value) -> Value {
    call(upstream, "execute_graphql", arguments).await
}

/// `get_operation_info` of `name`: its result.
async fn operation_info(upstream: &GraphqlUpstream, name: &str) -> Value {
    call(
        upstream,
        "get_operation_info",
        json!({"operationName": name}),
    )
    .await
}

/// A request that must fail at the JSON-RPC level: its error.
async fn rpc_error(upstream: &GraphqlUpstream, method: &str, params: Value) -> Value {
    let answer = rpc(upstream, method, params).await;
    assert!(answer.get("result").is_none(), "{answer}");
    answer["error"].clone()
}

/// The text of a tool result that must be an error.
#[track_caller]
fn error_text(result: &Value) -> &str {
    assert_eq!(result["isError"], true, "{result}");
    text(result)
}

fn text(result: &Value) -> &str {
    let content = result["content"].as_array().unwrap();
    assert_eq!(content.len(), 1, "{result}");
    assert_eq!(content[0]["type"], "text");
    content[0]["text"].as_str().unwrap()
}

fn tool_names(list: &Value) -> Vec<&str> {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect()
}

fn listed<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

// ---- the MCP server ----

#[tokio::test]
async fn initialize_echoes_a_supported_version_and_offers_tools() {
    let (endpoint, upstream) = serve("data", config).await;
    for version in ["2025-06-18", "2025-03-26", "2024-11-05", "2025-11-25"] {
        let answer = rpc(
            &upstream,
            "initialize",
            json!({"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await;
        assert_eq!(answer["result"]["protocolVersion"], version);
    }
    let answer = rpc(
        &upstream,
        "initialize",
        json!({"protocolVersion": "2030-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
    )
    .await;
    assert_eq!(
        answer["result"],
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {"listChanged": false}},
            "serverInfo": {"name": "mcpgate-graphql", "version": env!("CARGO_PKG_VERSION")},
        })
    );
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn stateless_no_session_id_is_issued() {
    let (_endpoint, upstream) = serve("data", config).await;
    let reply = post(
        &upstream,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key("mcp-session-id"));
}

#[tokio::test]
async fn ping_answers_an_empty_object() {
    let (_endpoint, upstream) = serve("data", config).await;
    assert_eq!(
        rpc(&upstream, "ping", Value::Null).await["result"],
        json!({})
    );
}

#[tokio::test]
async fn unknown_methods_are_method_not_found() {
    let (_endpoint, upstream) = serve("data", config).await;
    for method in ["resources/list", "prompts/list", "tools/lists"] {
        let error = rpc_error(&upstream, method, json!({})).await;
        assert_eq!(error["code"], -32601, "{method}");
        assert_eq!(error["message"], format!("method not found: {method}"));
    }
}

#[tokio::test]
async fn get_and_delete_are_not_allowed() {
    let (_endpoint, upstream) = serve("data", config).await;
    for method in [Method::GET, Method::DELETE, Method::PUT] {
        let reply = send(&upstream, method.clone(), Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.headers[header::ALLOW], "POST", "{method}");
        assert!(reply.body.is_empty());
    }
}

#[tokio::test]
async fn notifications_are_accepted_without_a_body() {
    let (endpoint, upstream) = serve("data", config).await;
    let reply = post(
        &upstream,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.body.is_empty());
    // A tool call sent as a notification is not run: nobody would read its answer.
    let reply = post(
        &upstream,
        &json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "execute_operation_get_facts"}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(endpoint.recorder.all().is_empty());
    // A response from the client (this server asks nothing) gets no answer either.
    let reply = post(&upstream, &json!({"jsonrpc": "2.0", "id": 3, "result": {}})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn a_batch_is_answered_in_order_without_the_notifications() {
    let (endpoint, upstream) = serve("data", config).await;
    let batch = |body: Value| {
        send_with(
            &upstream,
            Method::POST,
            client_headers_of(Some("2025-03-26")),
            Bytes::from(body.to_string()),
        )
    };
    let reply = batch(json!([
            {"jsonrpc": "2.0", "id": "a", "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "execute_operation_60_status"}},
            {"jsonrpc": "2.0", "id": 3, "method": "nope"},
            17,
    ]))
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let answers = reply.json();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert_eq!(
        answers[0],
        json!({"jsonrpc": "2.0", "id": "a", "result": {}})
    );
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["result"]["isError"], false);
    assert_eq!(answers[2]["id"], 3);
    assert_eq!(answers[2]["error"]["code"], -32601);
    assert_eq!(answers[3]["id"], Value::Null);
    assert_eq!(answers[3]["error"]["code"], -32600);
    assert_eq!(endpoint.recorder.all().len(), 1);

    let only_notifications = batch(json!([
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
    ]))
    .await;
    assert_eq!(only_notifications.status, StatusCode::ACCEPTED);
    assert!(only_notifications.body.is_empty());
}

#[tokio::test]
async fn bodies_that_are_not_json_rpc_are_bad_requests() {
    let (_endpoint, upstream) = serve("data", config).await;
    let reply = send(&upstream, Method::POST, Bytes::from_static(b"{not json")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], -32700);

    let reply = post(&upstream, &json!([])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], -32600);

    for (message, id) in [
        (
            json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
            json!(1),
        ),
        (
            json!({"jsonrpc": "2.0", "id": [1], "method": "ping"}),
            Value::Null,
        ),
        (
            json!({"jsonrpc": "2.0", "id": "x", "method": 5}),
            json!("x"),
        ),
        (json!({"jsonrpc": "2.0", "id": 1}), json!(1)),
        (json!("ping"), Value::Null),
    ] {
        let reply = post(&upstream, &message).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{message}");
        let answer = reply.json();
        assert_eq!(answer["error"]["code"], -32600, "{message}");
        assert_eq!(answer["id"], id, "{message}");
    }
}

// ---- 2026-07-28: no handshake, the version on every request ----

const MODERN: &str = "2026-07-28";

/// A 2026-07-28 request's `params`: `extra` and the required `_meta` fields.
fn modern_params(extra: Value) -> Value {
    let mut params = extra;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    });
    params
}

/// One request under the `MCP-Protocol-Version` header `version`.
async fn post_as(upstream: &GraphqlUpstream, version: Option<&str>, body: &Value) -> Reply {
    send_with(
        upstream,
        Method::POST,
        client_headers_of(version),
        Bytes::from(body.to_string()),
    )
    .await
}

/// A 2026-07-28 request as a conforming client sends it: its answer, with the status.
async fn modern(upstream: &GraphqlUpstream, method: &str, extra: Value) -> (StatusCode, Value) {
    let reply = post_as(
        upstream,
        Some(MODERN),
        &json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": modern_params(extra)}),
    )
    .await;
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    assert!(!reply.headers.contains_key("mcp-session-id"));
    let answer = reply.json();
    assert_eq!(answer["id"], 9, "{answer}");
    (reply.status, answer)
}

fn server_info() -> Value {
    json!({"name": "mcpgate-graphql", "version": env!("CARGO_PKG_VERSION")})
}

#[tokio::test]
async fn a_2026_07_28_client_discovers_lists_and_calls_without_a_handshake() {
    let (endpoint, upstream) = serve("data", config).await;

    let (status, answer) = modern(&upstream, "server/discover", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["result"],
        json!({
            "resultType": "complete",
            "supportedVersions": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"],
            "capabilities": {"tools": {"listChanged": false}},
            "ttlMs": 300_000,
            "cacheScope": "private",
            "_meta": {"io.modelcontextprotocol/serverInfo": server_info()},
        })
    );

    let (status, answer) = modern(&upstream, "tools/list", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let list = &answer["result"];
    assert_eq!(list["resultType"], "complete");
    assert_eq!(list["ttlMs"], 300_000);
    assert_eq!(list["cacheScope"], "private");
    assert_eq!(
        list["_meta"],
        json!({"io.modelcontextprotocol/serverInfo": server_info()})
    );
    // The same tools, in the same order, as a legacy client gets.
    let legacy = rpc(&upstream, "tools/list", json!({})).await["result"].clone();
    assert_eq!(list["tools"], legacy["tools"]);

    let (status, answer) = modern(
        &upstream,
        "tools/call",
        json!({"name": "execute_operation_get_facts", "arguments": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let result = &answer["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["isError"], false);
    assert_eq!(
        result["structuredContent"],
        json!({"facts": [{"title": "Water is wet", "body": null}]})
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"],
        server_info()
    );
    // Only the call reached the API, and without the request's `_meta`.
    let recorded = endpoint.recorder.only();
    assert_eq!(recorded.body["variables"], json!({}));
}

#[tokio::test]
async fn in_2026_07_28_an_unknown_tool_is_invalid_params_and_a_failed_call_is_complete() {
    let (_endpoint, upstream) = serve("500", config).await;
    let (status, answer) = modern(&upstream, "tools/call", json!({"name": "nope"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["error"]["code"], -32602);
    assert!(answer.get("result").is_none());
    let (status, answer) = modern(
        &upstream,
        "tools/call",
        json!({"name": "execute_operation_get_facts"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["result"]["isError"], true);
    assert_eq!(answer["result"]["resultType"], "complete");
}

#[tokio::test]
async fn the_cache_ttl_is_configurable() {
    let endpoint = Endpoint::start().await;
    let mut config = config(endpoint.url("data"));
    config.cache_ttl = Duration::from_secs(90);
    let upstream = upstream(&config);
    for method in ["server/discover", "tools/list"] {
        let (_, answer) = modern(&upstream, method, json!({})).await;
        assert_eq!(answer["result"]["ttlMs"], 90_000, "{method}");
        assert_eq!(answer["result"]["cacheScope"], "private", "{method}");
    }
}

#[tokio::test]
async fn server_discover_answers_a_legacy_probe_too() {
    let (_endpoint, upstream) = serve("data", config).await;
    for version in [None, Some("2025-06-18"), Some("2025-11-25")] {
        let reply = post_as(
            &upstream,
            version,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover"}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{version:?}");
        let result = &reply.json()["result"];
        assert_eq!(result["supportedVersions"][0], MODERN, "{version:?}");
        assert_eq!(result["resultType"], "complete", "{version:?}");
    }
}

#[tokio::test]
async fn legacy_results_stay_as_they_were() {
    let (_endpoint, upstream) = serve("data", config).await;
    for version in [
        None,
        Some("2024-11-05"),
        Some("2025-03-26"),
        Some("2025-11-25"),
    ] {
        for method in ["tools/list", "tools/call", "ping"] {
            let reply = post_as(
                &upstream,
                version,
                &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": "execute_operation_get_facts"}}),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{version:?} {method}");
            let result = &reply.json()["result"];
            for key in ["resultType", "_meta", "ttlMs", "cacheScope"] {
                assert!(result.get(key).is_none(), "{version:?} {method}: {result}");
            }
        }
    }
}

#[tokio::test]
async fn ping_logging_and_initialize_are_unknown_in_2026_07_28() {
    let (_endpoint, upstream) = serve("data", config).await;
    for method in ["ping", "logging/setLevel", "initialize", "resources/list"] {
        let (status, answer) = modern(&upstream, method, json!({"level": "info"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(answer["error"]["code"], -32601, "{method}");
        assert_eq!(
            answer["error"]["message"],
            format!("method not found: {method}")
        );
    }
}

#[tokio::test]
async fn a_header_that_disagrees_with_meta_is_a_header_mismatch() {
    let (endpoint, upstream) = serve("data", config).await;
    let call = json!({
        "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": modern_params(json!({"name": "execute_operation_get_facts"})),
    });
    for header in [Some("2025-11-25"), Some("2025-06-18"), None] {
        let reply = post_as(&upstream, header, &call).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{header:?}");
        let answer = reply.json();
        assert_eq!(answer["id"], 4);
        assert_eq!(answer["error"]["code"], -32020, "{header:?}");
    }
    // A 2026-07-28 header over legacy `_meta`: the same.
    let mut legacy_meta = call.clone();
    legacy_meta["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
    let reply = post_as(&upstream, Some(MODERN), &legacy_meta).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["code"], -32020);
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn an_unsupported_version_is_refused_with_the_supported_ones() {
    let (endpoint, upstream) = serve("data", config).await;
    let supported = json!([
        "2026-07-28",
        "2025-11-25",
        "2025-06-18",
        "2025-03-26",
        "2024-11-05"
    ]);
    let mut params = modern_params(json!({"name": "execute_operation_get_facts"}));
    params["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let reply = post_as(
        &upstream,
        Some("2099-01-01"),
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let error = &reply.json()["error"];
    assert_eq!(error["code"], -32022);
    assert_eq!(
        error["data"],
        json!({"supported": supported, "requested": "2099-01-01"})
    );
    // A header alone, without `_meta`, is held to the same list.
    let reply = post_as(
        &upstream,
        Some("1900-01-01"),
        &json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"]["data"]["requested"], "1900-01-01");
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn a_2026_07_28_request_without_its_meta_fields_is_invalid_params() {
    let (endpoint, upstream) = serve("data", config).await;
    let name = json!({"name": "execute_operation_get_facts"});
    let no_capabilities = json!({
        "name": "execute_operation_get_facts",
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN},
    });
    for params in [None, Some(name), Some(no_capabilities)] {
        let mut body = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call"});
        if let Some(params) = &params {
            body["params"] = params.clone();
        }
        let reply = post_as(&upstream, Some(MODERN), &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{params:?}");
        assert_eq!(reply.json()["error"]["code"], -32602, "{params:?}");
    }
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn batches_are_refused_outside_2025_03_26() {
    let (endpoint, upstream) = serve("data", config).await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "execute_operation_get_facts"}},
    ]);
    for version in ["2025-06-18", "2025-11-25", MODERN] {
        let reply = post_as(&upstream, Some(version), &batch).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{version}");
        let error = &reply.json()["error"];
        assert_eq!(error["code"], -32600, "{version}");
        assert_eq!(
            error["message"],
            format!("JSON-RPC batches are not part of MCP protocol version {version}")
        );
    }
    assert!(endpoint.recorder.all().is_empty());
    // Without a header (2025-03-26) the batch is answered.
    let reply = post_as(&upstream, None, &batch).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(endpoint.recorder.all().len(), 1);
}

// ---- tools/list ----

#[tokio::test]
async fn tools_list_has_every_operation_and_only_get_operation_info_by_default() {
    let (_endpoint, upstream) = serve("data", config).await;
    let list = rpc(&upstream, "tools/list", json!({})).await["result"].clone();
    assert_eq!(
        tool_names(&list),
        [
            "execute_operation_get_facts",
            "execute_operation_get_top_secret_facts",
            "execute_operation_list_employees",
            "execute_operation_search",
            "execute_operation_node_by_id",
            "execute_operation_60_status",
            "execute_operation_get_api_status",
            "execute_operation_add_fact",
            "execute_operation_get_schema",
            "get_operation_info",
        ]
    );
    // One page: no cursor to follow.
    assert_eq!(list.as_object().unwrap().len(), 1, "{list}");
    let catalog_tool = upstream.catalog().find("GetFacts").unwrap();
    let facts = listed(&list, "execute_operation_get_facts");
    assert_eq!(
        *facts,
        json!({
            "name": "execute_operation_get_facts",
            "description": catalog_tool.description.clone().unwrap(),
            "inputSchema": catalog_tool.input_schema,
            "annotations": {"readOnlyHint": true},
        })
    );
    assert_eq!(
        listed(&list, "execute_operation_add_fact")["annotations"],
        json!({"readOnlyHint": false})
    );
    // No description in the file: one is made from the operation.
    assert_eq!(
        listed(&list, "execute_operation_node_by_id")["description"],
        "Runs the GraphQL query NodeById."
    );
    let info = listed(&list, "get_operation_info");
    assert_eq!(info["inputSchema"]["type"], "object");
    assert_eq!(info["inputSchema"]["required"], json!(["operationName"]));
    assert_eq!(info["annotations"], json!({"readOnlyHint": true}));
    for tool in list["tools"].as_array().unwrap() {
        assert!(tool.get("_meta").is_none(), "{tool}");
        assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
    }
}

#[tokio::test]
async fn tools_list_adds_get_schema_and_execute_graphql_when_switched_on() {
    let endpoint = Endpoint::start().await;
    let mut schema_only = config(endpoint.url("data"));
    schema_only.expose_schema = true;
    let list = rpc(&upstream(&schema_only), "tools/list", json!({})).await["result"].clone();
    let names = tool_names(&list);
    assert_eq!(
        names[names.len() - 2..],
        ["get_operation_info", "get_schema"]
    );

    let mut arbitrary_only = config(endpoint.url("data"));
    arbitrary_only.enable_arbitrary_operations = true;
    let list = rpc(&upstream(&arbitrary_only), "tools/list", json!({})).await["result"].clone();
    let names = tool_names(&list);
    assert_eq!(
        names[names.len() - 2..],
        ["get_operation_info", "execute_graphql"]
    );
    assert!(!names.contains(&"get_schema"));
    let execute = listed(&list, "execute_graphql");
    assert_eq!(execute["inputSchema"]["required"], json!(["query"]));
    assert_eq!(
        execute["inputSchema"]["properties"]["variables"]["type"],
        "object"
    );
    assert_eq!(execute["annotations"], json!({"readOnlyHint": false}));

    let list = rpc(
        &upstream(&everything_on(endpoint.url("data"))),
        "tools/list",
        json!({}),
    )
    .await["result"]
        .clone();
    let names = tool_names(&list);
    assert_eq!(
        names[names.len() - 3..],
        ["get_operation_info", "get_schema", "execute_graphql"]
    );
    assert_eq!(
        listed(&list, "get_schema")["inputSchema"],
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    );
}

#[tokio::test]
async fn excluded_mutations_leave_the_list_and_make_execute_graphql_read_only() {
    let endpoint = Endpoint::start().await;
    let mut config = everything_on(endpoint.url("data"));
    config.exclude_mutations = true;
    let list = rpc(&upstream(&config), "tools/list", json!({})).await["result"].clone();
    assert!(!tool_names(&list).contains(&"execute_operation_add_fact"));
    assert_eq!(
        listed(&list, "execute_graphql")["annotations"],
        json!({"readOnlyHint": true})
    );
}

#[tokio::test]
async fn the_prefix_can_be_omitted() {
    let endpoint = Endpoint::start().await;
    let mut config = config(endpoint.url("data"));
    config.omit_tool_name_prefix = true;
    let upstream = upstream(&config);
    let list = rpc(&upstream, "tools/list", json!({})).await["result"].clone();
    let names = tool_names(&list);
    assert_eq!(names.first(), Some(&"get_facts"));
    // 95_get_schema.graphql would take a built-in's name: skipped.
    assert_eq!(names.iter().filter(|n| **n == "get_schema").count(), 0);
    let result = call(&upstream, "get_facts", json!({})).await;
    assert_eq!(result["isError"], false);
}

// ---- tools/call of an operation tool ----

#[tokio::test]
async fn a_call_posts_the_document_and_the_arguments_as_variables_exactly() {
    let (endpoint, upstream) = serve("data", config).await;
    let arguments = json!({"filter": {"name": "Ada", "reports": {"managerId": "7"}}, "limit": 3});
    call(
        &upstream,
        "execute_operation_list_employees",
        arguments.clone(),
    )
    .await;
    let request = endpoint.recorder.only();
    assert_eq!(request.path, "/data");
    assert_eq!(
        request.body,
        json!({
            "query": upstream.catalog().find("ListEmployees").unwrap().document,
            "variables": arguments,
        })
    );
    assert_eq!(request.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        request.headers[header::ACCEPT],
        "application/graphql-response+json, application/json"
    );
}

#[tokio::test]
async fn absent_arguments_are_empty_variables() {
    let (endpoint, upstream) = serve("data", config).await;
    let answer = rpc(
        &upstream,
        "tools/call",
        json!({"name": "execute_operation_get_api_status"}),
    )
    .await;
    assert_eq!(answer["result"]["isError"], false);
    assert_eq!(endpoint.recorder.only().body["variables"], json!({}));
}

#[tokio::test]
async fn the_client_credentials_never_reach_the_endpoint_and_the_configured_headers_do() {
    let endpoint = Endpoint::start().await;
    let mut config = config(endpoint.url("data"));
    config.headers.insert(
        "Authorization".to_owned(),
        Secret::new("Bearer upstream-token"),
    );
    config
        .headers
        .insert("X-Upstream-Key".to_owned(), Secret::new("k-123"));
    let upstream = upstream(&config);
    call(
        &upstream,
        "execute_operation_get_facts",
        json!({"limit": 1}),
    )
    .await;
    let headers = endpoint.recorder.only().headers;
    let authorization: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
    assert_eq!(authorization, ["Bearer upstream-token"]);
    assert_eq!(headers["x-upstream-key"], "k-123");
    for name in [
        "cookie",
        "x-api-key",
        "mcp-protocol-version",
        "mcp-session-id",
    ] {
        assert!(!headers.contains_key(name), "{name} reached the endpoint");
    }
    assert_ne!(headers[header::USER_AGENT], "client/1.0");
    // mcpgate's own request id and trace context do go on.
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(
        headers["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(headers["tracestate"], "vendor=1");
}

#[tokio::test]
async fn without_configured_headers_the_endpoint_gets_no_authorization_at_all() {
    let (endpoint, upstream) = serve("data", config).await;
    call(&upstream, "execute_operation_get_facts", json!({})).await;
    let headers = endpoint.recorder.only().headers;
    assert!(!headers.contains_key(header::AUTHORIZATION));
    assert!(!headers.contains_key(header::COOKIE));
}

#[tokio::test]
async fn data_is_the_structured_content_and_the_text() {
    let (_endpoint, upstream) = serve("data", config).await;
    let result = call(
        &upstream,
        "execute_operation_get_facts",
        json!({"limit": 1}),
    )
    .await;
    assert_eq!(
        result,
        json!({
            "content": [{"type": "text", "text": r#"{"facts":[{"title":"Water is wet","body":null}]}"#}],
            "structuredContent": {"facts": [{"title": "Water is wet", "body": null}]},
            "isError": false,
        })
    );
}

#[tokio::test]
async fn graphql_errors_are_a_tool_error_with_the_messages_and_partial_data() {
    let (endpoint, upstream) = serve("errors", config).await;
    let result = call(&upstream, "execute_operation_get_facts", json!({})).await;
    assert_eq!(error_text(&result), "facts are sealed\ntry again later");
    assert_eq!(
        result["structuredContent"],
        json!({"facts": null, "status": {"healthy": true}})
    );

    let upstream = self::upstream(&config(endpoint.url("null-data")));
    let result = call(&upstream, "execute_operation_get_facts", json!({})).await;
    assert_eq!(error_text(&result), "nothing at all");
    assert!(result.get("structuredContent").is_none());
}

#[tokio::test]
async fn an_http_error_is_a_tool_error_naming_the_status_not_the_endpoint() {
    let (endpoint, upstream) = serve("500", config).await;
    let result = call(&upstream, "execute_operation_get_facts", json!({})).await;
    assert_eq!(
        error_text(&result),
        "the GraphQL endpoint answered HTTP 500 Internal Server Error"
    );
    assert!(result.get("structuredContent").is_none());

    let upstream = self::upstream(&config(endpoint.url("400")));
    let result = call(
        &upstream,
        "execute_operation_get_facts",
        json!({"limit": "x"}),
    )
    .await;
    assert_eq!(
        error_text(&result),
        "the GraphQL endpoint answered HTTP 400 Bad Request\nVariable \"$limit\" got invalid value \"x\"."
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_tool_error() {
    let (_endpoint, upstream) = serve("not-json", config).await;
    let result = call(&upstream, "execute_operation_get_facts", json!({})).await;
    assert_eq!(
        error_text(&result),
        "the GraphQL endpoint's answer (HTTP 200 OK) is not JSON"
    );
}

#[tokio::test]
async fn a_slow_endpoint_is_a_tool_error_after_the_timeout() {
    let (_endpoint, upstream) = serve("slow", config).await;
    let started = std::time::Instant::now();
    let result = call(&upstream, "execute_operation_get_facts", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        error_text(&result),
        "the GraphQL endpoint did not answer within 500ms"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_tool_error_without_its_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let upstream = upstream(&config(
        Url::parse(&format!("http://{address}/graphql")).unwrap(),
    ));
    let result = call(&upstream, "execute_operation_get_facts", json!({})).await;
    assert_eq!(
        error_text(&result),
        "the GraphQL endpoint could not be reached"
    );
    assert!(!result.to_string().contains(&address.port().to_string()));
}

#[tokio::test]
async fn an_oversized_answer_is_a_tool_error_declared_or_streamed() {
    let endpoint = Endpoint::start().await;
    for path in ["huge", "huge-stream"] {
        let upstream = upstream(&config(endpoint.url(path)));
        let result = call(&upstream, "execute_operation_get_facts", json!({})).await;
        assert_eq!(result["isError"], true, "{path}");
        assert_eq!(
            text(&result),
            "the GraphQL endpoint's answer (HTTP 200) is larger than 16 MiB",
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_unknown_tool_is_invalid_params() {
    let (endpoint, upstream) = serve("data", config).await;
    for name in [
        "execute_operation_nope",
        "GetFacts",
        "get_schema",
        "execute_graphql",
    ] {
        let error = rpc_error(&upstream, "tools/call", json!({"name": name})).await;
        assert_eq!(error["code"], -32602, "{name}");
        assert_eq!(error["message"], format!("unknown tool: \"{name}\""));
    }
    let error = rpc_error(&upstream, "tools/call", json!({"arguments": {}})).await;
    assert_eq!(error["code"], -32602);
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn arguments_that_are_not_an_object_are_invalid_params() {
    let (endpoint, upstream) = serve("data", everything_on).await;
    for name in [
        "execute_operation_get_facts",
        "get_operation_info",
        "execute_graphql",
    ] {
        for arguments in [json!([1, 2]), json!("limit=2"), json!(2)] {
            let error = rpc_error(
                &upstream,
                "tools/call",
                json!({"name": name, "arguments": arguments}),
            )
            .await;
            assert_eq!(error["code"], -32602, "{name} {arguments}");
            assert_eq!(
                error["message"],
                format!("the arguments of tool {name} must be a JSON object")
            );
        }
    }
    assert!(endpoint.recorder.all().is_empty());
}

// ---- get_operation_info ----

#[tokio::test]
async fn get_operation_info_by_operation_name_and_by_tool_name() {
    let (endpoint, upstream) = serve("data", config).await;
    let by_operation = operation_info(&upstream, "GetFacts").await;
    let by_tool = operation_info(&upstream, "execute_operation_get_facts").await;
    assert_eq!(by_operation, by_tool);
    assert_eq!(by_operation["isError"], false);
    let tool = upstream.catalog().find("GetFacts").unwrap();
    let structured = &by_operation["structuredContent"];
    assert_eq!(structured["operationName"], "GetFacts");
    assert_eq!(structured["toolName"], "execute_operation_get_facts");
    assert_eq!(structured["kind"], "query");
    assert_eq!(structured["document"], tool.document.trim());
    assert_eq!(structured["inputSchema"], tool.input_schema);
    assert_eq!(
        structured["requiredScopes"],
        json!([["read:fact"], ["read:all"]])
    );
    let text = text(&by_operation);
    assert!(
        text.contains("Required scopes (OR-of-AND): (read:fact) OR (read:all)"),
        "{text}"
    );
    assert!(text.contains("fragment FactFields on Fact"), "{text}");
    assert!(text.contains("\"limit\""), "{text}");
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn get_operation_info_spells_and_groups_and_no_scopes() {
    let (_endpoint, upstream) = serve("data", config).await;
    let secret = operation_info(&upstream, "GetTopSecretFacts").await;
    assert!(
        text(&secret).contains("(read:fact AND read:private) OR (read:all AND read:private)"),
        "{}",
        text(&secret)
    );
    let status = operation_info(&upstream, "GetAPIStatus").await;
    assert!(
        text(&status).contains("Required scopes (OR-of-AND): none"),
        "{}",
        text(&status)
    );
    assert_eq!(status["structuredContent"]["requiredScopes"], json!([]));
}

#[tokio::test]
async fn get_operation_info_of_an_unknown_operation_is_a_tool_error() {
    let (_endpoint, upstream) = serve("data", config).await;
    let result = operation_info(&upstream, "FactAdded").await;
    assert!(
        error_text(&result).contains("\"FactAdded\""),
        "{}",
        text(&result)
    );

    for arguments in [
        json!({}),
        json!({"operationName": 3}),
        json!({"operationName": "GetFacts", "x": 1}),
    ] {
        let error = rpc_error(
            &upstream,
            "tools/call",
            json!({"name": "get_operation_info", "arguments": arguments}),
        )
        .await;
        assert_eq!(error["code"], -32602, "{arguments}");
    }
}

// ---- get_schema ----

#[tokio::test]
async fn get_schema_returns_the_sdl_only_when_exposed() {
    let endpoint = Endpoint::start().await;
    let mut exposed = config(endpoint.url("data"));
    exposed.expose_schema = true;
    let result = call(&upstream(&exposed), "get_schema", json!({})).await;
    assert_eq!(result["isError"], false);
    assert_eq!(
        text(&result),
        std::fs::read_to_string(fixtures().join("schema.graphql")).unwrap()
    );

    let hidden = upstream(&config(endpoint.url("data")));
    let error = rpc_error(&hidden, "tools/call", json!({"name": "get_schema"})).await;
    assert_eq!(error["code"], -32602);
    assert!(endpoint.recorder.all().is_empty());
}

// ---- execute_graphql ----

#[tokio::test]
async fn execute_graphql_runs_a_valid_query_with_its_variables_and_operation_name() {
    let (endpoint, upstream) = serve("echo", everything_on).await;
    let query = "query A { status { healthy } } query B($n: Int) { facts(limit: $n) { title } }";
    let result = execute_graphql(
        &upstream,
        json!({"query": query, "variables": {"n": 2}, "operationName": "B"}),
    )
    .await;
    assert_eq!(result["isError"], false, "{result}");
    let sent = json!({"query": query, "variables": {"n": 2}, "operationName": "B"});
    assert_eq!(endpoint.recorder.only().body, sent);
    assert_eq!(result["structuredContent"], json!({"received": sent}));
}

#[tokio::test]
async fn execute_graphql_without_variables_sends_empty_ones_and_no_operation_name() {
    let (endpoint, upstream) = serve("data", everything_on).await;
    execute_graphql(&upstream, json!({"query": "{ status { healthy } }"})).await;
    assert_eq!(
        endpoint.recorder.only().body,
        json!({"query": "{ status { healthy } }", "variables": {}})
    );
}

#[tokio::test]
async fn execute_graphql_only_when_enabled() {
    let (endpoint, upstream) = serve("data", config).await;
    let error = rpc_error(
        &upstream,
        "tools/call",
        json!({"name": "execute_graphql", "arguments": {"query": "{ status { healthy } }"}}),
    )
    .await;
    assert_eq!(error["code"], -32602);
    assert_eq!(error["message"], "unknown tool: \"execute_graphql\"");
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn execute_graphql_refuses_an_invalid_query_with_the_validation_message() {
    let (endpoint, upstream) = serve("data", everything_on).await;
    let result = execute_graphql(&upstream, json!({"query": "{ status { sick } }"})).await;
    let message = error_text(&result);
    assert!(
        message.starts_with("invalid GraphQL request: "),
        "{message}"
    );
    assert!(message.contains("sick"), "{message}");
    let result = execute_graphql(
        &upstream,
        json!({"query": "query A { status { healthy } }", "operationName": "B"}),
    )
    .await;
    assert_eq!(result["isError"], true);
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn execute_graphql_refuses_subscriptions() {
    let (endpoint, upstream) = serve("data", everything_on).await;
    let result = execute_graphql(
        &upstream,
        json!({"query": "subscription { factAdded { title } }"}),
    )
    .await;
    assert!(error_text(&result).contains("subscriptions are not supported"));
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn execute_graphql_refuses_mutations_only_when_they_are_excluded() {
    let endpoint = Endpoint::start().await;
    let mutation = json!({
        "query": "mutation($t: String!) { addFact(input: {title: $t}) { id } }",
        "variables": {"t": "new"},
    });
    let mut excluded = everything_on(endpoint.url("data"));
    excluded.exclude_mutations = true;
    let result = execute_graphql(&upstream(&excluded), mutation.clone()).await;
    assert_eq!(error_text(&result), "mutations are disabled on this server");
    assert!(endpoint.recorder.all().is_empty());

    let allowed = upstream(&everything_on(endpoint.url("data")));
    let result = execute_graphql(&allowed, mutation).await;
    assert_eq!(result["isError"], false);
    assert_eq!(endpoint.recorder.all().len(), 1);
}

#[tokio::test]
async fn execute_graphql_arguments_of_the_wrong_type_are_invalid_params() {
    let (endpoint, upstream) = serve("data", everything_on).await;
    for arguments in [
        json!({}),
        json!({"query": 1}),
        json!({"query": "{ status { healthy } }", "variables": [1]}),
        json!({"query": "{ status { healthy } }", "operationName": 1}),
        json!({"query": "{ status { healthy } }", "extensions": {}}),
    ] {
        let error = rpc_error(
            &upstream,
            "tools/call",
            json!({"name": "execute_graphql", "arguments": arguments}),
        )
        .await;
        assert_eq!(error["code"], -32602, "{arguments}");
    }
    assert!(endpoint.recorder.all().is_empty());
}

#[tokio::test]
async fn execute_graphql_over_the_combination_limit_is_refused_here_too() {
    let endpoint = Endpoint::start().await;
    let upstream = build(&everything_on(endpoint.url("data")), 8).unwrap();
    let result = execute_graphql(
        &upstream,
        json!({"query": "{ audit { cpu memory disk network } }"}),
    )
    .await;
    assert!(
        error_text(&result).contains("more than the limit of 8"),
        "{}",
        text(&result)
    );
    assert!(endpoint.recorder.all().is_empty());
}

// ---- execute_graphql_requirement ----

#[tokio::test]
async fn execute_graphql_requirement_analyses_the_submitted_query() {
    let (_endpoint, upstream) = serve("data", everything_on).await;
    let requirement = upstream
        .execute_graphql_requirement(&json!({"query": "{ facts { title private } }"}), LIMIT)
        .unwrap()
        .unwrap();
    assert_eq!(
        requirement.groups(),
        [
            vec!["read:fact".to_owned(), "read:private".to_owned()],
            vec!["read:all".to_owned(), "read:private".to_owned()],
        ]
    );
    // The named operation is the one analysed.
    let requirement = upstream
        .execute_graphql_requirement(
            &json!({"query": "query A { facts { title } } query B { status { healthy } }", "operationName": "B"}),
            LIMIT,
        )
        .unwrap()
        .unwrap();
    assert!(requirement.is_empty());
}

#[tokio::test]
async fn execute_graphql_requirement_reports_the_limit_and_invalid_queries() {
    let (_endpoint, upstream) = serve("data", everything_on).await;
    let arguments = json!({"query": "{ audit { cpu memory disk network } }"});
    assert_eq!(
        upstream
            .execute_graphql_requirement(&arguments, 16)
            .unwrap()
            .unwrap()
            .groups()
            .len(),
        16
    );
    let over = upstream
        .execute_graphql_requirement(&arguments, 15)
        .unwrap();
    assert!(
        matches!(over, Err(GraphqlError::QueryScopes { .. })),
        "{over:?}"
    );
    let invalid = upstream
        .execute_graphql_requirement(&json!({"query": "{ nope }"}), LIMIT)
        .unwrap();
    assert!(
        matches!(invalid, Err(GraphqlError::InvalidQuery { .. })),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn execute_graphql_requirement_is_none_without_a_query_or_the_tool() {
    let (endpoint, upstream) = serve("data", everything_on).await;
    for arguments in [
        json!({}),
        json!({"query": 1}),
        json!(null),
        json!(["{ status { healthy } }"]),
    ] {
        assert!(
            upstream
                .execute_graphql_requirement(&arguments, LIMIT)
                .is_none(),
            "{arguments}"
        );
    }
    let off = self::upstream(&config(endpoint.url("data")));
    assert!(
        off.execute_graphql_requirement(&json!({"query": "{ facts { title } }"}), LIMIT)
            .is_none()
    );
}

// ---- configuration ----

/// An upstream of `config` with `limit` scope combinations and one-second timeouts.
fn build(
    config: &GraphqlUpstreamConfig,
    limit: usize,
) -> Result<GraphqlUpstream, GraphqlSetupError> {
    GraphqlUpstream::from_config(
        config,
        limit,
        Duration::from_secs(1),
        Duration::from_secs(1),
    )
}

fn setup_error(config: &GraphqlUpstreamConfig, limit: usize) -> GraphqlSetupError {
    build(config, limit).unwrap_err()
}

#[test]
fn setup_errors_name_the_key() {
    let good = || config(Url::parse("http://127.0.0.1:9/graphql").unwrap());
    let operations = |folder: &str| GraphqlUpstreamConfig {
        operations: fixtures().join(folder),
        ..good()
    };
    let schema = |file: &str| GraphqlUpstreamConfig {
        schema: fixtures().join(file),
        ..good()
    };
    let header = |name: &str, value: &str| {
        let mut config = good();
        config.headers.insert(name.to_owned(), Secret::new(value));
        config
    };
    // (case, config, combination limit, the key named, what the message says)
    let cases = [
        (
            "missing folder",
            operations("no-such-folder"),
            LIMIT,
            "upstream.graphql.operations",
            "no-such-folder",
        ),
        (
            "broken operation",
            operations("broken"),
            LIMIT,
            "upstream.graphql.operations",
            "20_unknown_field.graphql",
        ),
        (
            "too many combinations",
            operations("too_many"),
            4,
            "upstream.graphql.operations",
            "more than the limit of 4",
        ),
        (
            "missing schema",
            schema("no-such-schema.graphql"),
            LIMIT,
            "upstream.graphql.schema",
            "",
        ),
        (
            "not a schema",
            schema("operations/10_get_facts.graphql"),
            LIMIT,
            "upstream.graphql.schema",
            "",
        ),
        (
            "bad header name",
            header("Bad Header", "x"),
            LIMIT,
            "upstream.graphql.headers.Bad Header",
            "",
        ),
        (
            "bad header value",
            header("X-Key", "line\nbreak"),
            LIMIT,
            "upstream.graphql.headers.X-Key",
            "",
        ),
    ];
    for (case, config, limit, key, says) in cases {
        let error = setup_error(&config, limit);
        assert_eq!(error.key, key, "{case}");
        assert!(error.message.contains(says), "{case}: {error}");
        // A header value is a secret: no error repeats it.
        assert!(!error.to_string().contains("break"), "{case}: {error}");
    }

    let error = setup_error(
        &config(Url::parse("ftp://127.0.0.1/graphql").unwrap()),
        LIMIT,
    );
    assert_eq!(error.key, "upstream.graphql.endpoint");
    assert_eq!(
        error.to_string(),
        "upstream.graphql.endpoint: must be an http or https URL"
    );
}

#[test]
fn the_configured_header_values_stay_out_of_debug_output() {
    let mut config = config(Url::parse("http://127.0.0.1:9/graphql").unwrap());
    config.headers.insert(
        "Authorization".to_owned(),
        Secret::new("Bearer upstream-secret"),
    );
    let upstream = build(&config, LIMIT).unwrap();
    assert!(!format!("{upstream:?}").contains("upstream-secret"));
}

#[test]
fn the_builtin_scopes_are_carried_for_the_policy() {
    let config: GraphqlUpstreamConfig = serde_json::from_value(json!({
        "endpoint": "http://127.0.0.1:9/graphql",
        "schema": fixtures().join("schema.graphql"),
        "operations": fixtures().join("operations"),
        "enable_arbitrary_operations": true,
        "scopes": {"execute_graphql": ["graphql:any"], "get_operation_info": ["mcp:info"]},
    }))
    .unwrap();
    let upstream = build(&config, LIMIT).unwrap();
    assert_eq!(upstream.builtin_scopes().execute_graphql, ["graphql:any"]);
    assert_eq!(upstream.builtin_scopes().get_operation_info, ["mcp:info"]);
    assert!(upstream.builtin_scopes().get_schema.is_empty());
    let offered: Vec<&str> = upstream.builtins().iter().map(|b| b.name()).collect();
    assert_eq!(offered, ["get_operation_info", "execute_graphql"]);
}
