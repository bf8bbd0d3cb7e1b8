//! The stdio upstream against real child processes: a small Node MCP server
//! (`tests/fixtures/stdio-server.mjs`) and the reference
//! `@modelcontextprotocol/server-everything`, driven through
//! `StdioUpstream::forward` exactly as mcpgate's MCP endpoint drives it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use mcpgate::config::Secret;
use mcpgate::upstream::UpstreamError;
use mcpgate::upstream::stdio::{CommandLine, StdioConfig, StdioUpstream};
use serde_json::{Value, json};

use crate::common::stdio::{self, alive, call, initialized, request, stdio_script, wait_until};

const BOTH: &str = "application/json, text/event-stream";
const JSON_ONLY: &str = "application/json";

// ---------------------------------------------------------------------------
// Log capture: one global subscriber writing into a buffer the tests read.

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("mcpgate=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------------
// Helpers.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_config() -> StdioConfig {
    StdioConfig::new(CommandLine::WithArgs(vec![
        "node".into(),
        stdio_script().to_string_lossy().into_owned(),
    ]))
}

fn fixture() -> StdioUpstream {
    logs();
    StdioUpstream::from_config(&fixture_config()).unwrap()
}

fn with(config: StdioConfig) -> StdioUpstream {
    logs();
    StdioUpstream::from_config(&config).unwrap()
}

fn headers(accept: &str, session: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("accept", HeaderValue::from_str(accept).unwrap());
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(session) = session {
        headers.insert("mcp-session-id", HeaderValue::from_str(session).unwrap());
    }
    headers
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The data of each SSE event, parsed.
    fn events(&self) -> Vec<Value> {
        sse_events(&String::from_utf8_lossy(&self.body))
    }

    fn session(&self) -> String {
        self.headers["mcp-session-id"].to_str().unwrap().to_owned()
    }

    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .map_or("", |value| value.to_str().unwrap())
    }
}

fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            assert!(event.starts_with("event: message\n"), "{event:?}");
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect();
            assert_eq!(data.len(), 1, "one data line per event: {event:?}");
            serde_json::from_str(data[0]).unwrap()
        })
        .collect()
}

