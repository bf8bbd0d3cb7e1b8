//! Sessions in Redis, against a real `redis-server` and the real binary: replicas
//! share sessions (any replica serves any session, ownership holds on every one),
//! idle sessions expire in Redis, and a Redis outage gives 503s, a metric and a
//! failing `/readyz`, then heals without restarting mcpgate.
//!
//! Needs `redis-server` on PATH: `scripts/test` installs it (Debian's package).

use std::time::{Duration, Instant};

use crate::common::redis::RedisServer;
use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// What both replicas call themselves, as replicas behind one load balancer do:
/// a token for it is good on each.
const PUBLIC_URL: &str = "https://mcp.example.test/mcp";

// === gateways ===

/// A replica with sessions in `redis_url`, forgotten after `idle`.
fn config(upstream: &Upstream, redis_url: &str, idle: &str) -> TestConfig {
    TestConfig::oauth(&upstream.url)
        .server(&format!("public_url: {PUBLIC_URL}"))
        .yaml(&format!(
            "session:\n  store: {redis_url}\n  idle_timeout: {idle}"
        ))
}

/// A gateway with an admin listener; its admin base URL.
async fn gateway_with_admin(upstream: &Upstream, redis_url: &str) -> (Gateway, String) {
    let admin_port = free_port();
    let config =
        config(upstream, redis_url, "1h").server(&format!("admin_listen: 127.0.0.1:{admin_port}"));
    let gateway = Gateway::start(&config.build()).await;
    (gateway, format!("http://127.0.0.1:{admin_port}"))
}

fn token(subject: &str) -> String {
    let mut claims = claims(PUBLIC_URL, "mcp:connect");
    claims["sub"] = json!(subject);
    hs256(&claims, Some("dev"))
}

fn call(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo"}})
}

/// An `echo` call in `session` with `token`.
async fn post_in(gateway: &Gateway, token: &str, session: &str) -> reqwest::Response {
    post_in_session(gateway, token, session, &call(1)).await
}

async fn assert_store_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32000, "{body}");
    assert_eq!(
        body["error"]["message"], "session store unavailable",
        "{body}"
    );
}

/// Requests the upstream received in its own session.
fn upstream_requests_in_session(upstream: &Upstream, method: &Method) -> usize {
    upstream
        .seen()
        .iter()
        .filter(|seen| {
            seen.method == *method
                && seen
                    .headers
                    .get("mcp-session-id")
                    .is_some_and(|id| id == "upstream-session-1")
        })
        .count()
}

