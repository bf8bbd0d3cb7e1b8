//! Several MCP endpoints behind one gateway (`routes:`), against the real binary:
//! each route's own upstream, audience, scopes, document and sessions, routes told
//! apart by path and by host, and routes added and removed by a reload under load.

use std::time::Duration;

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// OAuth with the development key, and the audit log in the gateway's directory.
fn head() -> String {
    format!(
        "server:\n  listen: 127.0.0.1:{{port}}\nauth:\n  oauth:\n    enabled: true\n    issuers: [{ISSUER}]\n    jwks:\n{}\n{AUDIT_IN_DIR}\n",
        indent(&dev_jwks(), 6)
    )
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|line| format!("{}{line}\n", " ".repeat(by)))
        .collect()
}

/// A route entry: `name` served at `/<name>/mcp` in front of `upstream`, with
/// `extra` (YAML at the entry's indentation) added.
fn route(name: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "  - name: {name}\n    public_url: http://127.0.0.1:{{port}}/{name}/mcp\n    upstream: {{url: {}}}\n{}",
        upstream.url,
        indent(extra, 4)
    )
}

fn routes(entries: &[String]) -> String {
    format!("{}routes:\n{}", head(), entries.concat())
}

fn url(gateway: &Gateway, name: &str) -> String {
    format!("{}/{name}/mcp", gateway.base)
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

async fn post(gateway: &Gateway, name: &str, scopes: &str, body: &Value) -> reqwest::Response {
    Request::to(Method::POST, &url(gateway, name))
        .token(scopes)
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn a_token_for_one_route_is_refused_on_another() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gateway = Gateway::start(&routes(&[route("a", &a, ""), route("b", &b, "")])).await;
    let for_a = hs256(&claims(&url(&gateway, "a"), ""), Some("dev"));

    let allowed = Request::to(Method::POST, &url(&gateway, "a"))
        .bearer(&for_a)
        .json(&call("echo"))
        .send()
        .await;
    assert_eq!(allowed.status(), 200, "{}", gateway.stderr());
    assert_eq!(a.seen().len(), 1);

    let refused = Request::to(Method::POST, &url(&gateway, "b"))
        .bearer(&for_a)
        .json(&call("echo"))
        .send()
        .await;
    assert_eq!(refused.status(), 401);
    let challenge = www_authenticate(&refused);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // The challenge sends the client to route b's own document.
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/b/mcp\"",
            gateway.base
        )),
        "{challenge}"
    );
    assert!(b.seen().is_empty(), "route b's upstream got a request");
    assert_eq!(a.seen().len(), 1, "route a's upstream got another request");
}

#[tokio::test]
async fn each_route_has_its_own_scopes_and_document() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let config = routes(&[
        route("a", &a, ""),
        route(
            "b",
            &b,
            "scopes:\n  initialize: [b:use]\n  tools:\n    delete_*: [b:admin]",
        ),
    ]);
    let gateway = Gateway::start(&config).await;

    for (name, resource, scopes) in [
        ("a", url(&gateway, "a"), json!([])),
        ("b", url(&gateway, "b"), json!(["b:admin", "b:use"])),
    ] {
        let document = gateway
            .get(&format!("/.well-known/oauth-protected-resource/{name}/mcp"))
            .await;
        assert_eq!(document.status(), 200, "{name}");
        let document: Value = document.json().await.unwrap();
        assert_eq!(document["resource"], json!(resource), "{name}");
        // Left out when the route needs no scope.
        let mut supported = document
            .get("scopes_supported")
            .cloned()
            .unwrap_or(json!([]));
        if let Some(list) = supported.as_array_mut() {
            list.sort_by_key(|scope| scope.to_string());
        }
        assert_eq!(supported, scopes, "{name}: {document}");
    }
    // The root location would describe one route of several: not served.
    let root = gateway.get("/.well-known/oauth-protected-resource").await;
    assert_eq!(root.status(), 404);

    // Route a asks for nothing; route b for its own scopes, per tool too.
    assert_eq!(
        post(&gateway, "a", "", &call("delete_all")).await.status(),
        200
    );
    let refused = post(&gateway, "b", "", &call("echo")).await;
    assert_eq!(refused.status(), 403);
    assert!(www_authenticate(&refused).contains("scope=\"b:use\""));
    let refused = post(&gateway, "b", "b:use", &call("delete_all")).await;
    assert_eq!(refused.status(), 403);
    assert!(www_authenticate(&refused).contains("b:admin"));
    assert_eq!(
        b.seen().len(),
        0,
        "a refused call reached route b's upstream"
    );
    assert_eq!(
        post(&gateway, "b", "b:use b:admin", &call("delete_all"))
            .await
            .status(),
        200
    );
    assert_eq!(b.seen().len(), 1);
}

