//! List filtering against the real binary, with an upstream that answers exactly the
//! bytes a test gives it: answers mcpgate cannot read strictly are refused (never
//! passed on with the entries a client's laxer reader would find in them),
//! `cacheScope` is made private where another caller could see something else, and
//! resource updates the caller may not read never reach it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use http::Method;
use serde_json::{Value, json};

use crate::common::*;

/// What no caller without `mcp:admin` may ever see.
const HIDDEN: &str = "admin_reset";

/// One canned upstream answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    content_type: Option<&'static str>,
    /// A `Content-Encoding` header, claimed whatever the body is.
    encoding: Option<&'static str>,
    /// Sent as separate chunks.
    chunks: Vec<Vec<u8>>,
}

impl Canned {
    fn new(status: u16, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            encoding: None,
            chunks: vec![body.into()],
        }
    }

    fn json(body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, Some("application/json"), body)
    }

    fn sse(body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, Some("text/event-stream"), body)
    }
}

type Script = Arc<Mutex<HashMap<String, Canned>>>;

/// An upstream answering each JSON-RPC method (`GET` for the GET stream) with the
/// bytes the test put in its script.
struct Scripted {
    url: String,
    script: Script,
}

impl Scripted {
    async fn start() -> Self {
        let script: Script = Arc::default();
        let router = Router::new()
            .route("/mcp", any(scripted))
            .with_state(script.clone());
        let addr = spawn_router(router).await;
        Self {
            url: format!("http://{addr}/mcp"),
            script,
        }
    }

    fn answer(&self, method: &str, canned: Canned) {
        self.script
            .lock()
            .unwrap()
            .insert(method.to_owned(), canned);
    }
}

async fn scripted(State(script): State<Script>, method: Method, body: Bytes) -> Response {
    let key = if method == Method::GET {
        "GET".to_owned()
    } else {
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        message["method"].as_str().unwrap_or_default().to_owned()
    };
    let canned = script.lock().unwrap().get(&key).cloned();
    let Some(canned) = canned else {
        return Response::builder()
            .status(500)
            .body(Body::from(format!("no answer scripted for {key}")))
            .unwrap();
    };
    let mut response = Response::builder().status(canned.status);
    if let Some(content_type) = canned.content_type {
        response = response.header("content-type", content_type);
    }
    if let Some(encoding) = canned.encoding {
        response = response.header("content-encoding", encoding);
    }
    let chunks = canned
        .chunks
        .into_iter()
        .map(|chunk| Ok::<_, std::io::Error>(Bytes::from(chunk)));
    response
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

struct Setup {
    upstream: Scripted,
    gateway: Gateway,
    /// An API key holding every scope.
    ci_key: String,
}

async fn setup_with(rules: &str) -> Setup {
    let upstream = Scripted::start().await;
    let (ci_key, ci_hash) = mcpgate::auth::api_keys::generate("ci").unwrap();
    let config = TestConfig::oauth(&upstream.url)
        .api_key_with_scopes("ci", &ci_hash, r#"["*"]"#)
        .audit()
        .scopes(
            r#"
initialize: [mcp:connect]
tools:
  "admin_*": mcp:admin
resources:
  "file:///secret/*": mcp:admin
"#,
        )
        .yaml(rules);
    let gateway = Gateway::start(&config.build()).await;
    Setup {
        upstream,
        gateway,
        ci_key,
    }
}

async fn setup() -> Setup {
    setup_with("").await
}

/// A caller without `mcp:admin`.
const USER: &str = "mcp:connect";

impl Setup {
    fn token(&self, scopes: &str) -> String {
        hs256(&claims(&self.gateway.mcp, scopes), Some("dev"))
    }

    /// POSTs `{"id":1,"method":<method>}` with `params`; status and raw body.
    async fn request_as(&self, credential: &str, method: &str, params: Value) -> (u16, Vec<u8>) {
        let response = Request::post(&self.gateway)
            .bearer(credential)
            .json(&rpc(1, method, params))
            .send()
            .await;
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    async fn request(&self, method: &str) -> (u16, Vec<u8>) {
        self.request_as(&self.token(USER), method, json!({})).await
    }

    /// A `tools/list` of [`USER`]'s that the upstream answers with `canned`.
    async fn list_answered(&self, canned: Canned) -> (u16, Vec<u8>) {
        self.upstream.answer("tools/list", canned);
        self.request("tools/list").await
    }

    /// Opens the GET stream and reads it to its end.
    async fn get_stream(&self, credential: &str) -> (u16, Vec<u8>) {
        let response = Request::get(&self.gateway)
            .bearer(credential)
            .header("accept", "text/event-stream")
            .send()
            .await;
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }
}

/// A `tools/list` answer: one tool anyone may see, one only `mcp:admin` may.
fn tools_answer(extra: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"echo","description":"{extra}","inputSchema":{{"type":"object"}}}},{{"name":"{HIDDEN}","inputSchema":{{"type":"object"}}}}]}}}}"#
    )
}

