//! The authorization-server façade on two replicas sharing a real Redis: a sign-in
//! started on one finishes on the other, a token issued by one opens the MCP
//! endpoint of the other, and a revocation (a reused refresh token, a replayed code)
//! on one stops the grant's access tokens on both at once. Without Redis, the
//! façade's tokens are refused with 503, never accepted unchecked.
//!
//! Needs `redis-server` on PATH: `scripts/test` installs it (Debian's package).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::common::config::TestConfig;
use crate::common::facade::*;
use crate::common::redis::RedisServer;
use crate::common::{Gateway, Upstream};

/// Two replicas behind one name: the first's address is the public URL (and so
/// the issuer) of both, as a load balancer's would be.
struct Replicas {
    a: Gateway,
    b: Gateway,
    /// Holds the signing key file both read.
    _keys: tempfile::TempDir,
}

fn replica_config(
    upstream: &Upstream,
    provider: &FakeProvider,
    redis: &str,
    public_url: &str,
    key_file: &str,
) -> String {
    let secret_key = STANDARD.encode([42u8; 32]);
    TestConfig::oauth(&upstream.url)
        .server(&format!("public_url: {public_url}"))
        .scopes("initialize: [mcp:read]\ntools:\n  echo: [mcp:write]")
        .yaml(&format!("session:\n  store: {redis}"))
        .yaml(&format!(
            "authorization_server:
  secret_key: {secret_key}
  signing_key_file: {key_file}
  provider:
    issuer: {issuer}
    client_id: mcpgate-at-idp
    client_secret: s3cret
    scopes: [openid]
  clients:
    - client_id: tool
      client_name: Tool
      redirect_uris: [\"http://127.0.0.1/callback\"]
  identity_assertion_issuers:
    - issuer: {issuer}
      jwks_uri: {issuer}/jwks",
            issuer = provider.issuer
        ))
        .build()
}

async fn replicas(upstream: &Upstream, provider: &FakeProvider, redis: &RedisServer) -> Replicas {
    replicas_with_admin(upstream, provider, redis, None).await
}

/// [`replicas`], with the second's admin listener on `admin_port`.
async fn replicas_with_admin(
    upstream: &Upstream,
    provider: &FakeProvider,
    redis: &RedisServer,
    admin_port: Option<u16>,
) -> Replicas {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("signing.pem");
    let key_file = key_file.to_str().unwrap();
    // The first makes the key file; the second, started after, reads it.
    let a = Gateway::start(&replica_config(
        upstream,
        provider,
        &redis.url(),
        "http://127.0.0.1:{port}/mcp",
        key_file,
    ))
    .await;
    let mut second = replica_config(upstream, provider, &redis.url(), &a.mcp, key_file);
    if let Some(port) = admin_port {
        second = second.replacen(
            "server:\n",
            &format!("server:\n  admin_listen: 127.0.0.1:{port}\n"),
            1,
        );
    }
    let b = Gateway::start(&second).await;
    Replicas { a, b, _keys: keys }
}

/// Signs in through both replicas: authorization and consent on `a`, the
/// provider's callback on `b` (same browser cookie). The client's code.
async fn code_across(replicas: &Replicas, provider: &FakeProvider) -> String {
    let at = to_provider(&replicas.a).await;
    let back = sign_in_as(&replicas.b, provider, &at, "alice@idp", &at.cookie).await;
    assert_eq!(back.status(), 303, "{}", replicas.b.stderr());
    query(&location(&back), "code").unwrap()
}

async fn redeem(gateway: &Gateway, code: &str) -> reqwest::Response {
    post_form(
        gateway,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", CLIENT_REDIRECT),
            ("client_id", "tool"),
        ],
    )
    .await
}

async fn refresh(gateway: &Gateway, token: &str) -> reqwest::Response {
    post_form(
        gateway,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "tool"),
        ],
    )
    .await
}

