//! Enterprise-managed authorization against the binary: an Identity Assertion JWT
//! Authorization Grant (ID-JAG) signed by a trusted identity provider becomes an
//! mcpgate access token at the token endpoint, with no browser and no refresh
//! token; a replayed, misdirected, foreign or stale assertion issues nothing.

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::common::config::TestConfig;
use crate::common::facade::*;
use crate::common::{Gateway, Keys, Upstream, now};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The façade with the fake provider trusted for ID-JAGs (and an issuer whose
/// keys cannot be fetched), two public clients, and audit records.
fn config(upstream: &Upstream, provider: &FakeProvider) -> String {
    TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:read]\ntools:\n  echo: [mcp:write]")
        .audit()
        .yaml(&format!(
            "authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret
  clients:
    - client_id: tool
      redirect_uris: [\"http://127.0.0.1/callback\"]
    - client_id: other
      redirect_uris: [\"http://127.0.0.1/callback\"]
  identity_assertion_issuers:
    - issuer: {issuer}
      jwks_uri: {issuer}/jwks
    - issuer: http://127.0.0.1:1
      jwks_uri: http://127.0.0.1:1/jwks",
            issuer = provider.issuer
        ))
        .build()
}

pub fn claims(gateway: &Gateway, provider: &FakeProvider, jti: &str) -> Value {
    let now = now();
    json!({
        "iss": provider.issuer,
        "sub": "alice@corp",
        "aud": gateway.base,
        "client_id": "tool",
        "resource": gateway.mcp,
        "scope": "mcp:read mcp:write unknown:scope",
        "jti": jti,
        "iat": now,
        "exp": now + 300,
    })
}

/// Signed as the identity provider signs ID-JAGs (its key `rsa-1`).
pub fn id_jag(claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.typ = Some("oauth-id-jag+jwt".into());
    jsonwebtoken::encode(&header, claims, &Keys::load().rsa).unwrap()
}

async fn redeem(
    gateway: &Gateway,
    client: &str,
    assertion: &str,
    more: &[(&str, &str)],
) -> (u16, Value) {
    let mut fields = vec![
        ("grant_type", JWT_BEARER),
        ("assertion", assertion),
        ("client_id", client),
    ];
    fields.extend_from_slice(more);
    let answer = post_form(gateway, "/oauth/token", &fields).await;
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test]
async fn an_identity_assertion_becomes_an_access_token_without_a_browser() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&config(&upstream, &provider)).await;

    let doc: Value = browser()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            gateway.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(JWT_BEARER))
    );

    let assertion = id_jag(&claims(&gateway, &provider, "jti-1"));
    let (status, tokens) = redeem(&gateway, "tool", &assertion, &[]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    // What the provider allowed, of the scopes this server knows.
    assert_eq!(tokens["scope"], "mcp:read mcp:write");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // The MCP endpoint accepts it, for the assertion's user.
    let response = gateway.post(Some(&access)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.seen().len(), 1);

    // The same assertion again is refused, and issues nothing.
    let (status, error) = redeem(&gateway, "tool", &assertion, &[]).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(error.get("access_token").is_none());

    // A request may narrow the scopes, not widen them.
    let narrow = id_jag(&claims(&gateway, &provider, "jti-2"));
    let (status, error) = redeem(&gateway, "tool", &narrow, &[("scope", "mcp:admin")]).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, tokens) = redeem(&gateway, "tool", &narrow, &[("scope", "mcp:read")]).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "mcp:read");

    // Its grant is revocable like any other: the client revokes the access token.
    let revoked = post_form(
        &gateway,
        "/oauth/revoke",
        &[("token", &access), ("client_id", "tool")],
    )
    .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(gateway.post(Some(&access)).await.status(), 401);
    assert_eq!(upstream.seen().len(), 1, "nothing more was forwarded");

    let records = audit_events(&gateway, 6).await;
    for event in [
        "assertion_redeemed",
        "token_issued",
        "token_refused",
        "grant_revoked",
    ] {
        assert!(records.iter().any(|e| e == event), "{event} in {records:?}");
    }
}