/// The answer as a 2026-07-28 server writes it, with caching hints.
fn cached_tools_answer(scope: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"resultType":"complete","tools":[{{"name":"echo","inputSchema":{{"type":"object"}}}},{{"name":"{HIDDEN}","inputSchema":{{"type":"object"}}}}],"ttlMs":300000,"cacheScope":"{scope}"}}}}"#
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The JSON-RPC messages of an SSE body, in order (lossily decoded, as a client does).
fn sse_messages(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            let data = data.join("\n");
            (!data.is_empty()).then(|| serde_json::from_str(&data).unwrap())
        })
        .collect()
}

/// The refusal a client gets instead of an unreadable list answer: `502`, a JSON-RPC
/// error for its request, nothing of the list.
fn assert_refused(status: u16, body: &[u8], message: &str) {
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(body));
    assert!(!contains(body, HIDDEN), "{}", String::from_utf8_lossy(body));
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": message}})
    );
}

const NOT_JSON: &str = "mcpgate refused an upstream answer that is not strict JSON";
const NOT_UTF8: &str = "mcpgate refused an upstream answer that is not UTF-8";

// ---- fail closed: JSON ----

#[tokio::test]
async fn a_json_list_answer_with_a_byte_order_mark_is_refused() {
    let setup = setup().await;
    let answer = [b"\xEF\xBB\xBF".as_slice(), tools_answer("x").as_bytes()].concat();
    let (status, body) = setup.list_answered(Canned::json(answer)).await;
    assert_refused(status, &body, NOT_JSON);
    assert!(
        setup
            .gateway
            .wait_for_log("upstream list answer refused: mcpgate refused an upstream answer that is not strict JSON")
            .await
    );
    let records = audit_records(&setup.gateway, 1).await;
    let record = records.last().unwrap();
    assert_eq!(record["status"], 502);
    assert_eq!(record["reason"], NOT_JSON);
}

#[tokio::test]
async fn a_json_list_answer_that_is_not_utf8_is_refused() {
    let setup = setup().await;
    // Latin-1 in a description: Python and Node decode it to U+FFFD and read the list.
    let mut answer = tools_answer("caf").into_bytes();
    let at = answer.windows(3).position(|w| w == b"caf").unwrap() + 3;
    answer.insert(at, 0xE9);
    let (status, body) = setup.list_answered(Canned::json(answer)).await;
    assert_refused(status, &body, NOT_UTF8);
}

