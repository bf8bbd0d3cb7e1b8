//! `server.cors` against the binary: preflights answered before authentication,
//! CORS headers on every answer to an allowed origin (refusals, upstream failures
//! and streams included), none to any other, upstream `Access-Control-*` headers
//! removed, public documents open to any origin, and a reload changing the list.

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::common::config::TestConfig;
use crate::common::*;

const PAGE: &str = "http://localhost:6274";
const EXPOSED: &str = "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version, Retry-After, RateLimit, RateLimit-Policy";

/// OAuth on, `tools/call` of `admin` needing a scope no test token has, and `cors`
/// (YAML under `server.cors`, empty for CORS off).
fn config(upstream_url: &str, cors: &str) -> String {
    let mut config = TestConfig::oauth(upstream_url).scopes("tools:\n  admin: [mcp:admin]");
    if !cors.is_empty() {
        config = config.server(&format!("cors:\n{cors}"));
    }
    config.build()
}

const CORS: &str = "  allowed_origins: [\"http://localhost:*\", \"https://*.example.com\"]
  allowed_headers: [X-Trace-Id]
  max_age: 5m";

fn token(gateway: &Gateway) -> String {
    hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"))
}

async fn preflight(url: &str, origin: &str) -> Response {
    Gateway::client()
        .request(Method::OPTIONS, url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-protocol-version",
        )
        .send()
        .await
        .unwrap()
}

async fn post(
    gateway: &Gateway,
    origin: Option<&str>,
    token: Option<&str>,
    body: &Value,
) -> Response {
    let mut request = Gateway::client()
        .post(&gateway.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "page", "version": "1"}}})
}

fn call(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool}})
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|value| value.to_str().unwrap())
        .unwrap_or_default()
}

fn access_control(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

/// What every answer to an allowed `origin` carries.
fn assert_allowed(headers: &HeaderMap, origin: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), origin);
    assert_eq!(header(headers, "access-control-expose-headers"), EXPOSED);
    assert!(header(headers, "vary").contains("Origin"), "{headers:?}");
    assert!(!headers.contains_key("access-control-allow-credentials"));
}

#[tokio::test]
async fn a_preflight_without_credentials_is_answered_before_authentication() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, CORS)).await;
    for origin in ["http://localhost:6274", "https://app.example.com"] {
        let response = preflight(&gateway.mcp, origin).await;
        assert_eq!(response.status(), 204, "{origin}");
        let headers = response.headers();
        assert_eq!(header(headers, "access-control-allow-origin"), origin);
        assert_eq!(
            header(headers, "access-control-allow-methods"),
            "POST, GET, DELETE"
        );
        assert_eq!(
            header(headers, "access-control-allow-headers"),
            "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, \
             Mcp-Method, Mcp-Name, Last-Event-ID, X-Trace-Id"
        );
        assert_eq!(header(headers, "access-control-max-age"), "300");
        assert_eq!(header(headers, "vary"), "Origin");
        assert!(!headers.contains_key("www-authenticate"));
        assert!(!headers.contains_key("access-control-allow-credentials"));
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[tokio::test]
async fn every_answer_to_an_allowed_origin_names_it_and_exposes_the_mcp_headers() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, CORS)).await;
    let token = token(&gateway);

    // 401: the page can read the challenge that starts its OAuth flow.
    let response = post(&gateway, Some(PAGE), None, &initialize()).await;
    assert_eq!(response.status(), 401);
    assert_allowed(response.headers(), PAGE);
    assert!(www_authenticate(&response).contains("resource_metadata="));

    // A token that is not accepted.
    let response = post(&gateway, Some(PAGE), Some("nope"), &initialize()).await;
    assert_eq!(response.status(), 401);
    assert_allowed(response.headers(), PAGE);

    // 200, with the session the page must send back.
    let response = post(&gateway, Some(PAGE), Some(&token), &initialize()).await;
    assert_eq!(response.status(), 200);
    assert_allowed(response.headers(), PAGE);
    let session = header(response.headers(), "mcp-session-id").to_owned();
    assert!(!session.is_empty());

    // 403: step-up.
    let mut request = Gateway::client()
        .post(&gateway.mcp)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("origin", PAGE)
        .header("mcp-session-id", &session)
        .bearer_auth(&token);
    let response = request
        .try_clone()
        .unwrap()
        .body(call("admin").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_allowed(response.headers(), PAGE);
    assert!(www_authenticate(&response).contains("insufficient_scope"));

    // A streamed answer: the headers come before the first event.
    request = request.body(call("stream").to_string());
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "content-type"),
        "text/event-stream"
    );
    assert_allowed(response.headers(), PAGE);
    upstream.release.notify_one();
    drop(response);

    // 405 for a method the endpoint does not take.
    let response = Gateway::client()
        .put(&gateway.mcp)
        .header("origin", PAGE)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_allowed(response.headers(), PAGE);
}