async fn tokens(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    (
        tokens["access_token"].as_str().unwrap().to_owned(),
        tokens["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn assert_invalid_grant(response: reqwest::Response, says: &str) {
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains(says),
        "{body}"
    );
}

async fn assert_revoked(response: reqwest::Response) {
    assert_eq!(response.status(), 401);
    assert!(crate::common::www_authenticate(&response).contains("invalid_token"));
}

#[tokio::test]
async fn a_sign_in_crosses_replicas_and_a_reused_refresh_token_stops_the_grant_on_both() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let replicas = replicas(&upstream, &provider, &redis).await;

    // While at the provider, the sign-in is in Redis, sealed: not even the nonce
    // mcpgate sent there is readable.
    let at = to_provider(&replicas.a).await;
    let keys = redis.command(&["KEYS", "mcpgate:as:pending:*"]);
    let key = keys.lines().next().unwrap().to_owned();
    let stored = redis.command(&["GET", &key]);
    assert!(stored.starts_with("1."), "{stored}");
    assert!(
        !stored.contains(&at.nonce) && !stored.contains("callback"),
        "{stored}"
    );
    let back = sign_in_as(&replicas.b, &provider, &at, "alice@idp", &at.cookie).await;
    assert_eq!(back.status(), 303, "{}", replicas.b.stderr());
    let code = query(&location(&back), "code").unwrap();
    assert_eq!(
        redis.command(&["EXISTS", &key]),
        "0",
        "the sign-in is spent"
    );
    let stored_keys = redis.command(&["KEYS", "mcpgate:as:*"]);
    assert!(
        !stored_keys.contains(&code),
        "codes are kept by digest: {stored_keys}"
    );

    // Token from the first, the MCP call on the second.
    let (access, first_refresh) = tokens(redeem(&replicas.a, &code).await).await;
    let response = replicas.b.post(Some(&access)).await;
    assert_eq!(response.status(), 200, "{}", replicas.b.stderr());
    assert_eq!(upstream.seen().len(), 1);

    // Rotated on the first; the spent token presented to the second is a reuse.
    let (_, second_refresh) = tokens(refresh(&replicas.a, &first_refresh).await).await;
    assert_invalid_grant(refresh(&replicas.b, &first_refresh).await, "already used").await;

    // The grant is over everywhere, at once, although both verified the token before.
    assert_revoked(replicas.a.post(Some(&access)).await).await;
    assert_revoked(replicas.b.post(Some(&access)).await).await;
    assert_eq!(upstream.seen().len(), 1, "nothing more was forwarded");
    assert_invalid_grant(refresh(&replicas.a, &second_refresh).await, "unknown").await;
}

#[tokio::test]
async fn a_code_replayed_on_the_other_replica_ends_the_grant() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let replicas = replicas(&upstream, &provider, &redis).await;
    let code = code_across(&replicas, &provider).await;

    let (access, refresh_token) = tokens(redeem(&replicas.a, &code).await).await;
    assert_eq!(replicas.a.post(Some(&access)).await.status(), 200);
    assert_invalid_grant(redeem(&replicas.b, &code).await, "already used").await;

    assert_revoked(replicas.a.post(Some(&access)).await).await;
    assert_revoked(replicas.b.post(Some(&access)).await).await;
    assert_invalid_grant(refresh(&replicas.b, &refresh_token).await, "unknown").await;
    assert_eq!(upstream.seen().len(), 1);
}

/// An ID-JAG's `jti` is spent in Redis: redeemed on one replica, the same
/// assertion is refused on the other, and the token works on both.
#[tokio::test]
async fn an_identity_assertion_redeemed_on_one_replica_is_refused_on_the_other() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let replicas = replicas(&upstream, &provider, &redis).await;
    let claims = crate::authorization_server_id_jag::claims(&replicas.a, &provider, "jti-r");
    let assertion = crate::authorization_server_id_jag::id_jag(&claims);
    let fields = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion.as_str()),
        ("client_id", "tool"),
    ];
    let redeem = |gateway| post_form(gateway, "/oauth/token", &fields);
    let answer = redeem(&replicas.a).await;
    assert_eq!(answer.status(), 200);
    let tokens: Value = answer.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    assert_invalid_grant(redeem(&replicas.b).await, "already used").await;
    assert_eq!(replicas.b.post(Some(access)).await.status(), 200);
    assert_eq!(upstream.seen().len(), 1);
}

