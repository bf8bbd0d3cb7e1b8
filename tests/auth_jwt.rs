//! JWT authentication against the real binary: what is accepted, what is refused and
//! with exactly which challenge (RFC 6750 §3, RFC 7519, RFC 8725).

use std::time::Duration;

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

fn config(upstream: &Upstream, jwks: &JwksServer, extra_oauth: &str) -> String {
    let providers = format!(
        "- url: {}\n  algorithms: [RS256, PS256, ES256, EdDSA]\n  refresh_interval: 1s\n{}\n  symmetric_algorithm: HS256",
        jwks.url,
        dev_jwks(),
    );
    TestConfig::oauth(&upstream.url)
        .oauth_yaml("authorization_servers: [https://issuer.test]\nleeway: 5s")
        .oauth_yaml(extra_oauth)
        .jwks(Some(&providers))
        .scopes("initialize: [mcp:connect]")
        .build()
}

struct Setup {
    keys: Keys,
    jwks: JwksServer,
    upstream: Upstream,
    gateway: Gateway,
}

async fn setup(extra_oauth: &str) -> Setup {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.jwks()).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &jwks, extra_oauth)).await;
    Setup {
        keys,
        jwks,
        upstream,
        gateway,
    }
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// `token` gets 401 `invalid_token` with exactly `description` and an empty body,
/// and the request never reaches the upstream.
async fn assert_invalid_token(
    gateway: &Gateway,
    upstream: &Upstream,
    token: &str,
    description: &str,
) {
    let before = upstream.seen().len();
    let response = gateway.post(Some(token)).await;
    assert_eq!(
        response.status(),
        401,
        "token should be refused: {description}"
    );
    assert_eq!(
        www_authenticate(&response),
        format!(
            "Bearer realm=\"mcp\", error=\"invalid_token\", error_description=\"{description}\", scope=\"mcp:connect\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            gateway.base
        )
    );
    assert_eq!(
        response.text().await.unwrap(),
        "",
        "challenge bodies are empty"
    );
    assert_eq!(
        upstream.seen().len(),
        before,
        "a token refused with {description:?} reached the upstream"
    );
}

#[tokio::test]
async fn accepts_each_allowed_algorithm() {
    let s = setup("").await;
    let claims = claims(&s.gateway.mcp, "mcp:connect");
    let tokens = [
        sign(&s.keys.rsa, Algorithm::RS256, Some("rsa-1"), &claims),
        sign(&s.keys.rsa, Algorithm::PS256, Some("rsa-1"), &claims),
        sign(&s.keys.ec, Algorithm::ES256, Some("ec-1"), &claims),
        sign(&s.keys.ed, Algorithm::EdDSA, Some("ed-1"), &claims),
        hs256(&claims, Some("dev")),
    ];
    for token in &tokens {
        let response = s.gateway.post(Some(token)).await;
        assert_eq!(response.status(), 200);
        let answer = response.json::<Value>().await.unwrap();
        assert!(answer["result"]["tools"].is_array(), "{answer}");
    }
    assert_eq!(s.upstream.seen().len(), tokens.len());
}

#[tokio::test]
async fn a_symmetric_provider_verifies_only_its_algorithm_and_key_id() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .no_issuers()
        .oauth_yaml("authorization_servers: [https://issuer.test]")
        .jwks(Some(&format!(
            "- secret: \"{HMAC_SECRET}\"\n  symmetric_algorithm: HS512\n  header_key_id: k512"
        )));
    let gateway = Gateway::start(&config.build()).await;
    let claims = claims(&gateway.mcp, "");
    let key = EncodingKey::from_secret(HMAC_SECRET.as_bytes());
    let hs512 = sign(&key, Algorithm::HS512, Some("k512"), &claims);
    assert_eq!(gateway.post(Some(&hs512)).await.status(), 200);
    let hs256 = sign(&key, Algorithm::HS256, Some("k512"), &claims);
    assert_eq!(gateway.post(Some(&hs256)).await.status(), 401);
    let other_kid = sign(&key, Algorithm::HS512, Some("other"), &claims);
    assert_eq!(gateway.post(Some(&other_kid)).await.status(), 401);
    assert_eq!(
        upstream.seen().len(),
        1,
        "a refused token reached the upstream"
    );
}

