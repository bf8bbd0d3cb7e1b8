//! The authorization-server façade against the binary: its metadata, the
//! authorization endpoint, the consent page, the way to the identity provider and
//! back; and the attacks on each (open redirects, CSRF, replays, PKCE downgrades,
//! forged or misdirected ID tokens).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::config::TestConfig;
use crate::common::facade::*;
use crate::common::{Gateway, Keys, Upstream, now, raw_token, sign};

/// A gateway with the façade on, one configured client (`tool`) and a provider
/// whose endpoints are given (no discovery).
fn config(upstream: &Upstream) -> String {
    TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:read]\ntools:\n  echo: [mcp:write]")
        .yaml(
            "authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize?tenant=t1
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret
    scopes: [openid, email]
  clients:
    - client_id: tool
      client_name: Tool <b>Pro</b>
      redirect_uris: [\"http://127.0.0.1/callback\", \"https://tool.example/cb\"]
  consent:
    server_name: Test tools
    scope_descriptions:
      mcp:write: Run tools that change things",
        )
        .build()
}

#[tokio::test]
async fn metadata_names_the_facade_everywhere_clients_look() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream)).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let response = Gateway::client()
            .get(format!("{}{path}", gateway.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["issuer"], gateway.base.as_str(), "{path}");
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{}/oauth/authorize", gateway.base)
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!(["mcp:read", "mcp:write"])
        );
        assert!(doc.get("registration_endpoint").is_none(), "DCR is off");
    }
    let prm: Value = Gateway::client()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            gateway.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        prm["authorization_servers"],
        serde_json::json!([gateway.base])
    );
}

#[tokio::test]
async fn consent_then_the_identity_provider_with_mcpgates_own_request() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream)).await;
    let at = to_consent(&gateway).await;

    let page = browser()
        .get(&at.page_url)
        .header(COOKIE, &at.cookie)
        .send()
        .await
        .unwrap();
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    // Nothing to other sites, and the form's own `Origin` survives (`no-referrer`
    // makes browsers send `Origin: null`, which the consent POST refuses).
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    // Reloading shows the same form: the token still works (FastMCP #4814).
    assert_eq!(csrf_of(&html), at.csrf);
    assert!(html.contains("Test tools"));
    assert!(html.contains("Run tools that change things"));
    assert!(
        html.contains("Tool &#60;b&#62;Pro&#60;/b&#62;")
            || html.contains("Tool &lt;b&gt;Pro&lt;/b&gt;"),
        "{html}"
    );
    assert!(html.contains("listed by the administrator"));
    assert!(!html.contains("<script"));

    let approved = decide(&gateway, &at.request, Some(&at.cookie), &at.csrf, "approve").await;
    assert_eq!(approved.status(), 303);
    let to_idp = location(&approved);
    assert_eq!(to_idp.host_str(), Some("idp.test"));
    assert_eq!(to_idp.path(), "/authorize");
    assert_eq!(query(&to_idp, "tenant").as_deref(), Some("t1"));
    assert_eq!(
        query(&to_idp, "client_id").as_deref(),
        Some("mcpgate-at-idp")
    );
    assert_eq!(query(&to_idp, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&to_idp, "scope").as_deref(), Some("openid email"));
    assert_eq!(
        query(&to_idp, "redirect_uri"),
        Some(format!("{}/oauth/callback", gateway.base))
    );
    assert_eq!(
        query(&to_idp, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = query(&to_idp, "code_challenge").unwrap();
    assert_ne!(
        challenge, CHALLENGE,
        "mcpgate's own PKCE pair, not the client's"
    );
    let state = query(&to_idp, "state").unwrap();
    assert_ne!(state, "st8", "mcpgate's own state, not the client's");
    assert!(state.len() >= 43 && query(&to_idp, "nonce").unwrap().len() >= 43);
    assert!(query(&to_idp, "resource").is_none());

    // The decision is taken once.
    let again = decide(&gateway, &at.request, Some(&at.cookie), &at.csrf, "approve").await;
    assert_eq!(again.status(), 400);
    assert!(again.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn denial_goes_back_to_the_client_with_state_and_issuer() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream)).await;
    let at = to_consent(&gateway).await;
    let denied = decide(&gateway, &at.request, Some(&at.cookie), &at.csrf, "deny").await;
    assert_eq!(denied.status(), 303);
    let back = location(&denied);
    assert!(back.as_str().starts_with(CLIENT_REDIRECT));
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("st8"));
    assert_eq!(query(&back, "iss"), Some(gateway.base.clone()));
}