async fn read(response: Response<Body>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body did not finish")
        .unwrap()
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn send(
    upstream: &StdioUpstream,
    method: Method,
    accept: &str,
    session: Option<&str>,
    body: &Value,
) -> Result<Answer, UpstreamError> {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    // Like mcpgate: the checked upstream session id travels in its own headers.
    let mut own = HeaderMap::new();
    if let Some(session) = session {
        own.insert("mcp-session-id", HeaderValue::from_str(session).unwrap());
    }
    own.insert("x-request-id", HeaderValue::from_static("test"));
    let response = upstream
        .forward(method, &headers(accept, None), own, body)
        .await?;
    Ok(read(response).await)
}

async fn post(
    upstream: &StdioUpstream,
    accept: &str,
    session: Option<&str>,
    body: Value,
) -> Answer {
    send(upstream, Method::POST, accept, session, &body)
        .await
        .expect("upstream error")
}

/// A DELETE of `session`, as mcpgate sends it.
async fn delete(upstream: &StdioUpstream, session: &str) -> Answer {
    send(upstream, Method::DELETE, BOTH, Some(session), &Value::Null)
        .await
        .unwrap()
}

/// A GET stream request with mcpgate's own headers `own`; the response unread.
async fn open_get(upstream: &StdioUpstream, own: HeaderMap) -> Response<Body> {
    upstream
        .forward(
            Method::GET,
            &headers("text/event-stream", None),
            own,
            Bytes::new(),
        )
        .await
        .unwrap()
}

/// A POST in `session` from a client that accepts only JSON.
async fn post_json(upstream: &StdioUpstream, session: &str, body: Value) -> Answer {
    post(upstream, JSON_ONLY, Some(session), body).await
}

/// A POST in `session` from a client that accepts JSON and SSE.
async fn post_any(upstream: &StdioUpstream, session: &str, body: Value) -> Answer {
    post(upstream, BOTH, Some(session), body).await
}

/// The names in a `tools/list` answer.
fn tool_names(list: &Answer) -> Vec<String> {
    list.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

fn init_request() -> Value {
    stdio::init_request("stdio-test", json!({"sampling": {}}))
}

/// Initializes a session and sends `notifications/initialized`; returns its id.
async fn open(upstream: &StdioUpstream) -> String {
    let answer = post(upstream, JSON_ONLY, None, init_request()).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let session = answer.session();
    let ack = post(upstream, BOTH, Some(&session), initialized()).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    assert!(ack.body.is_empty());
    session
}

/// The fixture with one open session: the upstream, the session id, its child's pid.
async fn fixture_session() -> (StdioUpstream, String, u32) {
    let upstream = fixture();
    let session = open(&upstream).await;
    let pid = pid_of(&upstream, &session).await;
    (upstream, session, pid)
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {answer}"))
        .to_owned()
}

async fn pid_of(upstream: &StdioUpstream, session: &str) -> u32 {
    let answer = post(
        upstream,
        JSON_ONLY,
        Some(session),
        call(900, "pid", json!({})),
    )
    .await;
    text_of(&answer.json()).parse().unwrap()
}

// ---------------------------------------------------------------------------
// The fixture server.

#[tokio::test]
async fn initialize_list_and_echo_in_json_and_sse() {
    let upstream = fixture();
    let answer = post(&upstream, BOTH, None, init_request()).await;
    assert_eq!(answer.status, StatusCode::OK);
    // SSE was acceptable, so the handshake came as an event stream too.
    assert_eq!(answer.content_type(), "text/event-stream");
    let session = answer.session();
    assert_eq!(session.len(), 32);
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    let events = answer.events();
    assert_eq!(
        events.len(),
        1,
        "the banner line is not a message: {events:?}"
    );
    assert_eq!(events[0]["result"]["serverInfo"]["name"], "stdio-fixture");

    let list = post_json(&upstream, &session, request(1, "tools/list", json!({}))).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.content_type(), "application/json");
    assert_eq!(list.headers["mcp-session-id"], session.as_str());
    let names = tool_names(&list);
    assert!(names.contains(&"echo".to_owned()), "{names:?}");

    let json = post_json(&upstream, &session, call(2, "echo", json!({"text": "hi"}))).await;
    assert_eq!(json.json()["id"], 2);
    assert_eq!(text_of(&json.json()), "hi");

    let sse = post_any(
        &upstream,
        &session,
        call("three", "echo", json!({"text": "a\nb"})),
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    assert_eq!(sse.content_type(), "text/event-stream");
    let events = sse.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], "three");
    assert_eq!(text_of(&events[0]), "a\nb");
    upstream.shutdown().await;
}

#[tokio::test]
async fn progress_and_logs_stream_before_the_answer() {
    let upstream = fixture();
    let session = open(&upstream).await;
    let mut body = call(5, "slow", json!({"steps": 3}));
    body["params"]["_meta"] = json!({"progressToken": "tok"});
    let answer = post_any(&upstream, &session, body).await;
    let events = answer.events();
    let methods: Vec<&str> = events
        .iter()
        .map(|event| event["method"].as_str().unwrap_or("<answer>"))
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/progress",
            "notifications/progress",
            "notifications/progress",
            "notifications/message",
            "<answer>"
        ]
    );
    assert_eq!(events[2]["params"]["progress"], 3);
    assert_eq!(events[2]["params"]["progressToken"], "tok");
    assert_eq!(events[4]["id"], 5);
    assert_eq!(text_of(&events[4]), "slow done");

    // JSON only: just the answer.
    let mut body = call(6, "slow", json!({"steps": 2}));
    body["params"]["_meta"] = json!({"progressToken": "tok2"});
    let answer = post_json(&upstream, &session, body).await;
    assert_eq!(text_of(&answer.json()), "slow done");
    upstream.shutdown().await;
}

