//! Rate limits, per-address authentication limits and calls in flight against the
//! real binary (issue #18). Every client here is 127.0.0.1; trusted proxies are
//! tested by trusting 127.0.0.1 and sending `X-Forwarded-For`.

use std::time::{Duration, Instant};

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

/// The built-in per-address limits off, so that only the rule under test counts.
const BUILTINS_OFF: &str = "  unauthenticated: { enabled: false, rate: 1/s }\n  failed_authentications: { enabled: false, rate: 1/s }\n";

fn limits(rules: &str) -> String {
    format!("limits:\n{BUILTINS_OFF}  rules:\n{rules}")
}

/// A token of the dev key for `subject`.
fn token_for(gateway: &Gateway, subject: &str) -> String {
    let mut claims = claims(&gateway.mcp, "");
    claims["sub"] = json!(subject);
    hs256(&claims, Some("dev"))
}

async fn call(gateway: &Gateway, token: &str, id: u64, tool: &str) -> reqwest::Response {
    Request::post(gateway)
        .bearer(token)
        .json(&tools_call(id, tool))
        .send()
        .await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

fn calls_seen(upstream: &Upstream) -> usize {
    upstream
        .seen()
        .iter()
        .filter(|seen| String::from_utf8_lossy(&seen.body).contains("tools/call"))
        .count()
}

async fn admin_metrics(admin: &str) -> String {
    for _ in 0..100 {
        if let Ok(response) = Gateway::client()
            .get(format!("{admin}/metrics"))
            .send()
            .await
        {
            return response.text().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("admin listener not serving");
}

#[tokio::test]
async fn a_burst_then_429_with_headers_then_one_more_after_the_interval() {
    let upstream = Upstream::start().await;
    let admin_port = free_port();
    // 30/min: one request every 2 s, three at once.
    let config = TestConfig::oauth(&upstream.url)
        .server(&format!("admin_listen: 127.0.0.1:{admin_port}"))
        .audit()
        .yaml(&limits(
            "    - { name: per-user, key: subject, rate: 30/min, burst: 3 }\n",
        ));
    let gateway = Gateway::start(&config.build()).await;
    let token = token_for(&gateway, "alice");
    for (id, left) in [(1, 2), (2, 1), (3, 0)] {
        let response = call(&gateway, &token, id, "echo").await;
        assert_eq!(response.status(), 200, "{}", gateway.stderr());
        assert_eq!(
            header(&response, "ratelimit-policy").as_deref(),
            Some("\"per-user\";q=30;w=60")
        );
        let state = header(&response, "ratelimit").unwrap();
        assert!(
            state.starts_with(&format!("\"per-user\";r={left};t=")),
            "{state}"
        );
    }
    let refused = call(&gateway, &token, 4, "echo").await;
    let refused_at = Instant::now();
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("2"));
    assert_eq!(
        header(&refused, "ratelimit-policy").as_deref(),
        Some("\"per-user\";q=30;w=60")
    );
    assert_eq!(
        header(&refused, "ratelimit").as_deref(),
        Some("\"per-user\";r=0;t=2")
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["id"], 4);
    assert_eq!(body["error"]["code"], -32000);
    assert_eq!(body["error"]["data"]["rule"], "per-user");
    assert_eq!(
        calls_seen(&upstream),
        3,
        "a refused call reached the upstream"
    );
    // One interval after the refusal's moment, one more fits; not two.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(refused_at.elapsed())).await;
    assert_eq!(call(&gateway, &token, 5, "echo").await.status(), 200);
    assert_eq!(call(&gateway, &token, 6, "echo").await.status(), 429);
    assert_eq!(calls_seen(&upstream), 4);
    let metrics = admin_metrics(&format!("http://127.0.0.1:{admin_port}")).await;
    assert!(
        metrics.contains("mcpgate_rate_limited_total{rule=\"per-user\"} 2"),
        "{metrics}"
    );
    let records = audit_records(&gateway, 6).await;
    let limited: Vec<&Value> = records
        .iter()
        .filter(|record| record["status"] == 429)
        .collect();
    assert_eq!(limited.len(), 2);
    for record in limited {
        assert_eq!(record["reason"], "rate_limited: per-user");
        assert_eq!(record["action"], "deny");
        assert_eq!(record["subject"], "alice");
    }
}

#[tokio::test]
async fn principals_are_counted_apart_and_a_new_session_does_not_reset_one() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url).yaml(&limits(
        "    - { name: per-user, key: subject, rate: 1/min, burst: 2 }\n",
    ));
    let gateway = Gateway::start(&config.build()).await;
    let (alice, bob) = (token_for(&gateway, "alice"), token_for(&gateway, "bob"));
    let session = open_session(&gateway, &alice).await;
    let response = post_in_session(&gateway, &alice, &session, &tools_call(1, "echo")).await;
    assert_eq!(response.status(), 200);
    let seen = upstream.seen().len();
    // A second session starts nothing afresh: the principal is counted, not the session.
    let again = post_initialize(&gateway, &alice).await;
    assert_eq!(again.status(), 429);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["id"], 0);
    assert_eq!(
        upstream.seen().len(),
        seen,
        "a refused initialize reached the upstream"
    );
    // Alice's exhaustion leaves Bob whole.
    assert_eq!(call(&gateway, &bob, 1, "echo").await.status(), 200);
    assert_eq!(call(&gateway, &bob, 2, "echo").await.status(), 200);
    assert_eq!(call(&gateway, &bob, 3, "echo").await.status(), 429);
}

