//! A stdio MCP server fronted by the real `mcpgate` binary (`upstream.command`): one
//! child process per session, sessions bound to their principal, DELETE, idle
//! reaping, the child limit, crashes, reload and shutdown, the config checks, and
//! the reference `@modelcontextprotocol/server-everything`.

use std::time::{Duration, Instant};

use crate::common::stdio::{self, alive, call, initialized, request, stdio_script, wait_until};
use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

const JSON_ONLY: &str = "application/json";
const BOTH: &str = "application/json, text/event-stream";

/// The 404 the MCP endpoint answers for a session the caller may not use.
const SESSION_NOT_FOUND: &str = "request refused: session not found";

fn script() -> String {
    stdio_script().display().to_string()
}

/// A gateway fronting the fixture, with OAuth.
fn config() -> TestConfig {
    let upstream = format!(
        "command: [node, \"{}\"]\nenv:\n  GREETING: hello\n  MCP_TOKEN: s3cret\ntimeout: 10s",
        script()
    );
    TestConfig::upstream_yaml(&upstream).with_oauth()
}

fn token_for(gateway: &Gateway, subject: &str) -> String {
    let mut claims = claims(&gateway.mcp, "mcp:connect");
    claims["sub"] = json!(subject);
    hs256(&claims, Some("dev"))
}

/// A request of `token`'s accepting `accept`; a child that hangs fails the test
/// within 20 s instead of hanging it.
fn client(request: Request, token: &str, accept: &str) -> Request {
    request
        .bearer(token)
        .header("accept", accept)
        .timeout(Duration::from_secs(20))
}

async fn post(
    gateway: &Gateway,
    token: &str,
    session: Option<&str>,
    accept: &str,
    body: Value,
) -> reqwest::Response {
    let request = client(Request::post(gateway), token, accept).json(&body);
    match session {
        Some(session) => request.session(session).send().await,
        None => request.send().await,
    }
}

/// A POST in `session` from a client that accepts only JSON.
async fn post_json(
    gateway: &Gateway,
    token: &str,
    session: &str,
    body: Value,
) -> reqwest::Response {
    post(gateway, token, Some(session), JSON_ONLY, body).await
}

/// A POST in `session` from a client that accepts JSON and SSE.
async fn post_any(gateway: &Gateway, token: &str, session: &str, body: Value) -> reqwest::Response {
    post(gateway, token, Some(session), BOTH, body).await
}

/// DELETE of `session`.
async fn delete(gateway: &Gateway, token: &str, session: &str) -> reqwest::Response {
    client(Request::delete(gateway), token, BOTH)
        .session(session)
        .send()
        .await
}

fn init_request() -> Value {
    stdio::init_request("stdio-gateway-test", json!({}))
}

/// The names in a `tools/list` answer.
fn tool_names(list: &Value) -> Vec<&str> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {list}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect()
}

fn session_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("mcp-session-id")
        .unwrap_or_else(|| panic!("no Mcp-Session-Id in {response:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .map_or(String::new(), |value| value.to_str().unwrap().to_owned())
}

/// The JSON-RPC answer in a response, JSON or SSE (its last event with an id).
async fn answer(response: reqwest::Response) -> Value {
    let status = response.status();
    let sse = content_type(&response).starts_with("text/event-stream");
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    if sse {
        sse_messages(&text)
            .into_iter()
            .rev()
            .find(|event| event.get("id").is_some())
            .unwrap_or_else(|| panic!("no answer among the events: {text}"))
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {answer}"))
        .to_owned()
}

/// Initializes a session (and sends `notifications/initialized`); mcpgate's id.
async fn open(gateway: &Gateway, token: &str) -> String {
    let response = post(gateway, token, None, JSON_ONLY, init_request()).await;
    assert_eq!(response.status(), 200, "{}", gateway.stderr());
    let session = session_of(&response);
    let init = answer(response).await;
    assert_eq!(init["id"], 0);
    assert!(init["result"]["serverInfo"]["name"].is_string(), "{init}");
    let ack = post(gateway, token, Some(&session), BOTH, initialized()).await;
    assert_eq!(ack.status(), 202);
    session
}

/// A gateway of `config`, alice's token, a session of hers and its child's pid.
async fn open_as_alice(config: TestConfig) -> (Gateway, String, String, u32) {
    let gateway = Gateway::start(&config.build()).await;
    let alice = token_for(&gateway, "alice");
    let session = open(&gateway, &alice).await;
    let pid = pid_of(&gateway, &alice, &session).await;
    (gateway, alice, session, pid)
}

/// The pid of the child serving `session` (the fixture's `pid` tool).
async fn pid_of(gateway: &Gateway, token: &str, session: &str) -> u32 {
    let response = post(
        gateway,
        token,
        Some(session),
        JSON_ONLY,
        call(900, "pid", json!({})),
    )
    .await;
    text_of(&answer(response).await).parse().unwrap()
}

async fn assert_session_not_found(response: reqwest::Response) {
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "Session not found"}})
    );
}

