//! mcpgate's own credentials for the upstream (`upstream.oauth`), against the real
//! binary: a client_credentials token from a token endpoint, cached, renewed before
//! it expires, dropped when the upstream refuses it; the caller's token never sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

/// One token request: its Authorization header and form body.
type TokenRequest = (Option<String>, String);

/// A token endpoint issuing `token-1`, `token-2`, … with a fixed lifetime, recording
/// each request.
#[derive(Clone, Default)]
struct Issuer {
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    lifetime: Arc<Mutex<u64>>,
    refusing: Arc<Mutex<bool>>,
}

impl Issuer {
    fn issued(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn token_endpoint(
    State(issuer): State<Issuer>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let authorization = headers
        .get("authorization")
        .map(|value| value.to_str().unwrap().to_owned());
    let count = {
        let mut requests = issuer.requests.lock().unwrap();
        requests.push((authorization, body));
        requests.len()
    };
    if *issuer.refusing.lock().unwrap() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let lifetime = *issuer.lifetime.lock().unwrap();
    axum::Json(json!({
        "access_token": format!("token-{count}"),
        "token_type": "Bearer",
        "expires_in": lifetime,
    }))
    .into_response()
}

/// An MCP upstream that records the Authorization header of each request and
/// refuses `token-1` once asked to.
#[derive(Clone, Default)]
struct Protected {
    seen: Arc<Mutex<Vec<Option<String>>>>,
    refuse_first_token: Arc<Mutex<bool>>,
}

async fn mcp_endpoint(State(upstream): State<Protected>, headers: HeaderMap) -> Response {
    let authorization = headers
        .get("authorization")
        .map(|value| value.to_str().unwrap().to_owned());
    upstream.seen.lock().unwrap().push(authorization.clone());
    if *upstream.refuse_first_token.lock().unwrap()
        && authorization.as_deref() == Some("Bearer token-1")
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {}})).into_response()
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

struct Setup {
    issuer: Issuer,
    upstream: Protected,
    gateway: Gateway,
}

async fn setup(lifetime: u64, oauth_extra: &str) -> Setup {
    let issuer = Issuer::default();
    *issuer.lifetime.lock().unwrap() = lifetime;
    let token_addr = serve(
        Router::new()
            .route("/token", post(token_endpoint))
            .with_state(issuer.clone()),
    )
    .await;
    let upstream = Protected::default();
    let upstream_addr = serve(
        Router::new()
            .route("/mcp", post(mcp_endpoint))
            .with_state(upstream.clone()),
    )
    .await;
    let gateway = Gateway::start(&config(upstream_addr, token_addr, oauth_extra)).await;
    Setup {
        issuer,
        upstream,
        gateway,
    }
}

fn config(upstream: SocketAddr, token: SocketAddr, oauth_extra: &str) -> String {
    let credentials = format!(
        r#"
oauth:
  token_url: http://{token}/token
  client_id: "mcpgate:gw"
  client_secret: "s3cret value"
  scopes: [upstream:read, upstream:write]
  resource: https://upstream.example/mcp
{}"#,
        indent(&dedent(oauth_extra), 2)
    );
    TestConfig::oauth(&format!("http://{upstream}/mcp"))
        .upstream(&credentials)
        .build()
}

async fn call(gateway: &Gateway) -> u16 {
    Request::post(gateway)
        .token("mcp:connect")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .status()
        .as_u16()
}

fn last_seen(upstream: &Protected) -> Option<String> {
    upstream.seen.lock().unwrap().last().cloned().flatten()
}

impl Setup {
    /// A call is answered 200, and reached the upstream with `authorization`.
    async fn assert_served_with(&self, authorization: &str) {
        assert_eq!(call(&self.gateway).await, 200);
        assert_eq!(last_seen(&self.upstream).as_deref(), Some(authorization));
    }
}