#[tokio::test]
async fn a_spoofed_forwarded_for_escapes_nothing_unless_the_peer_is_trusted() {
    let upstream = Upstream::start().await;
    let rule = limits("    - { name: per-ip, key: ip, rate: 1/min, burst: 2 }\n");
    // No credential source: the address is the only key there is.
    let gateway = Gateway::start(&TestConfig::new(&upstream.url).yaml(&rule).build()).await;
    let send = |address: &'static str| {
        Request::post(&gateway)
            .header("x-forwarded-for", address)
            .json(&tools_call(1, "echo"))
            .send()
    };
    assert_eq!(send("198.51.100.1").await.status(), 200);
    assert_eq!(send("198.51.100.2").await.status(), 200);
    assert_eq!(send("198.51.100.3").await.status(), 429);
    assert_eq!(send("2001:db8::9").await.status(), 429);
    assert_eq!(calls_seen(&upstream), 2);

    // Behind a trusted proxy the right-most untrusted hop is the client.
    let upstream = Upstream::start().await;
    let config = TestConfig::new(&upstream.url)
        .server("trusted_proxies: [127.0.0.1/32]")
        .yaml(&rule);
    let gateway = Gateway::start(&config.build()).await;
    let send = |hops: &'static str| {
        Request::post(&gateway)
            .header("x-forwarded-for", hops)
            .json(&tools_call(1, "echo"))
            .send()
    };
    assert_eq!(send("198.51.100.1").await.status(), 200);
    assert_eq!(send("198.51.100.1").await.status(), 200);
    // What the client wrote left of its own address changes nothing.
    assert_eq!(send("203.0.113.77, 198.51.100.1").await.status(), 429);
    assert_eq!(send("198.51.100.2").await.status(), 200);
    // One host holds a /64: its addresses share one budget.
    assert_eq!(send("2001:db8:0:1::1").await.status(), 200);
    assert_eq!(send("2001:db8:0:1::2").await.status(), 200);
    assert_eq!(send("2001:db8:0:1:ffff::3").await.status(), 429);
    assert_eq!(calls_seen(&upstream), 5);
}

#[tokio::test]
async fn a_tool_rule_counts_each_tool_of_its_own() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url).yaml(&limits(
        "    - { name: search, key: [subject, tool], tools: [\"search_*\"], rate: 1/min, burst: 1 }\n",
    ));
    let gateway = Gateway::start(&config.build()).await;
    let token = token_for(&gateway, "alice");
    assert_eq!(call(&gateway, &token, 1, "search_web").await.status(), 200);
    let refused = call(&gateway, &token, 2, "search_web").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "ratelimit").as_deref(),
        Some("\"search\";r=0;t=60")
    );
    assert_eq!(call(&gateway, &token, 3, "search_docs").await.status(), 200);
    for id in 4..8 {
        assert_eq!(call(&gateway, &token, id, "echo").await.status(), 200);
    }
    // Not about tools/list, nor about anything but tools/call.
    assert_eq!(gateway.post(Some(&token)).await.status(), 200);
    assert_eq!(calls_seen(&upstream), 6);
}

