//! The introspection cache shared through Redis, against a real `redis-server`, the
//! real binary (two replicas) and an in-process introspection endpoint that counts
//! calls: one call per token across replicas, negative answers shared too, entries
//! gone after `cache_ttl`; a Redis that is down or hung only costs direct calls (and a
//! metric), never a 503; records mcpgate did not write are misses; a reload keeps the
//! process's one connection.
//!
//! Needs `redis-server` on PATH: `scripts/test` installs it (Debian's package).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::redis::RedisServer;
use crate::common::*;
use axum::Router;
use axum::extract::State;
use axum::routing::{any, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// What every replica calls itself, as replicas behind one load balancer do.
const PUBLIC_URL: &str = "https://mcp.example.test/mcp";

/// The key mcpgate keeps a token's answer under.
fn cache_key(token: &str) -> String {
    format!(
        "mcpgate:introspection:{}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
}

// === an introspection endpoint that counts calls per token ===

#[derive(Clone, Default)]
struct Endpoint {
    answers: Arc<Mutex<HashMap<String, Value>>>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl Endpoint {
    async fn start() -> (Self, String) {
        let endpoint = Self::default();
        let router = Router::new()
            .route("/introspect", post(answer))
            .with_state(endpoint.clone());
        let url = format!("http://{}/introspect", spawn_router(router).await);
        (endpoint, url)
    }

    fn set(&self, token: &str, answer: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    /// Calls made for `token`.
    fn calls(&self, token: &str) -> usize {
        self.calls.lock().unwrap().get(token).copied().unwrap_or(0)
    }
}

async fn answer(State(endpoint): State<Endpoint>, body: String) -> axum::Json<Value> {
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    *endpoint
        .calls
        .lock()
        .unwrap()
        .entry(token.clone())
        .or_default() += 1;
    let answers = endpoint.answers.lock().unwrap();
    axum::Json(
        answers
            .get(&token)
            .cloned()
            .unwrap_or(json!({"active": false})),
    )
}

fn active(subject: &str) -> Value {
    json!({"active": true, "scope": "mcp:connect mcp:tools", "aud": PUBLIC_URL,
           "iss": "https://issuer.test", "client_id": "m2m", "sub": subject,
           "exp": now() + 300})
}

/// An upstream that answers every POST with an empty tool list and never opens a
/// session: requests here need no session store, so only the introspection cache
/// touches Redis.
async fn sessionless_upstream() -> String {
    let router = Router::new().route(
        "/mcp",
        any(|| async { axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

// === replicas ===

struct Replica {
    gateway: Gateway,
    admin: String,
}

fn config(upstream: &str, endpoint: &str, redis_url: &str, admin_port: u16, ttl: &str) -> String {
    let introspection = format!(
        r#"
validation: introspection
introspection:
  url: {endpoint}
  client_id: mcpgate
  client_secret: "s3cret"
  cache_ttl: {ttl}
  negative_cache_ttl: {ttl}
  timeout: 2s
"#
    );
    TestConfig::oauth(upstream)
        .server(&format!("public_url: {PUBLIC_URL}"))
        .server(&format!("admin_listen: 127.0.0.1:{admin_port}"))
        .jwks(None)
        .oauth_yaml(&introspection)
        .yaml(&format!("session:\n  store: {redis_url}"))
        .audit()
        .scopes("initialize: [mcp:connect]")
        .build()
}

impl Replica {
    async fn start(upstream: &str, endpoint: &str, redis_url: &str, ttl: &str) -> Self {
        let admin_port = free_port();
        let config = config(upstream, endpoint, redis_url, admin_port, ttl);
        Self {
            gateway: Gateway::start(&config).await,
            admin: format!("http://127.0.0.1:{admin_port}"),
        }
    }

    async fn status(&self, token: &str) -> u16 {
        self.gateway.post(Some(token)).await.status().as_u16()
    }

    /// A series of `/metrics`, 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        let text = Gateway::client()
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.parse().unwrap())
    }

    async fn shared(&self, result: &str) -> f64 {
        self.metric(&format!(
            r#"mcpgate_token_cache_total{{cache="introspection_shared",result="{result}"}}"#
        ))
        .await
    }

    /// The first audit record of a request with `token`'s fingerprint, waiting for the
    /// writer to flush it.
    async fn audit_record(&self, token: &str) -> Value {
        let fingerprint = &hex::encode(Sha256::digest(token.as_bytes()))[..16];
        for _ in 0..100 {
            let text =
                std::fs::read_to_string(self.gateway.dir().join("audit.jsonl")).unwrap_or_default();
            let found = text
                .lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .find(|record| record["token_fingerprint"] == fingerprint);
            if let Some(record) = found {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no audit record for the token");
    }
}

/// Who the request was made as, as the audit log tells it.
fn principal(record: &Value) -> Value {
    json!([
        record["auth_method"],
        record["issuer"],
        record["subject"],
        record["oauth_client_id"],
        record["scopes"],
        record["auth_result"]
    ])
}

// === the tests ===

#[tokio::test]
async fn replicas_make_one_introspection_call_per_token() {
    let redis = RedisServer::start();
    let (endpoint, url) = Endpoint::start().await;
    let upstream = sessionless_upstream().await;
    let first = Replica::start(&upstream, &url, &redis.url(), "2s").await;
    let second = Replica::start(&upstream, &url, &redis.url(), "2s").await;
    endpoint.set("opaque-alice", active("alice"));
    let started = Instant::now();

    assert_eq!(first.status("opaque-alice").await, 200);
    assert_eq!(endpoint.calls("opaque-alice"), 1);
    assert_eq!(second.status("opaque-alice").await, 200);
    assert_eq!(
        endpoint.calls("opaque-alice"),
        1,
        "the second replica asked again"
    );
    for replica in [&first, &second, &first, &second] {
        assert_eq!(replica.status("opaque-alice").await, 200);
    }
    assert_eq!(endpoint.calls("opaque-alice"), 1);
    assert!(second.shared("hit").await >= 1.0);

    // The second replica's principal is the first's, claim for claim.
    assert_eq!(
        principal(&first.audit_record("opaque-alice").await),
        principal(&second.audit_record("opaque-alice").await)
    );
    assert_eq!(
        principal(&second.audit_record("opaque-alice").await),
        json!([
            "introspection",
            "https://issuer.test",
            "alice",
            "m2m",
            "mcp:connect mcp:tools",
            "ok"
        ])
    );

    // Stored under the token's digest, never the token; no longer than cache_ttl.
    let key = cache_key("opaque-alice");
    let stored = redis.command(&["GET", &key]);
    assert!(stored.starts_with("v1:"), "{stored}");
    assert!(!stored.contains("opaque-alice"), "{stored}");
    let ttl: i64 = redis.command(&["PTTL", &key]).parse().unwrap();
    assert!((1..=2000).contains(&ttl), "{ttl}");
    let keys = redis.command(&["KEYS", "*opaque*"]);
    assert!(keys.is_empty(), "{keys}");

    // Refusals are shared as well, for negative_cache_ttl.
    assert_eq!(first.status("opaque-unknown").await, 401);
    assert_eq!(second.status("opaque-unknown").await, 401);
    assert_eq!(first.status("opaque-unknown").await, 401);
    assert_eq!(endpoint.calls("opaque-unknown"), 1);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "too slow for a 2 s TTL: {:?}",
        started.elapsed()
    );

    // Revoked: both replicas keep the answer for at most cache_ttl, then ask again
    // (one of them: the other finds the new answer in Redis).
    endpoint.set("opaque-alice", json!({"active": false}));
    assert_eq!(second.status("opaque-alice").await, 200);
    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(started.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.status("opaque-alice").await, 401);
    assert_eq!(endpoint.calls("opaque-alice"), 2);
    assert_eq!(first.status("opaque-alice").await, 401);
    assert_eq!(endpoint.calls("opaque-alice"), 2);
    assert_eq!(second.status("opaque-unknown").await, 401);
    assert_eq!(first.status("opaque-unknown").await, 401);
    assert_eq!(endpoint.calls("opaque-unknown"), 2);
}

#[tokio::test]
async fn without_redis_the_endpoint_is_asked_directly_and_nothing_503s() {
    let mut redis = RedisServer::start();
    let (endpoint, url) = Endpoint::start().await;
    let upstream = sessionless_upstream().await;
    let replica = Replica::start(&upstream, &url, &redis.url(), "30s").await;
    endpoint.set("before", active("alice"));
    assert_eq!(replica.status("before").await, 200);
    assert_eq!(replica.shared("error").await, 0.0);

    // Hung: every Redis command gives up after the cache's short timeout.
    redis.signal("STOP");
    endpoint.set("while-hung", active("alice"));
    let started = Instant::now();
    assert_eq!(replica.status("while-hung").await, 200);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(endpoint.calls("while-hung"), 1);
    assert!(replica.shared("error").await >= 1.0);
    redis.signal("CONT");

    redis.stop();
    let errors_before = replica.shared("error").await;
    let started = Instant::now();
    for n in 0..3 {
        let token = format!("while-down-{n}");
        endpoint.set(&token, active("alice"));
        assert_eq!(replica.status(&token).await, 200, "{token}");
        assert_eq!(endpoint.calls(&token), 1);
        // The local cache still works.
        assert_eq!(replica.status(&token).await, 200);
        assert_eq!(endpoint.calls(&token), 1);
    }
    assert_eq!(replica.status("unknown-while-down").await, 401);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(replica.shared("error").await >= errors_before + 3.0);
    assert!(
        replica
            .gateway
            .wait_for_log("introspection cache: Redis")
            .await,
        "{}",
        replica.gateway.stderr()
    );

    // Back (empty): answers are shared again, without a restart.
    redis.launch();
    for n in 0..150 {
        let token = format!("after-{n}");
        endpoint.set(&token, active("alice"));
        assert_eq!(replica.status(&token).await, 200);
        if redis.command(&["EXISTS", &cache_key(&token)]) == "1" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the cache did not use Redis again; stderr:\n{}",
        replica.gateway.stderr()
    );
}

#[tokio::test]
async fn records_mcpgate_did_not_write_are_misses_never_answers() {
    let redis = RedisServer::start();
    let (endpoint, url) = Endpoint::start().await;
    let upstream = sessionless_upstream().await;
    let first = Replica::start(&upstream, &url, &redis.url(), "30s").await;
    let second = Replica::start(&upstream, &url, &redis.url(), "30s").await;

    // A genuine record, for a token the endpoint calls active.
    endpoint.set("alice-token", active("alice"));
    assert_eq!(first.status("alice-token").await, 200);
    let genuine = redis.command(&["GET", &cache_key("alice-token")]);
    assert!(genuine.starts_with("v1:"), "{genuine}");
    let (_, signed) = genuine.split_at(3 + 64 + 1);
    let until = now() * 1000 + 60_000;
    let forged_claims = active("mallory").to_string();

    let planted = [
        "garbage".to_owned(),
        "v1:garbage".to_owned(),
        r#"{"active":true}"#.to_owned(),
        format!("v1:{}:{until}:{forged_claims}", "0".repeat(64)),
        // Another token's record, moved under this token's key.
        genuine.clone(),
        // The genuine signature over claims edited to another subject.
        format!(
            "{}{}",
            &genuine[..3 + 64 + 1],
            signed.replace("alice", "mallory")
        ),
    ];
    for (n, value) in planted.iter().enumerate() {
        let token = format!("mallory-{n}");
        redis.command(&["SET", &cache_key(&token), value, "EX", "60"]);
        assert_eq!(second.status(&token).await, 401, "{value}");
        assert_eq!(endpoint.calls(&token), 1, "{value}");
        // The answer replaced the planted value.
        let stored = redis.command(&["GET", &cache_key(&token)]);
        assert!(stored.starts_with("v1:") && stored != *value, "{stored}");
    }
    // A key of another type.
    redis.command(&["HSET", &cache_key("mallory-hash"), "active", "true"]);
    assert_eq!(second.status("mallory-hash").await, 401);
    assert_eq!(endpoint.calls("mallory-hash"), 1);
    assert!(second.shared("miss").await >= 7.0);
    assert!(
        second.gateway.wait_for_log("did not read back").await,
        "{}",
        second.gateway.stderr()
    );
    // Redis itself was fine all along.
    assert_eq!(second.shared("error").await, 0.0);
    assert_eq!(second.status("alice-token").await, 200);
    assert_eq!(endpoint.calls("alice-token"), 1);
}

#[tokio::test]
async fn a_reload_keeps_the_one_redis_connection_and_the_shared_cache() {
    let redis = RedisServer::start();
    let (endpoint, url) = Endpoint::start().await;
    let upstream = sessionless_upstream().await;
    let first = Replica::start(&upstream, &url, &redis.url(), "30s").await;
    endpoint.set("before-reload", active("alice"));
    assert_eq!(first.status("before-reload").await, 200);
    let clients = || {
        redis
            .command(&["CLIENT", "LIST"])
            .lines()
            .filter(|line| !line.contains("cmd=client"))
            .count()
    };
    assert_eq!(clients(), 1, "{}", redis.command(&["CLIENT", "LIST"]));

    let admin_port: u16 = first.admin.rsplit(':').next().unwrap().parse().unwrap();
    for (n, ttl) in ["20s", "25s"].iter().enumerate() {
        first
            .gateway
            .rewrite_config(&config(&upstream, &url, &redis.url(), admin_port, ttl));
        first.gateway.signal("HUP");
        for _ in 0..100 {
            if first.gateway.log_count("config reloaded") > n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            first.gateway.log_count("config reloaded"),
            n + 1,
            "{}",
            first.gateway.stderr()
        );
    }
    assert_eq!(clients(), 1, "{}", redis.command(&["CLIENT", "LIST"]));

    // The rebuilt introspector reads what its predecessor wrote, and writes for others.
    assert_eq!(first.status("before-reload").await, 200);
    assert_eq!(endpoint.calls("before-reload"), 1);
    endpoint.set("after-reload", active("bob"));
    assert_eq!(first.status("after-reload").await, 200);
    let ttl: i64 = redis
        .command(&["PTTL", &cache_key("after-reload")])
        .parse()
        .unwrap();
    assert!((20_000..=25_000).contains(&ttl), "{ttl}");
    let second = Replica::start(&upstream, &url, &redis.url(), "30s").await;
    assert_eq!(second.status("after-reload").await, 200);
    assert_eq!(endpoint.calls("after-reload"), 1);
}
