//! Virtual servers (`upstream.virtual`) against the real binary: one route whose
//! upstream is other routes. Its clients see every member's tools and prompts
//! under the member's prefix; calls go to the member that owns the name, with the
//! name it has there; the members' policies apply under their prefixes, beside
//! the virtual route's own; a member that is down drops out of the lists.

use crate::common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn head() -> String {
    format!(
        "server:\n  listen: 127.0.0.1:{{port}}\nauth:\n  oauth:\n    enabled: true\n    issuers: [{ISSUER}]\n    jwks:\n      - secret: \"{HMAC_SECRET}\"\n        header_key_id: dev\n{AUDIT_IN_DIR}\nroutes:\n"
    )
}

fn route(name: &str, url: &str, extra: &str) -> String {
    let extra: String = extra.lines().map(|line| format!("    {line}\n")).collect();
    format!(
        "  - name: {name}\n    public_url: http://127.0.0.1:{{port}}/{name}/mcp\n    upstream: {{url: {url}}}\n{extra}"
    )
}

/// The virtual route `all`, over `members` (route, prefix).
fn virtual_route(members: &[(&str, &str)], extra: &str) -> String {
    let members: String = members
        .iter()
        .map(|(route, prefix)| format!("          - {{route: {route}, prefix: {prefix}}}\n"))
        .collect();
    let extra: String = extra.lines().map(|line| format!("    {line}\n")).collect();
    format!(
        "  - name: all\n    public_url: http://127.0.0.1:{{port}}/all/mcp\n    upstream:\n      virtual:\n        members:\n{members}{extra}"
    )
}

fn all(gateway: &Gateway) -> String {
    format!("{}/all/mcp", gateway.base)
}

async fn send(gateway: &Gateway, subject: &str, scopes: &str, body: &Value) -> reqwest::Response {
    let mut claims = claims(&all(gateway), scopes);
    claims["sub"] = json!(subject);
    Request::to(Method::POST, &all(gateway))
        .bearer(&hs256(&claims, Some("dev")))
        .header("mcp-protocol-version", "2025-06-18")
        .json(body)
        .send()
        .await
}

fn list(method: &str, cursor: Option<&str>) -> Value {
    match cursor {
        Some(cursor) => {
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"cursor": cursor}})
        }
        None => json!({"jsonrpc": "2.0", "id": 1, "method": method}),
    }
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": {"x": 1}}})
}

/// Every page of a merged list: the names in order.
async fn names(
    gateway: &Gateway,
    subject: &str,
    scopes: &str,
    method: &str,
    key: &str,
) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let response = send(gateway, subject, scopes, &list(method, cursor.as_deref())).await;
        assert_eq!(response.status(), 200, "{}", gateway.stderr());
        let answer: Value = response.json().await.unwrap();
        let result = &answer["result"];
        for item in result[key].as_array().unwrap_or_else(|| panic!("{answer}")) {
            names.push(item["name"].as_str().unwrap().to_owned());
        }
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return names,
        }
    }
    panic!("the list did not end");
}

/// What a member's upstream was asked, by JSON-RPC method.
fn asked(upstream: &Upstream, method: &str) -> Vec<Value> {
    upstream
        .seen()
        .iter()
        .filter_map(|seen| serde_json::from_slice::<Value>(&seen.body).ok())
        .filter(|message| message["method"] == method)
        .collect()
}

const TOOLS: [&str; 4] = ["echo", "get-env", "admin_reset", "db_query"];

