//! Operations against the real binary: the audit log under load and at shutdown,
//! hot reload on SIGHUP (under load, broken files, restart-only keys, turning OAuth
//! off and on), logrotate, and graceful shutdown with open streams.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use argon2::{Argon2, PasswordHasher};
use futures_util::StreamExt;
use serde_json::{Value, json};

const API_KEY: &str = "mcpk_ops_secret-key-one";

struct Setup<'a> {
    upstream: &'a Upstream,
    oauth: bool,
    api_keys: bool,
    admin_rule: bool,
    extra: &'a str,
}

impl Setup<'_> {
    fn yaml(&self) -> String {
        let mut config = TestConfig::oauth(&self.upstream.url)
            .oauth_enabled(self.oauth)
            .scopes("initialize: [mcp:connect]");
        if self.api_keys {
            let hash = Argon2::default()
                .hash_password(API_KEY.as_bytes())
                .unwrap()
                .to_string();
            config = config.api_key_with_scopes("ops", &hash, "[mcp:connect]");
        }
        if self.admin_rule {
            config = config.scopes("tools:\n  admin_tool: [[mcp:admin]]");
        }
        // `extra` follows the audit path: more audit keys (indented), or sections.
        config
            .yaml(&format!("{AUDIT_IN_DIR}\n{}", self.extra))
            .build()
    }
}

fn setup(upstream: &Upstream) -> Setup<'_> {
    Setup {
        upstream,
        oauth: true,
        api_keys: false,
        admin_rule: true,
        extra: "",
    }
}

fn token(gateway: &Gateway, scope: &str) -> String {
    let mut claims = claims(&gateway.mcp, scope);
    claims["sub"] = json!("alice");
    claims["client_id"] = json!("ops-client");
    hs256(&claims, Some("dev"))
}

/// POSTs `tools/call` of `tool`; `None` on a connection error.
async fn call(
    client: &reqwest::Client,
    gateway: &Gateway,
    token: Option<&str>,
    tool: &str,
) -> Option<reqwest::Response> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": {}}});
    let mut request = client
        .post(&gateway.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.ok()
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).expect("every audit line is JSON"))
        .collect()
}

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every response carries x-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