async fn admin_get(admin: &str, path: &str) -> (u16, String) {
    let response = Gateway::client()
        .get(format!("{admin}{path}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn store_errors(admin: &str) -> f64 {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|line| line.strip_prefix("mcpgate_session_store_errors_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no mcpgate_session_store_errors_total in\n{text}"))
}

/// Retries `initialize` until it succeeds, up to 15 s: for Redis coming back.
async fn initialize_eventually(gateway: &Gateway, token: &str) -> String {
    for _ in 0..150 {
        let response = post_initialize(gateway, token).await;
        if response.status() == 200 {
            return response.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "sessions did not recover after Redis came back; stderr:\n{}",
        gateway.stderr()
    );
}

// === the tests ===

#[tokio::test]
async fn a_session_opened_on_one_replica_continues_on_another() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let first = Gateway::start(&config(&upstream, &redis.url(), "1h").build()).await;
    let second = Gateway::start(&config(&upstream, &redis.url(), "1h").build()).await;
    let (alice, bob) = (token("alice"), token("bob"));

    let id = open_session(&first, &alice).await;
    let stored = redis.command(&["GET", &format!("mcpgate:session:{id}")]);
    assert!(stored.starts_with("1:"), "{stored}");
    assert!(stored.ends_with(":upstream-session-1"), "{stored}");
    assert!(
        !stored.contains("alice"),
        "the record names no user: {stored}"
    );

    let response = post_in(&second, &alice, &id).await;
    assert_eq!(response.status(), 200, "{}", second.stderr());
    assert_eq!(response.headers()["mcp-session-id"], id.as_str());
    assert_eq!(upstream_requests_in_session(&upstream, &Method::POST), 1);
    let response = Request::get(&second)
        .bearer(&alice)
        .session(&id)
        .send()
        .await;
    assert_eq!(response.status(), 200);
    drop(response);
    assert_eq!(upstream_requests_in_session(&upstream, &Method::GET), 1);

    // Another principal learns nothing on either replica, whatever the method.
    for gateway in [&first, &second] {
        assert_session_not_found(post_in(gateway, &bob, &id).await).await;
        assert_session_not_found(Request::get(gateway).bearer(&bob).session(&id).send().await)
            .await;
        assert_session_not_found(
            Request::delete(gateway)
                .bearer(&bob)
                .session(&id)
                .send()
                .await,
        )
        .await;
    }
    assert_eq!(upstream_requests_in_session(&upstream, &Method::DELETE), 0);

    // Ended through the second replica, it is gone for the first.
    let response = Request::delete(&second)
        .bearer(&alice)
        .session(&id)
        .send()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream_requests_in_session(&upstream, &Method::DELETE), 1);
    assert_eq!(
        redis.command(&["EXISTS", &format!("mcpgate:session:{id}")]),
        "0"
    );
    assert_session_not_found(post_in(&first, &alice, &id).await).await;
    assert_session_not_found(post_in(&second, &alice, &id).await).await;
}

#[tokio::test]
async fn records_mcpgate_did_not_write_are_unknown_sessions() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &redis.url(), "1h").build()).await;
    let alice = token("alice");
    let garbage = "0123456789abcdef0123456789abcdef";
    let hash = "fedcba9876543210fedcba9876543210";
    redis.command(&["SET", &format!("mcpgate:session:{garbage}"), "not-a-record"]);
    redis.command(&["HSET", &format!("mcpgate:session:{hash}"), "owner", "x"]);
    for id in [garbage, hash] {
        assert_session_not_found(post_in(&gateway, &alice, id).await).await;
    }
    assert!(upstream.seen().is_empty());
    // The store itself is fine: a real session works.
    let id = open_session(&gateway, &alice).await;
    assert_eq!(post_in(&gateway, &alice, &id).await.status(), 200);
}

#[tokio::test]
async fn idle_sessions_expire_in_redis_and_use_restarts_the_timer() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &redis.url(), "1s").build()).await;
    let alice = token("alice");
    let id = open_session(&gateway, &alice).await;
    let key = format!("mcpgate:session:{id}");
    let ttl: i64 = redis.command(&["PTTL", &key]).parse().unwrap();
    assert!((1..=1000).contains(&ttl), "{ttl}");

    // Used every 600 ms, it outlives its 1 s idle timeout.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(post_in(&gateway, &alice, &id).await.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(redis.command(&["EXISTS", &key]), "0");
    assert_session_not_found(post_in(&gateway, &alice, &id).await).await;
}