#[tokio::test]
async fn the_members_tools_are_listed_under_their_prefixes_and_called_at_their_owner() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let config = format!(
        "{}{}{}{}",
        head(),
        route("alpha", &a.url, ""),
        route("beta", &b.url, ""),
        virtual_route(&[("alpha", "a_"), ("beta", "b_")], "")
    );
    let gateway = Gateway::start(&config).await;

    let listed = names(&gateway, "alice", "", "tools/list", "tools").await;
    let expected: Vec<String> = ["a_", "b_"]
        .iter()
        .flat_map(|prefix| TOOLS.iter().map(move |tool| format!("{prefix}{tool}")))
        .collect();
    assert_eq!(listed, expected);
    // Each member's own pages were walked to the end (the test upstream has two).
    assert_eq!(asked(&a, "tools/list").len(), 2);

    let called = send(&gateway, "alice", "", &call("b_echo")).await;
    assert_eq!(called.status(), 200);
    let answer: Value = called.json().await.unwrap();
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["result"]["ok"], true, "{answer}");
    let calls = asked(&b, "tools/call");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["params"],
        json!({"name": "echo", "arguments": {"x": 1}})
    );
    assert!(
        asked(&a, "tools/call").is_empty(),
        "member alpha got beta's call"
    );
    // Member sessions are the caller's: alice's second exchange reuses hers, bob
    // gets his own.
    assert_eq!(asked(&b, "initialize").len(), 1);
    let _ = names(&gateway, "bob", "", "tools/list", "tools").await;
    assert_eq!(asked(&b, "initialize").len(), 2);
    let session_calls: Vec<_> = b
        .seen()
        .iter()
        .filter(|seen| {
            serde_json::from_slice::<Value>(&seen.body).is_ok_and(|m| m["method"] == "tools/call")
        })
        .map(|seen| seen.headers.get("mcp-session-id").cloned())
        .collect();
    assert_eq!(session_calls, [Some("upstream-session-1".parse().unwrap())]);

    // A name no member's prefix carries is unknown here; nothing is asked.
    let unknown = send(&gateway, "alice", "", &call("c_echo")).await;
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert_eq!(
        asked(&a, "tools/call").len() + asked(&b, "tools/call").len(),
        1
    );

    let prompts = names(&gateway, "alice", "", "prompts/list", "prompts").await;
    assert_eq!(
        prompts,
        [
            "a_greeting",
            "a_secret_prompt",
            "b_greeting",
            "b_secret_prompt"
        ]
    );
}