async fn stop(mut gateway: Gateway) -> Gateway {
    gateway.terminate();
    let code = gateway.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", gateway.stderr());
    gateway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_requests_leave_twenty_thousand_records() {
    const TOTAL: usize = 20_000;
    const WORKERS: usize = 32;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &Setup {
            extra: "  queue_capacity: 64\n",
            ..setup(&upstream)
        }
        .yaml(),
    )
    .await;
    let allowed = Arc::new(token(&gateway, "mcp:connect"));
    let gateway = Arc::new(gateway);
    let statuses: Arc<std::sync::Mutex<Vec<(u16, String)>>> = Default::default();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (gateway, allowed, statuses, next) = (
            gateway.clone(),
            allowed.clone(),
            statuses.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = Gateway::client();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= TOTAL {
                    return;
                }
                // A third allowed, a third refused for scope (403), a third without a token (401).
                let response = match n % 3 {
                    0 => call(&client, &gateway, Some(&allowed), "echo").await,
                    1 => call(&client, &gateway, Some(&allowed), "admin_tool").await,
                    _ => call(&client, &gateway, None, "echo").await,
                }
                .expect("the gateway answers every request");
                let id = request_id(&response);
                statuses
                    .lock()
                    .unwrap()
                    .push((response.status().as_u16(), id));
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let gateway = stop(Arc::into_inner(gateway).unwrap()).await;

    let statuses = statuses.lock().unwrap().clone();
    assert_eq!(statuses.len(), TOTAL);
    let records = audit_lines(&gateway.dir().join("audit.jsonl"));
    assert_eq!(records.len(), TOTAL, "one record per request");
    for record in &records {
        for field in AUDIT_FIELDS {
            assert!(record.get(field).is_some(), "{field} missing in {record}");
        }
    }
    let ids: HashSet<&str> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), TOTAL, "request ids are distinct");
    for (_, id) in &statuses {
        assert!(ids.contains(id.as_str()), "response {id} has its record");
    }
    let count = |f: &dyn Fn(&Value) -> bool| records.iter().filter(|r| f(r)).count();
    let of_kind = |kind: usize| (0..TOTAL).filter(|n| n % 3 == kind).count();
    assert_eq!(
        count(&|r| r["action"] == "allow" && r["status"] == 200),
        of_kind(0)
    );
    assert_eq!(
        count(&|r| r["action"] == "deny"
            && r["status"] == 403
            && r["tool"] == "admin_tool"
            && r["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("admin_tool"))),
        of_kind(1)
    );
    assert_eq!(
        count(&|r| r["action"] == "deny" && r["status"] == 401 && r["auth_result"] == "missing"),
        of_kind(2)
    );
    let allowed_record = records.iter().find(|r| r["action"] == "allow").unwrap();
    assert_eq!(allowed_record["method"], "tools/call");
    assert_eq!(allowed_record["tool"], "echo");
    assert_eq!(allowed_record["auth_result"], "ok");
    assert_eq!(allowed_record["auth_method"], "jwt");
    assert_eq!(allowed_record["subject"], "alice");
    assert_eq!(allowed_record["issuer"], "https://issuer.test");
    assert_eq!(allowed_record["oauth_client_id"], "ops-client");
    assert_eq!(allowed_record["scopes"], "mcp:connect");
    let fingerprint = allowed_record["token_fingerprint"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 16);
    assert!(allowed_record["upstream_latency_ms"].is_number());
    let text = std::fs::read_to_string(gateway.dir().join("audit.jsonl")).unwrap();
    assert!(
        !text.contains(allowed.as_str()),
        "the token never reaches the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_no_record() {
    let upstream = Upstream::start().await;
    let gateway = Arc::new(Gateway::start(&setup(&upstream).yaml()).await);
    let allowed = Arc::new(token(&gateway, "mcp:connect"));
    let answered: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (gateway, allowed, answered) = (gateway.clone(), allowed.clone(), answered.clone());
        workers.push(tokio::spawn(async move {
            // A fresh connection per request, so requests keep arriving during shutdown.
            loop {
                let client = Gateway::client();
                let tool = if worker % 2 == 0 {
                    "echo"
                } else {
                    "admin_tool"
                };
                match call(&client, &gateway, Some(&allowed), tool).await {
                    Some(response) => answered.lock().unwrap().push(request_id(&response)),
                    None => return,
                }
            }
        }));
    }
    while answered.lock().unwrap().len() < 1_000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.terminate();
    for worker in workers {
        worker.await.unwrap();
    }
    let gateway = stop_after_signal(Arc::into_inner(gateway).unwrap()).await;
    let records = audit_lines(&gateway.dir().join("audit.jsonl"));
    let recorded: HashSet<&str> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let answered = answered.lock().unwrap();
    assert!(answered.len() >= 1_000);
    for id in answered.iter() {
        assert!(
            recorded.contains(id.as_str()),
            "request {id} was answered but has no record"
        );
    }
}

/// Waits for a gateway already sent SIGTERM to exit 0.
async fn stop_after_signal(mut gateway: Gateway) -> Gateway {
    let code = gateway.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "stderr:\n{}", gateway.stderr());
    gateway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_fail_no_request_and_apply_on_the_next_one() {
    let upstream = Upstream::start().await;
    let gateway = Arc::new(Gateway::start(&setup(&upstream).yaml()).await);
    let allowed = Arc::new(token(&gateway, "mcp:connect"));
    let client = Gateway::client();
    let admin = call(&client, &gateway, Some(&allowed), "admin_tool")
        .await
        .unwrap();
    assert_eq!(admin.status(), 403);

    let running = Arc::new(AtomicBool::new(true));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (gateway, allowed, running, sent, failed) = (
            gateway.clone(),
            allowed.clone(),
            running.clone(),
            sent.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = Gateway::client();
            while running.load(Ordering::Relaxed) {
                let ok = call(&client, &gateway, Some(&allowed), "echo")
                    .await
                    .is_some_and(|r| r.status() == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Five reloads under load, the last one lifting admin_tool's rule.
    for round in 1..=5 {
        let last = round == 5;
        let level = if round % 2 == 0 { "debug" } else { "info" };
        let extra = format!("log:\n  level: {level}\n");
        gateway.rewrite_config(
            &Setup {
                admin_rule: !last,
                extra: &extra,
                ..setup(&upstream)
            }
            .yaml(),
        );
        let before = sent.load(Ordering::Relaxed);
        gateway.signal("HUP");
        for _ in 0..300 {
            if gateway.log_count("config reloaded") >= round {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            gateway.log_count("config reloaded"),
            round,
            "{}",
            gateway.stderr()
        );
        // Load kept flowing across the swap.
        while sent.load(Ordering::Relaxed) < before + 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The reload is complete once logged: the very next request sees the new policy.
    let admin = call(&client, &gateway, Some(&allowed), "admin_tool")
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);

    running.store(false, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) >= 250);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across reloads"
    );

    // A broken file keeps the running policy (admin_tool stays open).
    gateway.rewrite_config("scopes: [unclosed\n");
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("config reload failed").await);
    let admin = call(&client, &gateway, Some(&allowed), "admin_tool")
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    // A file that parses but does not validate is refused the same way.
    gateway.rewrite_config(
        &setup(&upstream)
            .yaml()
            .replace("mcp:connect]", "\"bad scope\"]"),
    );
    gateway.signal("HUP");
    for _ in 0..300 {
        if gateway.log_count("config reload failed") >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gateway.log_count("config reload failed"),
        2,
        "{}",
        gateway.stderr()
    );
    let echo = call(&client, &gateway, Some(&allowed), "echo")
        .await
        .unwrap();
    assert_eq!(echo.status(), 200);
}

#[tokio::test]
async fn restart_only_keys_keep_their_running_values_and_the_rest_applies() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&setup(&upstream).yaml()).await;
    let allowed = token(&gateway, "mcp:connect");
    let client = Gateway::client();
    let moved = Setup {
        admin_rule: false,
        ..setup(&upstream)
    }
    .yaml()
    .replace(
        "listen: 127.0.0.1:{port}",
        &format!("listen: 127.0.0.1:{}", free_port()),
    );
    gateway.rewrite_config(&moved);
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );
    assert!(
        gateway
            .stderr()
            .contains("server.listen changed, which needs a restart")
    );
    // Still on the old address, with the new policy.
    let admin = call(&client, &gateway, Some(&allowed), "admin_tool")
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
}