#[tokio::test]
async fn a_session_opened_on_one_route_is_unknown_on_another() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gateway = Gateway::start(&routes(&[route("a", &a, ""), route("b", &b, "")])).await;
    let opened = Request::to(Method::POST, &url(&gateway, "a"))
        .token("")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&initialize_body())
        .send()
        .await;
    assert_eq!(opened.status(), 200, "{}", gateway.stderr());
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let in_session = |name: &str| {
        Request::to(Method::POST, &url(&gateway, name))
            .token("")
            .header("mcp-protocol-version", "2025-06-18")
            .session(&session)
            .json(&call("echo"))
            .send()
    };
    // The same user, with a token for route b, names route a's session there.
    let crossed = in_session("b").await;
    assert_eq!(crossed.status(), 404);
    assert!(b.seen().is_empty(), "route b's upstream got a request");
    let at_home = in_session("a").await;
    assert_eq!(at_home.status(), 200);
    let records = audit_records(&gateway, 3).await;
    let routes: Vec<&Value> = records.iter().map(|record| &record["route"]).collect();
    assert_eq!(routes, [&json!("a"), &json!("b"), &json!("a")]);
}

#[tokio::test]
async fn routes_on_one_path_are_told_apart_by_host() {
    let (x, y) = (Upstream::start().await, Upstream::start().await);
    let config = format!(
        "{}routes:\n  - name: ex\n    public_url: http://localhost:{{port}}/mcp\n    upstream: {{url: {}}}\n  - name: why\n    public_url: http://127.0.0.1:{{port}}/mcp\n    upstream: {{url: {}}}\n",
        head(),
        x.url,
        y.url
    );
    let gateway = Gateway::start(&config).await;
    let port = gateway.base.rsplit(':').next().unwrap().to_owned();
    let send = |host: String, audience: String| {
        let gateway_mcp = format!("{}/mcp", gateway.base);
        async move {
            let token = hs256(&claims(&audience, ""), Some("dev"));
            Request::to(Method::POST, &gateway_mcp)
                .bearer(&token)
                .header("host", &host)
                .json(&call("echo"))
                .send()
                .await
        }
    };
    let (ex, why) = (
        format!("http://localhost:{port}/mcp"),
        format!("http://127.0.0.1:{port}/mcp"),
    );
    // (Host sent, the token's audience, the answer, what each upstream has seen.)
    let cases = [
        (format!("LOCALHOST:{port}"), ex.clone(), 200, (1, 0)),
        (format!("127.0.0.1:{port}"), why.clone(), 200, (1, 1)),
        // ex's token at why's host is another route's audience.
        (format!("127.0.0.1:{port}"), ex.clone(), 401, (1, 1)),
        // A host neither route has finds nothing.
        (format!("elsewhere.example:{port}"), ex.clone(), 404, (1, 1)),
        // No port is port 80: neither route's.
        ("localhost".to_owned(), ex, 404, (1, 1)),
    ];
    for (host, audience, status, seen) in cases {
        let response = send(host.clone(), audience).await;
        assert_eq!(response.status(), status, "{host}");
        assert_eq!((x.seen().len(), y.seen().len()), seen, "{host}");
    }
}

#[tokio::test]
async fn a_reload_adds_and_removes_routes_without_failing_the_others() {
    let (a, b, c) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let gateway = Gateway::start(&routes(&[route("a", &a, ""), route("b", &b, "")])).await;
    assert_eq!(post(&gateway, "c", "", &call("echo")).await.status(), 404);

    // Route b is called without pause while a is removed and c added: at least
    // 20 calls before the reload and 20 after it.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
        let target = url(&gateway, "b");
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let response = Request::to(Method::POST, &target)
                    .token("")
                    .json(&call("echo"))
                    .send()
                    .await;
                statuses.push(response.status().as_u16());
                done.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        })
    };
    let reached = |count: usize| {
        let done = Arc::clone(&done);
        async move {
            while done.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    reached(20).await;
    gateway.rewrite_config(&routes(&[route("b", &b, ""), route("c", &c, "")]));
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );
    reached(done.load(Ordering::Relaxed) + 20).await;
    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.unwrap();
    assert!(
        statuses.iter().all(|status| *status == 200),
        "a request to route b failed during the reload: {statuses:?}"
    );

    assert_eq!(post(&gateway, "c", "", &call("echo")).await.status(), 200);
    assert_eq!(c.seen().len(), 1);
    let removed = post(&gateway, "a", "", &call("echo")).await;
    assert_eq!(removed.status(), 404);
    assert!(a.seen().is_empty());
    let document = gateway
        .get("/.well-known/oauth-protected-resource/a/mcp")
        .await;
    assert_eq!(document.status(), 404);
    assert!(gateway.stderr().contains("config reload added a route"));
    assert!(gateway.stderr().contains("config reload removed a route"));
}