#[tokio::test]
async fn problems_before_the_client_is_verified_never_redirect() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream)).await;
    let client = browser();
    let base = authorize_url(&gateway, "");
    let cases = [
        base.replace(
            &urlencode(CLIENT_REDIRECT),
            &urlencode("https://evil.example/callback"),
        ),
        base.replace(
            &urlencode(CLIENT_REDIRECT),
            &urlencode("http://127.0.0.1.evil.example/callback"),
        ),
        base.replace(
            &urlencode(CLIENT_REDIRECT),
            &urlencode("http://evil@127.0.0.1/callback"),
        ),
        base.replace(
            &urlencode(CLIENT_REDIRECT),
            &urlencode("http://127.0.0.1/callback#x"),
        ),
        base.replace(
            &urlencode(CLIENT_REDIRECT),
            &urlencode("http://127.0.0.1/callback/other"),
        ),
        base.replace(
            &urlencode(CLIENT_REDIRECT),
            &urlencode("https://tool.example/cb/../evil"),
        ),
        base.replace("client_id=tool", "client_id=nobody"),
        base.replace("client_id=tool", "client_id=tool&client_id=tool"),
        base.replace("client_id=tool&", ""),
        // A bad request from an unknown client is still not redirected.
        base.replace("client_id=tool", "client_id=nobody")
            .replace("code_challenge_method=S256", "code_challenge_method=plain"),
    ];
    for url in cases {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{url}");
        assert!(response.headers().get(LOCATION).is_none(), "{url}");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        let html = response.text().await.unwrap();
        assert!(html.contains("Sign-in cannot continue"), "{url}");
        assert!(
            !html.contains("evil.example"),
            "the page does not echo the attacker's URL"
        );
    }
}

#[tokio::test]
async fn problems_after_verification_go_back_with_state() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream)).await;
    let client = browser();
    let base = authorize_url(&gateway, "");
    let cases = [
        (
            base.replace("&code_challenge_method=S256", ""),
            "invalid_request",
        ),
        (
            base.replace("method=S256", "method=plain"),
            "invalid_request",
        ),
        (
            base.replace(&format!("&code_challenge={CHALLENGE}"), ""),
            "invalid_request",
        ),
        (
            base.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            base.replace("mcp:read%20mcp:write", "mcp:admin"),
            "invalid_scope",
        ),
        (
            format!("{base}&resource={}", urlencode("https://other.example/mcp")),
            "invalid_target",
        ),
    ];
    for (url, code) in cases {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 303, "{url}");
        let back = location(&response);
        assert!(back.as_str().starts_with(CLIENT_REDIRECT), "{back}");
        assert_eq!(query(&back, "error").as_deref(), Some(code), "{url}");
        assert_eq!(query(&back, "state").as_deref(), Some("st8"));
        assert_eq!(query(&back, "iss"), Some(gateway.base.clone()));
    }
    // The MCP resource itself is accepted, and a loopback redirect on another port.
    let own = format!("{base}&resource={}", urlencode(&gateway.mcp)).replace(
        &urlencode(CLIENT_REDIRECT),
        &urlencode("http://127.0.0.1:49152/callback"),
    );
    let response = client.get(&own).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response).path(), "/oauth/consent");
}

#[tokio::test]
async fn consent_needs_this_sign_ins_token_in_this_browser() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream)).await;
    let first = to_consent(&gateway).await;
    let second = to_consent(&gateway).await;

    // Without a token, with a made-up one, or with another sign-in's.
    for csrf in ["", "forged", second.csrf.as_str()] {
        let response = decide(
            &gateway,
            &first.request,
            Some(&first.cookie),
            csrf,
            "approve",
        )
        .await;
        assert_eq!(response.status(), 403, "csrf {csrf:?}");
        assert!(response.headers().get(LOCATION).is_none());
    }
    // The right token from another browser (no cookie, or another browser's).
    let response = decide(&gateway, &first.request, None, &first.csrf, "approve").await;
    assert_eq!(response.status(), 403);
    let response = decide(
        &gateway,
        &first.request,
        Some(&second.cookie),
        &first.csrf,
        "approve",
    )
    .await;
    assert_eq!(response.status(), 403);
    // The page itself is not shown to another browser either.
    let page = browser().get(&first.page_url).send().await.unwrap();
    assert_eq!(page.status(), 403);
    // A cross-site form post, even with the cookie and token.
    let cross_site = browser()
        .post(format!("{}/oauth/consent", gateway.base))
        .header(COOKIE, &first.cookie)
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("request", first.request.as_str()),
            ("csrf", &first.csrf),
            ("decision", "approve"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    // None of that used the sign-in up: the real decision still goes through.
    let response = decide(
        &gateway,
        &first.request,
        Some(&first.cookie),
        &first.csrf,
        "approve",
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response).host_str(), Some("idp.test"));
    // An unknown request id.
    let response = decide(
        &gateway,
        "no-such-request",
        Some(&first.cookie),
        &first.csrf,
        "approve",
    )
    .await;
    assert_eq!(response.status(), 400);
}

