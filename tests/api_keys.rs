//! API keys against the real binary: prefix dispatch, argon2id verification, scopes,
//! failure rate limiting, coexistence with OAuth, and `mcpgate hash-key`.

use crate::common::*;
use argon2::{Argon2, PasswordHasher};
use jsonwebtoken::Algorithm;

fn hash(key: &str) -> String {
    Argon2::default()
        .hash_password(key.as_bytes())
        .unwrap()
        .to_string()
}

/// A key shaped like a JWT (three dot-separated base64url segments, over 100
/// characters): seed 003's troubleshooting row, where shape-based routing broke.
fn jwt_shaped_key() -> String {
    format!(
        "mcpk_dotted_{}.{}.{}",
        "a".repeat(40),
        "b".repeat(40),
        "c".repeat(40)
    )
}

/// Three API keys (`ci`, `readonly`, `dotted`, the last shaped like a JWT).
fn keys_config(upstream: &Upstream) -> TestConfig {
    TestConfig::new(&upstream.url)
        .api_key_with_scopes(
            "ci",
            &hash("mcpk_ci_secret-one"),
            "[mcp:connect, mcp:tools]",
        )
        .api_key_with_scopes("readonly", &hash("mcpk_readonly_secret-two"), "[mcp:tools]")
        .api_key_with_scopes("dotted", &hash(&jwt_shaped_key()), r#"["*"]"#)
        .scopes("initialize: [mcp:connect]")
}

#[tokio::test]
async fn api_keys_alone_authenticate_with_their_scopes() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&keys_config(&upstream).build()).await;

    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 200);
    // Cached on success: the second request is the same principal.
    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 200);
    // `*` grants every scope; the JWT-shaped key goes to the key store by its prefix.
    assert_eq!(gateway.post(Some(&jwt_shaped_key())).await.status(), 200);

    let response = gateway.post(Some("mcpk_readonly_secret-two")).await;
    assert_eq!(response.status(), 403);
    // No OAuth, so no RFC 9728 document to point to.
    assert_eq!(
        www_authenticate(&response),
        "Bearer error=\"insufficient_scope\", scope=\"mcp:connect\", error_description=\"missing required scopes: mcp:connect\""
    );

    let response = gateway.post(None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        www_authenticate(&response),
        "Bearer realm=\"mcp\", scope=\"mcp:connect\""
    );
    for (key, reason) in [
        ("mcpk_ci_wrong-secret", "API key is invalid"),
        ("mcpk_nobody_secret", "API key is unknown"),
        ("mcpk_nounderscore", "API key is invalid"),
    ] {
        let response = gateway.post(Some(key)).await;
        assert_eq!(response.status(), 401, "{key}");
        assert!(
            www_authenticate(&response).contains(reason),
            "{key}: {}",
            www_authenticate(&response)
        );
    }
    // With OAuth off, a JWT is not a credential at all.
    let jwt = hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"));
    assert_eq!(gateway.post(Some(&jwt)).await.status(), 401);
    // Metadata is not served without OAuth.
    let metadata = gateway.get("/.well-known/oauth-protected-resource").await;
    assert_eq!(metadata.status(), 404);
    assert!(upstream.never_saw_authorization());
}

#[tokio::test]
async fn failed_attempts_per_key_are_rate_limited() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&keys_config(&upstream).build()).await;
    for attempt in 0..9 {
        assert_eq!(
            gateway.post(Some("mcpk_ci_guess")).await.status(),
            401,
            "attempt {attempt}"
        );
    }
    // A right secret (verified by argon2, not cached yet) is not counted as a failure...
    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 200);
    // ...so the tenth wrong one is still judged, and only then is the id locked.
    assert_eq!(gateway.post(Some("mcpk_ci_guess")).await.status(), 401);
    let response = gateway.post(Some("mcpk_ci_guess")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");
    // The key verified before the lockout is cached, and keeps working.
    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 200);
    // Other keys are unaffected.
    assert_eq!(gateway.post(Some(&jwt_shaped_key())).await.status(), 200);
    // Only the three allowed requests reached the upstream.
    assert_eq!(upstream.seen().len(), 3);
}