#[tokio::test]
async fn an_upstream_failure_to_an_allowed_origin_names_it() {
    // Nothing listens on port 9.
    let gateway = Gateway::start(&config("http://127.0.0.1:9/mcp", CORS)).await;
    let response = post(&gateway, Some(PAGE), Some(&token(&gateway)), &initialize()).await;
    assert_eq!(response.status(), 502);
    assert_allowed(response.headers(), PAGE);
}

#[tokio::test]
async fn a_disallowed_origin_gets_the_origin_403_and_no_cors_headers() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, CORS)).await;
    let token = token(&gateway);
    for origin in [
        "https://evil.test",
        "https://example.com",
        "https://a.b.example.com",
        "https://example.com.evil.com",
        "https://evilexample.com",
        "https://app.example.com:8443",
        "http://app.example.com",
        "https://localhost:6274",
        "null",
    ] {
        let response = preflight(&gateway.mcp, origin).await;
        assert_eq!(response.status(), 403, "{origin}");
        assert!(access_control(response.headers()).is_empty(), "{origin}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "forbidden_origin", "{origin}");

        let response = post(&gateway, Some(origin), Some(&token), &initialize()).await;
        assert_eq!(response.status(), 403, "{origin}");
        assert!(access_control(response.headers()).is_empty(), "{origin}");
    }
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[tokio::test]
async fn the_upstreams_access_control_headers_never_reach_the_client() {
    let upstream = Upstream::start().await;
    let off = TestConfig::oauth(&upstream.url)
        .server(&format!("allowed_origins: [\"{PAGE}\"]"))
        .build();
    for (cors, yaml) in [(CORS, config(&upstream.url, CORS)), ("", off)] {
        let gateway = Gateway::start(&yaml).await;
        let token = token(&gateway);
        let response = post(&gateway, Some(PAGE), Some(&token), &call("cors-headers")).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["result"]["ok"], true, "{status} {body}");
        if cors.is_empty() {
            assert!(access_control(&headers).is_empty(), "{headers:?}");
        } else {
            assert_allowed(&headers, PAGE);
            assert!(!headers.contains_key("access-control-max-age"));
        }
        // Without Origin (not a browser) neither.
        let response = post(&gateway, None, Some(&token), &call("cors-headers")).await;
        assert_eq!(response.status(), 200);
        assert!(access_control(response.headers()).is_empty());
    }
}

#[tokio::test]
async fn the_metadata_document_is_readable_and_preflighted_from_any_origin() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, CORS)).await;
    let url = format!("{}/.well-known/oauth-protected-resource/mcp", gateway.base);
    let response = preflight(&url, "https://anywhere.test").await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        "*"
    );
    assert_eq!(
        header(response.headers(), "access-control-allow-methods"),
        "GET"
    );
    assert!(
        header(response.headers(), "access-control-allow-headers").contains("Mcp-Protocol-Version")
    );
    let response = Gateway::client()
        .get(&url)
        .header("origin", "https://anywhere.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        "*"
    );
}

#[tokio::test]
async fn with_cors_off_nothing_carries_cors_headers() {
    let upstream = Upstream::start().await;
    let yaml = TestConfig::oauth(&upstream.url)
        .server("allowed_origins: [\"http://localhost:6274\"]")
        .build();
    let gateway = Gateway::start(&yaml).await;
    // Today's answer to a preflight: authentication.
    let response = preflight(&gateway.mcp, PAGE).await;
    assert_eq!(response.status(), 401);
    assert!(access_control(response.headers()).is_empty());
    let response = post(&gateway, Some(PAGE), None, &initialize()).await;
    assert_eq!(response.status(), 401);
    assert!(access_control(response.headers()).is_empty());
    assert!(!header(response.headers(), "vary").contains("Origin"));
    let response = post(&gateway, Some(PAGE), Some(&token(&gateway)), &initialize()).await;
    assert_eq!(response.status(), 200);
    assert!(access_control(response.headers()).is_empty());
    // The metadata document has no preflight answer either (only GET is routed).
    let url = format!("{}/.well-known/oauth-protected-resource/mcp", gateway.base);
    let response = preflight(&url, PAGE).await;
    assert_eq!(response.status(), 405);
    assert!(access_control(response.headers()).is_empty());
}