// === the identity provider's leg back ===

/// The gateway with the façade in front of `provider` (discovered, not configured).
fn provider_config(upstream: &Upstream, provider: &FakeProvider) -> String {
    provider_config_with(upstream, provider, "")
}

/// [`provider_config`] with more keys under `authorization_server.provider`
/// (each line indented four spaces).
fn provider_config_with(upstream: &Upstream, provider: &FakeProvider, more: &str) -> String {
    TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:read]\ntools:\n  echo: [mcp:write]")
        .yaml(&format!(
            "authorization_server:
  provider:
    issuer: {}
    client_id: mcpgate-at-idp
    client_secret: s3cret
    scopes: [openid]
{more}  clients:
    - client_id: tool
      client_name: Tool
      redirect_uris: [\"http://127.0.0.1/callback\"]",
            provider.issuer
        ))
        .build()
}

/// A sign-in sent to the provider: the browser's cookie and what mcpgate asked of
#[tokio::test]
async fn the_providers_answer_ends_at_the_client_with_an_mcpgate_code() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&provider_config(&upstream, &provider)).await;
    let at = to_provider(&gateway).await;
    provider.answer_with(json!({
        "access_token": "provider-access-token",
        "token_type": "Bearer",
        "id_token": signed(&id_token_claims(&provider, &at.nonce)),
    }));

    let back = callback(
        &gateway,
        &[
            ("code", "provider-code"),
            ("state", &at.state),
            ("iss", &provider.issuer),
        ],
        Some(&at.cookie),
    )
    .await;
    assert_eq!(back.status(), 303);
    let to_client = location(&back);
    assert!(
        to_client.as_str().starts_with(CLIENT_REDIRECT),
        "{to_client}"
    );
    let code = query(&to_client, "code").unwrap();
    assert!(
        code.len() >= 43 && code != "provider-code",
        "mcpgate's own code"
    );
    assert_eq!(query(&to_client, "state").as_deref(), Some("st8"));
    assert_eq!(query(&to_client, "iss"), Some(gateway.base.clone()));

    // The code was redeemed with mcpgate's credentials and its own PKCE verifier.
    let received = provider.received();
    assert_eq!(received.len(), 1);
    let (authorization, fields) = &received[0];
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("mcpgate-at-idp:s3cret")
    );
    assert_eq!(authorization.as_deref(), Some(basic.as_str()));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(field("grant_type").as_deref(), Some("authorization_code"));
    assert_eq!(field("code").as_deref(), Some("provider-code"));
    assert_eq!(
        field("redirect_uri"),
        Some(format!("{}/oauth/callback", gateway.base))
    );
    let verifier = field("code_verifier").unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        at.code_challenge
    );
    assert!(field("client_secret").is_none() && field("resource").is_none());
    assert!(gateway.wait_for_log("code issued").await);
    assert!(!gateway.stderr().contains("provider-access-token"));

    // The provider's answer is used once.
    let again = callback(
        &gateway,
        &[("code", "provider-code"), ("state", &at.state)],
        Some(&at.cookie),
    )
    .await;
    assert_eq!(again.status(), 400);
    assert!(again.headers().get(LOCATION).is_none());
    assert_eq!(provider.received().len(), 1);
}

#[tokio::test]
async fn a_callback_that_is_not_this_browsers_sign_in_issues_no_code() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&provider_config(&upstream, &provider)).await;

    // An unknown state, with a real browser cookie.
    let at = to_provider(&gateway).await;
    let unknown = callback(
        &gateway,
        &[("code", "c"), ("state", "made-up")],
        Some(&at.cookie),
    )
    .await;
    assert_eq!(unknown.status(), 400);
    assert!(unknown.headers().get(LOCATION).is_none());

    // Login CSRF: the attacker's callback URL opened in a browser without the
    // sign-in's cookie, or with another sign-in's.
    provider.answer_with(json!({
        "access_token": "t",
        "id_token": signed(&id_token_claims(&provider, &at.nonce)),
    }));
    let other = to_provider(&gateway).await;
    for cookie in [None, Some(other.cookie.as_str())] {
        let at = to_provider(&gateway).await;
        let response = callback(&gateway, &[("code", "c"), ("state", &at.state)], cookie).await;
        assert_eq!(response.status(), 403, "{cookie:?}");
        assert!(response.headers().get(LOCATION).is_none());
    }
    // A repeated parameter.
    let response = callback(
        &gateway,
        &[("code", "c"), ("state", &at.state), ("state", &other.state)],
        Some(&at.cookie),
    )
    .await;
    assert_eq!(response.status(), 400);
    // An answer naming another issuer (RFC 9207 mix-up).
    let response = callback(
        &gateway,
        &[
            ("code", "c"),
            ("state", &at.state),
            ("iss", "https://evil.example"),
        ],
        Some(&at.cookie),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get(LOCATION).is_none());
    // No issuer at all, from a provider whose metadata says it always sends one.
    let at = to_provider(&gateway).await;
    let response = callback(
        &gateway,
        &[("code", "c"), ("state", &at.state)],
        Some(&at.cookie),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get(LOCATION).is_none());
    assert!(provider.received().is_empty(), "no code was redeemed");
}

