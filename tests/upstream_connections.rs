//! `upstream.identity.connection` against the real binary: a tool call of a user
//! without a connection gets a URL elicitation (2026-07-28 `input_required`,
//! 2025-11-25 `-32042`) and nothing reaches the upstream; the connect flow (sign-in
//! at a fake identity provider, then a fake third-party service) stores the
//! user's token, which the retried call carries upstream. The link works once,
//! only for its user, and never hands one user's token to another.

use crate::common::facade::{FakeProvider, browser, location, query, set_cookie, signed};
use crate::common::*;
use serde_json::{Value, json};

const MODERN: &str = "2026-07-28";

struct Setup {
    upstream: Upstream,
    idp: FakeProvider,
    service: FakeProvider,
    gateway: Gateway,
}

fn connection_yaml(idp: &FakeProvider, svc: &str, extra: &str) -> String {
    let idp = &idp.issuer;
    format!(
        "identity:\n  connection:\n    name: github\n    provider:\n      issuer: {svc}\n      \
         authorization_endpoint: {svc}/authorize\n      token_endpoint: {svc}/token\n      \
         client_id: gh-app\n      client_secret: gh-secret\n      scopes: [repo]\n    \
         sign_in:\n      issuer: https://issuer.test\n      authorization_endpoint: {idp}/authorize\n      \
         token_endpoint: {idp}/token\n      jwks_uri: {idp}/jwks\n      client_id: mcpgate-at-idp\n      \
         client_secret: idp-secret\n{extra}"
    )
}

async fn setup(extra: &str) -> Setup {
    setup_with(extra, None).await
}

/// With the service at `service` instead of a `FakeProvider`.
async fn setup_with(extra: &str, service_issuer: Option<&str>) -> Setup {
    setup_operated(extra, service_issuer, None).await
}

/// With an audit log, and an admin listener on `admin_port` when given.
async fn setup_operated(
    extra: &str,
    service_issuer: Option<&str>,
    admin_port: Option<u16>,
) -> Setup {
    let upstream = Upstream::start().await;
    let idp = FakeProvider::start().await;
    let service = FakeProvider::start().await;
    let issuer = service_issuer.unwrap_or(&service.issuer).to_owned();
    let mut config = TestConfig::oauth(&upstream.url)
        .upstream(&connection_yaml(&idp, &issuer, extra))
        .audit();
    if let Some(port) = admin_port {
        config = config.server(&format!("admin_listen: 127.0.0.1:{port}"));
    }
    let config = config.build();
    let gateway = Gateway::start(&config).await;
    Setup {
        upstream,
        idp,
        service,
        gateway,
    }
}

/// A caller token naming `subject`.
fn token_of(gateway: &Gateway, subject: &str) -> String {
    let mut claims = claims(&gateway.mcp, "");
    claims["sub"] = json!(subject);
    hs256(&claims, Some("dev"))
}