/// Both replicas presented the same code at the same moment: the spend is one
/// atomic step in Redis, so one of them sees a replay (never two redemptions, never
/// two "unknown code"s), and the grant ends. The other may have got tokens before the
/// revocation, or been refused after it; either way no token of the grant works.
#[tokio::test]
async fn a_code_presented_to_both_replicas_at_once_is_redeemed_once() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let replicas = replicas(&upstream, &provider, &redis).await;
    for round in 1..=3 {
        let code = code_across(&replicas, &provider).await;
        let (a, b) = tokio::join!(redeem(&replicas.a, &code), redeem(&replicas.b, &code));
        let mut answers = Vec::new();
        for response in [a, b] {
            let status = response.status().as_u16();
            answers.push((status, response.json::<Value>().await.unwrap()));
        }
        let replays = answers
            .iter()
            .filter(|(status, body)| {
                *status == 400
                    && body["error_description"]
                        .as_str()
                        .unwrap()
                        .contains("already used")
            })
            .count();
        assert_eq!(replays, 1, "{answers:?}");
        if let Some((_, body)) = answers.iter().find(|(status, _)| *status == 200) {
            let access = body["access_token"].as_str().unwrap();
            assert_revoked(replicas.a.post(Some(access)).await).await;
        }
        let revoked = redis.command(&["KEYS", "mcpgate:as:revoked:*"]);
        assert_eq!(revoked.lines().count(), round, "{revoked}");
    }
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn without_redis_the_facades_tokens_are_refused_until_it_answers_again() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let replicas = replicas(&upstream, &provider, &redis).await;
    let code = code_across(&replicas, &provider).await;
    let (access, _) = tokens(redeem(&replicas.a, &code).await).await;
    assert_eq!(replicas.b.post(Some(&access)).await.status(), 200);

    // Whether the grant was revoked cannot be known: 503, nothing forwarded.
    redis.stop();
    let response = replicas.b.post(Some(&access)).await;
    assert_eq!(response.status(), 503, "{}", replicas.b.stderr());
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("revoked"), "{body}");
    assert_eq!(upstream.seen().len(), 1);
    // The token endpoint says so too, rather than guessing.
    let answer = redeem(&replicas.a, "any-code").await;
    assert_eq!(answer.status(), 503);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");

    // Redis back (empty: the grant is unknown, not revoked): the token works again.
    redis.launch();
    for _ in 0..100 {
        if replicas.b.post(Some(&access)).await.status() == 200 {
            assert_eq!(upstream.seen().len(), 2);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the façade's tokens did not recover: {}",
        replicas.b.stderr()
    );
}

/// Replicas must open each other's records and accept each other's tokens: a key
/// each process makes up would do neither, so `check` refuses it, naming the key.
#[test]
fn replicas_without_a_shared_secret_key_or_signing_key_exit_78() {
    let provider_yaml = "authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret";
    let base = TestConfig::oauth("http://127.0.0.1:1/mcp")
        .yaml("session:\n  store: redis://127.0.0.1:1")
        .yaml(provider_yaml);
    // `check` starts nothing: the port needs no substitution.
    let without_secret = base.build().replace("{port}", "5025");
    let secret_key = STANDARD.encode([42u8; 32]);
    let without_signing_key = format!("{without_secret}  secret_key: {secret_key}\n");
    for (yaml, key) in [
        (without_secret, "authorization_server.secret_key"),
        (without_signing_key, "authorization_server.signing_key"),
    ] {
        let (code, _, stderr) = crate::common::check_config(&yaml, &[]);
        assert_eq!(code, 78, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "config error: {key}: is required when session.store is Redis"
            )),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn one_replicas_admin_lists_and_revokes_a_users_grants_for_both() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let provider = FakeProvider::start().await;
    let admin_port = crate::common::free_port();
    let Replicas { a, b, _keys } =
        replicas_with_admin(&upstream, &provider, &redis, Some(admin_port)).await;
    let mut access = Vec::new();
    for user in ["alice@idp", "bob@idp"] {
        let at = to_provider(&a).await;
        let back = sign_in_as(&b, &provider, &at, user, &at.cookie).await;
        let code = query(&location(&back), "code").unwrap();
        access.push(tokens(redeem(&a, &code).await).await.0);
    }
    let admin = format!("http://127.0.0.1:{admin_port}/authorization-server");
    let listed: Value = browser()
        .get(format!("{admin}/grants?subject=alice%40idp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let grants = listed["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{listed}");
    assert_eq!(grants[0]["subject"], "alice@idp");
    let by_client: Value = browser()
        .get(format!("{admin}/grants?client_id=tool"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        by_client["grants"].as_array().unwrap().len(),
        2,
        "{by_client}"
    );

    let revoked: Value = browser()
        .post(format!("{admin}/grants/revoke"))
        .header("content-type", "application/json")
        .body(r#"{"subject":"alice@idp"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 1, "{revoked}");
    // Revoked through B's admin: A refuses alice's token at once, bob's still works.
    assert_revoked(a.post(Some(&access[0])).await).await;
    assert_eq!(a.post(Some(&access[1])).await.status(), 200);
    let after: Value = browser()
        .get(format!("{admin}/grants?subject=alice%40idp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["grants"], serde_json::json!([]));
}