#[tokio::test]
async fn the_providers_refusal_goes_back_to_the_client() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&provider_config(&upstream, &provider)).await;
    for (provider_error, client_error) in [
        ("access_denied", "access_denied"),
        ("temporarily_unavailable", "temporarily_unavailable"),
        ("invalid_scope", "server_error"),
    ] {
        let at = to_provider(&gateway).await;
        let back = callback(
            &gateway,
            &[
                ("error", provider_error),
                ("state", &at.state),
                ("iss", &provider.issuer),
            ],
            Some(&at.cookie),
        )
        .await;
        assert_eq!(back.status(), 303);
        let to_client = location(&back);
        assert!(to_client.as_str().starts_with(CLIENT_REDIRECT));
        assert_eq!(query(&to_client, "error").as_deref(), Some(client_error));
        assert!(query(&to_client, "code").is_none());
        assert_eq!(query(&to_client, "state").as_deref(), Some("st8"));
        assert_eq!(query(&to_client, "iss"), Some(gateway.base.clone()));
    }
    assert!(provider.received().is_empty());
}

#[tokio::test]
async fn a_forged_or_misdirected_id_token_issues_no_code() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&provider_config(&upstream, &provider)).await;
    let keys = Keys::load();
    let with = |claims: &Value, field: &str, value: Value| {
        let mut claims = claims.clone();
        claims[field] = value;
        claims
    };
    type Forge = Box<dyn Fn(&Value) -> Value>;
    let cases: Vec<(&str, Forge)> = vec![
        (
            "another sign-in's nonce",
            Box::new(move |c| json!({"id_token": signed(&with(c, "nonce", json!("other-nonce")))})),
        ),
        (
            "another client's token",
            Box::new(move |c| json!({"id_token": signed(&with(c, "aud", json!("someone-else")))})),
        ),
        (
            "another issuer's token",
            Box::new(
                move |c| json!({"id_token": signed(&with(c, "iss", json!("https://evil.example")))}),
            ),
        ),
        (
            "expired",
            Box::new(move |c| json!({"id_token": signed(&with(c, "exp", json!(now() - 600)))})),
        ),
        (
            "signed by another key",
            Box::new(move |c| json!({"id_token": id_token(&keys.rsa2, c)})),
        ),
        (
            "the provider's access token (typ at+jwt) in place of the ID token",
            Box::new(
                |c| json!({"id_token": sign(&Keys::load().rsa, Algorithm::RS256, Some("rsa-1"), c)}),
            ),
        ),
        (
            "alg none",
            Box::new(
                |c| json!({"id_token": raw_token(&json!({"alg": "none", "kid": "rsa-1"}), c, b"")}),
            ),
        ),
        (
            "no ID token though openid was asked for",
            Box::new(|_| json!({})),
        ),
        (
            "the provider refuses the code",
            Box::new(|_| json!({"error": "invalid_grant"})),
        ),
    ];
    for (name, forge) in cases {
        let at = to_provider(&gateway).await;
        let mut answer = forge(&id_token_claims(&provider, &at.nonce));
        if answer.get("error").is_none() {
            answer["access_token"] = json!("provider-access-token");
        }
        provider.answer_with(answer);
        let response = callback(
            &gateway,
            &[
                ("code", "provider-code"),
                ("state", &at.state),
                ("iss", &provider.issuer),
            ],
            Some(&at.cookie),
        )
        .await;
        assert_eq!(response.status(), 502, "{name}");
        assert!(response.headers().get(LOCATION).is_none(), "{name}");
        let html = response.text().await.unwrap();
        assert!(!html.contains("provider-access-token"), "{name}");
        if name == "the provider refuses the code" {
            assert!(html.contains("invalid_grant"), "{html}");
        }
    }
    assert!(!gateway.stderr().contains("provider-access-token"));
}