/// A 2025-11-25 `tools/call` of `tool` by `subject`.
async fn call_legacy(setup: &Setup, subject: &str, tool: &str) -> (u16, Value) {
    let response = Request::post(&setup.gateway)
        .bearer(&token_of(&setup.gateway, subject))
        .header("mcp-protocol-version", "2025-11-25")
        .json(&tools_call(7, tool))
        .send()
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A 2026-07-28 `tools/call` of `tool` by `subject`.
async fn call_modern(setup: &Setup, subject: &str, tool: &str) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": tool,
        "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        },
    }});
    let response = Request::post(&setup.gateway)
        .bearer(&token_of(&setup.gateway, subject))
        .headers(&[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ])
        .json(&body)
        .send()
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The connect URL of a 2025-11-25 elicitation error.
fn legacy_url(answer: &Value) -> String {
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    let elicitation = &answer["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert!(elicitation["elicitationId"].as_str().unwrap().len() >= 32);
    assert!(elicitation["message"].as_str().unwrap().contains("github"));
    elicitation["url"].as_str().unwrap().to_owned()
}

/// What the connect flow's first leg left: the browser cookie and the sign-in's
/// parameters at the identity provider.
struct AtSignIn {
    cookie: String,
    state: String,
    nonce: String,
}

/// Opens the connect link in a browser.
async fn open_link(url: &str) -> Result<AtSignIn, u16> {
    let response = browser().get(url).send().await.unwrap();
    if response.status() != 303 {
        return Err(response.status().as_u16());
    }
    let cookie = set_cookie(&response, "mcpgate_connect").expect("a browser cookie");
    let to_idp = location(&response);
    assert_eq!(to_idp.path(), "/authorize");
    assert_eq!(
        query(&to_idp, "client_id").as_deref(),
        Some("mcpgate-at-idp")
    );
    assert_eq!(
        query(&to_idp, "code_challenge_method").as_deref(),
        Some("S256")
    );
    Ok(AtSignIn {
        cookie,
        state: query(&to_idp, "state").unwrap(),
        nonce: query(&to_idp, "nonce").unwrap(),
    })
}

async fn callback(gateway: &Gateway, state: &str, code: &str, cookie: &str) -> reqwest::Response {
    browser()
        .get(format!(
            "{}/connect/github/callback?code={code}&state={state}",
            gateway.base
        ))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// The identity provider signs `subject` in; the callback's answer.
async fn sign_in(setup: &Setup, at: &AtSignIn, subject: &str) -> reqwest::Response {
    let now = now();
    setup.idp.answer_with(json!({
        "access_token": "idp-access-token",
        "token_type": "Bearer",
        "id_token": signed(&json!({
            "iss": "https://issuer.test",
            "sub": subject,
            "aud": "mcpgate-at-idp",
            "nonce": at.nonce,
            "iat": now,
            "exp": now + 300,
        })),
    }));
    callback(&setup.gateway, &at.state, "idp-code", &at.cookie).await
}

/// The whole flow for `subject` through `url`, the service granting `grant`
/// (`None`: a service of the test's own answers).
async fn connect(setup: &Setup, url: &str, subject: &str, grant: Option<Value>) {
    let at = open_link(url).await.expect("the link opens");
    let signed_in = sign_in(setup, &at, subject).await;
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.text().await);
    let to_service = location(&signed_in);
    assert_eq!(to_service.path(), "/authorize");
    assert_eq!(query(&to_service, "client_id").as_deref(), Some("gh-app"));
    assert_eq!(query(&to_service, "scope").as_deref(), Some("repo"));
    let redirect = format!("{}/connect/github/callback", setup.gateway.base);
    assert_eq!(
        query(&to_service, "redirect_uri").as_deref(),
        Some(redirect.as_str())
    );
    let own = grant.is_some();
    if let Some(grant) = grant {
        setup.service.answer_with(grant);
    }
    let done = callback(
        &setup.gateway,
        &query(&to_service, "state").unwrap(),
        "service-code",
        &at.cookie,
    )
    .await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("connected"));
    if !own {
        return;
    }
    // The code was redeemed with PKCE, at the redirect URI the browser was sent with.
    let (authorization, form) = setup.service.received().last().cloned().unwrap();
    assert!(authorization.unwrap().starts_with("Basic "));
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(field("code").as_deref(), Some("service-code"));
    assert_eq!(field("redirect_uri").as_deref(), Some(redirect.as_str()));
    assert_eq!(field("code_verifier").unwrap().len(), 43);
}

fn grant(token: &str) -> Value {
    json!({"access_token": token, "token_type": "bearer", "scope": "repo"})
}