#[tokio::test]
async fn rfc7519_time_claims_are_enforced_with_leeway() {
    let s = setup("").await;
    let base = claims(&s.gateway.mcp, "mcp:connect");
    let rs = |claims: &Value| sign(&s.keys.rsa, Algorithm::RS256, Some("rsa-1"), claims);
    let now = now();
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(base.clone(), "exp", json!(now - 60))),
        "token has expired",
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(base.clone(), "nbf", json!(now + 600))),
        "token is not valid yet",
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&without(base.clone(), "exp")),
        "token claims are malformed",
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(base.clone(), "exp", json!((now + 600).to_string()))),
        "token claims are malformed",
    )
    .await;
    // Within the 5 s leeway both ways.
    let response = s
        .gateway
        .post(Some(&rs(&with(base.clone(), "exp", json!(now - 1)))))
        .await;
    assert_eq!(response.status(), 200);
    let response = s
        .gateway
        .post(Some(&rs(&with(base, "nbf", json!(now + 2)))))
        .await;
    assert_eq!(response.status(), 200);
}

/// Sleeps until `at` seconds since the epoch.
async fn sleep_until_epoch(at: f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    if at > now {
        tokio::time::sleep(Duration::from_secs_f64(at - now)).await;
    }
}

#[tokio::test]
async fn a_cached_token_is_accepted_inside_the_leeway_and_refused_after_it() {
    let s = setup("").await;
    // exp in about 2 s; the gateway's leeway is 5 s.
    let exp = now() + 2;
    let claims = with(claims(&s.gateway.mcp, "mcp:connect"), "exp", json!(exp));
    let token = sign(&s.keys.rsa, Algorithm::RS256, Some("rsa-1"), &claims);
    assert_eq!(s.gateway.post(Some(&token)).await.status(), 200);
    assert_eq!(s.gateway.post(Some(&token)).await.status(), 200, "cached");
    // Past exp, inside the leeway: still accepted (verified again, and cached again).
    sleep_until_epoch(exp as f64 + 1.0).await;
    for _ in 0..3 {
        assert_eq!(
            s.gateway.post(Some(&token)).await.status(),
            200,
            "inside the leeway"
        );
    }
    assert_eq!(s.upstream.seen().len(), 5);
    // Past exp + leeway: refused, though the token was cached a moment ago.
    sleep_until_epoch(exp as f64 + 5.5).await;
    assert_invalid_token(&s.gateway, &s.upstream, &token, "token has expired").await;
}

#[tokio::test]
async fn rfc8707_audience_and_exact_issuer() {
    let s = setup("").await;
    let base = claims(&s.gateway.mcp, "mcp:connect");
    let rs = |claims: &Value| sign(&s.keys.rsa, Algorithm::RS256, Some("rsa-1"), claims);
    let bad_audience = "token audience is not accepted";
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(
            base.clone(),
            "aud",
            json!("https://other.example/mcp"),
        )),
        bad_audience,
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&without(base.clone(), "aud")),
        bad_audience,
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(base.clone(), "aud", json!(123))),
        bad_audience,
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(base.clone(), "aud", json!([s.gateway.mcp, 5]))),
        bad_audience,
    )
    .await;
    let response = s
        .gateway
        .post(Some(&rs(&with(
            base.clone(),
            "aud",
            json!(["https://other.example", s.gateway.mcp]),
        ))))
        .await;
    assert_eq!(
        response.status(),
        200,
        "an array containing the resource is accepted"
    );

    let bad_issuer = "token issuer is not accepted";
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(base.clone(), "iss", json!("https://issuer.test/"))),
        bad_issuer,
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&with(base.clone(), "iss", json!(["https://issuer.test"]))),
        bad_issuer,
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs(&without(base, "iss")),
        bad_issuer,
    )
    .await;
}