/// A plain OAuth provider (no discovery, no ID token): the user is `userinfo`'s `id`.
fn plain_oauth_config(upstream: &Upstream, provider: &FakeProvider, auth: &str) -> String {
    let issuer = &provider.issuer;
    TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:read]\ntools:\n  echo: [mcp:write]")
        .yaml(&format!(
            "authorization_server:
  provider:
    issuer: {issuer}
    authorization_endpoint: {issuer}/authorize
    token_endpoint: {issuer}/token
    userinfo_endpoint: {issuer}/userinfo
    subject_claim: id
    client_id: mcpgate-at-idp
{auth}    scopes: [read:user]
  clients:
    - client_id: tool
      redirect_uris: [\"http://127.0.0.1/callback\"]"
        ))
        .build()
}

#[tokio::test]
async fn without_an_id_token_the_user_comes_from_userinfo() {
    let upstream = Upstream::start().await;
    for (auth, expect_secret) in [
        (
            "    client_secret: s3cret\n    auth_method: client_secret_post\n",
            true,
        ),
        ("    auth_method: none\n", false),
    ] {
        let provider = FakeProvider::start().await;
        let gateway = Gateway::start(&plain_oauth_config(&upstream, &provider, auth)).await;
        let at = to_provider(&gateway).await;
        provider
            .answer_with(json!({"access_token": "provider-access-token", "token_type": "bearer"}));
        let back = callback(
            &gateway,
            &[("code", "provider-code"), ("state", &at.state)],
            Some(&at.cookie),
        )
        .await;
        assert_eq!(back.status(), 303, "{auth}");
        let to_client = location(&back);
        assert!(query(&to_client, "code").is_some(), "{to_client}");
        assert_eq!(query(&to_client, "state").as_deref(), Some("st8"));
        assert!(
            gateway.wait_for_log("subject=4242").await,
            "{}",
            gateway.stderr()
        );

        let received = provider.received();
        let (authorization, fields) = &received[0];
        assert!(authorization.is_none(), "no Basic header: {auth}");
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        assert_eq!(field("client_id").as_deref(), Some("mcpgate-at-idp"));
        assert_eq!(
            field("client_secret").as_deref(),
            expect_secret.then_some("s3cret")
        );
        assert!(field("code_verifier").is_some());
    }
    // A userinfo that does not name the user (the wrong token) issues no code.
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&plain_oauth_config(
        &upstream,
        &provider,
        "    auth_method: none\n",
    ))
    .await;
    let at = to_provider(&gateway).await;
    provider.answer_with(json!({"access_token": "another-token"}));
    let response = callback(
        &gateway,
        &[("code", "provider-code"), ("state", &at.state)],
        Some(&at.cookie),
    )
    .await;
    assert_eq!(response.status(), 502);
    assert!(response.headers().get(LOCATION).is_none());
}

#[tokio::test]
async fn mcpgates_token_opens_the_mcp_endpoint_until_the_client_revokes_it() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&provider_config(&upstream, &provider)).await;
    let at = to_provider(&gateway).await;
    let back = sign_in_as(&gateway, &provider, &at, "alice@idp", &at.cookie).await;
    assert_eq!(back.status(), 303);
    let code = query(&location(&back), "code").unwrap();

    let token_request = |code: String| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("code_verifier", VERIFIER.to_owned()),
            ("redirect_uri", CLIENT_REDIRECT.to_owned()),
            ("client_id", "tool".to_owned()),
        ]
    };
    let fields = token_request(code.clone());
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = post_form(&gateway, "/oauth/token", &fields).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let tokens: Value = answer.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp:read mcp:write");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&access).unwrap();
    assert_eq!(
        (header.alg, header.typ.as_deref()),
        (Algorithm::ES256, Some("at+jwt"))
    );

    // The gateway accepts it with no JWKS of its own configured for it.
    let response = gateway.post(Some(&access)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.seen().len(), 1);

    // The JWKS it is published under verifies it too.
    let jwks: Value = browser()
        .get(format!("{}/oauth/jwks", gateway.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"].as_str(), header.kid.as_deref());

    // The client revokes: the token stops at once, although its verification is cached.
    let revoked = post_form(
        &gateway,
        "/oauth/revoke",
        &[("token", &access), ("client_id", "tool")],
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let refused = gateway.post(Some(&access)).await;
    assert_eq!(refused.status(), 401);
    assert!(crate::common::www_authenticate(&refused).contains("invalid_token"));
    assert_eq!(upstream.seen().len(), 1, "nothing more was forwarded");
    assert!(gateway.wait_for_log("revoked").await);
}

#[tokio::test]
async fn a_replayed_code_and_a_reused_refresh_token_end_the_grant() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&provider_config(&upstream, &provider)).await;
    let (_, tokens) = tokens_for(&gateway, &provider, "alice@idp").await;
    let first_access = tokens["access_token"].as_str().unwrap().to_owned();
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // A refresh rotates; the first refresh token used again revokes the grant.
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", first_refresh.as_str()),
        ("client_id", "tool"),
    ];
    let rotated: Value = post_form(&gateway, "/oauth/token", &fields)
        .await
        .json()
        .await
        .unwrap();
    let second_access = rotated["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);
    assert_eq!(gateway.post(Some(&second_access)).await.status(), 200);
    let reused = post_form(&gateway, "/oauth/token", &fields).await;
    assert_eq!(reused.status(), 400);
    let error: Value = reused.json().await.unwrap();
    assert_eq!(error["error"], "invalid_grant");
    for access in [&first_access, &second_access] {
        assert_eq!(gateway.post(Some(access)).await.status(), 401);
    }

    // A second grant: its code replayed revokes its tokens the same way.
    let (code, tokens) = tokens_for(&gateway, &provider, "alice@idp").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(gateway.post(Some(&access)).await.status(), 200);
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("client_id", "tool"),
    ];
    let replay = post_form(&gateway, "/oauth/token", &redeem).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(gateway.post(Some(&access)).await.status(), 401);
}