fn authorization_seen(upstream: &Upstream) -> Vec<Option<String>> {
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
async fn a_user_without_a_connection_gets_a_url_elicitation_in_either_revision_and_nothing_upstream()
 {
    let setup = setup("").await;
    let (status, legacy) = call_legacy(&setup, "alice", "echo").await;
    assert_eq!(status, 200, "{legacy}");
    assert_eq!(legacy["id"], 7);
    let url = legacy_url(&legacy);
    assert!(
        url.starts_with(&format!("{}/connect/github?link=", setup.gateway.base)),
        "{url}"
    );

    let (status, modern) = call_modern(&setup, "alice", "echo").await;
    assert_eq!(status, 200, "{modern}");
    assert_eq!(modern["id"], 9);
    let result = &modern["result"];
    assert_eq!(result["resultType"], "input_required", "{modern}");
    let request = &result["inputRequests"]["mcpgate_connect_github"];
    assert_eq!(request["method"], "elicitation/create");
    assert_eq!(request["params"]["mode"], "url");
    let modern_url = request["params"]["url"].as_str().unwrap();
    assert_ne!(modern_url, url, "each elicitation has its own link");

    // A 2026-07-28 client that declares no URL elicitation is not sent one.
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "echo",
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        },
    }});
    let response = Request::post(&setup.gateway)
        .bearer(&token_of(&setup.gateway, "alice"))
        .headers(&[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ])
        .json(&body)
        .send()
        .await;
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32021, "{answer}");
    assert_eq!(
        answer["error"]["data"]["requiredCapabilities"],
        json!({"elicitation": {"url": {}}})
    );
    assert!(
        setup.upstream.seen().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn after_connecting_the_retried_call_carries_the_users_token_and_only_theirs() {
    let setup = setup("").await;
    let (_, answer) = call_modern(&setup, "alice", "echo").await;
    let url = answer["result"]["inputRequests"]["mcpgate_connect_github"]["params"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    connect(&setup, &url, "alice", Some(grant("gh-token-alice"))).await;

    // The retry answers mcpgate's input request (and one of the upstream's).
    let body = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {
        "name": "echo",
        "arguments": {},
        "inputResponses": {
            "mcpgate_connect_github": {"action": "accept"},
            "upstream_own": {"action": "accept", "content": {"x": 1}},
        },
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
        },
    }});
    let retried = Request::post(&setup.gateway)
        .bearer(&token_of(&setup.gateway, "alice"))
        .headers(&[
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ])
        .json(&body)
        .send()
        .await;
    assert_eq!(retried.status(), 200);
    let retried: Value = retried.json().await.unwrap();
    assert!(retried.get("result").is_some(), "{retried}");
    // mcpgate's answer stays here; the upstream's own reaches it.
    let forwarded: Value = serde_json::from_slice(&setup.upstream.seen()[0].body).unwrap();
    assert_eq!(
        forwarded["params"]["inputResponses"],
        json!({"upstream_own": {"action": "accept", "content": {"x": 1}}})
    );
    assert_eq!(
        authorization_seen(&setup.upstream),
        [Some("Bearer gh-token-alice".to_owned())]
    );

    // Bob has no connection: an elicitation of his own, never Alice's token.
    let (_, bob) = call_legacy(&setup, "bob", "echo").await;
    let bob_url = legacy_url(&bob);
    assert_eq!(setup.upstream.seen().len(), 1);
    connect(&setup, &bob_url, "bob", Some(grant("gh-token-bob"))).await;
    call_legacy(&setup, "bob", "echo").await;
    call_legacy(&setup, "alice", "echo").await;
    assert_eq!(
        authorization_seen(&setup.upstream),
        [
            Some("Bearer gh-token-alice".to_owned()),
            Some("Bearer gh-token-bob".to_owned()),
            Some("Bearer gh-token-alice".to_owned()),
        ]
    );
    // The caller's own token never went upstream.
    for seen in setup.upstream.seen() {
        let sent = seen.headers.get("authorization").unwrap().to_str().unwrap();
        assert!(sent.starts_with("Bearer gh-token-"));
    }
}

#[tokio::test]
async fn a_link_opened_by_another_signed_in_user_is_refused_and_connects_nobody() {
    let setup = setup("").await;
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    let url = legacy_url(&answer);
    // Mallory got Alice's link and signs in as herself.
    let at = open_link(&url).await.unwrap();
    let refused = sign_in(&setup, &at, "mallory").await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("another user"));
    assert!(
        setup.service.received().is_empty(),
        "never sent to the service"
    );
    // Neither Alice nor Mallory is connected.
    for user in ["alice", "mallory"] {
        let (_, answer) = call_legacy(&setup, user, "echo").await;
        legacy_url(&answer);
    }
    assert!(setup.upstream.seen().is_empty());
}

#[tokio::test]
async fn a_used_altered_or_foreign_browser_link_is_refused() {
    let setup = setup("").await;
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    let url = legacy_url(&answer);
    // Altered: another reference.
    let altered = format!("{}x", url);
    assert_eq!(open_link(&altered).await.err(), Some(400));
    assert_eq!(
        open_link(&format!("{}/connect/github", setup.gateway.base))
            .await
            .err(),
        Some(400)
    );
    // Used once: replayed, refused.
    let at = open_link(&url).await.unwrap();
    assert_eq!(open_link(&url).await.err(), Some(400));
    // The callback in a browser without the flow's cookie.
    let other_browser = callback(&setup.gateway, &at.state, "idp-code", "mcpgate_connect=x").await;
    assert_eq!(other_browser.status(), 403);
    // …which also spent the flow: the right browser cannot finish it afterwards.
    let late = sign_in(&setup, &at, "alice").await;
    assert_eq!(late.status(), 400);
    assert!(setup.idp.received().is_empty(), "no code was redeemed");
}

#[tokio::test]
async fn only_the_listed_tools_need_the_connection() {
    let setup = setup("    tools: [create_issue]\n").await;
    let (status, answer) = call_legacy(&setup, "alice", "echo").await;
    assert_eq!(status, 200);
    assert!(answer.get("result").is_some(), "{answer}");
    assert_eq!(authorization_seen(&setup.upstream), [None]);
    let (_, answer) = call_legacy(&setup, "alice", "create_issue").await;
    legacy_url(&answer);
    assert_eq!(setup.upstream.seen().len(), 1);
}

