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

fn connection_yaml(idp: &FakeProvider, service: &FakeProvider, extra: &str) -> String {
    let idp = &idp.issuer;
    let svc = &service.issuer;
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
    let upstream = Upstream::start().await;
    let idp = FakeProvider::start().await;
    let service = FakeProvider::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .upstream(&connection_yaml(&idp, &service, extra))
        .build();
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

/// The whole flow for `subject` through `url`, the service granting `grant`.
async fn connect(setup: &Setup, url: &str, subject: &str, grant: Value) {
    let at = open_link(url).await.expect("the link opens");
    let signed_in = sign_in(setup, &at, subject).await;
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.text().await);
    let to_service = location(&signed_in);
    assert!(
        to_service
            .as_str()
            .starts_with(&format!("{}/authorize", setup.service.issuer))
    );
    assert_eq!(query(&to_service, "client_id").as_deref(), Some("gh-app"));
    assert_eq!(query(&to_service, "scope").as_deref(), Some("repo"));
    let redirect = format!("{}/connect/github/callback", setup.gateway.base);
    assert_eq!(
        query(&to_service, "redirect_uri").as_deref(),
        Some(redirect.as_str())
    );
    setup.service.answer_with(grant);
    let done = callback(
        &setup.gateway,
        &query(&to_service, "state").unwrap(),
        "service-code",
        &at.cookie,
    )
    .await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("connected"));
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
    connect(&setup, &url, "alice", grant("gh-token-alice")).await;

    let (status, retried) = call_modern(&setup, "alice", "echo").await;
    assert_eq!(status, 200, "{retried}");
    assert!(retried.get("result").is_some(), "{retried}");
    assert_eq!(
        authorization_seen(&setup.upstream),
        [Some("Bearer gh-token-alice".to_owned())]
    );

    // Bob has no connection: an elicitation of his own, never Alice's token.
    let (_, bob) = call_legacy(&setup, "bob", "echo").await;
    let bob_url = legacy_url(&bob);
    assert_eq!(setup.upstream.seen().len(), 1);
    connect(&setup, &bob_url, "bob", grant("gh-token-bob")).await;
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
        .upstream(&connection_yaml(&idp, &service, ""))
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
}