#[tokio::test]
async fn a_misdirected_foreign_or_stale_assertion_issues_nothing() {
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let gateway = Gateway::start(&config(&upstream, &provider)).await;
    let good = claims(&gateway, &provider, "shared-jti");
    let with = |field: &str, value: Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    let mut untyped = jsonwebtoken::Header::new(Algorithm::RS256);
    untyped.kid = Some("rsa-1".into());
    let id_token_shaped = jsonwebtoken::encode(&untyped, &good, &Keys::load().rsa).unwrap();
    let mut other_key = jsonwebtoken::Header::new(Algorithm::RS256);
    other_key.kid = Some("rsa-1".into());
    other_key.typ = Some("oauth-id-jag+jwt".into());
    let forged = jsonwebtoken::encode(&other_key, &good, &Keys::load().rsa2).unwrap();
    let cases = [
        (
            "tool",
            id_jag(&with("aud", json!("https://other-as.example"))),
        ),
        (
            "tool",
            id_jag(&with("resource", json!("https://elsewhere.example/mcp"))),
        ),
        ("tool", id_jag(&with("client_id", json!("other")))),
        ("other", id_jag(&good)),
        (
            "tool",
            id_jag(&with("iss", json!("https://untrusted-idp.example"))),
        ),
        ("tool", id_jag(&with("exp", json!(now() - 600)))),
        ("tool", id_token_shaped),
        ("tool", forged),
    ];
    for (index, (client, assertion)) in cases.iter().enumerate() {
        let (status, error) = redeem(&gateway, client, assertion, &[]).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (400, Some("invalid_grant")),
            "case {index}: {error}"
        );
        assert!(error.get("access_token").is_none());
    }
    let (status, error) = redeem(&gateway, "tool", "", &[]).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(upstream.seen().len(), 0);

    // A trusted issuer whose keys cannot be fetched: 503, nothing guessed.
    let (status, error) = redeem(
        &gateway,
        "tool",
        &id_jag(&with("iss", json!("http://127.0.0.1:1"))),
        &[],
    )
    .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );

    // None of the refusals spent the `jti` the good assertion carries.
    let (status, tokens) = redeem(&gateway, "tool", &id_jag(&good), &[]).await;
    assert_eq!(status, 200, "{tokens}");
}

/// The events of the façade's audit records, once `count` are written.
async fn audit_events(gateway: &Gateway, count: usize) -> Vec<String> {
    for _ in 0..100 {
        let events: Vec<String> = std::fs::read_to_string(gateway.dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|record| record.get("event")?.as_str().map(str::to_owned))
            .collect();
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} façade audit records");
}

#[test]
fn a_trusted_issuer_listed_twice_or_over_plain_http_exits_78() {
    let provider = "authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret
  identity_assertion_issuers:
    - issuer: https://corp.example
      jwks_uri: https://corp.example/jwks";
    let twice = format!(
        "{provider}\n    - issuer: https://corp.example/\n      jwks_uri: https://corp.example/keys"
    );
    let plain = format!(
        "{provider}\n    - issuer: https://other.example\n      jwks_uri: http://other.example/jwks"
    );
    for (more, key) in [
        (twice, "identity_assertion_issuers[1].issuer"),
        (plain, "identity_assertion_issuers[1].jwks_uri"),
    ] {
        let yaml = TestConfig::oauth("http://127.0.0.1:1/mcp")
            .yaml(&more)
            .build()
            .replace("{port}", "5025");
        let (code, _, stderr) = crate::common::check_config(&yaml, &[]);
        assert_eq!(code, 78, "{stderr}");
        assert!(
            stderr.contains(&format!("config error: authorization_server.{key}:")),
            "{stderr}"
        );
    }
}
