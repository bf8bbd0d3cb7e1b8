//! The JWKS cache against the real binary: refetch on an unknown `kid` (single-flight,
//! rate-limited), IdP outages (stale keys kept, then fail closed), starting not-ready,
//! and issuer-bound providers.

use std::time::Duration;

use crate::common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

fn provider(jwks: &JwksServer, extra: &str) -> String {
    format!(
        "      - url: {}\n        algorithms: [RS256]\n{extra}",
        jwks.url
    )
}

fn config(upstream: &Upstream, providers: &str, issuers: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:{{port}}\nupstream:\n  url: {}\nauth:\n  oauth:\n    enabled: true\n    authorization_servers: [https://issuer.test]\n    issuers: {issuers}\n    jwks:\n{providers}",
        upstream.url
    )
}

fn rsa1_only(keys: &Keys) -> Value {
    json!({"keys": [public_jwk(&keys.rsa, Algorithm::RS256, "rsa-1")]})
}

/// A gateway with one remote provider (`provider_extra` appended to its entry) serving
/// `document`, in front of a recording upstream.
struct OneProvider {
    keys: Keys,
    jwks: JwksServer,
    _upstream: Upstream,
    gateway: Gateway,
}

async fn one_provider(document: impl FnOnce(&Keys) -> Value, provider_extra: &str) -> OneProvider {
    let keys = Keys::load();
    let jwks = JwksServer::start(document(&keys)).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(
        &upstream,
        &provider(&jwks, provider_extra),
        "[https://issuer.test]",
    ))
    .await;
    OneProvider {
        keys,
        jwks,
        _upstream: upstream,
        gateway,
    }
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_refetch_then_is_accepted() {
    // A long refresh interval: only the unknown-kid refetch can pick up the new key.
    let OneProvider {
        keys,
        jwks,
        gateway,
        ..
    } = one_provider(
        rsa1_only,
        "        refresh_interval: 1h\n        min_refetch_interval: 1s\n",
    )
    .await;
    assert_eq!(jwks.fetches(), 1);
    let claims = claims(&gateway.mcp, "");

    jwks.replace(json!({"keys": [public_jwk(&keys.rsa, Algorithm::RS256, "rsa-1"), public_jwk(&keys.rsa2, Algorithm::RS256, "rsa-2")]}));
    // Wait out the 1 s rate limit that the start-up fetch began.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = sign(&keys.rsa2, Algorithm::RS256, Some("rsa-2"), &claims);
    assert_eq!(
        gateway.post(Some(&rotated)).await.status(),
        200,
        "the new key was not refetched"
    );
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_flood_of_random_kids_costs_at_most_one_fetch() {
    let OneProvider {
        keys,
        jwks,
        gateway,
        ..
    } = one_provider(
        rsa1_only,
        "        refresh_interval: 1h\n        min_refetch_interval: 2s\n",
    )
    .await;
    let claims = claims(&gateway.mcp, "");
    // Let the start-up fetch's rate-limit window close, so the flood may fetch.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = jwks.fetches();
    let started = std::time::Instant::now();

    let client = Gateway::client();
    let requests = (0..1000).map(|n| {
        let token = sign(
            &keys.rsa,
            Algorithm::RS256,
            Some(&format!("random-{n}")),
            &claims,
        );
        let request = client
            .post(&gateway.mcp)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send();
        async move { request.await.unwrap().status().as_u16() }
    });
    // 100 at a time: concurrent enough to race the single-flight, gentle on 2 cores.
    let statuses: Vec<u16> = futures_util::StreamExt::collect(
        futures_util::StreamExt::buffer_unordered(futures_util::stream::iter(requests), 100),
    )
    .await;
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|s| *s == 401));
    let spent = jwks.fetches() - before;
    // One fetch per 2 s window at most (single-flight + rate limit); at least one,
    // since the window was open when the flood began.
    let windows = 1 + started.elapsed().as_secs() as usize / 2;
    assert!(spent >= 1, "the unknown kids never triggered a refetch");
    assert!(
        spent <= windows,
        "1,000 unknown kids caused {spent} JWKS fetches in {windows} windows"
    );
}

#[tokio::test]
async fn known_keys_survive_an_outage_until_max_stale_then_fail_closed() {
    let keys = Keys::load();
    let jwks = JwksServer::start(rsa1_only(&keys)).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(
        &upstream,
        &provider(&jwks, "        refresh_interval: 1s\n        min_refetch_interval: 1s\n        max_stale: 3s\n"),
        "[https://issuer.test]",
    ))
    .await;
    let token = sign(
        &keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(&gateway.mcp, ""),
    );
    jwks.set_failing(true);
    let outage_started = std::time::Instant::now();
    // During the outage the last good keys keep working...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = gateway.post(Some(&token)).await;
    if outage_started.elapsed() < Duration::from_millis(2900) {
        assert_eq!(
            response.status(),
            200,
            "known keys were dropped during the outage"
        );
    }
    // ...until max_stale, then the provider fails closed with 503 (not invalid_token).
    assert!(
        eventually(&gateway, &token, 503).await,
        "stale keys were never given up"
    );
    let response = gateway.post(Some(&token)).await;
    assert!(www_authenticate(&response).is_empty());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    // Recovery: the refresher retries and the keys come back.
    jwks.set_failing(false);
    assert!(
        eventually(&gateway, &token, 200).await,
        "keys never came back after the outage"
    );
}