#[tokio::test]
async fn a_json_list_answer_that_is_not_strict_json_is_refused() {
    let setup = setup().await;
    for answer in [
        // Python's json accepts NaN.
        tools_answer("x").replace(r#""description":"x""#, r#""description":NaN"#),
        format!("{} trailing", tools_answer("x")),
        tools_answer("x").trim_end_matches('}').to_owned(),
        "   ".to_owned(),
    ] {
        let (status, body) = setup.list_answered(Canned::json(answer)).await;
        assert_refused(status, &body, NOT_JSON);
    }
}

#[tokio::test]
async fn a_list_answer_of_another_content_type_is_refused() {
    let setup = setup().await;
    for content_type in [Some("text/plain"), Some("text/html; charset=utf-8"), None] {
        let (status, body) = setup
            .list_answered(Canned::new(200, content_type, tools_answer("x")))
            .await;
        assert_refused(
            status,
            &body,
            "mcpgate refused an upstream list answer that is neither JSON nor an event stream",
        );
    }
    // An empty answer carries nothing to hide.
    let (status, body) = setup
        .list_answered(Canned::new(202, None, Vec::new()))
        .await;
    assert_eq!((status, body), (202, Vec::new()));
}

#[tokio::test]
async fn a_content_encoded_list_answer_is_refused() {
    let setup = setup().await;
    let mut canned = Canned::json(tools_answer("x"));
    canned.encoding = Some("gzip");
    let (status, body) = setup.list_answered(canned).await;
    assert_refused(
        status,
        &body,
        "mcpgate refused an upstream answer with a content encoding",
    );
}

#[tokio::test]
async fn an_answer_whose_id_is_not_exactly_the_request_s_is_cut_too() {
    let setup = setup().await;
    // Node's SDK matches `"1"` to request 1.
    let answer = tools_answer("x").replace(r#""id":1"#, r#""id":"1""#);
    let (status, body) = setup.list_answered(Canned::json(answer)).await;
    assert_eq!(status, 200);
    assert!(
        !contains(&body, HIDDEN),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["result"]["tools"][0]["name"], "echo");
}

#[tokio::test]
async fn an_error_status_is_filtered_when_it_carries_json_and_passed_otherwise() {
    let setup = setup().await;
    // A list result under an error status: cut like any other.
    let (status, body) = setup
        .list_answered(Canned::new(
            500,
            Some("application/json"),
            tools_answer("x"),
        ))
        .await;
    assert_eq!(status, 500);
    assert!(!contains(&body, HIDDEN));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["result"]["tools"][0]["name"], "echo");
    // An unreadable JSON body under an error status is refused too.
    let (status, body) = setup
        .list_answered(Canned::new(
            500,
            Some("application/json"),
            format!("\u{feff}{}", tools_answer("x")),
        ))
        .await;
    assert_refused(status, &body, NOT_JSON);
    // The upstream's JSON-RPC error, as it wrote it.
    let error = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"Session not found"}}"#;
    assert_eq!(
        setup
            .list_answered(Canned::new(404, Some("application/json"), error))
            .await,
        (404, error.as_bytes().to_vec())
    );
    // An error page is no JSON-RPC message: it passes, with its status.
    let page = "<html><body>upstream overloaded</body></html>";
    assert_eq!(
        setup
            .list_answered(Canned::new(503, Some("text/html"), page))
            .await,
        (503, page.as_bytes().to_vec())
    );
}

#[tokio::test]
async fn an_over_large_list_answer_is_refused_with_the_request_id() {
    let setup = setup().await;
    let padding = "x".repeat(33 * 1024 * 1024);
    let (status, body) = setup
        .list_answered(Canned::json(tools_answer(&padding)))
        .await;
    assert_refused(
        status,
        &body,
        "the upstream's answer could not be read in full",
    );
}

// ---- fail closed: SSE ----

#[tokio::test]
async fn an_sse_event_that_is_not_utf8_is_replaced_by_an_error() {
    let setup = setup().await;
    let mut answer = tools_answer("caf").into_bytes();
    let at = answer.windows(3).position(|w| w == b"caf").unwrap() + 3;
    answer.insert(at, 0xE9);
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
    let stream = [
        // The priming event of a resumable stream: empty data, passed as it is.
        b"id: 0\ndata:\n\n".as_slice(),
        format!("id: 1\nevent: message\ndata: {progress}\n\n").as_bytes(),
        b"id: 2\nevent: message\ndata: ",
        &answer,
        b"\n\n",
    ]
    .concat();
    let (status, body) = setup.list_answered(Canned::sse(stream)).await;
    assert_eq!(status, 200);
    assert!(
        !contains(&body, HIDDEN),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.starts_with("id: 0\ndata:\n\n"), "{text}");
    assert!(text.contains("id: 2\nevent: message\n"), "{text}");
    assert_eq!(
        sse_messages(&body),
        [
            serde_json::from_str::<Value>(progress).unwrap(),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": NOT_UTF8}}),
        ]
    );
    assert!(
        setup
            .gateway
            .wait_for_log("upstream event refused while filtering")
            .await
    );
}