#[tokio::test]
async fn logrotate_rename_and_sighup_lose_no_record() {
    let upstream = Upstream::start().await;
    let gateway = Arc::new(Gateway::start(&setup(&upstream).yaml()).await);
    let allowed = Arc::new(token(&gateway, "mcp:connect"));
    let client = Gateway::client();
    for _ in 0..50 {
        call(&client, &gateway, Some(&allowed), "echo")
            .await
            .unwrap();
    }
    // Requests keep coming while the file is renamed and the gateway told.
    let running = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicUsize::new(50));
    let worker = {
        let (gateway, allowed, running, answered) = (
            gateway.clone(),
            allowed.clone(),
            running.clone(),
            answered.clone(),
        );
        tokio::spawn(async move {
            let client = Gateway::client();
            while running.load(Ordering::Relaxed) {
                call(&client, &gateway, Some(&allowed), "echo")
                    .await
                    .unwrap();
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let live = gateway.dir().join("audit.jsonl");
    let rotated = gateway.dir().join("audit.jsonl.1");
    std::fs::rename(&live, &rotated).unwrap();
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("config reloaded").await);
    let after_rotation = answered.load(Ordering::Relaxed);
    while answered.load(Ordering::Relaxed) < after_rotation + 30 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.store(false, Ordering::Relaxed);
    worker.await.unwrap();
    let marker = call(&client, &gateway, Some(&allowed), "echo")
        .await
        .unwrap();
    let marker = request_id(&marker);
    let gateway = stop(Arc::into_inner(gateway).unwrap()).await;

    let (old, new) = (audit_lines(&rotated), audit_lines(&live));
    assert!(old.len() >= 50);
    assert!(
        new.len() >= 30,
        "records after the rotation go to the new file"
    );
    assert_eq!(
        old.len() + new.len(),
        answered.load(Ordering::Relaxed) + 1,
        "none lost across the rotation"
    );
    assert!(new.iter().any(|r| r["request_id"] == marker.as_str()));
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_ends_streams_cleanly_and_lets_calls_finish() {
    let upstream = Upstream::start().await;
    let mut gateway = Gateway::start(&setup(&upstream).yaml()).await;
    let allowed = token(&gateway, "mcp:connect");
    let client = Gateway::client();
    // An open SSE stream (the upstream's GET stream never ends by itself).
    let stream = client
        .get(&gateway.mcp)
        .bearer_auth(&allowed)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();
    let first = events.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    // An in-flight call the upstream answers after 5 s.
    let slow = {
        let (client, url, allowed) = (client.clone(), gateway.mcp.clone(), allowed.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(allowed)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(
                    json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
                           "params":{"name":"slow","arguments":{}}})
                    .to_string(),
                )
                .send()
                .await
        })
    };
    while !upstream
        .seen()
        .iter()
        .any(|seen| String::from_utf8_lossy(&seen.body).contains("\"slow\""))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.terminate();
    // The stream ends (cleanly: no error) rather than hanging until the grace period.
    let rest = tokio::time::timeout(Duration::from_secs(3), async {
        let mut errors = 0;
        while let Some(chunk) = events.next().await {
            errors += usize::from(chunk.is_err());
        }
        errors
    })
    .await
    .expect("the stream ends at shutdown");
    assert_eq!(rest, 0, "the stream ended without an error");
    // The in-flight call completes with its answer.
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);
    let body: Value = slow.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(gateway.wait_exit(Duration::from_secs(10)).await, Some(0));
    assert!(gateway.stderr().contains("mcpgate stopped"));
    let records = audit_lines(&gateway.dir().join("audit.jsonl"));
    assert!(
        records
            .iter()
            .any(|r| r["http_method"] == "GET" && r["status"] == 200)
    );
    assert!(
        records
            .iter()
            .any(|r| r["tool"] == "slow" && r["status"] == 200)
    );
}