#[tokio::test]
async fn metrics_and_readiness_name_the_route() {
    let a = Upstream::start().await;
    let admin_port = free_port();
    // Route b's upstream is a port nothing listens on.
    let down = format!("http://127.0.0.1:{}/mcp", free_port());
    let config = routes(&[
        route("a", &a, ""),
        format!("  - name: b\n    public_url: http://127.0.0.1:{{port}}/b/mcp\n    upstream: {{url: {down}}}\n"),
    ])
    .replace("server:\n", &format!("server:\n  admin_listen: 127.0.0.1:{admin_port}\n"));
    let gateway = Gateway::start(&config).await;
    assert_eq!(post(&gateway, "a", "", &call("echo")).await.status(), 200);
    assert_eq!(post(&gateway, "b", "", &call("echo")).await.status(), 502);

    let admin = format!("http://127.0.0.1:{admin_port}");
    let metrics = Gateway::client()
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        r#"mcpgate_route_requests_total{route="a",http_method="POST",method="tools/call",decision="allow",status="200"} 1"#,
        r#"mcpgate_route_requests_total{route="b",http_method="POST",method="tools/call",decision="allow",status="502"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }

    // One route down: the replica stays ready for the other, and says which.
    let ready = Gateway::client()
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["routes"]["a"]["status"], "ready", "{ready}");
    assert_eq!(ready["routes"]["b"]["status"], "not_ready", "{ready}");
    assert!(
        ready["routes"]["b"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{ready}"
    );
}

#[tokio::test]
async fn a_reload_ends_the_standing_streams_of_removed_and_changed_routes_only() {
    use futures_util::StreamExt;

    let (a, b, c, c2) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let gateway = Gateway::start(&routes(&[
        route("a", &a, ""),
        route("b", &b, ""),
        route("c", &c, ""),
    ]))
    .await;
    // Each upstream's GET stream sends one event, then waits for its `release`.
    let mut streams = Vec::new();
    for name in ["a", "b", "c"] {
        let response = Request::to(Method::GET, &url(&gateway, name))
            .token("")
            .header("accept", "text/event-stream")
            .send()
            .await;
        assert_eq!(response.status(), 200, "GET stream on {name}");
        let mut stream = response.bytes_stream();
        let first = stream.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
        streams.push(stream);
    }
    let [mut on_a, mut on_b, mut on_c] = <[_; 3]>::try_from(streams).ok().unwrap();

    // a is removed, b stays as it was, c now fronts another server.
    gateway.rewrite_config(&routes(&[route("b", &b, ""), route("c", &c2, "")]));
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );

    // The streams of a and c end (cleanly) although their upstreams still hold them
    // open: what the configuration no longer names is no longer relayed.
    for (name, stream) in [("a", &mut on_a), ("c", &mut on_c)] {
        let next = tokio::time::timeout(Duration::from_secs(3), stream.next()).await;
        assert!(
            matches!(next, Ok(None)),
            "the stream of route {name} outlived the reload: {next:?}"
        );
    }
    // b's stream carries on: its upstream's next event still arrives.
    b.release.notify_one();
    let next = tokio::time::timeout(Duration::from_secs(3), on_b.next())
        .await
        .expect("b's stream stalled")
        .expect("b's stream ended at the reload")
        .unwrap();
    assert!(String::from_utf8_lossy(&next).contains("\"done\":true"));
}