#[tokio::test]
async fn the_members_policies_apply_under_their_prefixes() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let config = format!(
        "{}{}{}{}",
        head(),
        route("alpha", &a.url, ""),
        route(
            "beta",
            &b.url,
            "scopes:\n  initialize: [beta:use]\n  tools:\n    get-env: [beta:admin]\nrules:\n  - name: no-db\n    when: {subjects: [mallory]}\n    deny_tools: [\"db_*\"]"
        ),
        virtual_route(
            &[("alpha", "a_"), ("beta", "b_")],
            "scopes:\n  tools:\n    \"a_admin_*\": [all:admin]"
        )
    );
    let gateway = Gateway::start(&config).await;
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource/all/mcp",
        gateway.base
    );

    // The virtual route's own rule, and beta's, each under its prefix.
    for (tool, scope) in [("a_admin_reset", "all:admin"), ("b_echo", "beta:use")] {
        let refused = send(&gateway, "alice", "", &call(tool)).await;
        assert_eq!(refused.status(), 403);
        let challenge = www_authenticate(&refused);
        assert!(
            challenge.contains(&format!(
                "scope=\"{scope}\", resource_metadata=\"{metadata}\""
            )),
            "{challenge}"
        );
    }
    let refused = send(&gateway, "alice", "beta:use", &call("b_get-env")).await;
    assert_eq!(refused.status(), 403);
    assert!(www_authenticate(&refused).contains("beta:admin"));
    assert!(asked(&a, "tools/call").is_empty() && asked(&b, "tools/call").is_empty());

    // Lists show what the caller may call.
    let listed = names(&gateway, "alice", "beta:use", "tools/list", "tools").await;
    assert_eq!(
        listed,
        [
            "a_echo",
            "a_get-env",
            "a_db_query",
            "b_echo",
            "b_admin_reset",
            "b_db_query"
        ]
    );

    // beta's rule keeps mallory from beta's db_ tools, and from no one else's.
    let denied = send(&gateway, "mallory", "beta:use", &call("b_db_query")).await;
    assert_eq!(denied.status(), 403);
    assert!(www_authenticate(&denied).contains("access_denied"));
    assert_eq!(
        send(&gateway, "mallory", "", &call("a_db_query"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send(&gateway, "mallory", "beta:use", &call("b_echo"))
            .await
            .status(),
        200
    );
    assert_eq!(asked(&b, "tools/call").len(), 1);
}

#[tokio::test]
async fn a_member_that_is_down_drops_out_and_the_others_serve() {
    let a = Upstream::start().await;
    let down = format!("http://127.0.0.1:{}/mcp", free_port());
    let config = format!(
        "{}{}{}{}",
        head(),
        route("alpha", &a.url, ""),
        route("gone", &down, ""),
        virtual_route(&[("gone", "g_"), ("alpha", "a_")], "upstream_page_size: 0")
            .replace("    upstream_page_size: 0\n", "")
            .replace(
                "        members:\n",
                "        page_size: 3\n        members:\n"
            ),
    );
    let admin_port = free_port();
    let config = config.replace(
        "server:\n",
        &format!("server:\n  admin_listen: 127.0.0.1:{admin_port}\n"),
    );
    let gateway = Gateway::start(&config).await;
    let listed = names(&gateway, "alice", "", "tools/list", "tools").await;
    let expected: Vec<String> = TOOLS.iter().map(|tool| format!("a_{tool}")).collect();
    assert_eq!(
        listed, expected,
        "paged by three, without the member that is down"
    );
    let failed = send(&gateway, "alice", "", &call("g_echo")).await;
    assert_eq!(failed.status(), 200);
    let failed: Value = failed.json().await.unwrap();
    assert_eq!(failed["error"]["code"], -32603, "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("member gone"),
        "{failed}"
    );
    assert_eq!(
        send(&gateway, "alice", "", &call("a_echo")).await.status(),
        200
    );
}

#[test]
fn virtual_configuration_errors_name_the_key() {
    let url = "http://127.0.0.1:9/mcp";
    let base = format!("auth: {{oauth: {{enabled: true, issuers: [{ISSUER}], jwks: [{{secret: \"{HMAC_SECRET}\"}}]}}}}\nroutes:\n{}{}", route("alpha", url, ""), route("beta", url, ""))
        .replace("{port}", "5025");
    for (members, expected) in [
        (
            vec![("alpha", "a_"), ("beta", "a_b")],
            "config error: routes[3].upstream.virtual.members[1].prefix: \"a_b\" and the prefix \"a_\" of members[0] (alpha) begin alike",
        ),
        (
            vec![("alpha", "a_"), ("nope", "n_")],
            "config error: routes[3].upstream.virtual.members[1].route: no route is named \"nope\"",
        ),
        (
            vec![("alpha", "a_"), ("all", "v_")],
            "config error: routes[3].upstream.virtual.members[1].route: \"all\" is itself virtual",
        ),
        (
            vec![("alpha", "a b")],
            "config error: routes[3].upstream.virtual.members[0].prefix: must be",
        ),
        (
            vec![("limited", "l_")],
            "config error: routes[3].upstream.virtual.members[0].route: \"limited\" has limits of its own",
        ),
    ] {
        // A route with limits of its own, between alpha and beta.
        let base = base.replace(
            "  - name: beta",
            "  - name: limited\n    public_url: http://127.0.0.1:5025/limited/mcp\n    upstream: {url: http://127.0.0.1:9/mcp}\n    limits: {rules: [{name: l, key: subject, rate: 1/s}]}\n  - name: beta",
        );
        let yaml = format!(
            "{base}{}",
            virtual_route(&members, "").replace("{port}", "5025")
        );
        let (code, _, stderr) = check_config(&yaml, &[]);
        assert_eq!(code, 78, "{yaml}\n{stderr}");
        assert!(stderr.starts_with(expected), "{yaml}\n{stderr}");
    }
}

/// A member may be a server of the virtual route's own: listed and called like a
/// route, under the virtual route's policy only.
#[tokio::test]
async fn a_server_of_its_own_is_a_member_too() {
    let (a, s) = (Upstream::start().await, Upstream::start().await);
    let config = format!(
        "{}{}  - name: all\n    public_url: http://127.0.0.1:{{port}}/all/mcp\n    upstream:\n      virtual:\n        members:\n          - {{route: alpha, prefix: a_}}\n          - {{server: {{url: {}}}, prefix: s_}}\n    scopes:\n      tools:\n        \"s_admin_*\": [all:admin]\n",
        head(),
        route("alpha", &a.url, ""),
        s.url
    );
    let gateway = Gateway::start(&config).await;
    let listed = names(&gateway, "alice", "", "tools/list", "tools").await;
    assert_eq!(
        listed,
        [
            "a_echo",
            "a_get-env",
            "a_admin_reset",
            "a_db_query",
            "s_echo",
            "s_get-env",
            "s_db_query"
        ]
    );
    assert_eq!(
        send(&gateway, "alice", "", &call("s_echo")).await.status(),
        200
    );
    assert_eq!(asked(&s, "tools/call").len(), 1);
    assert_eq!(
        send(&gateway, "alice", "", &call("s_admin_reset"))
            .await
            .status(),
        403
    );
    assert_eq!(asked(&s, "tools/call").len(), 1);

    let both = format!(
        "auth: {{oauth: {{enabled: true, issuers: [{ISSUER}], jwks: [{{secret: \"{HMAC_SECRET}\"}}]}}}}\nroutes:\n{}  - name: all\n    public_url: http://127.0.0.1:5025/all/mcp\n    upstream:\n      virtual:\n        members:\n          - {{route: alpha, server: {{url: {}}}, prefix: a_}}\n",
        route("alpha", &a.url, "").replace("{port}", "5025"),
        s.url
    );
    let (code, _, stderr) = check_config(&both, &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.starts_with("config error: routes[1].upstream.virtual.members[0]: set one of route"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_callers_member_session_is_opened_once_and_kept_across_a_reload() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let config = |members: &[(&str, &str)]| {
        format!(
            "{}{}{}{}",
            head(),
            route("alpha", &a.url, ""),
            route("beta", &b.url, ""),
            virtual_route(members, "")
        )
    };
    let gateway = Gateway::start(&config(&[("alpha", "a_")])).await;

    // Eight of alice's calls at once, before she has a session with alpha: one
    // is opened, and every call uses it.
    let echo = call("a_echo");
    let calls = (0..8).map(|_| send(&gateway, "alice", "", &echo));
    for response in futures_util::future::join_all(calls).await {
        assert_eq!(response.status(), 200, "{}", gateway.stderr());
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["result"]["ok"], true, "{answer}");
    }
    assert_eq!(asked(&a, "initialize").len(), 1);
    assert_eq!(asked(&a, "tools/call").len(), 8);

    // A reload that changes the virtual route (beta joins) but keeps alpha: alice's
    // session with alpha carries over, beta gets its first.
    gateway.rewrite_config(&config(&[("alpha", "a_"), ("beta", "b_")]));
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );
    for tool in ["a_echo", "b_echo"] {
        let response = send(&gateway, "alice", "", &call(tool)).await;
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["result"]["ok"], true, "{answer}");
    }
    assert_eq!(
        asked(&a, "initialize").len(),
        1,
        "alpha's session was opened again"
    );
    assert_eq!(asked(&b, "initialize").len(), 1);
    let sessions: Vec<_> = a
        .seen()
        .iter()
        .filter(|seen| {
            serde_json::from_slice::<Value>(&seen.body).is_ok_and(|m| m["method"] == "tools/call")
        })
        .map(|seen| seen.headers.get("mcp-session-id").cloned())
        .collect();
    assert_eq!(
        sessions,
        vec![Some("upstream-session-1".parse().unwrap()); 9]
    );
}