#[tokio::test]
async fn rfc8725_algorithm_and_key_attacks_fail() {
    let s = setup("").await;
    let base = claims(&s.gateway.mcp, "mcp:connect");

    // alg none, in any spelling, with or without a signature.
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg, "kid": "rsa-1"}), &base, b"");
        assert_invalid_token(
            &s.gateway,
            &s.upstream,
            &token,
            "token algorithm is not accepted",
        )
        .await;
    }
    // HS256 "signed" with the RSA public key as the HMAC secret (key confusion).
    let public_pem = std::fs::read(fixture("rsa_public.pem")).unwrap();
    let confused = sign(
        &EncodingKey::from_secret(&public_pem),
        Algorithm::HS256,
        Some("rsa-1"),
        &base,
    );
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &confused,
        "token algorithm is not accepted",
    )
    .await;
    // RS384 is not on the provider's allowlist even though the key is RSA.
    let rs384 = sign(&s.keys.rsa, Algorithm::RS384, Some("rsa-1"), &base);
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rs384,
        "token algorithm is not accepted",
    )
    .await;
    // Right kid, wrong key.
    let forged = sign(&s.keys.rsa2, Algorithm::RS256, Some("rsa-1"), &base);
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &forged,
        "token signature is invalid",
    )
    .await;
    // A payload changed after signing.
    let good = sign(&s.keys.rsa, Algorithm::RS256, Some("rsa-1"), &base);
    let parts: Vec<&str> = good.split('.').collect();
    let elevated = with(base.clone(), "scope", json!("mcp:connect mcp:admin"));
    let tampered = format!("{}.{}.{}", parts[0], base64_json(&elevated), parts[2]);
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &tampered,
        "token signature is invalid",
    )
    .await;
    // HS256 with the wrong secret under the symmetric provider's kid.
    let wrong_secret = sign(
        &EncodingKey::from_secret(b"another-secret-that-is-at-least-32-bytes"),
        Algorithm::HS256,
        Some("dev"),
        &base,
    );
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &wrong_secret,
        "token signature is invalid",
    )
    .await;
    // No kid while several keys could take the algorithm: which key is unknown.
    let no_kid = sign(&s.keys.rsa, Algorithm::RS256, None, &base);
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &no_kid,
        "token signing key is unknown",
    )
    .await;
    // Unknown kid.
    let unknown = sign(&s.keys.rsa, Algorithm::RS256, Some("nobody"), &base);
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &unknown,
        "token signing key is unknown",
    )
    .await;
    // Not a JWS: garbage, four segments, a JWE-shaped five.
    for token in ["garbage", "a.b.c.d", "a.b.c.d.e", &format!("{good}.x")] {
        assert_invalid_token(
            &s.gateway,
            &s.upstream,
            token,
            "token is not a well-formed JWT",
        )
        .await;
    }
    assert!(
        s.upstream.seen().is_empty(),
        "no refused request reaches the upstream"
    );
}

fn base64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn rfc6750_3_1_insufficient_scope_names_what_is_missing() {
    let s = setup("").await;
    let token = sign(
        &s.keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(&s.gateway.mcp, "mcp:tools"),
    );
    let response = s.gateway.post(Some(&token)).await;
    assert_insufficient_scope(
        &response,
        "mcp:connect",
        &format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            s.gateway.base
        ),
        "missing required scopes: mcp:connect",
    );
    assert!(
        s.upstream.seen().is_empty(),
        "the refused request reached the upstream"
    );
    // Scopes may also come from `scp`, as a string or an array.
    for scp in [json!("mcp:connect"), json!(["other", "mcp:connect"])] {
        let claims = with(without(claims(&s.gateway.mcp, ""), "scope"), "scp", scp);
        let token = sign(&s.keys.rsa, Algorithm::RS256, Some("rsa-1"), &claims);
        assert_eq!(s.gateway.post(Some(&token)).await.status(), 200);
    }
}

#[tokio::test]
async fn include_token_scopes_puts_granted_scopes_first() {
    let s = setup("    scope_challenge_include_token_scopes: true").await;
    let token = sign(
        &s.keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(&s.gateway.mcp, "mcp:tools mcp:read"),
    );
    let response = s.gateway.post(Some(&token)).await;
    assert_eq!(response.status(), 403);
    assert!(
        www_authenticate(&response).starts_with(
            "Bearer error=\"insufficient_scope\", scope=\"mcp:tools mcp:read mcp:connect\""
        ),
        "{}",
        www_authenticate(&response)
    );
    assert!(
        s.upstream.seen().is_empty(),
        "the refused request reached the upstream"
    );
}

#[tokio::test]
async fn a_rotated_jwks_is_picked_up_by_the_background_refresh() {
    let s = setup("").await;
    let claims = claims(&s.gateway.mcp, "mcp:connect");
    let rotated = sign(&s.keys.rsa2, Algorithm::RS256, Some("rsa-2"), &claims);
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &rotated,
        "token signing key is unknown",
    )
    .await;

    s.jwks
        .replace(json!({"keys": [public_jwk(&s.keys.rsa2, Algorithm::RS256, "rsa-2")]}));
    // refresh_interval is 1 s: poll, rather than sleep a fixed time.
    let mut accepted = false;
    for _ in 0..100 {
        if s.gateway.post(Some(&rotated)).await.status() == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "the rotated key was never accepted");
    assert!(s.jwks.fetches() >= 2);
    // The retired key is gone with the old set.
    let old = sign(&s.keys.rsa, Algorithm::RS256, Some("rsa-1"), &claims);
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &old,
        "token signing key is unknown",
    )
    .await;
}