/// Kills, at the end of a test, any process a failed assertion left behind (a
/// stubborn child survives mcpgate's death if mcpgate did not kill it).
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_session_gets_its_own_child_with_only_the_configured_environment() {
    let gateway = Gateway::start(&config().build()).await;
    let alice = token_for(&gateway, "alice");
    let response = post(&gateway, &alice, None, JSON_ONLY, init_request()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(&response), "application/json");
    let session = session_of(&response);
    assert_eq!(session.len(), 32, "{session}");
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()), "{session}");
    let init = answer(response).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "stdio-fixture");
    let ack = post_any(&gateway, &alice, &session, initialized()).await;
    assert_eq!(ack.status(), 202);

    // tools/list in JSON, in the session mcpgate named.
    let list = post_json(
        &gateway,
        &alice,
        &session,
        request(1, "tools/list", json!({})),
    )
    .await;
    assert_eq!(content_type(&list), "application/json");
    assert_eq!(session_of(&list), session);
    let list = answer(list).await;
    assert_eq!(list["id"], 1);
    let names = tool_names(&list);
    assert!(names.contains(&"echo"), "{names:?}");

    // echo in JSON, then as an event stream.
    let json = post_json(
        &gateway,
        &alice,
        &session,
        call(2, "echo", json!({"text": "hi json"})),
    )
    .await;
    assert_eq!(content_type(&json), "application/json");
    let json = answer(json).await;
    assert_eq!(json["id"], 2);
    assert_eq!(text_of(&json), "hi json");
    let sse = post_any(
        &gateway,
        &alice,
        &session,
        call(3, "echo", json!({"text": "hi sse"})),
    )
    .await;
    assert_eq!(content_type(&sse), "text/event-stream");
    assert_eq!(session_of(&sse), session);
    let sse = answer(sse).await;
    assert_eq!(sse["id"], 3);
    assert_eq!(text_of(&sse), "hi sse");

    // The child's environment is upstream.env, nothing of mcpgate's own.
    let env = post_json(&gateway, &alice, &session, call(4, "env", json!({}))).await;
    let names: Vec<String> = serde_json::from_str(&text_of(&answer(env).await)).unwrap();
    assert_eq!(names, ["GREETING", "MCP_TOKEN"]);
    let pid = pid_of(&gateway, &alice, &session).await;
    assert!(alive(pid));
}

#[tokio::test]
async fn each_principal_has_its_own_child_and_cannot_use_another_session() {
    let gateway = Gateway::start(&config().build()).await;
    let alice = token_for(&gateway, "alice");
    let bob = token_for(&gateway, "bob");
    let alice_session = open(&gateway, &alice).await;
    let bob_session = open(&gateway, &bob).await;
    assert_ne!(alice_session, bob_session);
    let alice_pid = pid_of(&gateway, &alice, &alice_session).await;
    let bob_pid = pid_of(&gateway, &bob, &bob_session).await;
    assert_ne!(alice_pid, bob_pid);
    assert!(alive(alice_pid) && alive(bob_pid));

    for (method, accept, body) in [
        (Method::POST, JSON_ONLY, Some(call(1, "pid", json!({})))),
        (Method::GET, "text/event-stream", None),
        (Method::DELETE, BOTH, None),
    ] {
        let request = client(Request::new(method, &gateway), &bob, accept);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.session(&alice_session).send().await;
        assert_session_not_found(response).await;
    }

    // Bob's DELETE ended nothing: alice's child runs and serves her.
    assert!(alive(alice_pid));
    assert_eq!(pid_of(&gateway, &alice, &alice_session).await, alice_pid);
    // And bob's own session is untouched.
    assert_eq!(pid_of(&gateway, &bob, &bob_session).await, bob_pid);
}

#[tokio::test]
async fn delete_by_the_owner_stops_the_child_and_ends_the_session() {
    let (gateway, alice, session, pid) = open_as_alice(config()).await;
    let deleted = delete(&gateway, &alice, &session).await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    wait_until("the deleted child to stop", Duration::from_secs(10), || {
        !alive(pid)
    })
    .await;
    let after = post_json(&gateway, &alice, &session, request(1, "ping", json!({}))).await;
    assert_session_not_found(after).await;
    let again = delete(&gateway, &alice, &session).await;
    assert_session_not_found(again).await;
}