#[tokio::test]
async fn a_reload_changes_which_origins_are_allowed() {
    let upstream = Upstream::start().await;
    let only_inspector = "  allowed_origins: [\"http://localhost:6274\"]";
    let gateway = Gateway::start(&config(&upstream.url, only_inspector)).await;
    assert_eq!(preflight(&gateway.mcp, PAGE).await.status(), 204);
    assert_eq!(
        preflight(&gateway.mcp, "http://localhost:5173")
            .await
            .status(),
        403
    );

    gateway.rewrite_config(&config(
        &upstream.url,
        "  allowed_origins: [\"http://localhost:5173\"]",
    ));
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );
    let response = preflight(&gateway.mcp, "http://localhost:5173").await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        "http://localhost:5173"
    );
    // The origin dropped from the list is refused by the Origin check as well.
    assert_eq!(preflight(&gateway.mcp, PAGE).await.status(), 403);
    let response = post(&gateway, Some(PAGE), Some(&token(&gateway)), &initialize()).await;
    assert_eq!(response.status(), 403);

    // CORS turned off by a reload: no CORS headers, and the origin it allowed is
    // no longer allowed to send either.
    gateway.rewrite_config(&config(&upstream.url, ""));
    gateway.signal("HUP");
    for _ in 0..300 {
        if gateway.log_count("config reloaded") >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let response = post(&gateway, Some("http://localhost:5173"), None, &initialize()).await;
    assert_eq!(response.status(), 403);
    assert!(access_control(response.headers()).is_empty());
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[tokio::test]
async fn the_facades_token_endpoints_answer_any_origin_and_its_pages_none() {
    let upstream = Upstream::start().await;
    let yaml = TestConfig::oauth(&upstream.url)
        .server(&format!("cors:\n{CORS}"))
        .yaml(
            "authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret
  registration:
    enabled: true",
        )
        .build();
    let gateway = Gateway::start(&yaml).await;
    for (path, methods) in [
        ("/.well-known/oauth-authorization-server", "GET"),
        ("/.well-known/openid-configuration", "GET"),
        ("/oauth/jwks", "GET"),
        ("/oauth/token", "POST"),
        ("/oauth/revoke", "POST"),
        ("/oauth/register", "POST"),
    ] {
        let url = format!("{}{path}", gateway.base);
        let response = preflight(&url, "https://anywhere.test").await;
        assert_eq!(response.status(), 204, "{path}");
        assert_eq!(
            header(response.headers(), "access-control-allow-origin"),
            "*",
            "{path}"
        );
        assert_eq!(
            header(response.headers(), "access-control-allow-methods"),
            methods,
            "{path}"
        );
    }
    // A refused token request is readable by the page that sent it.
    let response = Gateway::client()
        .post(format!("{}/oauth/token", gateway.base))
        .header("origin", "https://anywhere.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=authorization_code&code=nope&client_id=nobody")
        .send()
        .await
        .unwrap();
    // An unknown client: `invalid_client`.
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        "*"
    );
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-credentials")
    );
    // Navigations get no CORS.
    for path in ["/oauth/authorize", "/oauth/callback"] {
        let url = format!("{}{path}", gateway.base);
        let response = preflight(&url, "https://anywhere.test").await;
        assert_ne!(response.status(), 204, "{path}");
        assert!(access_control(response.headers()).is_empty(), "{path}");
    }
}

#[test]
fn a_bad_cors_entry_stops_the_start_naming_its_key() {
    for (cors, key, reason) in [
        (
            "  allowed_origins: [\"*\"]",
            "server.cors.allowed_origins[0]",
            "DNS rebinding",
        ),
        (
            "  allowed_origins: [\"https://a.*.example.com\"]",
            "server.cors.allowed_origins[0]",
            "whole left-most host label",
        ),
        (
            "  allowed_origins: [\"https://a.example\"]\n  max_age: 1d",
            "server.cors.max_age",
            "at most 2h",
        ),
        (
            "  allowed_origins: []",
            "server.cors.allowed_origins",
            "at least one origin",
        ),
    ] {
        let yaml = config("http://127.0.0.1:9/mcp", cors).replace("{port}", "5025");
        let (code, _, stderr) = check_config(&yaml, &[]);
        assert_eq!(code, 78, "{stderr}");
        assert!(stderr.contains(key) && stderr.contains(reason), "{stderr}");
    }
}