#[tokio::test]
async fn an_api_key_caller_cannot_use_a_connection() {
    let upstream = Upstream::start().await;
    let idp = FakeProvider::start().await;
    let service = FakeProvider::start().await;
    let key = "mcpk_ci_secret-one";
    let hash = argon2::PasswordHasher::hash_password(&argon2::Argon2::default(), key.as_bytes())
        .unwrap()
        .to_string();
    let config = TestConfig::new(&upstream.url)
        .api_key_with_scopes("ci", &hash, r#"["*"]"#)
        .upstream(&connection_yaml(&idp, &service.issuer, ""))
        .build();
    let gateway = Gateway::start(&config).await;
    let response = Request::post(&gateway)
        .bearer(key)
        .json(&tools_call(3, "echo"))
        .send()
        .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 3);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("github")
    );
    assert!(upstream.seen().is_empty());
}

#[test]
fn configuration_errors_name_the_key() {
    let cases = [
        (
            "    header: Mcp-Session-Id\n",
            "upstream.identity.connection.header",
        ),
        ("    tools: []\n", "upstream.identity.connection.tools"),
        (
            "    store: redis\n",
            "upstream.identity.connection.secret_key",
        ),
        (
            "    store: redis\n    secret_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "upstream.identity.connection.store",
        ),
        (
            "    secret_key: c2hvcnQ=\n",
            "upstream.identity.connection.secret_key",
        ),
    ];
    let idp = "http://127.0.0.1:9";
    for (extra, key) in cases {
        let yaml = format!(
            "identity:\n  connection:\n    name: github\n    provider:\n      issuer: {idp}\n      \
             authorization_endpoint: {idp}/a\n      token_endpoint: {idp}/t\n      client_id: c\n    \
             sign_in:\n      issuer: {idp}\n      client_id: m\n{extra}"
        );
        let config = TestConfig::new("http://127.0.0.1:9/mcp")
            .upstream(&yaml)
            .build()
            .replace("{port}", "0");
        let (code, _, stderr) = check_config(&config, &[]);
        assert_eq!(code, 78, "{extra}");
        assert!(stderr.contains(key), "{extra}: {stderr}");
    }
    // No sign-in, with upstream.oauth on Authorization, without a token endpoint.
    let base = "identity:\n  connection:\n    name: github\n    provider:\n      issuer: http://127.0.0.1:9\n      \
                authorization_endpoint: http://127.0.0.1:9/a\n      client_id: c\n";
    let config = TestConfig::new("http://127.0.0.1:9/mcp")
        .upstream(base)
        .build()
        .replace("{port}", "0");
    let (code, _, stderr) = check_config(&config, &[]);
    assert_eq!(code, 78);
    assert!(
        stderr.contains("upstream.identity.connection.provider.token_endpoint"),
        "{stderr}"
    );
    // A token exchange sets the upstream's Authorization too.
    let both = "identity:\n  exchange:\n    token_url: http://127.0.0.1:9/t\n    client_id: x\n    \
                client_secret: s\n    audience: up\n  connection:\n    name: github\n    provider:\n      \
                issuer: http://127.0.0.1:9\n      authorization_endpoint: http://127.0.0.1:9/a\n      \
                token_endpoint: http://127.0.0.1:9/t\n      client_id: c\n    sign_in:\n      \
                issuer: http://127.0.0.1:9\n      client_id: m\n";
    let config = TestConfig::oauth("http://127.0.0.1:9/mcp")
        .upstream(both)
        .build()
        .replace("{port}", "0");
    let (code, _, stderr) = check_config(&config, &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("upstream.identity.connection.header")
            && stderr.contains("upstream.identity.exchange sets Authorization too"),
        "{stderr}"
    );
}

/// A service that rotates refresh tokens: each refresh spends the current one
/// and issues the next; a spent one is a replay (counted, and refused as
/// `invalid_grant`, as rotating providers do).
#[derive(Clone, Default)]
struct Rotating {
    state: std::sync::Arc<std::sync::Mutex<RotatingState>>,
}

#[derive(Default)]
struct RotatingState {
    generation: u32,
    refreshes: u32,
    replays: u32,
    /// Lifetime of the tokens issued from now on.
    expires_in: u64,
    refuse: bool,
    /// Each revocation request's form.
    revoked: Vec<std::collections::HashMap<String, String>>,
}

