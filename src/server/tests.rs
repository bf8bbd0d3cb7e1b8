//! The router in process (`tower::ServiceExt::oneshot`, no socket, no binary): what
//! depends only on routing, namely the `Host` guard in front of every route, the
//! metadata document's paths and the JSON 404 fallback. The binary's own behaviour
//! (framing, connections, the MCP endpoint) is tested against the binary in `tests/`.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Method, Request, StatusCode, Version, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

use super::{AppState, router};
use crate::audit::AuditLog;
use crate::config;
use crate::gateway::Gateways;
use crate::mcp::session::Sessions;
use crate::telemetry::traces::Traces;

const HOST: &str = "127.0.0.1:5025";
const PATH_AWARE: &str = "/.well-known/oauth-protected-resource/mcp";
const ROOT: &str = "/.well-known/oauth-protected-resource";

/// OAuth with a development key: nothing to fetch, so the gateway builds offline.
const OAUTH: &str = "server: { listen: 127.0.0.1:5025 }\n\
upstream: { url: http://127.0.0.1:9/mcp }\n\
auth:\n  oauth:\n    enabled: true\n    issuers: [https://issuer.test]\n    jwks:\n      \
- { secret: a-development-secret-of-at-least-32-bytes!, header_key_id: dev }\n\
scopes: { initialize: [mcp:connect] }\n";

const NO_OAUTH: &str = "server: { listen: 127.0.0.1:5025 }\n\
upstream: { url: http://127.0.0.1:9/mcp }\n\
auth: { oauth: { enabled: false } }\n";

/// The router `serve` would run for `yaml`, and the shutdown sender its state watches.
async fn router_of(yaml: &str) -> (axum::Router, watch::Sender<bool>) {
    let (state, stop) = state_of(yaml).await;
    (router(state), stop)
}

/// The state `serve` would build for `yaml`, and the shutdown sender it watches.
async fn state_of(yaml: &str) -> (AppState, watch::Sender<bool>) {
    let config = config::load_from_str(yaml).expect("test config parses");
    crate::gateway::validate(&config).expect("test config is valid");
    let sessions = Arc::new(Sessions::from_config(&config.session).expect("memory sessions"));
    let gateway = Gateways::build(config, &reqwest::Client::new())
        .await
        .expect("the gateway builds offline");
    let (stop, stopped) = watch::channel(false);
    let state = AppState::new(
        gateway,
        sessions,
        AuditLog::disabled(),
        Traces::default(),
        stopped,
    );
    (state, stop)
}

/// A request with `hosts` as its `Host` headers (none, one or more).
fn request(method: Method, uri: &str, hosts: &[&str]) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    for host in hosts {
        request
            .headers_mut()
            .append(header::HOST, HeaderValue::from_str(host).unwrap());
    }
    request
}