/// `n` API keys of ids no one configured, all at once from one address.
async fn random_key_flood(gateway: &Gateway, n: usize) -> Vec<(u16, Option<String>)> {
    let requests = (0..n).map(|index| {
        let request = Request::post(gateway)
            .bearer(&format!("mcpk_rnd{index}_guess-{index}"))
            .json(&tools_call(1, "echo"))
            .send();
        async move {
            let response = request.await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["error"].as_str().map(str::to_owned))
        }
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test]
async fn an_unauthenticated_flood_is_refused_before_any_check() {
    let upstream = Upstream::start().await;
    let config = TestConfig::new(&upstream.url)
        .api_key("ci", &argon2_hash("mcpk_ci_secret-one"))
        .yaml(
            "limits:\n  unauthenticated: { rate: 1/min, burst: 5 }\n  failed_authentications: { enabled: false, rate: 1/s }\n",
        );
    let gateway = Gateway::start(&config.build()).await;
    // Verified before the flood: cached, and so never counted.
    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 200);
    let answers = random_key_flood(&gateway, 60).await;
    let checked = answers.iter().filter(|(status, _)| *status == 401).count();
    let limited = answers
        .iter()
        .filter(|(status, error)| *status == 429 && error.as_deref() == Some("rate_limited"))
        .count();
    // One unit went to the first verification of the good key.
    assert_eq!((checked, limited), (4, 56), "{answers:?}");
    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 200);
    assert_eq!(calls_seen(&upstream), 0);
}

#[tokio::test]
async fn an_unknown_kid_flood_costs_a_bounded_number_of_jwks_fetches() {
    let keys = Keys::load();
    let jwks =
        JwksServer::start(json!({"keys": [public_jwk(&keys.rsa, Algorithm::RS256, "rsa-1")]}))
            .await;
    let upstream = Upstream::start().await;
    // A refetch for an unknown kid may happen every second: the flood below lasts
    // three, so without the limit it would cost three or four fetches.
    let provider = format!(
        "- url: {}\n  algorithms: [RS256]\n  refresh_interval: 1h\n  min_refetch_interval: 1s\n",
        jwks.url
    );
    let config = TestConfig::oauth(&upstream.url)
        .jwks(Some(&provider))
        .yaml("limits:\n  unauthenticated: { rate: 1/min, burst: 3 }\n");
    let gateway = Gateway::start(&config.build()).await;
    let start_fetches = jwks.fetches();
    let claims = claims(&gateway.mcp, "");
    let mut statuses = Vec::new();
    for round in 0..4 {
        let tokens: Vec<String> = (0..25)
            .map(|n| {
                sign(
                    &keys.rsa,
                    Algorithm::RS256,
                    Some(&format!("random-{round}-{n}")),
                    &claims,
                )
            })
            .collect();
        let answers =
            futures_util::future::join_all(tokens.iter().map(|token| gateway.post(Some(token))))
                .await;
        statuses.extend(answers.iter().map(|response| response.status().as_u16()));
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(
        statuses.iter().filter(|status| **status == 401).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 97);
    assert!(
        jwks.fetches() - start_fetches <= 1,
        "{} JWKS fetches for the flood",
        jwks.fetches() - start_fetches
    );
}

#[tokio::test]
async fn failed_authentications_lock_an_address_out_of_checks() {
    let upstream = Upstream::start().await;
    let config = TestConfig::new(&upstream.url)
        .api_key("ci", &argon2_hash("mcpk_ci_secret-one"))
        .audit()
        .yaml(
            "limits:\n  unauthenticated: { enabled: false, rate: 1/s }\n  failed_authentications: { rate: 1/min, burst: 3 }\n",
        );
    let gateway = Gateway::start(&config.build()).await;
    for n in 0..3 {
        let response = gateway.post(Some(&format!("mcpk_rnd{n}_guess"))).await;
        assert_eq!(response.status(), 401);
    }
    let refused = gateway.post(Some("mcpk_rnd9_guess")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "ratelimit").as_deref(),
        Some("\"failed_authentications\";r=0;t=60")
    );
    // Not yet verified, so refused unchecked too: the address is locked out of checks.
    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 429);
    let records = audit_records(&gateway, 5).await;
    assert_eq!(records[3]["reason"], "rate_limited: failed_authentications");
    // Not checked: the record says so as for the API-key lockout.
    assert_eq!(records[3]["auth_result"], "rate_limited");
    assert_eq!(records[2]["auth_result"], "unknown_api_key");
    assert_eq!(calls_seen(&upstream), 0);
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn calls_in_flight_per_principal_are_refused_at_once_past_the_limit() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url).yaml(&format!(
        "limits:\n{BUILTINS_OFF}  concurrency: {{ per_principal: 1 }}\n"
    ));
    let gateway = Gateway::start(&config.build()).await;
    let (alice, bob) = (token_for(&gateway, "alice"), token_for(&gateway, "bob"));
    let slow = call(&gateway, &alice, 1, "slow");
    let second = async {
        // Once the slow call is in flight.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let refused = call(&gateway, &alice, 2, "echo").await;
        let bob = call(&gateway, &bob, 3, "echo").await.status();
        (
            refused.status(),
            refused.json::<Value>().await.unwrap(),
            started.elapsed(),
            bob,
        )
    };
    let (slow, (status, body, waited, bob_status)) = tokio::join!(slow, second);
    assert_eq!(status, 429);
    assert_eq!(body["id"], 2);
    assert_eq!(body["error"]["data"]["rule"], "concurrency");
    assert!(
        waited < Duration::from_secs(2),
        "the refusal waited {waited:?}"
    );
    assert_eq!(bob_status, 200, "another principal is not held up");
    assert_eq!(slow.status(), 200);
    slow.bytes().await.unwrap();
    // The slow answer was sent whole: the permit is back.
    assert_eq!(call(&gateway, &alice, 4, "echo").await.status(), 200);
    let bodies: Vec<String> = upstream
        .seen()
        .iter()
        .map(|seen| String::from_utf8_lossy(&seen.body).into_owned())
        .collect();
    assert!(
        !bodies.iter().any(|body| body.contains("\"id\":2")),
        "{bodies:?}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_counters_of_unchanged_rules_only() {
    let upstream = Upstream::start().await;
    let base = TestConfig::oauth(&upstream.url);
    let kept = "    - { name: kept, key: subject, rate: 1/min, burst: 1 }\n";
    let gateway = Gateway::start(&base.clone().yaml(&limits(kept)).build()).await;
    let token = token_for(&gateway, "alice");
    assert_eq!(call(&gateway, &token, 1, "echo").await.status(), 200);
    assert_eq!(call(&gateway, &token, 2, "echo").await.status(), 429);
    // Another rule added, `kept` as it was: still exhausted.
    let other = "    - { name: other, key: ip, rate: 100/s }\n";
    gateway.rewrite_config(
        &base
            .clone()
            .yaml(&limits(&format!("{kept}{other}")))
            .build(),
    );
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("config reloaded").await);
    let refused = call(&gateway, &token, 3, "echo").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        header(&refused, "ratelimit").as_deref(),
        Some("\"kept\";r=0;t=60")
    );
    // `kept` changed (its burst): it starts afresh.
    let changed = "    - { name: kept, key: subject, rate: 1/min, burst: 2 }\n";
    gateway.rewrite_config(&base.yaml(&limits(&format!("{changed}{other}"))).build());
    gateway.signal("HUP");
    for _ in 0..300 {
        if gateway.log_count("config reloaded") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        gateway.log_count("config reloaded"),
        2,
        "{}",
        gateway.stderr()
    );
    assert_eq!(call(&gateway, &token, 4, "echo").await.status(), 200);
    assert_eq!(call(&gateway, &token, 5, "echo").await.status(), 200);
    assert_eq!(call(&gateway, &token, 6, "echo").await.status(), 429);
    assert_eq!(calls_seen(&upstream), 3);
}

