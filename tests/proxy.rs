//! The proxy against the real binary: headers in and out, streaming, upstream
//! failures, methods, limits, and OAuth off.

use std::time::Duration;

use crate::common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// A gateway that adds its own credential to every upstream request.
fn config(upstream_url: &str) -> TestConfig {
    TestConfig::oauth(upstream_url)
        .upstream("headers:\n  X-Upstream-Credential: gateway-own-secret")
        .scopes("initialize: [mcp:connect]")
}

fn token(gateway: &Gateway) -> String {
    hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"))
}

#[tokio::test]
async fn forwards_mcp_headers_adds_upstream_credentials_and_never_the_client_token() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url).build()).await;
    let token = token(&gateway);
    // The upstream's session id is swapped for one mcpgate issues...
    let session = open_session(&gateway, &token).await;
    assert_ne!(session, "upstream-session-1");
    assert_eq!(session.len(), 32);
    // ...and swapped back on the way in.
    let response = Request::post(&gateway)
        .bearer(&token)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("last-event-id", "event-7")
        .header("cookie", "sid=browser-secret")
        .header("x-api-key", "client-key")
        .header("x-upstream-credential", "client-tries-to-override")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#)
        .send()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["mcp-session-id"], session.as_str());
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap()["id"], 9);

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].headers.get("mcp-session-id").is_none());
    let headers = &seen[1].headers;
    assert!(
        headers.get("authorization").is_none(),
        "the client's token reached the upstream"
    );
    assert_eq!(headers["x-upstream-credential"], "gateway-own-secret");
    assert_eq!(headers["mcp-session-id"], "upstream-session-1");
    assert_eq!(headers["mcp-protocol-version"], "2025-06-18");
    assert_eq!(headers["last-event-id"], "event-7");
    assert_eq!(headers["accept"], "application/json, text/event-stream");
    assert_eq!(headers["content-type"], "application/json");
    for dropped in ["cookie", "x-api-key", "proxy-authorization"] {
        assert!(
            headers.get(dropped).is_none(),
            "{dropped} reached the upstream"
        );
    }
    assert_eq!(
        seen[1].body,
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#
    );
}

#[tokio::test]
async fn sse_responses_stream_event_by_event() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url).build()).await;
    let response = Request::post(&gateway)
        .token("mcp:connect")
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"stream"}}"#)
        .send()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(
        response.headers().get("connection").is_none(),
        "hop-by-hop header copied back"
    );
    let mut body = response.bytes_stream();
    // The upstream holds its second event until released: the first must arrive
    // through the gateway while the response is still open (no buffering).
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("first event never arrived: the response was buffered")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    upstream.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains(r#""id":3"#));
}

#[tokio::test]
async fn every_method_is_authenticated_and_get_delete_are_proxied() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url).build()).await;
    let client = Gateway::client();
    for method in [
        reqwest::Method::GET,
        reqwest::Method::DELETE,
        reqwest::Method::POST,
        reqwest::Method::PUT,
    ] {
        let response = client
            .request(method.clone(), &gateway.mcp)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} without a token");
    }
    assert!(upstream.seen().is_empty());

    let token = token(&gateway);
    let get = client
        .get(&gateway.mcp)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    let mut stream = get.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: message"));
    drop(stream);

    let delete = client
        .delete(&gateway.mcp)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 200);
    let put = client
        .put(&gateway.mcp)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, POST, DELETE");
    let methods: Vec<_> = upstream.seen().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, vec![http::Method::GET, http::Method::DELETE]);
}