#[tokio::test]
async fn each_session_has_its_own_process() {
    let upstream = fixture();
    let a = open(&upstream).await;
    let b = open(&upstream).await;
    assert_ne!(a, b);
    let (pid_a, pid_b) = (pid_of(&upstream, &a).await, pid_of(&upstream, &b).await);
    assert_ne!(pid_a, pid_b);
    assert!(alive(pid_a) && alive(pid_b));
    assert_eq!(upstream.open_children(), 2);
    upstream.shutdown().await;
    assert!(!alive(pid_a) && !alive(pid_b));
    assert_eq!(upstream.open_children(), 0);
    // Shut down: no new sessions.
    let answer = post(&upstream, JSON_ONLY, None, init_request()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_child_sees_only_the_configured_environment() {
    let mut config = fixture_config();
    config.env.insert("GREETING".into(), Secret::new("hello"));
    config.env.insert("MCP_TOKEN".into(), Secret::new("s3cret"));
    let upstream = with(config);
    let session = open(&upstream).await;
    let answer = post_json(&upstream, &session, call(1, "env", json!({}))).await;
    let names: Vec<String> = serde_json::from_str(&text_of(&answer.json())).unwrap();
    assert_eq!(names, ["GREETING", "MCP_TOKEN"]);
    upstream.shutdown().await;
}

#[tokio::test]
async fn an_idle_child_is_reaped_and_its_session_is_gone() {
    let mut config = fixture_config();
    config.idle_timeout = Duration::from_millis(800);
    let upstream = with(config);
    let session = open(&upstream).await;
    let pid = pid_of(&upstream, &session).await;
    // Activity keeps it: a request every 200 ms, for longer than the timeout.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let answer = post_json(&upstream, &session, request(1, "ping", json!({}))).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    wait_until("the idle child to stop", Duration::from_secs(10), || {
        !alive(pid)
    })
    .await;
    assert_eq!(upstream.open_children(), 0);
    let answer = post_json(&upstream, &session, request(2, "ping", json!({}))).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["error"]["code"], -32001);
}

#[tokio::test]
async fn an_open_get_stream_keeps_a_child_from_idling() {
    let mut config = fixture_config();
    config.idle_timeout = Duration::from_millis(300);
    let upstream = with(config);
    let session = open(&upstream).await;
    let pid = pid_of(&upstream, &session).await;
    let stream = open_get(&upstream, own(&session)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(alive(pid), "a child with a reader is not idle");
    drop(stream);
    wait_until("the child to idle out", Duration::from_secs(10), || {
        !alive(pid)
    })
    .await;
}

#[tokio::test]
async fn max_children_refuses_new_sessions_with_503() {
    let mut config = fixture_config();
    config.max_children = 1;
    let upstream = with(config);
    let first = open(&upstream).await;
    let refused = post(&upstream, JSON_ONLY, None, init_request()).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.json()["error"], "too_many_sessions");
    assert!(refused.json()["error_description"].is_string());
    assert!(!refused.headers.contains_key("mcp-session-id"));
    // A slot frees once the first child is gone.
    let deleted = delete(&upstream, &first).await;
    assert_eq!(deleted.status, StatusCode::OK);
    let second = post(&upstream, JSON_ONLY, None, init_request()).await;
    assert_eq!(second.status, StatusCode::OK);
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_crash_answers_pending_requests_and_ends_the_session() {
    let (upstream, session, pid) = fixture_session().await;
    let answer = post_any(&upstream, &session, call(7, "crash", json!({}))).await;
    assert_eq!(answer.status, StatusCode::OK);
    let events = answer.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["id"], 7);
    assert_eq!(events[0]["error"]["code"], -32000);
    assert_eq!(events[0]["error"]["message"], "MCP server process exited");
    assert!(!alive(pid));
    let after = post_json(&upstream, &session, request(8, "ping", json!({}))).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert_eq!(upstream.open_children(), 0);
    // The exit status and the last stderr lines were logged as a warning.
    wait_until("the crash report", Duration::from_secs(5), || {
        log_text().lines().any(|line| {
            line.contains("WARN")
                && line.contains(&session[..8])
                && line.contains("exit status: 3")
                && line.contains("crashing on purpose")
        })
    })
    .await;

    // The same in JSON: the answer is the error.
    let session = open(&upstream).await;
    let answer = post_json(&upstream, &session, call(9, "crash", json!({}))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["id"], 9);
    assert_eq!(
        answer.json()["error"]["message"],
        "MCP server process exited"
    );
}