#[test]
fn a_bad_limit_is_a_config_error_naming_its_key() {
    let (code, _, stderr) = check_config(
        "upstream: { url: http://127.0.0.1:9/mcp }\nlimits:\n  rules:\n    - { name: a, key: ip, rate: 5/fortnight }\n",
        &[],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("limits.rules[0].rate"), "{stderr}");
}

fn argon2_hash(key: &str) -> String {
    use argon2::{Argon2, PasswordHasher};
    Argon2::default()
        .hash_password(key.as_bytes())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_rule_for_some_principals_reads_their_claims() {
    let upstream = Upstream::start().await;
    // No `rules:` entry reads `groups`: the limit alone must keep it in principals.
    let config = TestConfig::oauth(&upstream.url).yaml(&limits(
        "    - { name: interns, key: subject, rate: 1/min, burst: 1, principals: { claims: [{ claim: groups, contains: interns }] } }\n",
    ));
    let gateway = Gateway::start(&config.build()).await;
    let mut claims = claims(&gateway.mcp, "");
    claims["groups"] = json!(["interns", "staff"]);
    let intern = hs256(&claims, Some("dev"));
    claims["groups"] = json!(["staff"]);
    let staff = hs256(&claims, Some("dev"));
    assert_eq!(call(&gateway, &intern, 1, "echo").await.status(), 200);
    assert_eq!(call(&gateway, &intern, 2, "echo").await.status(), 429);
    for id in 3..6 {
        assert_eq!(call(&gateway, &staff, id, "echo").await.status(), 200);
    }
}
