//! Sessions bound to their owner, against the real binary: mcpgate issues its own
//! session ids, and only the principal that opened a session can use it, on every
//! HTTP method; stateless mode keeps no session at all; browser origins are checked.

use crate::common::*;
use argon2::{Argon2, PasswordHasher};
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// The API key the gateways below accept.
const API_KEY: &str = "mcpk_ci_session-owner";

/// A gateway that also accepts [`API_KEY`] and the MCP Inspector's origin, with
/// `extra` (top-level YAML).
fn config(upstream_url: &str, extra: &str) -> String {
    let hash = Argon2::default()
        .hash_password(API_KEY.as_bytes())
        .unwrap()
        .to_string();
    TestConfig::oauth(upstream_url)
        .server("allowed_origins: [http://localhost:6274]")
        .api_key_with_scopes("ci", &hash, r#"["*"]"#)
        .yaml(extra)
        .build()
}

/// An upstream, a gateway of [`config`] with `extra`, and a token of alice's.
async fn start(extra: &str) -> (Upstream, Gateway, String) {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, extra)).await;
    let alice = token_for(&gateway, "alice", "app");
    (upstream, gateway, alice)
}

/// A token for `subject` of `client`, valid for the gateway.
fn token_for(gateway: &Gateway, subject: &str, client: &str) -> String {
    let mut claims = claims(&gateway.mcp, "mcp:connect");
    claims["sub"] = json!(subject);
    claims["client_id"] = json!(client);
    hs256(&claims, Some("dev"))
}

fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool}})
}

fn session_of(headers: &HeaderMap) -> String {
    headers["mcp-session-id"].to_str().unwrap().to_owned()
}

/// How many requests the upstream received in its own session.
fn upstream_requests_in_session(upstream: &Upstream) -> usize {
    upstream
        .seen()
        .iter()
        .filter(|seen| {
            seen.headers
                .get("mcp-session-id")
                .is_some_and(|id| id == "upstream-session-1")
        })
        .count()
}