#[tokio::test]
async fn an_sse_event_that_is_not_json_is_replaced_and_the_answer_after_it_still_cut() {
    let setup = setup().await;
    let stream = format!(
        "data: \u{feff}{}\n\ndata: {}\n\n",
        tools_answer("x"),
        tools_answer("y")
    );
    let (status, body) = setup.list_answered(Canned::sse(stream)).await;
    assert_eq!(status, 200);
    assert!(
        !contains(&body, HIDDEN),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let messages = sse_messages(&body);
    assert_eq!(messages[0]["error"]["message"], NOT_JSON);
    assert_eq!(messages[1]["result"]["tools"][0]["name"], "echo");
    assert_eq!(messages[1]["result"]["tools"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_sse_stream_that_ends_before_the_answer_passes_what_it_had() {
    let setup = setup().await;
    let stream = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
    let (status, body) = setup.list_answered(Canned::sse(stream)).await;
    assert_eq!((status, body), (200, stream.as_bytes().to_vec()));
}

// ---- cacheScope ----

#[tokio::test]
async fn a_filtered_list_leaves_private_with_its_ttl() {
    let setup = setup().await;
    let (status, body) = setup
        .list_answered(Canned::json(cached_tools_answer("public")))
        .await;
    assert_eq!(status, 200);
    assert!(!contains(&body, HIDDEN));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["result"]["cacheScope"], "private");
    assert_eq!(body["result"]["ttlMs"], 300000);
    // The same in an SSE answer.
    let (status, body) = setup
        .list_answered(Canned::sse(format!(
            "data: {}\n\n",
            cached_tools_answer("public")
        )))
        .await;
    assert_eq!(status, 200);
    assert!(!contains(&body, HIDDEN));
    let messages = sse_messages(&body);
    assert_eq!(messages[0]["result"]["cacheScope"], "private");
    assert_eq!(messages[0]["result"]["ttlMs"], 300000);
}

#[tokio::test]
async fn a_caller_with_every_scope_still_gets_a_private_list() {
    let setup = setup().await;
    setup
        .upstream
        .answer("tools/list", Canned::json(cached_tools_answer("public")));
    let (status, body) = setup
        .request_as(&setup.ci_key, "tools/list", json!({}))
        .await;
    assert_eq!(status, 200);
    // Nothing cut, only the scope changed, the rest byte for byte.
    assert_eq!(
        String::from_utf8(body).unwrap(),
        cached_tools_answer("private")
    );
    // A 2026-07-28 answer without cacheScope gets it.
    let bare = cached_tools_answer("public").replace(r#","cacheScope":"public""#, "");
    setup.upstream.answer("tools/list", Canned::json(bare));
    let (_, body) = setup
        .request_as(&setup.ci_key, "tools/list", json!({}))
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["result"]["cacheScope"], "private");
}

#[tokio::test]
async fn a_list_no_rule_can_filter_is_left_as_written() {
    let setup = setup().await;
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","prompts":[{"name":"greeting"}],"ttlMs":1000,"cacheScope":"public"}}"#;
    setup.upstream.answer("prompts/list", Canned::json(answer));
    assert_eq!(
        setup.request("prompts/list").await,
        (200, answer.as_bytes().to_vec())
    );
    // Not even strictly read: nothing in it needs looking at.
    let odd = format!("\u{feff}{answer}");
    setup
        .upstream
        .answer("prompts/list", Canned::json(odd.clone()));
    assert_eq!(setup.request("prompts/list").await, (200, odd.into_bytes()));
}

#[tokio::test]
async fn a_rule_about_a_kind_makes_its_lists_private_for_everyone() {
    let setup = setup_with(
        "rules:\n  - name: no-drafts\n    when:\n      client_ids: [drafts-app]\n    deny_prompts: [\"draft_*\"]\n",
    )
    .await;
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","prompts":[{"name":"greeting"},{"name":"draft_x"}],"ttlMs":1000,"cacheScope":"public"}}"#;
    setup.upstream.answer("prompts/list", Canned::json(answer));
    // The rule does not match this caller: nothing is cut, but the list is private.
    let (status, body) = setup.request("prompts/list").await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        answer.replace("public", "private")
    );
}

#[tokio::test]
async fn a_read_some_caller_could_be_refused_is_private() {
    let setup = setup().await;
    let read = |uri: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"resultType":"complete","contents":[{{"uri":"{uri}","text":"t"}}],"ttlMs":5000,"cacheScope":"public"}}}}"#
        )
    };
    setup.upstream.answer(
        "resources/read",
        Canned::json(read("file:///secret/keys.txt")),
    );
    let (status, body) = setup
        .request_as(
            &setup.ci_key,
            "resources/read",
            json!({"uri": "file:///secret/keys.txt"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        read("file:///secret/keys.txt").replace("public", "private")
    );
    // No rule can refuse this one: left alone, unread.
    setup
        .upstream
        .answer("resources/read", Canned::json(read("file:///public/a")));
    let (status, body) = setup
        .request_as(
            &setup.ci_key,
            "resources/read",
            json!({"uri": "file:///public/a"}),
        )
        .await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap()),
        (200, read("file:///public/a"))
    );
}