/// Status, headers and JSON body of `request` through a fresh router of `yaml`.
async fn send(yaml: &str, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let (router, _stop) = router_of(yaml).await;
    let response = router.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&bytes)));
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn the_metadata_document_is_served_at_the_path_aware_and_the_root_path() {
    for path in [PATH_AWARE, ROOT] {
        let (status, headers, body) = send(OAUTH, request(Method::GET, path, &[HOST])).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{path}");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{path}");
        assert_eq!(body["resource"], "http://127.0.0.1:5025/mcp", "{path}");
        assert_eq!(
            body["authorization_servers"],
            json!(["https://issuer.test"]),
            "{path}"
        );
        assert_eq!(body["scopes_supported"], json!(["mcp:connect"]), "{path}");
    }
    // Only GET is routed there: anything else is the router's 405.
    let (router, _stop) = router_of(OAUTH).await;
    let response = router
        .oneshot(request(Method::POST, PATH_AWARE, &[HOST]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn without_oauth_the_metadata_paths_are_not_found() {
    for path in [PATH_AWARE, ROOT] {
        let (status, _, body) = send(NO_OAUTH, request(Method::GET, path, &[HOST])).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    for (method, path) in [
        (Method::GET, "/elsewhere"),
        (Method::POST, "/mcp/extra"),
        (Method::GET, "/.well-known/oauth-authorization-server"),
    ] {
        let (status, headers, body) = send(OAUTH, request(method.clone(), path, &[HOST])).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body,
            json!({"error": "not_found", "error_description": "no such endpoint"}),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn the_host_guard_answers_400_on_every_route_and_closes_the_connection() {
    for path in ["/mcp", PATH_AWARE, "/elsewhere"] {
        for (case, hosts) in [
            ("no Host", &[][..]),
            ("two Hosts", &[HOST, "other.example"][..]),
            ("two identical Hosts", &[HOST, HOST][..]),
            ("not host[:port]", &["a b"][..]),
        ] {
            let (status, headers, body) = send(OAUTH, request(Method::GET, path, hosts)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{case} on {path}");
            assert_eq!(headers[header::CONNECTION], "close", "{case} on {path}");
            assert_eq!(body["error"], "invalid_request", "{case} on {path}");
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("Host header"),
                "{case} on {path}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn http2_needs_no_host_when_the_authority_names_the_target() {
    let mut authority_only = request(Method::GET, &format!("http://{HOST}{ROOT}"), &[]);
    *authority_only.version_mut() = Version::HTTP_2;
    let (status, headers, _) = send(OAUTH, authority_only).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONNECTION).is_none());
    // A Host that disagrees with `:authority` is refused, without `Connection`
    // (HTTP/2 has none).
    let mut mismatch = request(
        Method::GET,
        &format!("http://{HOST}{ROOT}"),
        &["other.example"],
    );
    *mismatch.version_mut() = Version::HTTP_2;
    let (status, headers, body) = send(OAUTH, mismatch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get(header::CONNECTION).is_none());
    assert_eq!(body["error"], "invalid_request");
}

/// The façade in front of a provider whose endpoints are given (nothing fetched).
const FACADE: &str = "server: { listen: 127.0.0.1:5025 }\n\
upstream: { url: http://127.0.0.1:9/mcp }\n\
auth:\n  oauth:\n    enabled: true\n    issuers: [https://issuer.test]\n    jwks:\n      \
- { secret: a-development-secret-of-at-least-32-bytes!, header_key_id: dev }\n\
authorization_server:\n  provider:\n    issuer: https://idp.test\n    \
authorization_endpoint: https://idp.test/authorize\n    token_endpoint: https://idp.test/token\n    \
client_id: mcpgate-at-idp\n    client_secret: s3cret\n";

/// Status and JSON body of `request` from `peer` on the admin router of `yaml`.
async fn admin_send(yaml: &str, mut request: Request<Body>, peer: &str) -> (StatusCode, Value) {
    let (state, _stop) = state_of(yaml).await;
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let admin = super::admin::router(super::admin::Admin::from(&state));
    let response = admin.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_authorization_server_admin_routes_answer_loopback_only_and_only_with_the_facade() {
    let revoke = || {
        Request::builder()
            .method(Method::POST)
            .uri("/authorization-server/grants/revoke")
            .body(Body::from(r#"{"subject":"alice"}"#))
            .unwrap()
    };
    let (status, body) = admin_send(FACADE, revoke(), "10.0.0.7:40000").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");
    let clients = request(Method::GET, "/authorization-server/clients", &[]);
    let (status, _) = admin_send(FACADE, clients, "192.168.1.2:40000").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = admin_send(FACADE, revoke(), "127.0.0.1:40000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"revoked": []}));
    let (status, _) = admin_send(OAUTH, revoke(), "127.0.0.1:40000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown = request(Method::GET, "/authorization-server/grants?user=alice", &[]);
    let (status, body) = admin_send(FACADE, unknown, "[::1]:40000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
}

/// Every request's future is moved (copied) as it is polled and boxed: a path that
/// waits on something rare (a JWKS fetch, Redis, argon2) is boxed where it is
/// awaited, so that its state is not part of every request's. A new inline await of
/// a large future grows this past the bound and makes every request slower (the
/// shared rate limits' Redis call, inline, made it 9,992 bytes; the façade's
/// revocation check, inline, about 9,500). The bound is this compiler's debug build
/// (5,032 bytes) with some room; raise it only with a reason.
#[tokio::test]
async fn the_mcp_endpoints_future_stays_small() {
    let (state, _stop) = state_of(OAUTH).await;
    let request = request(Method::POST, "/mcp", &[HOST]);
    let gateway = std::sync::Arc::clone(state.gateway.load().first());
    let future = super::mcp::handle(state, gateway, request);
    let size = std::mem::size_of_val(&future);
    assert!(size <= 6_144, "mcp::handle's future is {size} bytes");
}