/// One POST per key, all sent at once: their statuses and `Retry-After`s.
async fn burst(gateway: &Gateway, keys: &[String]) -> Vec<(u16, Option<String>)> {
    let requests = keys.iter().map(|key| async move {
        let response = gateway.post(Some(key)).await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), retry_after)
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test]
async fn a_concurrent_burst_of_wrong_secrets_gets_no_more_guesses_than_the_limit() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&keys_config(&upstream).build()).await;
    // Thirty different guesses at once: checking the counter before argon2 and
    // adding to it after let every one of them be judged.
    let guesses: Vec<String> = (0..30).map(|n| format!("mcpk_ci_guess-{n}")).collect();
    let answers = burst(&gateway, &guesses).await;
    let judged = answers.iter().filter(|(status, _)| *status == 401).count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert_eq!(judged, 10, "{answers:?}");
    assert_eq!(limited.len(), 20, "{answers:?}");
    for (_, retry_after) in limited {
        assert_eq!(retry_after.as_deref(), Some("60"));
    }
    // The right secret, never verified before, is refused during the lockout.
    let response = gateway.post(Some("mcpk_ci_secret-one")).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");
    assert!(
        upstream.seen().is_empty(),
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn a_concurrent_burst_with_the_right_secret_is_not_locked_out_by_itself() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&keys_config(&upstream).build()).await;
    // More uncached verifications at once than the failure budget: those beyond
    // it wait for the ones ahead, which succeed and give their guess back.
    let keys = vec!["mcpk_ci_secret-one".to_owned(); 25];
    let answers = burst(&gateway, &keys).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(upstream.seen().len(), 25);
}

#[tokio::test]
async fn api_keys_and_oauth_coexist() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.jwks()).await;
    let upstream = Upstream::start().await;
    let config = keys_config(&upstream)
        .no_issuers()
        .oauth_yaml("authorization_servers: [https://issuer.test]")
        .jwks(Some(&format!("- url: {}", jwks.url)));
    let gateway = Gateway::start(&config.build()).await;
    let jwt = sign(
        &keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(&gateway.mcp, "mcp:connect"),
    );
    assert_eq!(gateway.post(Some(&jwt)).await.status(), 200);
    assert_eq!(gateway.post(Some("mcpk_ci_secret-one")).await.status(), 200);
    assert_eq!(gateway.post(Some(&jwt_shaped_key())).await.status(), 200);
    let response = gateway.post(Some("mcpk_ci_wrong")).await;
    assert!(
        www_authenticate(&response).contains("resource_metadata="),
        "with OAuth on, challenges point to the metadata"
    );
    // An opaque value that is neither a key nor a JWS is refused, not guessed at.
    let response = gateway
        .post(Some(&format!(
            "{}.{}.{}",
            "x".repeat(40),
            "y".repeat(40),
            "z".repeat(40)
        )))
        .await;
    assert!(www_authenticate(&response).contains("token is not a well-formed JWT"));
}

#[tokio::test]
async fn hash_key_prints_a_key_that_serve_accepts() {
    let (code, stdout, stderr) = run_cli(
        &["hash-key", "--id", "robot", "--scope", "mcp:connect"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let key = lines[1];
    assert!(key.starts_with("mcpk_robot_"));
    let entry = lines
        .iter()
        .skip_while(|l| !l.starts_with("Entry for"))
        .skip(1)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    let upstream = Upstream::start().await;
    // The entry pasted as printed, at its own indentation.
    let config = TestConfig::new(&upstream.url)
        .yaml(&format!("auth:\n  api_keys:\n{entry}"))
        .scopes("initialize: [mcp:connect]");
    let gateway = Gateway::start(&config.build()).await;
    assert_eq!(gateway.post(Some(key)).await.status(), 200);
    assert_eq!(gateway.post(Some(&format!("{key}x"))).await.status(), 401);

    let (code, _, stderr) = run_cli(&["hash-key", "--id", "bad_id"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("id must be"), "{stderr}");
}

#[test]
fn a_hash_that_does_not_parse_exits_78() {
    let (code, _, stderr) = check_config(
        "upstream:\n  url: http://127.0.0.1:1/mcp\nauth:\n  api_keys:\n    - id: ci\n      hash: \"argon2id$v=19$m=65536,t=3,p=2$...\"\n",
        &[],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.starts_with("config error: auth.api_keys[0].hash: "),
        "{stderr}"
    );
}