#[tokio::test]
async fn a_remembered_consent_skips_the_page_for_the_same_user_only() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&provider_config(&upstream, &provider)).await;
    let at = to_provider(&gateway).await;
    let back = sign_in_as(&gateway, &provider, &at, "alice@idp", &at.cookie).await;
    assert_eq!(back.status(), 303);
    let consent = set_cookie(&back, "mcpgate_consent").expect("the approval is remembered");
    let cookies = format!("{}; {consent}", at.cookie);

    // The same request again: straight to the provider, no page.
    let again = browser()
        .get(authorize_url(&gateway, ""))
        .header(COOKIE, &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 303);
    let to_idp = location(&again);
    assert_eq!(to_idp.path(), "/authorize", "{to_idp}");
    let skipped = AtProvider {
        cookie: at.cookie.clone(),
        state: query(&to_idp, "state").unwrap(),
        nonce: query(&to_idp, "nonce").unwrap(),
        code_challenge: query(&to_idp, "code_challenge").unwrap(),
    };
    let back = sign_in_as(&gateway, &provider, &skipped, "alice@idp", &cookies).await;
    assert_eq!(back.status(), 303);
    assert!(query(&location(&back), "code").is_some());

    // More scopes than approved: the page again.
    let wider = browser()
        .get(authorize_url(&gateway, "").replace("scope=mcp:read%20mcp:write", "scope=mcp:read"))
        .header(COOKIE, &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&wider).path(), "/oauth/consent");

    // Someone else signs in at the provider in this browser: no code.
    let again = browser()
        .get(authorize_url(&gateway, ""))
        .header(COOKIE, &cookies)
        .send()
        .await
        .unwrap();
    let to_idp = location(&again);
    assert_eq!(to_idp.path(), "/authorize");
    let other = AtProvider {
        cookie: at.cookie.clone(),
        state: query(&to_idp, "state").unwrap(),
        nonce: query(&to_idp, "nonce").unwrap(),
        code_challenge: query(&to_idp, "code_challenge").unwrap(),
    };
    let refused = sign_in_as(&gateway, &provider, &other, "mallory@idp", &cookies).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get(LOCATION).is_none());
    // …and the browser forgets that approval.
    let forgotten = set_cookie(&refused, "mcpgate_consent").unwrap();
    let cookies = format!("{}; {forgotten}", at.cookie);
    let after = browser()
        .get(authorize_url(&gateway, ""))
        .header(COOKIE, &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&after).path(), "/oauth/consent");
}

#[tokio::test]
async fn a_scope_the_users_claims_do_not_allow_is_withheld() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let config = provider_config_with(
        &upstream,
        &provider,
        "    claim_scopes:\n      groups:\n        writers: [mcp:write]\n",
    );
    let gateway = Gateway::start(&config).await;
    for (groups, expected) in [
        (json!(["readers"]), "mcp:read"),
        (json!(["readers", "writers"]), "mcp:read mcp:write"),
    ] {
        let at = to_provider(&gateway).await;
        let mut claims = id_token_claims(&provider, &at.nonce);
        claims["groups"] = groups.clone();
        provider.answer_with(json!({
            "access_token": "provider-access-token",
            "token_type": "Bearer",
            "id_token": signed(&claims),
        }));
        let back = callback(
            &gateway,
            &[
                ("code", "provider-code"),
                ("state", &at.state),
                ("iss", &provider.issuer),
            ],
            Some(&at.cookie),
        )
        .await;
        let code = query(&location(&back), "code").unwrap();
        let tokens: Value = post_form(
            &gateway,
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("code_verifier", VERIFIER),
                ("client_id", "tool"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(tokens["scope"], expected, "groups {groups}");
    }
}

// === operations: audit records, metrics, the admin listener ===

/// `provider_config` with an audit log and an admin listener on `admin_port`.
fn operated_config(upstream: &Upstream, provider: &FakeProvider, admin_port: u16) -> String {
    TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:read]\ntools:\n  echo: [mcp:write]")
        .server(&format!("admin_listen: 127.0.0.1:{admin_port}"))
        .audit()
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
        .build()
}