#[tokio::test]
async fn start_not_ready_starts_without_keys_and_recovers() {
    let keys = Keys::load();
    let jwks = JwksServer::start(rsa1_only(&keys)).await;
    jwks.set_failing(true);
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(
        &upstream,
        &provider(&jwks, "        start_not_ready: true\n"),
        "[https://issuer.test]",
    ))
    .await;
    let token = sign(
        &keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(&gateway.mcp, ""),
    );
    assert_eq!(gateway.post(Some(&token)).await.status(), 503);
    assert!(
        gateway.stderr().contains("not ready until it is fetched"),
        "{}",
        gateway.stderr()
    );
    jwks.set_failing(false);
    assert!(
        eventually(&gateway, &token, 200).await,
        "the provider never became ready"
    );
}

#[tokio::test]
async fn an_issuer_bound_provider_never_verifies_another_issuers_token() {
    let keys = Keys::load();
    let jwks_a = JwksServer::start(rsa1_only(&keys)).await;
    let jwks_b =
        JwksServer::start(json!({"keys": [public_jwk(&keys.rsa2, Algorithm::RS256, "rsa-2")]}))
            .await;
    let upstream = Upstream::start().await;
    let providers = format!(
        "{}{}",
        provider(&jwks_a, "        issuer: https://a.test\n"),
        provider(&jwks_b, "        issuer: https://b.test\n")
    );
    let gateway = Gateway::start(&config(
        &upstream,
        &providers,
        "[https://a.test, https://b.test]",
    ))
    .await;
    let as_issuer = |iss: &str| {
        let mut claims = claims(&gateway.mcp, "");
        claims["iss"] = json!(iss);
        claims
    };
    let a_by_a = sign(
        &keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &as_issuer("https://a.test"),
    );
    let b_by_b = sign(
        &keys.rsa2,
        Algorithm::RS256,
        Some("rsa-2"),
        &as_issuer("https://b.test"),
    );
    assert_eq!(gateway.post(Some(&a_by_a)).await.status(), 200);
    assert_eq!(gateway.post(Some(&b_by_b)).await.status(), 200);
    // Issuer A's key signing a token that claims issuer B.
    let b_by_a = sign(
        &keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &as_issuer("https://b.test"),
    );
    let response = gateway.post(Some(&b_by_a)).await;
    assert_eq!(response.status(), 401);
    assert!(www_authenticate(&response).contains("token signing key is unknown"));
    // An issuer no provider is bound to.
    let stranger = sign(
        &keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &as_issuer("https://c.test"),
    );
    let response = gateway.post(Some(&stranger)).await;
    assert!(www_authenticate(&response).contains("token issuer is not accepted"));
}

#[tokio::test]
async fn embedded_key_urls_are_never_fetched() {
    let keys = Keys::load();
    let jwks = JwksServer::start(rsa1_only(&keys)).await;
    let attacker =
        JwksServer::start(json!({"keys": [public_jwk(&keys.rsa2, Algorithm::RS256, "evil")]}))
            .await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(
        &upstream,
        &provider(&jwks, ""),
        "[https://issuer.test]",
    ))
    .await;
    let claims = claims(&gateway.mcp, "");
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("evil".into());
    header.jku = Some(attacker.url.clone());
    header.x5u = Some(attacker.url.clone());
    let token = jsonwebtoken::encode(&header, &claims, &keys.rsa2).unwrap();
    assert_eq!(gateway.post(Some(&token)).await.status(), 401);
    assert_eq!(
        attacker.fetches(),
        0,
        "a key URL from the token was fetched"
    );
}

#[tokio::test]
async fn a_cached_token_stops_when_its_key_leaves_the_jwks() {
    let OneProvider {
        keys,
        jwks,
        gateway,
        ..
    } = one_provider(
        Keys::jwks,
        "        refresh_interval: 1s\n        min_refetch_interval: 1s\n",
    )
    .await;
    let token = sign(
        &keys.rsa,
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(&gateway.mcp, ""),
    );
    // Verified once, then served from the verified-token cache.
    assert_eq!(gateway.post(Some(&token)).await.status(), 200);
    assert_eq!(gateway.post(Some(&token)).await.status(), 200);
    // The IdP retires rsa-1 (say, after a compromise): the cache must not outlive it.
    jwks.replace(json!({"keys": [public_jwk(&keys.rsa2, Algorithm::RS256, "rsa-2")]}));
    assert!(
        eventually(&gateway, &token, 401).await,
        "a cached token outlived its key"
    );
    let response = gateway.post(Some(&token)).await;
    assert!(www_authenticate(&response).contains("token signing key is unknown"));
}