#[tokio::test]
async fn a_redis_outage_gives_503_and_heals_without_a_restart() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let (gateway, admin) = gateway_with_admin(&upstream, &redis.url()).await;
    let alice = token("alice");
    let id = open_session(&gateway, &alice).await;
    assert_eq!(admin_get(&admin, "/readyz").await.0, 200);
    let errors_before = store_errors(&admin).await;

    redis.stop();
    let started = Instant::now();
    assert_store_unavailable(post_in(&gateway, &alice, &id).await).await;
    assert_store_unavailable(
        Request::get(&gateway)
            .bearer(&alice)
            .session(&id)
            .send()
            .await,
    )
    .await;
    // Nowhere to record a new session: refused rather than kept in memory, where
    // the other replicas could not see it.
    let response = post_initialize(&gateway, &alice).await;
    assert_store_unavailable(response).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(store_errors(&admin).await >= errors_before + 3.0);
    let (status, body) = admin_get(&admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("session store unavailable: "), "{body}");
    assert!(
        gateway.wait_for_log("session store unavailable").await,
        "{}",
        gateway.stderr()
    );

    // Back on the same port (empty: no persistence), without restarting mcpgate.
    redis.launch();
    let fresh = initialize_eventually(&gateway, &alice).await;
    assert_eq!(post_in(&gateway, &alice, &fresh).await.status(), 200);
    assert_session_not_found(post_in(&gateway, &alice, &id).await).await;
    let (status, body) = admin_get(&admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn mcpgate_starts_while_redis_is_down_and_connects_when_it_comes_up() {
    const PASSWORD: &str = "a-redis-password";
    let port = free_port();
    let upstream = Upstream::start().await;
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let (gateway, admin) = gateway_with_admin(&upstream, &url).await;
    let alice = token("alice");
    let response = post_initialize(&gateway, &alice).await;
    assert_store_unavailable(response).await;
    let (status, body) = admin_get(&admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("session store unavailable"), "{body}");
    assert!(
        gateway
            .wait_for_log("session store: Redis unreachable")
            .await,
        "{}",
        gateway.stderr()
    );

    let redis = RedisServer::start_on(port, Some(PASSWORD));
    let id = initialize_eventually(&gateway, &alice).await;
    assert_eq!(post_in(&gateway, &alice, &id).await.status(), 200);
    assert_eq!(
        redis.command(&["EXISTS", &format!("mcpgate:session:{id}")]),
        "1"
    );
    assert_eq!(admin_get(&admin, "/readyz").await.0, 200);
    assert!(
        gateway
            .wait_for_log("session store: connected to Redis")
            .await,
        "{}",
        gateway.stderr()
    );
    // The URL carries the password: it appears in no log line.
    assert!(!gateway.stderr().contains(PASSWORD), "{}", gateway.stderr());
}

#[tokio::test]
async fn a_hung_redis_gives_503_within_the_command_timeout() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &redis.url(), "1h").build()).await;
    let alice = token("alice");
    let id = open_session(&gateway, &alice).await;

    redis.signal("STOP");
    let started = Instant::now();
    assert_store_unavailable(post_in(&gateway, &alice, &id).await).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    redis.signal("CONT");
    for _ in 0..150 {
        if post_in(&gateway, &alice, &id).await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no recovery after Redis resumed; stderr:\n{}",
        gateway.stderr()
    );
}

#[test]
fn an_unusable_redis_url_is_a_config_error_that_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    let yaml = "upstream:\n  url: http://127.0.0.1:9/mcp\nsession:\n  store: \"redis://user:hunter2@:0/x\"\n";
    std::fs::write(&path, yaml).unwrap();
    let (code, _, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("config error: session.store: "), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn rediss_verifies_the_server_against_the_system_roots() {
    let redis = RedisServer::start_tls();
    let upstream = Upstream::start().await;
    let url = format!("rediss://localhost:{}", redis.port);
    let config = config(&upstream, &url, "1h").build();
    let alice = token("alice");

    // rustls-native-certs reads SSL_CERT_FILE: the test CA stands for the system's.
    let ca = redis.dir.path().join("ca.pem");
    let trusting =
        Gateway::start_with_env(&config, &[("SSL_CERT_FILE", ca.to_str().unwrap())]).await;
    let id = initialize_eventually(&trusting, &alice).await;
    assert_eq!(post_in(&trusting, &alice, &id).await.status(), 200);

    // A server the roots do not vouch for is never trusted with sessions.
    let doubting = Gateway::start(&config).await;
    let response = post_initialize(&doubting, &alice).await;
    assert_store_unavailable(response).await;
    assert!(
        doubting
            .wait_for_log("session store: Redis unreachable")
            .await,
        "{}",
        doubting.stderr()
    );
}