/// The façade's audit records (those with an `event`), once `count` are written.
async fn facade_records(gateway: &Gateway, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let records: Vec<Value> = std::fs::read_to_string(gateway.dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|record| record.get("event").is_some())
            .collect();
        if records.len() >= count {
            return records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} façade audit records");
}

fn events(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|record| record["event"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn every_step_of_a_grant_is_audited_and_counted_without_its_secrets() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let admin_port = crate::common::free_port();
    let gateway = Gateway::start(&operated_config(&upstream, &provider, admin_port)).await;

    // Refused before the client is known.
    let unknown = browser()
        .get(format!(
            "{}/oauth/authorize?response_type=code&client_id=nobody",
            gateway.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let (code, tokens) = tokens_for(&gateway, &provider, "alice@idp").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(gateway.post(Some(&access)).await.status(), 200);
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", "tool"),
        ("scope", "mcp:read"),
    ];
    let rotated: Value = post_form(&gateway, "/oauth/token", &fields)
        .await
        .json()
        .await
        .unwrap();
    let next_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        post_form(&gateway, "/oauth/token", &fields).await.status(),
        400
    );

    let records = facade_records(&gateway, 10).await;
    assert_eq!(
        events(&records),
        [
            "authorize_refused",
            "consent_shown",
            "consent_approved",
            "code_issued",
            "code_redeemed",
            "token_issued",
            "token_refreshed",
            "refresh_token_reused",
            "grant_revoked",
            "token_refused",
        ]
    );
    let refused = &records[0];
    assert_eq!(refused["client_id"], "nobody");
    assert!(refused["client_kind"].is_null());
    assert_eq!(refused["error"], "invalid_client");
    assert_eq!(refused["remote_addr"], "127.0.0.1");
    let shown = &records[1];
    assert_eq!(shown["client_id"], "tool");
    assert_eq!(shown["client_kind"], "configured");
    assert_eq!(shown["scopes"], "mcp:read mcp:write");
    assert_eq!(shown["resource"], gateway.mcp);
    assert!(shown["subject"].is_null());
    let issued = &records[3];
    let grant_id = issued["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(issued["subject"], "alice@idp");
    for record in &records[3..9] {
        assert_eq!(record["grant_id"], grant_id, "{record}");
    }
    assert_eq!(records[6]["scopes"], "mcp:read", "the narrowed scopes");
    assert_eq!(records[8]["reason"], "refresh_reuse");
    assert_eq!(records[9]["error"], "invalid_grant");
    assert_eq!(records[9]["client_id"], "tool");
    for record in &records {
        let fields: Vec<&String> = record.as_object().unwrap().keys().collect();
        assert_eq!(fields.len(), 11, "one fixed shape: {record}");
    }

    // No secret reaches the log: not the code, the tokens, the provider's, nor its secret.
    let log = std::fs::read_to_string(gateway.dir().join("audit.jsonl")).unwrap();
    for secret in [
        code.as_str(),
        access.as_str(),
        refresh.as_str(),
        next_refresh.as_str(),
        "provider-access-token",
        "s3cret",
    ] {
        assert!(!log.contains(secret), "the audit log holds a secret");
    }
    // The MCP request's record keeps its shape.
    let requests: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record.get("event").is_none())
        .collect();
    assert_eq!(requests.len(), 1);
    let fields: Vec<&str> = requests[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = crate::common::AUDIT_FIELDS.to_vec();
    expected.sort_unstable();
    let mut fields = fields;
    fields.sort_unstable();
    assert_eq!(fields, expected);

    let metrics = browser()
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (event, count) in [
        ("token_issued", 1),
        ("grant_revoked", 1),
        ("authorize_refused", 1),
        ("consent_denied", 0),
    ] {
        let series =
            format!("mcpgate_authorization_server_events_total{{event=\"{event}\"}} {count}");
        assert_eq!(
            metrics.contains(&series),
            count > 0,
            "{series} in:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_denial_a_replayed_code_and_a_stray_callback_are_audited() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&operated_config(
        &upstream,
        &provider,
        crate::common::free_port(),
    ))
    .await;
    let at = to_consent(&gateway).await;
    let denied = decide(&gateway, &at.request, Some(&at.cookie), &at.csrf, "deny").await;
    assert_eq!(denied.status(), 303);
    let (code, _) = tokens_for(&gateway, &provider, "alice@idp").await;
    let replay = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("client_id", "tool"),
    ];
    assert_eq!(
        post_form(&gateway, "/oauth/token", &replay).await.status(),
        400
    );
    let stray = callback(&gateway, &[("state", "never-issued")], None).await;
    assert!(stray.status().is_client_error());
    let records = facade_records(&gateway, 11).await;
    let names = events(&records);
    assert_eq!(&names[..2], ["consent_shown", "consent_denied"]);
    assert_eq!(
        &names[7..],
        [
            "code_replayed",
            "grant_revoked",
            "token_refused",
            "callback_refused"
        ]
    );
    assert_eq!(records[10]["reason"], "unknown or used state");
    assert_eq!(records[10]["remote_addr"], "127.0.0.1");
    assert_eq!(records[4]["event"], "code_issued");
    let grant_id = &records[4]["grant_id"];
    assert!(grant_id.is_string());
    assert_eq!(&records[7]["grant_id"], grant_id);
    assert_eq!(&records[8]["grant_id"], grant_id);
    assert_eq!(records[8]["reason"], "code_replay");
}

#[tokio::test]
async fn the_admin_listener_lists_clients_and_grants_and_revokes_them() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let admin_port = crate::common::free_port();
    let gateway = Gateway::start(&operated_config(&upstream, &provider, admin_port)).await;
    let admin = format!("http://127.0.0.1:{admin_port}/authorization-server");
    let (_, alice) = tokens_for(&gateway, &provider, "alice@idp").await;
    let (_, bob) = tokens_for(&gateway, &provider, "bob@idp").await;
    let token = |tokens: &Value| tokens["access_token"].as_str().unwrap().to_owned();
    let get = |path: String| async move {
        let response = browser().get(path).send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };

    let (status, clients) = get(format!("{admin}/clients")).await;
    assert_eq!(status, 200);
    assert_eq!(
        clients["clients"],
        json!([{
            "client_id": "tool",
            "client_name": "Tool",
            "kind": "configured",
            "redirect_uris": [CLIENT_REDIRECT],
            "confidential": false,
        }])
    );

    let (status, listed) = get(format!("{admin}/grants?subject=alice%40idp")).await;
    assert_eq!(status, 200);
    let grants = listed["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["client_id"], "tool");
    assert_eq!(grants[0]["subject"], "alice@idp");
    assert_eq!(grants[0]["scopes"], json!(["mcp:read", "mcp:write"]));
    assert_eq!(grants[0]["resource"], gateway.mcp);
    assert!(grants[0]["created"].as_str().unwrap().ends_with('Z'));
    let alice_grant = grants[0]["id"].as_str().unwrap().to_owned();
    let (_, by_client) = get(format!("{admin}/grants?client_id=tool")).await;
    assert_eq!(by_client["grants"].as_array().unwrap().len(), 2);
    let (status, error) = get(format!("{admin}/grants")).await;
    assert_eq!(
        (status.as_u16(), &error["error"]),
        (400, &json!("invalid_request"))
    );

    let revoke = |body: Value| {
        let url = format!("{admin}/grants/revoke");
        async move {
            let response = browser().post(url).json(&body).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = revoke(json!({"subject": "alice@idp", "client_id": "tool"})).await;
    assert_eq!(status, 400, "one selector at a time");
    let (status, answer) = revoke(json!({"subject": "alice@idp"})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["revoked"], json!([alice_grant]));
    assert_eq!(gateway.post(Some(&token(&alice))).await.status(), 401);
    assert_eq!(gateway.post(Some(&token(&bob))).await.status(), 200);
    let (_, listed) = get(format!("{admin}/grants?subject=alice%40idp")).await;
    assert_eq!(listed["grants"], json!([]));

    let (_, answer) = revoke(json!({"client_id": "tool"})).await;
    assert_eq!(answer["revoked"].as_array().unwrap().len(), 1);
    assert_eq!(gateway.post(Some(&token(&bob))).await.status(), 401);

    let records = facade_records(&gateway, 12).await;
    let revoked: Vec<&Value> = records
        .iter()
        .filter(|record| record["event"] == "grant_revoked")
        .collect();
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[0]["grant_id"], alice_grant);
    assert_eq!(revoked[0]["subject"], "alice@idp");
    assert!(revoked.iter().all(|record| record["reason"] == "admin"));
}