#[tokio::test]
async fn the_upstream_sees_mcpgates_token_fetched_once_and_reused() {
    let setup = setup(3600, "").await;
    for _ in 0..5 {
        assert_eq!(call(&setup.gateway).await, 200);
    }
    // Fetched once at start, then reused: the caller's token never goes upstream.
    assert_eq!(setup.issuer.issued(), 1);
    let seen = setup.upstream.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    assert!(
        seen.iter()
            .all(|auth| auth.as_deref() == Some("Bearer token-1"))
    );

    let (authorization, form) = setup.issuer.requests.lock().unwrap()[0].clone();
    // client_secret_basic, each part form-encoded first (RFC 6749 §2.3.1).
    let expected = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("mcpgate%3Agw:s3cret+value")
    };
    assert_eq!(authorization, Some(format!("Basic {expected}")));
    let form: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(field("grant_type"), Some("client_credentials"));
    assert_eq!(field("scope"), Some("upstream:read upstream:write"));
    assert_eq!(field("resource"), Some("https://upstream.example/mcp"));
    assert_eq!(field("client_secret"), None);
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_in_the_form() {
    let setup = setup(3600, "    auth_method: client_secret_post\n").await;
    assert_eq!(call(&setup.gateway).await, 200);
    let (authorization, form) = setup.issuer.requests.lock().unwrap()[0].clone();
    assert_eq!(authorization, None);
    assert!(form.contains("client_id=mcpgate%3Agw"), "{form}");
    assert!(form.contains("client_secret=s3cret+value"), "{form}");
}

#[tokio::test]
async fn a_token_in_its_renewal_window_is_renewed_in_the_background() {
    // 60 s of life and a 60 s renewal window: due for renewal from the start, still valid.
    let setup = setup(60, "    renew_before: 60s\n").await;
    assert_eq!(call(&setup.gateway).await, 200);
    // The request did not wait: it went out with the token it had.
    assert_eq!(
        last_seen(&setup.upstream).as_deref(),
        Some("Bearer token-1")
    );
    let renewed = async {
        while setup.issuer.issued() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), renewed)
        .await
        .expect("no background renewal");
    setup.assert_served_with("Bearer token-2").await;
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_the_request_goes_out() {
    let setup = setup(1, "    renew_before: 0s\n").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    setup.assert_served_with("Bearer token-2").await;
}

#[tokio::test]
async fn a_refused_token_is_dropped_and_the_next_request_gets_a_new_one() {
    let setup = setup(3600, "").await;
    *setup.upstream.refuse_first_token.lock().unwrap() = true;
    // The upstream's 401 reaches the client as is: mcpgate does not replay requests.
    assert_eq!(call(&setup.gateway).await, 401);
    setup.assert_served_with("Bearer token-2").await;
    assert_eq!(setup.issuer.issued(), 2);
}

// Multi-threaded: `run_cli` blocks its thread while the token endpoint answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_refuses_stops_the_start_and_later_gives_502() {
    // At start: a configuration error naming the key and the AS's reason.
    let issuer = Issuer::default();
    *issuer.refusing.lock().unwrap() = true;
    let token_addr = serve(
        Router::new()
            .route("/token", post(token_endpoint))
            .with_state(issuer.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    let upstream: SocketAddr = "127.0.0.1:9".parse().unwrap();
    std::fs::write(
        &path,
        config(upstream, token_addr, "").replace("{port}", &free_port().to_string()),
    )
    .unwrap();
    let (code, _, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(
            "config error: upstream.oauth.token_url: cannot get a token for the upstream from"
        ) && stderr.contains("HTTP 401 Unauthorized (invalid_client)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret"),
        "the secret was printed: {stderr}"
    );

    // Running: once the token has expired and the AS refuses, calls fail with 502
    // and the upstream is not called without credentials.
    let setup = setup(1, "    renew_before: 0s\n").await;
    *setup.issuer.refusing.lock().unwrap() = true;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = setup.upstream.seen.lock().unwrap().len();
    assert_eq!(call(&setup.gateway).await, 502);
    assert_eq!(setup.upstream.seen.lock().unwrap().len(), before);
    assert!(
        setup
            .gateway
            .stderr()
            .contains("cannot get a token for the upstream"),
        "{}",
        setup.gateway.stderr()
    );
}

#[tokio::test]
async fn an_authorization_header_beside_oauth_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    let yaml = config(
        "127.0.0.1:9".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
        "",
    )
    .replace("{port}", "5999")
    .replace(
        "  oauth:\n    token_url",
        "  headers: { Authorization: \"Bearer static\" }\n  oauth:\n    token_url",
    );
    std::fs::write(&path, yaml).unwrap();
    let (code, _, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(
            "config error: upstream.oauth: set either upstream.oauth or an Authorization header"
        ),
        "{stderr}"
    );
}