#[tokio::test]
async fn stderr_lines_reach_the_log_with_the_session_prefix() {
    let (upstream, session, pid) = fixture_session().await;
    let expected = format!("fixture stderr: started pid={pid}");
    wait_until("stderr in the log", Duration::from_secs(5), || {
        log_text()
            .lines()
            .any(|line| line.contains(&expected) && line.contains(&session[..8]))
    })
    .await;
    // The banner on stdout was logged and skipped, not taken for a message.
    assert!(log_text().contains("hello from the banner"));
    upstream.shutdown().await;
}

#[tokio::test]
async fn delete_stops_the_child() {
    let (upstream, session, pid) = fixture_session().await;
    let deleted = delete(&upstream, &session).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert!(!alive(pid), "the process is gone when DELETE answers");
    assert_eq!(upstream.open_children(), 0);
    let again = delete(&upstream, &session).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let after = post_json(&upstream, &session, request(1, "ping", json!({}))).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_kills_a_child_that_ignores_eof_and_sigterm() {
    let (upstream, session, pid) = fixture_session().await;
    let answer = post_json(&upstream, &session, call(1, "stubborn", json!({}))).await;
    assert_eq!(text_of(&answer.json()), "stubborn");
    let started = Instant::now();
    let deleted = delete(&upstream, &session).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert!(!alive(pid));
    // Closed stdin, a grace second, SIGTERM, another, then SIGKILL.
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn own(session: &str) -> HeaderMap {
    let mut own = HeaderMap::new();
    own.insert("mcp-session-id", HeaderValue::from_str(session).unwrap());
    own
}

/// Reads SSE events from a streaming body until `want` of them have arrived.
async fn next_events(body: &mut Body, buffer: &mut String, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = nth_event_end(buffer, want) {
            let events = sse_events(&buffer[..end]);
            buffer.replace_range(..end, "");
            return events;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(remaining, body.frame())
            .await
            .expect("no event in time")
            .expect("stream ended")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

fn nth_event_end(buffer: &str, n: usize) -> Option<usize> {
    let mut end = 0;
    for _ in 0..n {
        end += buffer[end..].find("\n\n")? + 2;
    }
    Some(end)
}

#[tokio::test]
async fn the_get_stream_carries_session_wide_notifications_and_is_single() {
    let upstream = fixture();
    let session = open(&upstream).await;
    let get = open_get(&upstream, own(&session)).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(get.headers()["content-type"], "text/event-stream");
    let second = open_get(&upstream, own(&session)).await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    // The tool's list_changed goes to the GET stream, its answer to the POST.
    let answer = post_any(&upstream, &session, call(1, "notify", json!({}))).await;
    let events = answer.events();
    assert_eq!(events.len(), 1);
    assert_eq!(text_of(&events[0]), "notified");
    let mut body = get.into_body();
    let mut buffer = String::new();
    let events = next_events(&mut body, &mut buffer, 1).await;
    assert_eq!(events[0]["method"], "notifications/tools/list_changed");
    // Once the reader has gone, a new GET stream may open.
    drop(body);
    let third = open_get(&upstream, own(&session)).await;
    assert_eq!(third.status(), StatusCode::OK);
    // GET without a session, or without SSE in Accept, is refused.
    let no_session = open_get(&upstream, HeaderMap::new()).await;
    assert_eq!(no_session.status(), StatusCode::BAD_REQUEST);
    let no_sse = upstream
        .forward(
            Method::GET,
            &headers(JSON_ONLY, None),
            own(&session),
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(no_sse.status(), StatusCode::NOT_ACCEPTABLE);
    // The session's end closes the GET stream.
    let mut body = third.into_body();
    upstream.shutdown().await;
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .unwrap();
    assert!(end.is_none());
}

#[tokio::test]
async fn a_server_request_round_trips_through_the_post_stream() {
    let upstream = fixture();
    let session = open(&upstream).await;
    let response = upstream
        .forward(
            Method::POST,
            &headers(BOTH, None),
            own(&session),
            Bytes::from(call(1, "sample", json!({})).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut buffer = String::new();
    let events = next_events(&mut body, &mut buffer, 1).await;
    assert_eq!(events[0]["method"], "sampling/createMessage");
    let server_id = events[0]["id"].clone();
    // The client answers the server's request with a POST of its own: 202.
    let reply = json!({
        "jsonrpc": "2.0",
        "id": server_id,
        "result": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"},
    });
    let ack = post_any(&upstream, &session, reply).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    let events = next_events(&mut body, &mut buffer, 1).await;
    assert_eq!(events[0]["id"], 1);
    assert_eq!(text_of(&events[0]), "sampled: hi");
    assert!(
        body.frame().await.is_none(),
        "the stream ends after the answer"
    );

    // With no stream that could carry it, the child hears "no" at once.
    let answer = post_json(&upstream, &session, call(2, "sample", json!({}))).await;
    assert!(text_of(&answer.json()).starts_with("sampling refused"));
    upstream.shutdown().await;
}

#[tokio::test]
async fn transport_refusals() {
    let upstream = fixture();
    // A raw newline would split the message on the child's stdin.
    let split = upstream
        .forward(
            Method::POST,
            &headers(BOTH, None),
            HeaderMap::new(),
            Bytes::from_static(
                b"{\"jsonrpc\":\"2.0\",\n\"id\":0,\"method\":\"initialize\",\"params\":{}}",
            ),
        )
        .await
        .unwrap();
    assert_eq!(split.status(), StatusCode::BAD_REQUEST);
    assert_eq!(upstream.open_children(), 0, "nothing was spawned for it");
    // Not initialize, and no session.
    let no_session = post(&upstream, BOTH, None, request(1, "tools/list", json!({}))).await;
    assert_eq!(no_session.status, StatusCode::BAD_REQUEST);
    // A session nobody opened.
    let unknown = post(
        &upstream,
        BOTH,
        Some(&"ab".repeat(16)),
        request(1, "ping", json!({})),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Neither JSON nor SSE acceptable.
    let html = post(&upstream, "text/html", None, init_request()).await;
    assert_eq!(html.status, StatusCode::NOT_ACCEPTABLE);
    let session = open(&upstream).await;
    // The client's own header never names the session: only mcpgate's does, after
    // the session layer has checked who owns it.
    let direct = upstream
        .forward(
            Method::POST,
            &headers(JSON_ONLY, Some(&session)),
            HeaderMap::new(),
            Bytes::from(request(1, "ping", json!({})).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(direct.status(), StatusCode::BAD_REQUEST);
    // A second initialize in a live session.
    let again = post_any(&upstream, &session, init_request()).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    // Other methods.
    let put = send(&upstream, Method::PUT, BOTH, Some(&session), &Value::Null)
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    // An id already pending in the session: 409, the first request unaffected.
    // An SSE answer starts as soon as the request is written; its body runs on.
    let pending = upstream
        .forward(
            Method::POST,
            &headers(BOTH, None),
            own(&session),
            Bytes::from(call(5, "slow", json!({"steps": 2, "delay": 200})).to_string()),
        )
        .await
        .unwrap();
    let pending = tokio::spawn(async move {
        let answer = read(pending).await;
        (answer.status, answer.events())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let duplicate = post_any(&upstream, &session, request(5, "ping", json!({}))).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(duplicate.json()["id"], 5);
    let (status, events) = pending.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text_of(events.last().unwrap()), "slow done");
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_batch_is_written_as_lines_and_answered_as_an_array() {
    let upstream = fixture();
    let session = open(&upstream).await;
    let batch = json!([
        request(1, "ping", json!({})),
        {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
        call(2, "echo", json!({"text": "two"})),
    ]);
    let answer = post_json(&upstream, &session, batch).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answers = answer.json();
    let mut ids: Vec<i64> = answers
        .as_array()
        .expect("an array for a batch")
        .iter()
        .map(|answer| answer["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    // Only notifications and responses: 202.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"},
        {"jsonrpc": "2.0", "id": "unknown", "result": {}},
    ]);
    let answer = post_json(&upstream, &session, batch).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(!log_text().contains("got a batch array on one line"));
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_late_answer_times_out_as_json_rpc_errors() {
    let mut config = fixture_config();
    // Long enough for Node to start and answer initialize on a busy machine.
    config.request_timeout = Duration::from_secs(1);
    let upstream = with(config);
    let session = open(&upstream).await;
    let json = send(
        &upstream,
        Method::POST,
        JSON_ONLY,
        Some(&session),
        &call(1, "hang", json!({})),
    )
    .await;
    assert!(
        matches!(json, Err(UpstreamError::Timeout(_))),
        "JSON: the gateway answers 504"
    );
    let sse = post_any(&upstream, &session, call(2, "hang", json!({}))).await;
    let events = sse.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], 2);
    assert_eq!(events[0]["error"]["code"], -32000);
    // The session lives on.
    let ping = post_json(&upstream, &session, request(3, "ping", json!({}))).await;
    assert_eq!(ping.status, StatusCode::OK);
    upstream.shutdown().await;
}

#[tokio::test]
async fn an_overlong_line_stops_the_child() {
    let (upstream, session, pid) = fixture_session().await;
    let answer = post_any(&upstream, &session, call(1, "flood", json!({}))).await;
    let events = answer.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], 1);
    assert!(
        events[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over 16777216 bytes")
    );
    assert!(!alive(pid));
    let after = post_json(&upstream, &session, request(2, "ping", json!({}))).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_refused_initialize_opens_no_session() {
    let upstream = fixture();
    let mut init = init_request();
    init["params"]["protocolVersion"] = json!("1999-01-01");
    let answer = post(&upstream, JSON_ONLY, None, init).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["error"]["code"], -32602);
    assert!(!answer.headers.contains_key("mcp-session-id"));
    wait_until("the child to stop", Duration::from_secs(5), || {
        upstream.open_children() == 0
    })
    .await;
}

#[tokio::test]
async fn a_program_that_is_not_an_mcp_server_fails_initialize() {
    // `true` exits at once without a word: the gateway reports it unreachable.
    let upstream = with(StdioConfig::new(CommandLine::Program("true".into())));
    let result = send(&upstream, Method::POST, JSON_ONLY, None, &init_request()).await;
    assert!(matches!(result, Err(UpstreamError::Unreachable(_))));
    assert_eq!(upstream.open_children(), 0);
}

// ---------------------------------------------------------------------------
// The reference server, @modelcontextprotocol/server-everything.

fn everything() -> StdioUpstream {
    let bin = repo().join("tests/e2e/node_modules/.bin/mcp-server-everything");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test installs it (npm ci in tests/e2e) before cargo test",
        bin.display()
    );
    let mut config = StdioConfig::new(CommandLine::WithArgs(vec![
        bin.to_string_lossy().into_owned(),
        "stdio".into(),
    ]));
    // Its `#!/usr/bin/env node` needs a PATH: the child gets none unless configured.
    config.env.insert(
        "PATH".into(),
        Secret::new(std::env::var("PATH").unwrap_or_default()),
    );
    config
        .env
        .insert("EVERYTHING_MARKER".into(), Secret::new("42"));
    with(config)
}

#[tokio::test]
async fn server_everything_over_stdio() {
    let upstream = everything();
    let session = open(&upstream).await;
    let list = post_json(&upstream, &session, request(1, "tools/list", json!({}))).await;
    let names = tool_names(&list);
    assert!(names.contains(&"echo".to_owned()), "{names:?}");

    let echo = post_any(
        &upstream,
        &session,
        call(2, "echo", json!({"message": "hi"})),
    )
    .await;
    let events = echo.events();
    assert_eq!(text_of(events.last().unwrap()), "Echo: hi");

    let mut long = call(
        3,
        "trigger-long-running-operation",
        json!({"duration": 1, "steps": 2}),
    );
    long["params"]["_meta"] = json!({"progressToken": 77});
    let answer = post_any(&upstream, &session, long).await;
    let events = answer.events();
    let progress: Vec<&Value> = events
        .iter()
        .filter(|event| event["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{events:?}");
    assert_eq!(progress[0]["params"]["progressToken"], 77);
    let last = events.last().unwrap();
    assert_eq!(last["id"], 3);
    assert!(text_of(last).starts_with("Long running operation completed"));

    let env = post_json(&upstream, &session, call(4, "get-env", json!({}))).await;
    let env: Value = serde_json::from_str(&text_of(&env.json())).unwrap();
    let mut names: Vec<&String> = env.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["EVERYTHING_MARKER", "PATH"]);

    let pid_check = post_json(&upstream, &session, request(5, "ping", json!({}))).await;
    assert_eq!(pid_check.status, StatusCode::OK);
    let deleted = delete(&upstream, &session).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(upstream.open_children(), 0);
}