#[test]
fn route_configuration_errors_name_the_key() {
    let upstream = "http://127.0.0.1:9/mcp";
    let entry = |name: &str, path: &str| {
        format!(
            "  - name: {name}\n    public_url: http://127.0.0.1:5025{path}\n    upstream: {{url: {upstream}}}\n"
        )
    };
    for (yaml, expected) in [
        (
            format!(
                "upstream: {{url: {upstream}}}\nroutes:\n{}",
                entry("a", "/a")
            ),
            "config error: upstream: cannot be set beside routes",
        ),
        (
            format!("routes:\n{}{}", entry("a", "/a"), entry("a", "/b")),
            "config error: routes[1].name: \"a\" names two routes",
        ),
        (
            format!("routes:\n{}{}", entry("a", "/a"), entry("b", "/a")),
            "config error: routes[1].public_url: the same endpoint as route \"a\"",
        ),
        (
            format!(
                "routes:\n{}  - name: b\n    public_url: http://127.0.0.1:5025/b\n    upstream: {{url: \"ftp://127.0.0.1/mcp\"}}\n",
                entry("a", "/a")
            ),
            "config error: routes[1].upstream.url: must be an http",
        ),
        (
            format!(
                "routes:\n{}{}",
                entry("a", "/a"),
                entry("b", "/.well-known/oauth-protected-resource/a")
            ),
            "config error: routes[",
        ),
    ] {
        let (code, _, stderr) = check_config(&yaml, &[]);
        assert_eq!(code, 78, "{yaml}\n{stderr}");
        assert!(stderr.starts_with(expected), "{yaml}\n{stderr}");
    }
}