#[tokio::test]
async fn an_idle_child_is_reaped_and_mcpgate_forgets_its_session() {
    let (gateway, alice, session, pid) =
        open_as_alice(config().upstream("idle_timeout: 500ms")).await;
    let idle_since = Instant::now();
    wait_until(
        "the idle child to be reaped",
        Duration::from_secs(10),
        || !alive(pid),
    )
    .await;
    assert!(
        idle_since.elapsed() >= Duration::from_millis(400),
        "reaped after {:?}, before the idle timeout",
        idle_since.elapsed()
    );
    // The first request still passes mcpgate's session layer; the stdio layer's 404
    // comes back and mcpgate drops its own entry.
    let first = post_json(&gateway, &alice, &session, request(1, "ping", json!({}))).await;
    assert_session_not_found(first).await;
    assert_eq!(
        gateway.log_count(SESSION_NOT_FOUND),
        0,
        "the first request was refused by mcpgate's session layer already:\n{}",
        gateway.stderr()
    );
    // The next is refused by mcpgate itself: it forgot the session.
    let second = post_json(&gateway, &alice, &session, request(2, "ping", json!({}))).await;
    assert_session_not_found(second).await;
    assert!(
        gateway.wait_for_log(SESSION_NOT_FOUND).await,
        "mcpgate still knew the session:\n{}",
        gateway.stderr()
    );
}

#[tokio::test]
async fn max_children_refuses_a_third_session_with_503() {
    let gateway = Gateway::start(&config().upstream("max_children: 2").build()).await;
    let alice = token_for(&gateway, "alice");
    let bob = token_for(&gateway, "bob");
    let first = open(&gateway, &alice).await;
    let _second = open(&gateway, &bob).await;
    let refused = post(&gateway, &alice, None, JSON_ONLY, init_request()).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("mcp-session-id").is_none());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "too_many_sessions", "{body}");
    // A slot frees when a session ends.
    let deleted = delete(&gateway, &alice, &first).await;
    assert!(deleted.status().is_success());
    let third = open(&gateway, &alice).await;
    assert_eq!(third.len(), 32);
}

#[tokio::test]
async fn a_crashing_child_fails_the_call_and_ends_the_session() {
    let (gateway, alice, session, pid) = open_as_alice(config()).await;
    let crashed = post_json(&gateway, &alice, &session, call(7, "crash", json!({}))).await;
    let crashed = answer(crashed).await;
    assert_eq!(crashed["id"], 7);
    assert!(crashed.get("result").is_none(), "{crashed}");
    assert_eq!(
        crashed["error"]["message"], "MCP server process exited",
        "{crashed}"
    );
    wait_until(
        "the crashed child to be gone",
        Duration::from_secs(5),
        || !alive(pid),
    )
    .await;
    let after = post_json(&gateway, &alice, &session, request(8, "ping", json!({}))).await;
    assert_session_not_found(after).await;
    assert!(
        gateway.wait_for_log("exit status: 3").await,
        "the exit is not in the log:\n{}",
        gateway.stderr()
    );
    // A new session starts a new child.
    let fresh = open(&gateway, &alice).await;
    assert_ne!(fresh, session);
    let fresh_pid = pid_of(&gateway, &alice, &fresh).await;
    assert_ne!(fresh_pid, pid);
    assert!(alive(fresh_pid));
}

#[tokio::test]
async fn reload_keeps_the_children_and_sigterm_stops_them_all() {
    let (mut gateway, alice, session, pid) = open_as_alice(config()).await;
    let bob = token_for(&gateway, "bob");
    let mut reaper = Reaper(vec![pid]);

    // Unchanged config: the same child serves the session.
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );
    assert_eq!(pid_of(&gateway, &alice, &session).await, pid);

    // A scope rule changes: it applies at once, and still the same child serves.
    gateway.rewrite_config(&config().scopes("tools:\n  crash: [admin]").build());
    gateway.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while gateway.log_count("config reloaded") < 2 {
        assert!(Instant::now() < deadline, "{}", gateway.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = post_json(&gateway, &alice, &session, call(5, "crash", json!({}))).await;
    assert_eq!(refused.status(), 403, "the new scope rule is not in force");
    assert!(alive(pid), "the refused crash reached the child");
    assert_eq!(pid_of(&gateway, &alice, &session).await, pid);

    // A second child that ignores stdin EOF and SIGTERM: only SIGKILL stops it.
    let stubborn_session = open(&gateway, &bob).await;
    let stubborn_pid = pid_of(&gateway, &bob, &stubborn_session).await;
    reaper.0.push(stubborn_pid);
    let stubborn = post_json(
        &gateway,
        &bob,
        &stubborn_session,
        call(6, "stubborn", json!({})),
    )
    .await;
    assert_eq!(text_of(&answer(stubborn).await), "stubborn");

    gateway.terminate();
    let code = gateway.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "{}", gateway.stderr());
    for child in [pid, stubborn_pid] {
        wait_until(
            &format!("child {child} to be gone after shutdown"),
            Duration::from_secs(2),
            || !alive(child),
        )
        .await;
    }
}