// ---- resource updates on notification streams ----

fn updated(uri: &str) -> String {
    json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": 1}, "uri": uri}}).to_string()
}

fn notification_stream() -> String {
    let changed = r#"{"jsonrpc":"2.0","method":"notifications/resources/list_changed"}"#;
    format!(
        "id: 1\ndata: {}\n\nid: 2\nevent: message\ndata: {}\n\nid: 3\ndata: {changed}\n\n",
        updated("file:///secret/keys.txt"),
        updated("file:///public/readme.md"),
    )
}

#[tokio::test]
async fn a_get_stream_drops_updates_of_resources_the_caller_may_not_read() {
    let setup = setup().await;
    setup
        .upstream
        .answer("GET", Canned::sse(notification_stream()));
    let (status, body) = setup.get_stream(&setup.token(USER)).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(
        text,
        format!(
            "id: 2\nevent: message\ndata: {}\n\nid: 3\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/list_changed\"}}\n\n",
            updated("file:///public/readme.md")
        )
    );
    // A caller who may read everything gets every update.
    let (_, body) = setup.get_stream(&setup.ci_key).await;
    assert_eq!(String::from_utf8(body).unwrap(), notification_stream());
}

#[tokio::test]
async fn a_listen_stream_drops_updates_of_resources_the_caller_may_not_read() {
    let setup = setup().await;
    let ack = r#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":1},"notifications":{"resourceSubscriptions":["file:///public/readme.md"]}}}"#;
    setup.upstream.answer(
        "subscriptions/listen",
        Canned::sse(format!("data: {ack}\n\n{}", notification_stream())),
    );
    let (status, body) = setup
        .request_as(
            &setup.token(USER),
            "subscriptions/listen",
            json!({"notifications": {"resourceSubscriptions": ["file:///public/readme.md"]}}),
        )
        .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("secret"), "{text}");
    let methods: Vec<Value> = sse_messages(text.as_bytes())
        .into_iter()
        .map(|message| message["method"].clone())
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/subscriptions/acknowledged",
            "notifications/resources/updated",
            "notifications/resources/list_changed"
        ]
    );
}