#[tokio::test]
async fn rfc8725_header_and_claim_hardening() {
    let s = setup("").await;
    let base = claims(&s.gateway.mcp, "mcp:connect");
    let sig = |header: &Value, claims: &Value| {
        // Signed for real, so only the header/claim rule can be the reason for refusal.
        let header_b64 = base64_json(header);
        let claims_b64 = base64_json(claims);
        let input = format!("{header_b64}.{claims_b64}");
        let alg = header["alg"].as_str().unwrap().parse().unwrap();
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &s.keys.rsa, alg).unwrap();
        format!("{input}.{signature}")
    };
    let rs = json!({"alg": "RS256", "kid": "rsa-1"});
    assert_eq!(
        s.gateway.post(Some(&sig(&rs, &base))).await.status(),
        200,
        "control"
    );

    let with_header = |key: &str, value: Value| {
        let mut header = rs.clone();
        header[key] = value;
        header
    };
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &sig(&with_header("crit", json!(["exp"])), &base),
        "token header is not accepted",
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &sig(&with_header("cty", json!("JWT")), &base),
        "token header is not accepted",
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &sig(&with_header("typ", json!("id_token+jwt")), &base),
        "token type is not accepted",
    )
    .await;
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &sig(&with_header("kid", json!("k".repeat(257))), &base),
        "token is not a well-formed JWT",
    )
    .await;
    for typ in ["at+jwt", "application/at+jwt", "JWT"] {
        let token = sig(&with_header("typ", json!(typ)), &base);
        assert_eq!(
            s.gateway.post(Some(&token)).await.status(),
            200,
            "typ {typ}"
        );
    }

    // Duplicate keys: the header's alg, the claims' aud (a parser keeping the first
    // would read one audience, one keeping the last another).
    let dup_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"rsa-1","kid":"other"}"#);
    let claims_text = base.to_string();
    let dup_aud = claims_text.replacen("\"aud\"", "\"aud\":\"https://elsewhere\",\"aud\"", 1);
    for (header_b64, claims_b64) in [
        (dup_header, base64_json(&base)),
        (base64_json(&rs), URL_SAFE_NO_PAD.encode(&dup_aud)),
    ] {
        let input = format!("{header_b64}.{claims_b64}");
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &s.keys.rsa, Algorithm::RS256).unwrap();
        assert_invalid_token(
            &s.gateway,
            &s.upstream,
            &format!("{input}.{signature}"),
            "token is not a well-formed JWT",
        )
        .await;
    }

    let now = now();
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &sig(&rs, &with(base.clone(), "iat", json!(now + 600))),
        "token is not valid yet",
    )
    .await;
    let many: Vec<String> = (0..17)
        .map(|n| format!("https://aud{n}.test"))
        .chain([s.gateway.mcp.clone()])
        .collect();
    assert_invalid_token(
        &s.gateway,
        &s.upstream,
        &sig(&rs, &with(base.clone(), "aud", json!(many))),
        "token audience is not accepted",
    )
    .await;
    // An oversized token is refused before any parsing or signature work.
    let huge = with(base, "pad", json!("x".repeat(20_000)));
    let before = s.upstream.seen().len();
    let response = s.gateway.post(Some(&sig(&rs, &huge))).await;
    assert_eq!(response.status(), 400);
    assert!(www_authenticate(&response).contains("Authorization header too large"));
    assert_eq!(
        s.upstream.seen().len(),
        before,
        "the refused request reached the upstream"
    );
}

#[tokio::test]
async fn require_at_jwt_refuses_other_types() {
    let keys = Keys::load();
    let jwks = JwksServer::start(keys.jwks()).await;
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .no_issuers()
        .oauth_yaml("authorization_servers: [https://issuer.test]")
        .jwks(Some(&format!(
            "- url: {}\n  require_at_jwt: true",
            jwks.url
        )));
    let gateway = Gateway::start(&config.build()).await;
    let claims = claims(&gateway.mcp, "");
    let at_jwt = sign(&keys.rsa, Algorithm::RS256, Some("rsa-1"), &claims);
    assert_eq!(gateway.post(Some(&at_jwt)).await.status(), 200);
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let plain_jwt = jsonwebtoken::encode(&header, &claims, &keys.rsa).unwrap();
    let response = gateway.post(Some(&plain_jwt)).await;
    assert_eq!(response.status(), 401);
    assert!(www_authenticate(&response).contains("token type is not accepted"));
    assert_eq!(
        upstream.seen().len(),
        1,
        "the refused token reached the upstream"
    );
}