#[tokio::test]
async fn the_client_gets_an_unguessable_id_of_mcpgate_and_the_upstream_its_own() {
    let (upstream, gateway, alice) = start("").await;
    let first = open_session(&gateway, &alice).await;
    let second = open_session(&gateway, &alice).await;
    for id in [&first, &second] {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(first, second);
    assert!(upstream.seen()[0].headers.get("mcp-session-id").is_none());

    let response = post_in_session(&gateway, &alice, &first, &call(1, "echo")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(session_of(response.headers()), first);
    assert_eq!(upstream_requests_in_session(&upstream), 1);
}

#[tokio::test]
async fn another_principal_cannot_ride_the_session_on_any_method() {
    let (upstream, gateway, alice) = start("").await;
    let session = open_session(&gateway, &alice).await;
    let intruders = [
        token_for(&gateway, "bob", "app"),
        // Same subject through another client, or at another issuer, is someone else.
        token_for(&gateway, "alice", "other-app"),
        API_KEY.to_owned(),
    ];
    for intruder in &intruders {
        for request in [
            Request::post(&gateway).json(&call(2, "echo")),
            Request::get(&gateway),
            Request::delete(&gateway),
        ] {
            let response = request.bearer(intruder).session(&session).send().await;
            assert_session_not_found(response).await;
        }
        let resume = Request::get(&gateway)
            .bearer(intruder)
            .session(&session)
            .headers(&[("last-event-id", "replay-list")])
            .send()
            .await;
        assert_session_not_found(resume).await;
    }
    assert_eq!(
        upstream_requests_in_session(&upstream),
        0,
        "an intruder's request reached the upstream session"
    );

    // The owner, with a renewed token, carries on: the session was not ended.
    let renewed = token_for(&gateway, "alice", "app");
    let response = post_in_session(&gateway, &renewed, &session, &call(3, "echo")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream_requests_in_session(&upstream), 1);
    let stream = Request::get(&gateway)
        .bearer(&renewed)
        .session(&session)
        .headers(&[("last-event-id", "replay-list")])
        .send()
        .await;
    assert_eq!(stream.status(), 200);
    let seen = upstream.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.headers["last-event-id"], "replay-list");
    assert_eq!(last.headers["mcp-session-id"], "upstream-session-1");
}

#[tokio::test]
async fn an_api_key_owns_its_sessions() {
    let (_upstream, gateway, alice) = start("").await;
    let key = API_KEY;
    let session = open_session(&gateway, key).await;
    let stolen = post_in_session(&gateway, &alice, &session, &call(1, "echo")).await;
    assert_session_not_found(stolen).await;
    let own = post_in_session(&gateway, key, &session, &call(2, "echo")).await;
    assert_eq!(own.status(), 200);
}

#[tokio::test]
async fn unknown_forged_and_repeated_ids_are_not_found() {
    let (upstream, gateway, alice) = start("").await;
    let session = open_session(&gateway, &alice).await;
    for forged in [
        "upstream-session-1".to_owned(),
        "0".repeat(32),
        session.to_uppercase(),
        format!("{session}0"),
        session[..31].to_owned(),
    ] {
        let response = post_in_session(&gateway, &alice, &forged, &call(1, "echo")).await;
        assert_session_not_found(response).await;
    }
    // Two session headers, even both the caller's own, name no single session.
    let twice = Request::post(&gateway)
        .without("accept")
        .bearer(&alice)
        .session(&session)
        .append_header("mcp-session-id", &session)
        .json(&call(1, "echo"))
        .send()
        .await;
    assert_session_not_found(twice).await;
    assert_eq!(upstream_requests_in_session(&upstream), 0);
}

#[tokio::test]
async fn delete_and_an_upstream_that_forgot_the_session_end_it() {
    let (upstream, gateway, alice) = start("").await;

    let session = open_session(&gateway, &alice).await;
    let deleted = Request::delete(&gateway)
        .bearer(&alice)
        .session(&session)
        .send()
        .await;
    assert_eq!(deleted.status(), 200);
    let after = post_in_session(&gateway, &alice, &session, &call(1, "echo")).await;
    assert_session_not_found(after).await;

    let session = open_session(&gateway, &alice).await;
    let gone = post_in_session(&gateway, &alice, &session, &call(2, "session-gone")).await;
    assert_eq!(gone.status(), 404);
    let before = upstream.seen().len();
    let after = post_in_session(&gateway, &alice, &session, &call(3, "echo")).await;
    assert_session_not_found(after).await;
    assert_eq!(
        upstream.seen().len(),
        before,
        "a forgotten session reached the upstream"
    );
}

#[tokio::test]
async fn the_audit_record_names_the_session_and_why_a_request_was_refused() {
    let (_upstream, gateway, alice) = start(AUDIT_IN_DIR).await;
    let bob = token_for(&gateway, "bob", "app");
    let session = open_session(&gateway, &alice).await;
    let stolen = post_in_session(&gateway, &bob, &session, &call(1, "echo")).await;
    assert_eq!(stolen.status(), 404);
    let mut gateway = gateway;
    gateway.terminate();
    assert_eq!(
        gateway.wait_exit(std::time::Duration::from_secs(20)).await,
        Some(0)
    );
    let records: Vec<Value> = std::fs::read_to_string(gateway.dir().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["session_id"], session.as_str());
    assert_eq!(records[1]["session_id"], session.as_str());
    assert_eq!(records[1]["subject"], "bob");
    assert_eq!(records[1]["action"], "deny");
    assert_eq!(records[1]["status"], 404);
    assert_eq!(records[1]["reason"], "session not found");
}

#[tokio::test]
async fn stateless_mode_keeps_no_session_and_passes_no_session_id() {
    let (upstream, gateway, alice) = start("session:\n  stateless: true\n").await;
    let response = post_initialize(&gateway, &alice).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());
    let response = post_in_session(
        &gateway,
        &alice,
        "anything-a-client-sends",
        &call(1, "echo"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_none());
    assert!(
        upstream
            .seen()
            .iter()
            .all(|seen| seen.headers.get("mcp-session-id").is_none())
    );
}

#[tokio::test]
async fn browser_origins_must_be_allowed() {
    let (_upstream, gateway, alice) = start("").await;
    let public_origin = gateway.base.clone();
    for (origin, status) in [
        (public_origin.as_str(), 200),
        ("http://localhost:6274", 200),
        ("http://localhost:6275", 403),
        ("https://evil.example", 403),
        ("null", 403),
    ] {
        let response = Request::post(&gateway)
            .bearer(&alice)
            .headers(&[("origin", origin)])
            .json(&call(1, "echo"))
            .send()
            .await;
        assert_eq!(response.status(), status, "{origin}");
        if status == 403 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "forbidden_origin");
        }
    }
    // A refused origin is refused before its credentials are even looked at.
    let response = Request::post(&gateway)
        .without("accept")
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(response.status(), 403);
    let streams = Request::get(&gateway)
        .bearer(&alice)
        .headers(&[("origin", "https://evil.example")])
        .send()
        .await;
    assert_eq!(streams.status(), 403);
    let _ = streams.bytes_stream().next().await;
}