#[test]
fn check_and_explain_name_the_routes() {
    let yaml = format!(
        "auth:\n  oauth:\n    enabled: true\n    issuers: [{ISSUER}]\n    jwks:\n{}routes:\n  - name: a\n    public_url: http://127.0.0.1:5025/a/mcp\n    upstream: {{url: http://127.0.0.1:9/mcp}}\n  - name: b\n    public_url: http://127.0.0.1:5025/b/mcp\n    upstream: {{url: http://127.0.0.1:9/mcp}}\n    scopes: {{initialize: [b:use]}}\n",
        indent(&dev_jwks(), 6)
    );
    let (code, stdout, stderr) = check_config(&yaml, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("ok: 2 routes: a: MCP endpoint http://127.0.0.1:5025/a/mcp"),
        "{stdout}"
    );
    assert!(
        stdout.contains("; b: MCP endpoint http://127.0.0.1:5025/b/mcp"),
        "{stdout}"
    );

    let token = hs256(&claims("http://127.0.0.1:5025/b/mcp", ""), Some("dev"));
    let explain = |args: &[&str]| {
        let mut all = vec!["--token", token.as_str(), "--tool", "echo"];
        all.extend_from_slice(args);
        run_with_config("explain", &yaml, &all, &[])
    };
    // The token is route b's: b needs b:use, which it lacks (exit 1).
    let (code, stdout, stderr) = explain(&["--route", "b"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("b:use"), "{stdout}");
    // On route a, b's token is another audience (exit 3).
    let (code, _, _) = explain(&["--route", "a"]);
    assert_eq!(code, 3);
    let (code, _, stderr) = explain(&[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("name one with --route (a, b)"), "{stderr}");
    let (code, _, stderr) = explain(&["--route", "c"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no route is named \"c\""), "{stderr}");
}

/// One façade for every route: a token is issued for the route the client names
/// (`resource`), and is accepted there only.
#[tokio::test]
async fn the_facade_issues_each_routes_own_tokens() {
    use crate::common::facade::{FakeProvider, tokens_for_with, urlencode};
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let provider = FakeProvider::start().await;
    let facade = format!(
        "authorization_server:\n  provider:\n    issuer: {}\n    client_id: mcpgate-at-idp\n    client_secret: s3cret\n    scopes: [openid]\n  clients:\n    - client_id: tool\n      redirect_uris: [\"http://127.0.0.1/callback\"]\n",
        provider.issuer
    );
    let config = format!(
        "{}{facade}",
        routes(&[
            route(
                "a",
                &a,
                "scopes: {initialize: [mcp:read], tools: {echo: [mcp:write]}}"
            ),
            route(
                "b",
                &b,
                "scopes: {initialize: [mcp:read], tools: {echo: [mcp:write]}}"
            ),
        ])
    );
    let gateway = Gateway::start(&config).await;
    let metadata: Value = gateway
        .get("/.well-known/oauth-protected-resource/b/mcp")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["authorization_servers"], json!([gateway.base]));

    let resource = format!("&resource={}", urlencode(&url(&gateway, "b")));
    let (_, tokens) = tokens_for_with(&gateway, &provider, "alice", &resource).await;
    let token = tokens["access_token"].as_str().unwrap();
    let on = |name: &str| {
        Request::to(Method::POST, &url(&gateway, name))
            .bearer(token)
            .json(&call("echo"))
            .send()
    };
    assert_eq!(on("b").await.status(), 200, "{}", gateway.stderr());
    assert_eq!(b.seen().len(), 1);
    assert_eq!(on("a").await.status(), 401);
    assert!(a.seen().is_empty(), "route a's upstream got a request");

    // A resource that is no route's goes back to the client as `invalid_target`,
    // before any sign-in.
    let response = crate::common::facade::browser()
        .get(crate::common::facade::authorize_url(
            &gateway,
            &format!(
                "&resource={}",
                urlencode(&format!("{}/c/mcp", gateway.base))
            ),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let back = crate::common::facade::location(&response);
    assert!(
        back.as_str()
            .starts_with(crate::common::facade::CLIENT_REDIRECT),
        "{back}"
    );
    assert_eq!(
        crate::common::facade::query(&back, "error").as_deref(),
        Some("invalid_target")
    );
}

/// A reload that changes other routes leaves a stdio route's sessions with their
/// processes.
#[tokio::test]
async fn a_reload_keeps_the_sessions_of_unchanged_routes() {
    use crate::common::stdio::{call as stdio_call, init_request, stdio_script};
    let (a, c) = (Upstream::start().await, Upstream::start().await);
    let local = format!(
        "  - name: local\n    public_url: http://127.0.0.1:{{port}}/local/mcp\n    upstream:\n      command: [node, \"{}\"]\n      timeout: 10s\n",
        stdio_script().display()
    );
    let gateway = Gateway::start(&routes(&[local.clone(), route("a", &a, "")])).await;
    let in_local = |body: Value, session: Option<String>| {
        let request = Request::to(Method::POST, &url(&gateway, "local"))
            .token("")
            .header("accept", "application/json")
            .timeout(Duration::from_secs(20))
            .json(&body);
        async move {
            match session {
                Some(session) => request.session(&session).send().await,
                None => request.send().await,
            }
        }
    };
    let opened = in_local(init_request("routes-test", json!({})), None).await;
    assert_eq!(opened.status(), 200, "{}", gateway.stderr());
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let pid = || async {
        let answer: Value = in_local(stdio_call(9, "pid", json!({})), Some(session.clone()))
            .await
            .json()
            .await
            .unwrap();
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no pid in {answer}"))
            .to_owned()
    };
    let before = pid().await;

    // Route a gets scopes, route c appears: route local is untouched.
    gateway.rewrite_config(&routes(&[
        local,
        route("a", &a, "scopes: {initialize: [a:use]}"),
        route("c", &c, ""),
    ]));
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );
    assert_eq!(post(&gateway, "a", "", &call("echo")).await.status(), 403);
    assert_eq!(pid().await, before, "the session's process was replaced");
}

/// `examples/routes.yaml` loads, and `mcpgate token --route` mints for that route.
#[test]
fn the_routes_example_checks_and_mints_per_route() {
    let secret = "an-example-secret-of-at-least-32-bytes!";
    let env = [("MCPGATE_DEV_SECRET", secret)];
    let (code, stdout, stderr) = run_cli(&["check", "--config", "examples/routes.yaml"], &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ok: 4 routes: everything: "), "{stdout}");
    assert!(stdout.contains("; all: MCP endpoint http://127.0.0.1:5025/all/mcp -> virtual: web_*=everything, local_*=local, gql_*=graphql"), "{stdout}");
    assert!(
        stdout.contains("; local: MCP endpoint http://127.0.0.1:5025/local/mcp"),
        "{stdout}"
    );
    let (code, token, stderr) = run_cli(
        &[
            "token",
            "--config",
            "examples/routes.yaml",
            "--route",
            "local",
            "--scope",
            "mcp:connect",
        ],
        &env,
    );
    assert_eq!(code, 0, "{stderr}");
    let claims = token.trim().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "http://127.0.0.1:5025/local/mcp");
    let (code, _, stderr) = run_cli(
        &[
            "token",
            "--config",
            "examples/routes.yaml",
            "--scope",
            "mcp:connect",
        ],
        &env,
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("name one with --route"), "{stderr}");
}
