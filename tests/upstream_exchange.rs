//! `upstream.identity.exchange` against the real binary: the caller's token is
//! exchanged at a token endpoint (RFC 8693, or Entra's on-behalf-of grant) and the
//! upstream sees only the exchanged token; exchanges are cached per caller's token,
//! one in flight per key; refusals and outages never reach the upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::redis::RedisServer;
use crate::common::*;
use argon2::{Argon2, PasswordHasher};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One exchange request: its Authorization header and form fields.
#[derive(Debug, Clone)]
struct Asked {
    authorization: Option<String>,
    form: Vec<(String, String)>,
}

impl Asked {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// How the token endpoint answers.
#[derive(Debug, Clone)]
enum Answer {
    /// `exchanged-<n>` for the n-th request, living `expires_in` seconds.
    Issue { expires_in: u64 },
    /// This status and JSON body.
    Fail(u16, Value),
}

/// A token endpoint that records each request and answers as told, after `delay`.
#[derive(Clone)]
struct Provider {
    asked: Arc<Mutex<Vec<Asked>>>,
    answer: Arc<Mutex<Answer>>,
    delay: Arc<Mutex<Duration>>,
}

impl Provider {
    fn new(answer: Answer) -> Self {
        Self {
            asked: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
            delay: Arc::default(),
        }
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

async fn token_endpoint(
    State(provider): State<Provider>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let count = {
        let mut asked = provider.asked.lock().unwrap();
        asked.push(Asked {
            authorization: headers
                .get("authorization")
                .map(|value| value.to_str().unwrap().to_owned()),
            form: url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect(),
        });
        asked.len()
    };
    let delay = *provider.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let answer = provider.answer.lock().unwrap().clone();
    match answer {
        Answer::Issue { expires_in } => axum::Json(json!({
            "access_token": format!("exchanged-{count}"),
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": expires_in,
        }))
        .into_response(),
        Answer::Fail(status, body) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
    }
}

async fn serve_provider(provider: &Provider) -> SocketAddr {
    spawn_router(
        Router::new()
            .route("/token", post(token_endpoint))
            .with_state(provider.clone()),
    )
    .await
}

const EXCHANGE: &str = "
  token_url: http://{token}/token
  client_id: \"mcpgate:gw\"
  client_secret: \"s3cret value\"
  audience: upstream-api
  resource: https://upstream.example/mcp
  scopes: [orders:read]";

struct Setup {
    provider: Provider,
    upstream: Upstream,
    gateway: Gateway,
}

/// A gateway whose upstream gets tokens exchanged at a fresh provider; `extra` adds
/// keys under `upstream.identity.exchange`.
async fn setup(answer: Answer, extra: &str) -> Setup {
    let provider = Provider::new(answer);
    let token = serve_provider(&provider).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream.url, &token.to_string(), EXCHANGE, extra)).await;
    Setup {
        provider,
        upstream,
        gateway,
    }
}

fn config(upstream: &str, token: &str, exchange: &str, extra: &str) -> String {
    test_config(upstream, token, exchange, extra).build()
}

fn test_config(upstream: &str, token: &str, exchange: &str, extra: &str) -> TestConfig {
    let section = format!("{}\n{}", dedent(exchange), dedent(extra)).replace("{token}", token);
    TestConfig::oauth(upstream)
        .upstream(&format!("identity:\n  exchange:\n{}", indent(&section, 4)))
        .api_key_with_scopes("ci", &hash("mcpk_ci_secret-one"), r#"["*"]"#)
        .audit()
}

fn hash(key: &str) -> String {
    Argon2::default()
        .hash_password(key.as_bytes())
        .unwrap()
        .to_string()
}

/// A token of the test issuer for `subject` with `scope`.
fn token_for(gateway: &Gateway, subject: &str, scope: &str) -> String {
    let mut claims = claims(gateway.mcp.as_str(), scope);
    claims["sub"] = json!(subject);
    hs256(&claims, Some("dev"))
}

async fn call(gateway: &Gateway, token: &str) -> reqwest::Response {
    Request::post(gateway)
        .bearer(token)
        .json(&rpc(1, "ping", json!({})))
        .send()
        .await
}

/// The Authorization of each request the upstream saw.
fn seen_authorizations(upstream: &Upstream) -> Vec<Option<String>> {
    upstream
        .seen()
        .iter()
        .map(|seen| {
            seen.headers
                .get("authorization")
                .map(|value| value.to_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_upstream_gets_the_exchanged_token_and_it_is_reused() {
    let setup = setup(Answer::Issue { expires_in: 3600 }, "").await;
    let token = token_for(&setup.gateway, "alice", "mcp:tools");
    for _ in 0..3 {
        assert_eq!(call(&setup.gateway, &token).await.status(), 200);
    }
    let asked = setup.provider.asked();
    assert_eq!(asked.len(), 1, "one exchange, then the cache: {asked:?}");
    let asked = &asked[0];
    assert_eq!(
        asked.field("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(asked.field("subject_token"), Some(token.as_str()));
    assert_eq!(
        asked.field("subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(
        asked.field("requested_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(asked.field("audience"), Some("upstream-api"));
    assert_eq!(
        asked.field("resource"),
        Some("https://upstream.example/mcp")
    );
    assert_eq!(asked.field("scope"), Some("orders:read"));
    assert_eq!(asked.field("client_secret"), None);
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("mcpgate%3Agw:s3cret+value")
    };
    assert_eq!(asked.authorization, Some(format!("Basic {basic}")));
    // The upstream saw the exchanged token every time, never the caller's.
    assert_eq!(
        seen_authorizations(&setup.upstream),
        vec![Some("Bearer exchanged-1".to_owned()); 3]
    );
    for seen in setup.upstream.seen() {
        let headers = format!("{:?}", seen.headers);
        assert!(!headers.contains(&token), "{headers}");
    }
}

#[tokio::test]
async fn fifty_concurrent_calls_of_one_user_cause_one_exchange() {
    let setup = setup(Answer::Issue { expires_in: 3600 }, "").await;
    *setup.provider.delay.lock().unwrap() = Duration::from_millis(300);
    let token = token_for(&setup.gateway, "alice", "mcp:tools");
    let calls = (0..50).map(|_| call(&setup.gateway, &token));
    let responses = futures_util::future::join_all(calls).await;
    assert!(responses.iter().all(|response| response.status() == 200));
    assert_eq!(setup.provider.asked().len(), 1);
    let seen = seen_authorizations(&setup.upstream);
    assert_eq!(seen.len(), 50);
    assert!(
        seen.iter()
            .all(|auth| auth.as_deref() == Some("Bearer exchanged-1"))
    );
}

#[tokio::test]
async fn two_users_and_two_tokens_of_one_user_never_share_an_exchanged_token() {
    let setup = setup(Answer::Issue { expires_in: 3600 }, "").await;
    let alice = token_for(&setup.gateway, "alice", "mcp:tools");
    let bob = token_for(&setup.gateway, "bob", "mcp:tools");
    // Alice again, with a narrower token: its own exchange, not the first one's.
    let alice_narrow = token_for(&setup.gateway, "alice", "mcp:connect");
    for token in [&alice, &bob, &alice_narrow, &alice, &bob] {
        assert_eq!(call(&setup.gateway, token).await.status(), 200);
    }
    let asked: Vec<String> = setup
        .provider
        .asked()
        .iter()
        .map(|asked| asked.field("subject_token").unwrap().to_owned())
        .collect();
    assert_eq!(asked, [alice.clone(), bob.clone(), alice_narrow]);
    let expected: Vec<Option<String>> = [1, 2, 3, 1, 2]
        .iter()
        .map(|n| Some(format!("Bearer exchanged-{n}")))
        .collect();
    assert_eq!(seen_authorizations(&setup.upstream), expected);
}

#[tokio::test]
async fn an_exchanged_token_is_not_used_past_renew_before_its_expiry() {
    let setup = setup(Answer::Issue { expires_in: 2 }, "renew_before: 1s").await;
    let token = token_for(&setup.gateway, "alice", "mcp:tools");
    assert_eq!(call(&setup.gateway, &token).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(call(&setup.gateway, &token).await.status(), 200);
    assert_eq!(setup.provider.asked().len(), 2);
    assert_eq!(
        seen_authorizations(&setup.upstream),
        [
            Some("Bearer exchanged-1".to_owned()),
            Some("Bearer exchanged-2".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_refused_exchange_is_403_or_401_and_nothing_goes_upstream() {
    let setup = setup(
        Answer::Fail(
            400,
            json!({"error": "invalid_target", "error_description": "upstream-api is not allowed"}),
        ),
        "",
    )
    .await;
    let token = token_for(&setup.gateway, "alice", "mcp:tools");
    let response = call(&setup.gateway, &token).await;
    assert_eq!(response.status(), 403);
    assert_eq!(www_authenticate(&response), "");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["data"]["error"], "access_denied");
    assert_eq!(
        body["error"]["message"],
        "the identity provider refused to exchange the token for the upstream: \
         invalid_target: upstream-api is not allowed"
    );

    // The caller's token itself refused: 401 with a challenge, so the client signs in again.
    setup.provider.answer(Answer::Fail(
        400,
        json!({"error": "invalid_grant", "error_description": "token expired"}),
    ));
    let response = call(&setup.gateway, &token).await;
    assert_eq!(response.status(), 401);
    let challenge = www_authenticate(&response);
    assert!(
        challenge.starts_with("Bearer realm=\"mcp\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    assert_eq!(setup.provider.asked().len(), 2, "a refusal is not cached");
    assert!(setup.upstream.seen().is_empty());

    let records = audit_records(&setup.gateway, 2).await;
    let record = &records[0];
    assert_eq!(record["status"], 403);
    assert_eq!(record["action"], "deny");
    assert_eq!(record["upstream_identity"], "token_exchange");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("invalid_target: upstream-api is not allowed"),
        "{record}"
    );
    assert_eq!(records[1]["status"], 401);
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains(&token), "the caller's token is in {text}");
}

#[tokio::test]
async fn a_provider_that_fails_or_is_down_is_503_and_no_stale_token_goes_upstream() {
    let setup = setup(Answer::Issue { expires_in: 1 }, "renew_before: 0s").await;
    let token = token_for(&setup.gateway, "alice", "mcp:tools");
    assert_eq!(call(&setup.gateway, &token).await.status(), 200);
    setup
        .provider
        .answer(Answer::Fail(500, json!({"error": "server_error"})));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The exchanged token has expired and no new one can be had: 503, not the old one.
    let response = call(&setup.gateway, &token).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "5"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["data"]["error"], "temporarily_unavailable");
    assert_eq!(setup.upstream.seen().len(), 1);

    // A token endpoint no one listens on: 503 too.
    let upstream = Upstream::start().await;
    let closed = format!("127.0.0.1:{}", free_port());
    let gateway = Gateway::start(&config(&upstream.url, &closed, EXCHANGE, "")).await;
    let token = token_for(&gateway, "alice", "mcp:tools");
    let response = call(&gateway, &token).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn an_api_key_caller_is_refused_unless_configured_to_pass_without_a_token() {
    let setup = setup(Answer::Issue { expires_in: 3600 }, "").await;
    let response = call(&setup.gateway, "mcpk_ci_secret-one").await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("an API key is none"),
        "{body}"
    );
    assert!(setup.provider.asked().is_empty());
    assert!(setup.upstream.seen().is_empty());
    let records = audit_records(&setup.gateway, 1).await;
    assert_eq!(records[0]["upstream_identity"], "token_exchange");

    let setup = setup_without_token().await;
    assert_eq!(
        call(&setup.gateway, "mcpk_ci_secret-one").await.status(),
        200
    );
    assert!(setup.provider.asked().is_empty());
    assert!(setup.upstream.never_saw_authorization());
    // Forwarded without a token: the record names no mechanism.
    let records = audit_records(&setup.gateway, 1).await;
    assert_eq!(records[0]["action"], "allow");
    assert_eq!(records[0]["upstream_identity"], Value::Null);
}

async fn setup_without_token() -> Setup {
    setup(
        Answer::Issue { expires_in: 3600 },
        "api_keys: without_token",
    )
    .await
}

#[tokio::test]
async fn entra_obo_sends_the_jwt_bearer_grant_and_consent_required_is_403() {
    let provider = Provider::new(Answer::Issue { expires_in: 3600 });
    let token_addr = serve_provider(&provider).await;
    let upstream = Upstream::start().await;
    let obo = "
      token_url: http://{token}/token
      client_id: 11111111-2222-3333-4444-555555555555
      client_secret: entra-secret
      auth_method: client_secret_post
      grant: entra_obo
      scopes: api://downstream-api/.default";
    let gateway = Gateway::start(&config(&upstream.url, &token_addr.to_string(), obo, "")).await;
    let token = token_for(&gateway, "alice", "mcp:tools");
    assert_eq!(call(&gateway, &token).await.status(), 200);
    let asked = provider.asked();
    let asked = &asked[0];
    assert_eq!(
        asked.field("grant_type"),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    assert_eq!(asked.field("assertion"), Some(token.as_str()));
    assert_eq!(asked.field("requested_token_use"), Some("on_behalf_of"));
    assert_eq!(asked.field("scope"), Some("api://downstream-api/.default"));
    assert_eq!(
        asked.field("client_id"),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(asked.field("client_secret"), Some("entra-secret"));
    assert_eq!(asked.authorization, None);
    for absent in [
        "subject_token",
        "audience",
        "resource",
        "requested_token_type",
    ] {
        assert_eq!(asked.field(absent), None, "{absent}");
    }
    assert_eq!(
        seen_authorizations(&upstream),
        [Some("Bearer exchanged-1".to_owned())]
    );

    // Entra's consent_required comes as invalid_grant with a suberror: a new token
    // would not help, so 403 with Entra's message rather than 401.
    provider.answer(Answer::Fail(
        400,
        json!({
            "error": "invalid_grant",
            "error_description": "AADSTS65001: The user or administrator has not consented.",
            "suberror": "consent_required",
        }),
    ));
    let other = token_for(&gateway, "bob", "mcp:tools");
    let response = call(&gateway, &other).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS65001"),
        "{body}"
    );
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn forwarded_records_name_the_mechanism_and_audience_and_no_token() {
    let setup = setup(Answer::Issue { expires_in: 3600 }, "").await;
    let token = token_for(&setup.gateway, "alice", "mcp:tools");
    assert_eq!(call(&setup.gateway, &token).await.status(), 200);
    let records = audit_records(&setup.gateway, 1).await;
    let record = &records[0];
    assert_eq!(record["action"], "allow");
    assert_eq!(record["upstream_identity"], "token_exchange");
    assert_eq!(record["upstream_audience"], "upstream-api");
    let text = record.to_string();
    assert!(!text.contains(&token), "{text}");
    assert!(!text.contains("exchanged-1"), "{text}");
}

#[test]
fn misplaced_or_incomplete_exchange_settings_are_config_errors_naming_the_key() {
    let url = "http://127.0.0.1:9/mcp";
    let exchange = |extra: &str| config(url, "127.0.0.1:9", EXCHANGE, extra);
    let obo = "
      token_url: http://127.0.0.1:9/token
      client_id: app
      client_secret: s
      grant: entra_obo";
    let cases: Vec<(String, &str)> = vec![
        (
            exchange("").replace(
                "  identity:",
                "  oauth: { token_url: \"http://127.0.0.1:9/t\", client_id: a, client_secret: b }\n  identity:",
            ),
            "upstream.identity.exchange: set either upstream.identity.exchange or upstream.oauth",
        ),
        (
            exchange("").replace(
                "  identity:",
                "  headers: { Authorization: \"Bearer static\" }\n  identity:",
            ),
            "upstream.identity.exchange: set either upstream.identity.exchange or an Authorization header",
        ),
        (
            exchange("").replace(&format!("url: {url}"), "command: [node, server.js]"),
            "upstream.identity.exchange: applies to an HTTP upstream",
        ),
        (
            config(
                url,
                "127.0.0.1:9",
                "token_url: http://127.0.0.1:9/token\nclient_id: a\nclient_secret: b",
                "",
            ),
            "upstream.identity.exchange.audience: set audience, resource or scopes",
        ),
        (
            config(url, "", obo, "audience: x"),
            "upstream.identity.exchange.audience: not used by grant: entra_obo",
        ),
        (
            config(url, "", obo, ""),
            "upstream.identity.exchange.scopes: required with grant: entra_obo",
        ),
        (
            exchange("").replace("  enabled: true", "  enabled: false"),
            "upstream.identity.exchange: needs auth.oauth.enabled",
        ),
    ];
    for (yaml, expected) in cases {
        let yaml = yaml.replace("{port}", "5999");
        let (code, _, stderr) = check_config(&yaml, &[]);
        assert_eq!(code, 78, "{yaml}\n{stderr}");
        assert!(
            stderr.contains(&format!("config error: {expected}")),
            "{expected}\n{stderr}"
        );
    }
}

#[tokio::test]
async fn replicas_share_an_exchanged_token_sealed_in_the_sessions_redis() {
    const PUBLIC_URL: &str = "https://mcp.example.test/mcp";
    let redis = RedisServer::start();
    let provider = Provider::new(Answer::Issue { expires_in: 3600 });
    let token_addr = serve_provider(&provider).await.to_string();
    let upstream = Upstream::start().await;
    let yaml = test_config(&upstream.url, &token_addr, EXCHANGE, "")
        .server(&format!("public_url: {PUBLIC_URL}"))
        .yaml(&format!("session:\n  store: {}", redis.url()))
        .build();
    let first = Gateway::start(&yaml).await;
    let second = Gateway::start(&yaml).await;
    let token = hs256(&claims(PUBLIC_URL, "mcp:tools"), Some("dev"));
    assert_eq!(first.post(Some(&token)).await.status(), 200);
    assert_eq!(second.post(Some(&token)).await.status(), 200);
    // One exchange for both replicas: the second found the first's token in Redis.
    assert_eq!(provider.asked().len(), 1);
    assert_eq!(
        seen_authorizations(&upstream),
        vec![Some("Bearer exchanged-1".to_owned()); 2]
    );
    // Stored sealed, under a digest, for as long as it may be reused.
    let keys = redis.command(&["KEYS", "mcpgate:exchange:*"]);
    let key = keys
        .lines()
        .find(|line| line.starts_with("mcpgate:exchange:"))
        .unwrap_or_else(|| panic!("no shared record in {keys:?}"))
        .to_owned();
    let stored = redis.command(&["GET", &key]);
    assert!(
        !stored.contains("exchanged-1"),
        "the token is readable in Redis: {stored}"
    );
    assert!(!key.contains(&token) && !stored.contains(&token));
    let ttl: i64 = redis.command(&["PTTL", &key]).trim().parse().unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_570_000, "{ttl}");

    // A record mcpgate did not seal is a miss, never a token: with the record
    // replaced, a new replica (nothing cached of its own) exchanges again.
    redis.command(&["SET", &key, "1.forged", "PX", "60000"]);
    let third = Gateway::start(&yaml).await;
    assert_eq!(third.post(Some(&token)).await.status(), 200);
    assert_eq!(provider.asked().len(), 2);
    assert_eq!(
        seen_authorizations(&upstream)
            .last()
            .cloned()
            .flatten()
            .as_deref(),
        Some("Bearer exchanged-2")
    );
}

/// An MCP upstream that refuses `Bearer exchanged-1` (revoked at the provider, say)
/// and records the Authorization of each request.
async fn refusing_upstream(seen: Arc<Mutex<Vec<Option<String>>>>) -> String {
    let router = Router::new().route(
        "/mcp",
        post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let authorization = headers
                    .get("authorization")
                    .map(|value| value.to_str().unwrap().to_owned());
                seen.lock().unwrap().push(authorization.clone());
                if authorization.as_deref() == Some("Bearer exchanged-1") {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                axum::Json(json!({"jsonrpc": "2.0", "id": 1, "result": {}})).into_response()
            }
        }),
    );
    format!("http://{}/mcp", spawn_router(router).await)
}

#[tokio::test]
async fn an_exchanged_token_the_upstream_refuses_is_dropped_and_the_next_call_exchanges_again() {
    let provider = Provider::new(Answer::Issue { expires_in: 3600 });
    let token_addr = serve_provider(&provider).await.to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = refusing_upstream(seen.clone()).await;
    let gateway = Gateway::start(&config(&upstream, &token_addr, EXCHANGE, "")).await;
    let token = token_for(&gateway, "alice", "mcp:tools");
    // The upstream's 401 reaches the client as is: the call is not replayed.
    assert_eq!(call(&gateway, &token).await.status(), 401);
    assert_eq!(call(&gateway, &token).await.status(), 200);
    assert_eq!(call(&gateway, &token).await.status(), 200);
    assert_eq!(provider.asked().len(), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Some("Bearer exchanged-1".to_owned()),
            Some("Bearer exchanged-2".to_owned()),
            Some("Bearer exchanged-2".to_owned()),
        ]
    );
}