impl Rotating {
    async fn start() -> (Self, String) {
        let service = Self::default();
        service.state.lock().unwrap().expires_in = 30;
        let router = axum::Router::new()
            .route("/token", axum::routing::post(rotating_token))
            .route(
                "/revoke",
                axum::routing::post(
                    |axum::extract::State(service): axum::extract::State<Rotating>,
                     body: String| async move {
                        let form = url::form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect();
                        service.with(|state| state.revoked.push(form));
                        http::StatusCode::OK
                    },
                ),
            )
            .with_state(service.clone());
        let addr = spawn_router(router).await;
        (service, format!("http://{addr}"))
    }

    fn with<T>(&self, f: impl FnOnce(&mut RotatingState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}

async fn rotating_token(
    axum::extract::State(service): axum::extract::State<Rotating>,
    body: String,
) -> (http::StatusCode, axum::Json<Value>) {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    // Slow enough that concurrent calls overlap the refresh.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut state = service.state.lock().unwrap();
    if form["grant_type"] == "refresh_token" {
        state.refreshes += 1;
        let current = format!("refresh-{}", state.generation);
        if state.refuse || form["refresh_token"] != current {
            if form["refresh_token"] != current {
                state.replays += 1;
            }
            return (
                http::StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant"})),
            );
        }
        state.generation += 1;
    }
    let generation = state.generation;
    (
        http::StatusCode::OK,
        axum::Json(json!({
            "access_token": format!("access-{generation}"),
            "refresh_token": format!("refresh-{generation}"),
            "expires_in": state.expires_in,
            "token_type": "bearer",
        })),
    )
}

/// Alice connected to a rotating service whose first token is already due.
async fn connected_to_rotating() -> (Setup, Rotating) {
    let (service, issuer) = Rotating::start().await;
    let setup = setup_with("", Some(&issuer)).await;
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    connect(&setup, &legacy_url(&answer), "alice", None).await;
    (setup, service)
}

#[tokio::test]
async fn fifty_concurrent_calls_of_one_user_cause_one_refresh() {
    let (setup, service) = connected_to_rotating().await;
    // The first token expires in 30 s, inside refresh_before (60 s): due now.
    service.with(|state| state.expires_in = 3600);
    let calls = (0..50).map(|_| call_legacy(&setup, "alice", "echo"));
    for (status, answer) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(
        service.with(|state| state.refreshes),
        1,
        "one refresh for 50 calls"
    );
    let seen = authorization_seen(&setup.upstream);
    assert_eq!(seen.len(), 50);
    assert!(
        seen.iter()
            .all(|sent| sent.as_deref() == Some("Bearer access-1")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn rotated_refresh_tokens_are_never_replayed_under_concurrent_calls() {
    let (setup, service) = connected_to_rotating().await;
    // Every token issued is due at once: each call refreshes, one at a time, each
    // with the refresh token the one before it stored.
    service.with(|state| state.expires_in = 10);
    let calls = (0..5).map(|_| call_legacy(&setup, "alice", "echo"));
    for (status, answer) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{answer}");
    }
    let (refreshes, replays) = service.with(|state| (state.refreshes, state.replays));
    assert_eq!(replays, 0, "a spent refresh token was sent again");
    assert_eq!(refreshes, 5);
    let mut seen: Vec<String> = authorization_seen(&setup.upstream)
        .into_iter()
        .map(Option::unwrap)
        .collect();
    seen.sort();
    let expected: Vec<String> = (1..=5).map(|n| format!("Bearer access-{n}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_refused_refresh_removes_the_connection_and_elicits_again() {
    let (setup, service) = connected_to_rotating().await;
    service.with(|state| state.refuse = true);
    let (status, answer) = call_legacy(&setup, "alice", "echo").await;
    assert_eq!(status, 200);
    legacy_url(&answer);
    assert!(setup.upstream.seen().is_empty(), "nothing upstream");
    // Gone, not retried: the next call elicits without asking the service.
    service.with(|state| state.refuse = false);
    let refreshes = service.with(|state| state.refreshes);
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    legacy_url(&answer);
    assert_eq!(service.with(|state| state.refreshes), refreshes);
}

#[tokio::test]
async fn the_admin_listener_lists_and_deletes_a_users_connection_and_audit_names_the_mechanism() {
    let admin_port = free_port();
    let setup = setup_operated("", None, Some(admin_port)).await;
    let admin = format!("http://127.0.0.1:{admin_port}/connections");
    let alice = "issuer=https://issuer.test&subject=alice";
    let listed = |query: &'static str| {
        let admin = admin.clone();
        async move {
            let response = browser()
                .get(format!("{admin}?{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(listed(alice).await, json!({"connections": []}));

    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    let grant = json!({
        "access_token": "gh-token-alice",
        "refresh_token": "gh-refresh-alice",
        "expires_in": 3600,
        "scope": "repo",
    });
    connect(&setup, &legacy_url(&answer), "alice", Some(grant)).await;
    let (status, _) = call_legacy(&setup, "alice", "echo").await;
    assert_eq!(status, 200);

    let shown = listed(alice).await;
    let text = shown.to_string();
    assert!(
        !text.contains("gh-token") && !text.contains("gh-refresh"),
        "{text}"
    );
    let connection = &shown["connections"][0];
    assert_eq!(connection["name"], "github");
    assert_eq!(connection["scope"], "repo");
    assert_eq!(connection["refreshable"], true);
    let expires = connection["expires_at"].as_u64().unwrap();
    assert!(
        expires > now() + 3000 && expires <= now() + 3600,
        "{expires}"
    );
    assert_eq!(
        listed("issuer=https://issuer.test&subject=bob").await,
        json!({"connections": []})
    );

    let deleted = browser()
        .post(format!("{admin}/delete"))
        .json(&json!({"issuer": "https://issuer.test", "subject": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({"deleted": true})
    );
    assert_eq!(listed(alice).await, json!({"connections": []}));
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    legacy_url(&answer);
    assert_eq!(setup.upstream.seen().len(), 1, "deleted: not sent again");

    // Audit: the mechanism is named; no record holds the service's token.
    let records = audit_records(&setup.gateway, 3).await;
    for record in &records {
        assert_eq!(record["upstream_identity"], "connection:github", "{record}");
        assert!(!record.to_string().contains("gh-token"), "{record}");
    }
    assert_eq!(records[0]["action"], "deny");
    assert_eq!(records[1]["action"], "allow");
}

// === two replicas sharing connections through Redis ===

struct Replicas {
    a: Gateway,
    b: Gateway,
    upstream: Upstream,
    idp: FakeProvider,
    _redis: crate::common::redis::RedisServer,
}

async fn replicas(service_issuer: &str) -> Replicas {
    let redis = crate::common::redis::RedisServer::start();
    let upstream = Upstream::start().await;
    let idp = FakeProvider::start().await;
    let key = "    store: redis\n    secret_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let config = |public_url: &str| {
        TestConfig::oauth(&upstream.url)
            .server(&format!("public_url: {public_url}"))
            .yaml(&format!("session:\n  store: {}", redis.url()))
            .upstream(&connection_yaml(&idp, service_issuer, key))
            .build()
    };
    let a = Gateway::start(&config("http://127.0.0.1:{port}/mcp")).await;
    let b = Gateway::start(&config(&a.mcp)).await;
    Replicas {
        a,
        b,
        upstream,
        idp,
        _redis: redis,
    }
}

/// A 2025-11-25 `tools/call` by `subject` at `at` (tokens are for the first
/// replica's public URL, which both serve).
async fn call_at(replicas: &Replicas, at: &Gateway, subject: &str) -> (u16, Value) {
    let response = Request::post(at)
        .bearer(&token_of(&replicas.a, subject))
        .header("mcp-protocol-version", "2025-11-25")
        .json(&tools_call(7, "echo"))
        .send()
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn two_replicas_share_links_flows_and_tokens_through_redis_sealed() {
    let service = FakeProvider::start().await;
    let replicas = replicas(&service.issuer).await;
    // The elicitation from the first replica…
    let (_, answer) = call_at(&replicas, &replicas.a, "alice").await;
    let url = legacy_url(&answer);
    // …opened on the second, the sign-in's callback on the first, the service's
    // on the second.
    let at = open_link(&url.replace(&replicas.a.base, &replicas.b.base))
        .await
        .unwrap();
    let now = now();
    replicas.idp.answer_with(json!({
        "access_token": "idp-access-token",
        "id_token": signed(&json!({
            "iss": "https://issuer.test", "sub": "alice", "aud": "mcpgate-at-idp",
            "nonce": at.nonce, "iat": now, "exp": now + 300,
        })),
    }));
    let signed_in = callback(&replicas.a, &at.state, "idp-code", &at.cookie).await;
    assert_eq!(signed_in.status(), 303);
    let state = query(&location(&signed_in), "state").unwrap();
    service.answer_with(json!({"access_token": "gh-token-shared", "scope": "repo"}));
    let done = callback(&replicas.b, &state, "service-code", &at.cookie).await;
    assert_eq!(done.status(), 200);
    // Either replica sends Alice's token.
    for gateway in [&replicas.a, &replicas.b] {
        let (status, answer) = call_at(&replicas, gateway, "alice").await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(
        authorization_seen(&replicas.upstream),
        [
            Some("Bearer gh-token-shared".to_owned()),
            Some("Bearer gh-token-shared".to_owned())
        ]
    );
    // In Redis: sealed, keyed by digest, no name and no token in sight.
    let keys = replicas._redis.command(&["KEYS", "mcpgate:connection:*"]);
    assert!(keys.contains("mcpgate:connection:github:user:"), "{keys}");
    assert!(!keys.contains("alice"), "{keys}");
    let key = keys
        .lines()
        .find(|line| line.contains(":user:"))
        .unwrap()
        .trim()
        .to_owned();
    let stored = replicas._redis.command(&["GET", &key]);
    assert!(stored.starts_with("1."), "{stored}");
    assert!(!stored.contains("gh-token"), "{stored}");
}

#[tokio::test]
async fn two_replicas_refresh_a_rotating_token_once_between_them() {
    let (service, issuer) = Rotating::start().await;
    let replicas = replicas(&issuer).await;
    let (_, answer) = call_at(&replicas, &replicas.a, "alice").await;
    let at = open_link(&legacy_url(&answer)).await.unwrap();
    let now = now();
    replicas.idp.answer_with(json!({
        "access_token": "idp-access-token",
        "id_token": signed(&json!({
            "iss": "https://issuer.test", "sub": "alice", "aud": "mcpgate-at-idp",
            "nonce": at.nonce, "iat": now, "exp": now + 300,
        })),
    }));
    let signed_in = callback(&replicas.a, &at.state, "idp-code", &at.cookie).await;
    let state = query(&location(&signed_in), "state").unwrap();
    let done = callback(&replicas.a, &state, "service-code", &at.cookie).await;
    assert_eq!(done.status(), 200);
    // The first token is due (30 s < 60 s): 20 calls on each replica at once.
    service.with(|state| state.expires_in = 3600);
    let calls = (0..40).map(|n| {
        let gateway = if n % 2 == 0 { &replicas.a } else { &replicas.b };
        call_at(&replicas, gateway, "alice")
    });
    for (status, answer) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{answer}");
    }
    let (refreshes, replays) = service.with(|state| (state.refreshes, state.replays));
    assert_eq!((refreshes, replays), (1, 0));
    let seen = authorization_seen(&replicas.upstream);
    assert_eq!(seen.len(), 40);
    assert!(
        seen.iter()
            .all(|sent| sent.as_deref() == Some("Bearer access-1")),
        "{seen:?}"
    );
}

/// Signs `subject` in on the manage page: the cookie and the page.
async fn manage_as(setup: &Setup, subject: &str) -> (String, String) {
    let response = browser()
        .get(format!("{}/connect/github/manage", setup.gateway.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = set_cookie(&response, "mcpgate_connect").unwrap();
    let to_idp = location(&response);
    let at = AtSignIn {
        cookie: cookie.clone(),
        state: query(&to_idp, "state").unwrap(),
        nonce: query(&to_idp, "nonce").unwrap(),
    };
    let page = sign_in(setup, &at, subject).await;
    assert_eq!(page.status(), 200);
    (cookie, page.text().await.unwrap())
}

fn form_token(html: &str) -> String {
    let marker = "name=\"form\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn post_disconnect(setup: &Setup, form: &str, cookie: &str, origin: Option<&str>) -> u16 {
    let mut request = browser()
        .post(format!("{}/connect/github/disconnect", setup.gateway.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(format!("form={form}"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_signed_in_user_disconnects_with_a_single_use_form_bound_to_the_browser() {
    let setup = setup("").await;
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    connect(
        &setup,
        &legacy_url(&answer),
        "alice",
        Some(grant("gh-token-alice")),
    )
    .await;

    // Bob signs in to manage: he has nothing to remove, and cannot touch Alice's.
    let (_, bob_page) = manage_as(&setup, "bob").await;
    assert!(bob_page.contains("no github connection"), "{bob_page}");
    assert!(!bob_page.contains("name=\"form\""));

    let (cookie, page) = manage_as(&setup, "alice").await;
    assert!(page.contains("Disconnect"), "{page}");
    let form = form_token(&page);
    // Another browser, another site, a made-up token: refused, still connected.
    assert_eq!(
        post_disconnect(&setup, &form, "mcpgate_connect=other", None).await,
        403
    );
    let (cookie2, page2) = manage_as(&setup, "alice").await;
    let form2 = form_token(&page2);
    assert_eq!(
        post_disconnect(&setup, &form2, &cookie2, Some("https://evil.example")).await,
        403
    );
    assert_eq!(post_disconnect(&setup, "made-up", &cookie, None).await, 400);
    let (status, _) = call_legacy(&setup, "alice", "echo").await;
    assert_eq!(status, 200);
    assert_eq!(setup.upstream.seen().len(), 1, "still connected");

    // The real form from the browser that signed in.
    let (cookie, page) = manage_as(&setup, "alice").await;
    let form = form_token(&page);
    let origin = setup.gateway.base.clone();
    assert_eq!(
        post_disconnect(&setup, &form, &cookie, Some(&origin)).await,
        200
    );
    assert_eq!(
        post_disconnect(&setup, &form, &cookie, Some(&origin)).await,
        400,
        "single use"
    );
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    legacy_url(&answer);
    assert_eq!(setup.upstream.seen().len(), 1);
}

#[tokio::test]
async fn without_sign_in_the_facades_provider_signs_users_in_as_the_facades_tokens_name_them() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let service = FakeProvider::start().await;
    let svc = &service.issuer;
    let config = TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:read]\ntools:\n  echo: [mcp:write]")
        .upstream(&format!(
            "identity:\n  connection:\n    name: github\n    provider:\n      issuer: {svc}\n      \
             authorization_endpoint: {svc}/authorize\n      token_endpoint: {svc}/token\n      \
             client_id: gh-app\n      client_secret: gh-secret\n      scopes: [repo]\n"
        ))
        .yaml(&format!(
            "authorization_server:
  provider:
    issuer: {}
    client_id: mcpgate-at-idp
    client_secret: s3cret
    scopes: [openid]
  clients:
    - client_id: tool
      client_name: Tool
      redirect_uris: [\"http://127.0.0.1/callback\"]",
            provider.issuer
        ))
        .build();
    let gateway = Gateway::start(&config).await;
    // A façade token: iss is mcpgate, sub the provider's.
    let (_, tokens) = crate::common::facade::tokens_for(&gateway, &provider, "alice@idp").await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let call = || async {
        let response = Request::post(&gateway)
            .bearer(&token)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&tools_call(7, "echo"))
            .send()
            .await;
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    let (status, answer) = call().await;
    assert_eq!(status, 200, "{answer}");
    let url = legacy_url(&answer);

    let opened = browser().get(&url).send().await.unwrap();
    assert_eq!(opened.status(), 303);
    let cookie = set_cookie(&opened, "mcpgate_connect").unwrap();
    let to_idp = location(&opened);
    assert!(
        to_idp
            .as_str()
            .starts_with(&format!("{}/authorize", provider.issuer))
    );
    assert_eq!(
        query(&to_idp, "client_id").as_deref(),
        Some("mcpgate-at-idp")
    );
    let now = now();
    provider.answer_with(json!({
        "access_token": "provider-access-token",
        "id_token": signed(&json!({
            "iss": provider.issuer, "sub": "alice@idp", "aud": "mcpgate-at-idp",
            "nonce": query(&to_idp, "nonce").unwrap(), "iat": now, "exp": now + 300,
        })),
    }));
    let signed_in = callback(&gateway, &query(&to_idp, "state").unwrap(), "c1", &cookie).await;
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.text().await);
    let to_service = location(&signed_in);
    service.answer_with(grant("gh-token-alice"));
    let done = callback(
        &gateway,
        &query(&to_service, "state").unwrap(),
        "c2",
        &cookie,
    )
    .await;
    assert_eq!(done.status(), 200);

    let (status, answer) = call().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        authorization_seen(&upstream),
        [Some("Bearer gh-token-alice".to_owned())]
    );
}

#[tokio::test]
async fn disconnecting_revokes_the_grant_at_a_service_with_a_revocation_endpoint() {
    let (service, issuer) = Rotating::start().await;
    let setup = setup_with(
        &format!("    revocation_endpoint: {issuer}/revoke\n"),
        Some(&issuer),
    )
    .await;
    let (_, answer) = call_legacy(&setup, "alice", "echo").await;
    connect(&setup, &legacy_url(&answer), "alice", None).await;
    let (cookie, page) = manage_as(&setup, "alice").await;
    assert_eq!(
        post_disconnect(&setup, &form_token(&page), &cookie, None).await,
        200
    );
    let revoked = service.with(|state| state.revoked.clone());
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["token"], "refresh-0");
    assert_eq!(revoked[0]["token_type_hint"], "refresh_token");
}