#[tokio::test]
async fn upstream_unreachable_is_502_with_a_jsonrpc_error() {
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let gateway = Gateway::start(&config(&dead).build()).await;
    let response = gateway.post(Some(&token(&gateway))).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["code"], -32000);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("upstream unreachable")
    );

    // Without a JSON-RPC id (a GET stream) the error is plain JSON.
    let response = Request::get(&gateway).token("mcp:connect").send().await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_error");
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url).upstream("timeout: 500ms").build()).await;
    let response = Request::post(&gateway)
        .token("mcp:connect")
        .body(r#"{"jsonrpc":"2.0","id":"slow-1","method":"tools/call","params":{"name":"slow"}}"#)
        .send()
        .await;
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], "slow-1");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within")
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let upstream = Upstream::start().await;
    let gateway =
        Gateway::start(&config(&upstream.url).server("max_body_bytes: 1024").build()).await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x".repeat(2000)}}});
    let response = Request::post(&gateway)
        .token("mcp:connect")
        .json(&big)
        .send()
        .await;
    assert_eq!(response.status(), 413);
    // Chunked (no Content-Length) is cut off while reading.
    let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.to_string())]);
    let response = Request::post(&gateway)
        .token("mcp:connect")
        .stream_body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    assert_eq!(response.status(), 413);
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn metadata_is_public_and_path_aware() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &config(&upstream.url)
            .server("resource_documentation: https://docs.example.com/mcp")
            .build(),
    )
    .await;
    let expected = json!({
        "resource": gateway.mcp,
        "authorization_servers": ["https://issuer.test"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["mcp:connect"],
        "resource_documentation": "https://docs.example.com/mcp",
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let response = gateway.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        assert_eq!(response.json::<Value>().await.unwrap(), expected);
    }
    let other = gateway.get("/elsewhere").await;
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn metadata_path_override_moves_the_document_and_the_challenge() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(
        &config(&upstream.url)
            .server("metadata_path: /meta/prm")
            .build(),
    )
    .await;
    let moved = gateway.get("/meta/prm").await;
    assert_eq!(moved.status(), 200);
    let old = gateway
        .get("/.well-known/oauth-protected-resource/mcp")
        .await;
    assert_eq!(old.status(), 404);
    let challenge = www_authenticate(&gateway.post(None).await);
    assert!(
        challenge.ends_with(&format!("resource_metadata=\"{}/meta/prm\"", gateway.base)),
        "{challenge}"
    );
}

#[tokio::test]
async fn with_oauth_off_requests_pass_unauthenticated_and_metadata_is_404() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url).oauth_enabled(false).build()).await;
    let response = gateway.post(None).await;
    assert_eq!(response.status(), 200);
    let response = gateway
        .get("/.well-known/oauth-protected-resource/mcp")
        .await;
    assert_eq!(response.status(), 404);
    // Even unauthenticated, the client's Authorization is not passed on: the
    // request is forwarded, without it.
    let response = gateway.post(Some("some-client-token")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["id"], 1);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].headers.get("authorization").is_none());
    assert!(upstream.never_saw_authorization());
    assert!(
        gateway.stderr().contains("AUTHENTICATION IS OFF"),
        "{}",
        gateway.stderr()
    );
}

#[tokio::test]
async fn settings_exported_in_the_callers_environment_do_not_reach_the_gateway() {
    let upstream = Upstream::start().await;
    let config = config(&upstream.url).build();
    // As if the shell running `cargo test` had exported these.
    let mut exported: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    exported.push(("MCP_OAUTH_ENABLED".into(), "false".into()));
    exported.push(("MCPGATE_AUTH__OAUTH__ENABLED".into(), "false".into()));
    exported.push(("RUST_LOG".into(), "off".into()));
    let gateway = Gateway::start_inheriting(&config, exported, &[]).await;
    // OAuth stays on, as the config file says.
    let response = gateway.post(None).await;
    assert_eq!(response.status(), 401);
    assert!(
        upstream.seen().is_empty(),
        "the refused request reached the upstream"
    );
    assert_eq!(gateway.post(Some(&token(&gateway))).await.status(), 200);
    assert!(gateway.stderr().contains("listening on"));

    // Control: the same setting passed on purpose does reach the gateway, so what
    // the harness strips would have changed what is tested.
    let plain = Gateway::start_with_env(&config, &[("MCP_OAUTH_ENABLED", "false")]).await;
    assert_eq!(plain.post(None).await.status(), 200);
}

#[tokio::test]
async fn malformed_credentials_are_400_invalid_request() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url).build()).await;
    let client = Gateway::client();
    let token = token(&gateway);
    let cases = [
        client
            .post(&gateway.mcp)
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
        client.post(format!("{}?access_token={token}", gateway.mcp)),
        client
            .post(&gateway.mcp)
            .header("authorization", "Bearer two words"),
    ];
    for request in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert!(
            www_authenticate(&response)
                .starts_with("Bearer realm=\"mcp\", error=\"invalid_request\""),
            "{}",
            www_authenticate(&response)
        );
    }
    // The scheme is case-insensitive.
    let response = client
        .post(&gateway.mcp)
        .header("authorization", format!("bEaReR {token}"))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn sigterm_lets_in_flight_responses_finish_then_exits() {
    let upstream = Upstream::start().await;
    let mut gateway =
        Gateway::start(&config(&upstream.url).server("shutdown_grace: 30s").build()).await;
    let response = Request::post(&gateway)
        .token("mcp:connect")
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"stream"}}"#)
        .send()
        .await;
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    gateway.terminate();
    // Still running while the response is open...
    assert_eq!(gateway.wait_exit(Duration::from_millis(500)).await, None);
    // ...and the response completes after the signal.
    upstream.release.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains(r#""id":5"#));
    assert_eq!(gateway.wait_exit(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test]
async fn sigterm_cuts_open_streams_after_the_grace_period() {
    let upstream = Upstream::start().await;
    let mut gateway =
        Gateway::start(&config(&upstream.url).server("shutdown_grace: 1s").build()).await;
    let stream = Request::get(&gateway)
        .token("mcp:connect")
        .header("accept", "text/event-stream")
        .send()
        .await;
    let mut stream = stream.bytes_stream();
    stream.next().await.unwrap().unwrap();
    gateway.terminate();
    assert_eq!(
        gateway.wait_exit(Duration::from_secs(20)).await,
        Some(0),
        "an open SSE stream held the process past its grace period"
    );
}