/// What a `tools/call` with `jwt`, one with [`API_KEY`] and a GET of the metadata
/// document get: their three statuses.
async fn jwt_key_and_metadata(
    client: &reqwest::Client,
    gateway: &Gateway,
    jwt: &str,
) -> (u16, u16, u16) {
    let status = |response: Option<reqwest::Response>| response.unwrap().status().as_u16();
    let metadata = format!("{}/.well-known/oauth-protected-resource/mcp", gateway.base);
    (
        status(call(client, gateway, Some(jwt), "echo").await),
        status(call(client, gateway, Some(API_KEY), "echo").await),
        client
            .get(&metadata)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
    )
}

#[tokio::test]
async fn reload_turns_oauth_off_and_on_with_api_keys_beside_it() {
    let upstream = Upstream::start().await;
    let with_oauth = Setup {
        api_keys: true,
        ..setup(&upstream)
    };
    let gateway = Gateway::start(&with_oauth.yaml()).await;
    let jwt = token(&gateway, "mcp:connect");
    let client = Gateway::client();
    let status = |response: Option<reqwest::Response>| response.unwrap().status().as_u16();
    assert_eq!(
        jwt_key_and_metadata(&client, &gateway, &jwt).await,
        (200, 200, 200),
        "OAuth and API keys"
    );

    gateway.rewrite_config(
        &Setup {
            oauth: false,
            ..with_oauth
        }
        .yaml(),
    );
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("config reload disabled OAuth").await);
    assert_eq!(
        jwt_key_and_metadata(&client, &gateway, &jwt).await,
        (401, 200, 404),
        "API keys alone"
    );

    gateway.rewrite_config(&with_oauth.yaml());
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("config reload enabled OAuth").await);
    assert_eq!(
        jwt_key_and_metadata(&client, &gateway, &jwt).await,
        (200, 200, 200),
        "OAuth back on"
    );

    // With neither OAuth nor keys: unauthenticated mode, said loudly.
    gateway.rewrite_config(
        &Setup {
            oauth: false,
            api_keys: false,
            ..with_oauth
        }
        .yaml(),
    );
    gateway.signal("HUP");
    assert!(gateway.wait_for_log("AUTHENTICATION OFF").await);
    assert_eq!(status(call(&client, &gateway, None, "echo").await), 200);
}

#[tokio::test]
async fn startup_says_what_runs_and_audit_errors_exit_78() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&setup(&upstream).yaml()).await;
    assert!(gateway.wait_for_log("mcpgate ready: listening on").await);
    let log = gateway.stderr();
    assert!(log.contains("auth: OAuth (1 symmetric key(s))"), "{log}");
    assert!(log.contains("audit.jsonl"), "{log}");
    assert!(log.contains("traces: off"), "{log}");
    drop(gateway);

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, audit: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("upstream: {{ url: {} }}\naudit: {audit}\n", upstream.url),
        )
        .unwrap();
        path
    };
    let missing_dir = write("a.yaml", "{ path: /nonexistent/dir/audit.jsonl }");
    let (code, _, stderr) = run_cli(&["serve", "--config", missing_dir.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("audit.path"), "{stderr}");
    let both = write("b.yaml", "{ path: x.jsonl, stdout: true }");
    let (code, _, stderr) = run_cli(&["check", "--config", both.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("audit"), "{stderr}");
    let fsync = write("c.yaml", "{ path: x.jsonl, fsync: sometimes }");
    let (code, _, stderr) = run_cli(&["check", "--config", fsync.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");
}