#[test]
fn stdio_config_errors_are_refused_by_check() {
    let script = script();
    let oauth = format!(
        "auth:\n  oauth:\n    enabled: true\n    issuers: [https://issuer.test]\n    jwks:\n      - secret: \"{HMAC_SECRET}\"\n        header_key_id: dev\n"
    );
    let good = format!(
        "server:\n  listen: 127.0.0.1:5025\nupstream:\n  command: [node, \"{script}\"]\n{oauth}"
    );
    let cases = [
        (
            "session.stateless",
            format!("{good}session:\n  stateless: true\n"),
        ),
        (
            "upstream.headers",
            format!(
                "server:\n  listen: 127.0.0.1:5025\nupstream:\n  command: [node, \"{script}\"]\n  headers:\n    X-Api-Key: secret\n{oauth}"
            ),
        ),
        (
            "upstream",
            format!(
                "server:\n  listen: 127.0.0.1:5025\nupstream:\n  url: http://127.0.0.1:3001/mcp\n  command: [node, \"{script}\"]\n{oauth}"
            ),
        ),
        (
            "upstream.command",
            format!(
                "server:\n  listen: 127.0.0.1:5025\nupstream:\n  command: [mcpgate-test-no-such-program-7f3a, serve]\n{oauth}"
            ),
        ),
    ];
    // The same file without the mistake is fine: each error is the one key's.
    let (code, _, stderr) = check_config(&good, &[]);
    assert_eq!(code, 0, "{stderr}");

    for (key, yaml) in cases {
        let (code, _, stderr) = check_config(&yaml, &[]);
        assert_eq!(code, 78, "expected exit 78 for {key}; stderr: {stderr}");
        assert!(
            stderr.contains(&format!("config error: {key}: ")),
            "expected the error to name {key}: {stderr}"
        );
    }
}

#[tokio::test]
async fn server_everything_over_stdio_through_the_gateway() {
    let bin = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/node_modules/.bin/mcp-server-everything");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test installs it (npm ci in tests/e2e) before cargo test",
        bin.display()
    );
    let path = std::env::var("PATH").unwrap_or_default();
    let upstream = format!(
        "command: [\"{}\", stdio]\nenv:\n  PATH: \"{path}\"\ntimeout: 20s",
        bin.display()
    );
    let gateway = Gateway::start(&TestConfig::upstream_yaml(&upstream).with_oauth().build()).await;
    let alice = token_for(&gateway, "alice");
    let session = open(&gateway, &alice).await;
    assert_eq!(session.len(), 32);

    let list = post_json(
        &gateway,
        &alice,
        &session,
        request(1, "tools/list", json!({})),
    )
    .await;
    let list = answer(list).await;
    let names = tool_names(&list);
    assert!(names.contains(&"echo"), "{names:?}");

    let echo = post_any(
        &gateway,
        &alice,
        &session,
        call(2, "echo", json!({"message": "hello through mcpgate"})),
    )
    .await;
    let echo = answer(echo).await;
    assert_eq!(echo["id"], 2);
    assert_eq!(text_of(&echo), "Echo: hello through mcpgate");

    let deleted = delete(&gateway, &alice, &session).await;
    assert!(deleted.status().is_success());
}

#[tokio::test]
async fn the_process_gauge_follows_the_children() {
    let admin = free_port();
    let yaml = config()
        .server(&format!("admin_listen: 127.0.0.1:{admin}"))
        .build();
    let gateway = Gateway::start(&yaml).await;
    let gauge = || async move {
        let text = reqwest::get(format!("http://127.0.0.1:{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("mcpgate_stdio_processes "))
            .map(|value| value.trim().parse::<f64>().unwrap())
    };
    assert_eq!(gauge().await, Some(0.0));
    let alice = token_for(&gateway, "alice");
    let bob = token_for(&gateway, "bob");
    let first = open(&gateway, &alice).await;
    let _second = open(&gateway, &bob).await;
    assert_eq!(gauge().await, Some(2.0));
    let deleted = delete(&gateway, &alice, &first).await;
    assert!(deleted.status().is_success());
    // DELETE answers once the process has been reaped, which is when it stops counting.
    assert_eq!(gauge().await, Some(1.0));
}
