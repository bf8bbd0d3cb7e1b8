//! Rate limits shared by replicas through Redis (issue #18): one budget for the
//! fleet, and per-process budgets, never none, while Redis is away.

use std::time::Duration;

use crate::common::redis::RedisServer;
use crate::common::*;
use serde_json::json;

/// One rule, 30/min with a burst of `burst`, per subject; the built-in per-address
/// limits off so that only the rule counts. Sessions (and so limits) in `redis`,
/// with more keys under `session:` from `session`.
fn config(
    upstream: &Upstream,
    redis: &RedisServer,
    burst: u32,
    admin_port: u16,
    session: &str,
) -> String {
    TestConfig::oauth(&upstream.url)
        .server(&format!("public_url: {PUBLIC_URL}"))
        .server(&format!("admin_listen: 127.0.0.1:{admin_port}"))
        .yaml(&format!(
            "session:\n  store: {}\n{session}limits:\n  unauthenticated: {{ enabled: false, rate: \
             1/s }}\n  failed_authentications: {{ enabled: false, rate: 1/s }}\n  rules:\n    - {{ \
             name: per-user, key: subject, rate: 30/min, burst: {burst} }}\n",
            redis.url()
        ))
        .build()
}

/// Both replicas are one resource, as behind a load balancer.
const PUBLIC_URL: &str = "https://mcp.example.test/mcp";

fn token_for(subject: &str) -> String {
    let mut claims = claims(PUBLIC_URL, "");
    claims["sub"] = json!(subject);
    hs256(&claims, Some("dev"))
}

/// A 2026-07-28 `tools/call`: stateless, so no session store is involved and
/// only the limits need Redis.
async fn call(gateway: &Gateway, token: &str, id: u64) -> u16 {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "echo",
        "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}
        }
    }});
    Request::post(gateway)
        .bearer(token)
        .headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ])
        .json(&body)
        .send()
        .await
        .status()
        .as_u16()
}

async fn metric(admin_port: u16, name: &str) -> f64 {
    let text = Gateway::client()
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn two_replicas_charge_one_budget() {
    let upstream = Upstream::start().await;
    let redis = RedisServer::start();
    let first = Gateway::start(&config(&upstream, &redis, 4, free_port(), "")).await;
    let second = Gateway::start(&config(&upstream, &redis, 4, free_port(), "")).await;
    let alice = token_for("alice");
    // Four cells for alice across the fleet, taken alternately on each replica.
    for id in 0..4 {
        let replica = if id % 2 == 0 { &first } else { &second };
        assert_eq!(call(replica, &alice, id).await, 200, "{}", replica.stderr());
    }
    assert_eq!(call(&first, &alice, 4).await, 429);
    assert_eq!(call(&second, &alice, 5).await, 429);
    // Another principal's budget is its own on both.
    let bob = token_for("bob");
    assert_eq!(call(&second, &bob, 6).await, 200);
    let keys = redis.command(&["KEYS", "{mcpgate:limit}:*"]);
    assert_eq!(keys.lines().count(), 2, "one key per principal: {keys}");
    let calls = upstream
        .seen()
        .iter()
        .filter(|seen| String::from_utf8_lossy(&seen.body).contains("tools/call"))
        .count();
    assert_eq!(calls, 5, "a refused call reached the upstream");
}

#[tokio::test]
async fn without_redis_each_replica_limits_on_its_own_and_counts_it() {
    let upstream = Upstream::start().await;
    let mut redis = RedisServer::start();
    let admin_port = free_port();
    // Stateless: no session is kept, yet the limits are still counted in Redis.
    let stateless = "  stateless: true\n";
    let gateway = Gateway::start(&config(&upstream, &redis, 3, admin_port, stateless)).await;
    let alice = token_for("alice");
    for id in 0..3 {
        assert_eq!(
            call(&gateway, &alice, id).await,
            200,
            "{}",
            gateway.stderr()
        );
    }
    assert_eq!(call(&gateway, &alice, 3).await, 429);
    assert_eq!(
        metric(admin_port, "mcpgate_rate_limit_fallbacks_total").await,
        0.0
    );
    let keys = redis.command(&["KEYS", "{mcpgate:limit}:*"]);
    assert_eq!(keys.lines().count(), 1, "counted in Redis: {keys}");
    redis.stop();
    // The process's own budget, whole (it never counted alice): three calls go,
    // the fourth is refused. Neither no limit nor everyone refused.
    for id in 4..7 {
        assert_eq!(
            call(&gateway, &alice, id).await,
            200,
            "{}",
            gateway.stderr()
        );
    }
    assert_eq!(call(&gateway, &alice, 7).await, 429);
    assert_eq!(
        metric(admin_port, "mcpgate_rate_limit_fallbacks_total").await,
        4.0
    );
    assert!(
        gateway
            .wait_for_log("limits are counted per process until Redis answers")
            .await,
        "{}",
        gateway.stderr()
    );
    // Redis back (empty: no persistence): calls are counted there again.
    redis.launch();
    let mut shared_again = false;
    for id in 8..100 {
        call(&gateway, &alice, id).await;
        if redis
            .try_command(&["KEYS", "{mcpgate:limit}:*"])
            .is_some_and(|keys| !keys.trim().is_empty())
        {
            shared_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shared_again,
        "Redis back, the shared counters were not used"
    );
}
