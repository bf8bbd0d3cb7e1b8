//! The JWKS cache against the real binary: refetch on an unknown `kid` (single-flight,
//! rate-limited, at once after any other fetch), IdP outages (stale keys kept, then
//! fail closed), starting not-ready, and issuer-bound providers.

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

/// `claims` signed RS256 by the key `rsa-1`.
fn rsa1_signed(keys: &Keys, claims: &Value) -> String {
    sign(&keys.rsa, Algorithm::RS256, Some("rsa-1"), claims)
}

/// A token of `rsa-1` for `gateway`, with no scopes.
fn rsa1_token(keys: &Keys, gateway: &Gateway) -> String {
    rsa1_signed(keys, &claims(&gateway.mcp, ""))
}

fn config(upstream: &Upstream, providers: &str, issuers: &str) -> String {
    TestConfig::oauth(&upstream.url)
        .issuers(issuers)
        .oauth_yaml("authorization_servers: [https://issuer.test]")
        .jwks(Some(providers))
        // These tests measure the JWKS cache's own bounds on floods from one address;
        // the per-address limits in front of it are tested in `rate_limits`.
        .yaml(
            "limits:\n  unauthenticated: { enabled: false, rate: 1/s }\n  failed_authentications: { enabled: false, rate: 1/s }",
        )
        .build()
}

fn rsa1_only(keys: &Keys) -> Value {
    json!({"keys": [public_jwk(&keys.rsa, Algorithm::RS256, "rsa-1")]})
}

/// A recording upstream and a gateway with one remote provider at `jwks`
/// (`provider_extra` appended to its entry).
async fn gateway_of(jwks: &JwksServer, provider_extra: &str) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(
        &upstream,
        &provider(jwks, provider_extra),
        "[https://issuer.test]",
    ))
    .await;
    (upstream, gateway)
}

/// The keys, a JWKS server serving `document`, and [`gateway_of`] it.
async fn one_provider(
    document: impl FnOnce(&Keys) -> Value,
    provider_extra: &str,
) -> (Keys, JwksServer, Upstream, Gateway) {
    let keys = Keys::load();
    let jwks = JwksServer::start(document(&keys)).await;
    let (upstream, gateway) = gateway_of(&jwks, provider_extra).await;
    (keys, jwks, upstream, gateway)
}

/// Refresh and refetch at most hourly: nothing but the rule under test fetches.
const HOURLY: &str = "        refresh_interval: 1h\n        min_refetch_interval: 1h\n";
/// Refresh and refetch every second.
const EVERY_SECOND: &str = "        refresh_interval: 1s\n        min_refetch_interval: 1s\n";

/// `claims` signed RS256 by the key `rsa-2`.
fn rsa2_signed(keys: &Keys, claims: &Value) -> String {
    sign(&keys.rsa2, Algorithm::RS256, Some("rsa-2"), claims)
}

fn rsa2_only(keys: &Keys) -> Value {
    json!({"keys": [public_jwk(&keys.rsa2, Algorithm::RS256, "rsa-2")]})
}

/// Both keys, the rotated-in `rsa-2` first (as a provider publishes a new signing key).
fn rotated(keys: &Keys) -> Value {
    json!({"keys": [public_jwk(&keys.rsa2, Algorithm::RS256, "rsa-2"), public_jwk(&keys.rsa, Algorithm::RS256, "rsa-1")]})
}

const KID_REFETCHED: &str = "JWKS refetched for an unknown kid";

#[tokio::test]
async fn a_key_rotated_in_right_after_start_is_accepted_on_its_first_request() {
    // A window of an hour: only a rule that the start-up fetch does not close the
    // window lets the new key in before the test times out.
    let (keys, jwks, _upstream, gateway) = one_provider(rsa1_only, HOURLY).await;
    assert_eq!(jwks.fetches(), 1);
    jwks.replace(rotated(&keys));
    let token = rsa2_signed(&keys, &claims(&gateway.mcp, ""));
    assert_eq!(
        gateway.post(Some(&token)).await.status(),
        200,
        "the rotated-in key was not fetched at once"
    );
    assert_eq!(jwks.fetches(), 2, "not exactly one extra JWKS fetch");
    assert_eq!(gateway.log_count(KID_REFETCHED), 1);
    // Known now: no further fetch.
    assert_eq!(gateway.post(Some(&token)).await.status(), 200);
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_key_rotated_in_right_after_a_scheduled_refresh_is_accepted_on_its_first_request() {
    let keys = Keys::load();
    let jwks = JwksServer::start(rsa1_only(&keys)).await;
    let upstream = Upstream::start().await;
    // Debug logs for the refresher: "JWKS refreshed" says a scheduled refresh has
    // published its set (the JWKS server only sees it begin).
    let gateway = Gateway::start(&format!(
        "{}log:\n  level: info,mcpgate::auth::jwks=debug\n",
        config(
            &upstream,
            &provider(
                &jwks,
                "        refresh_interval: 4s\n        min_refetch_interval: 1h\n"
            ),
            "[https://issuer.test]",
        )
    ))
    .await;
    let token = rsa2_signed(&keys, &claims(&gateway.mcp, ""));
    assert!(
        gateway.wait_for_log("JWKS refreshed").await,
        "no scheduled refresh within 15 s"
    );
    assert_eq!(jwks.fetches(), 2);
    jwks.replace(rotated(&keys));
    assert_eq!(
        gateway.post(Some(&token)).await.status(),
        200,
        "the rotated-in key was not fetched at once"
    );
    // The unknown-kid refetch let it in, not the next scheduled refresh.
    assert_eq!(gateway.log_count(KID_REFETCHED), 1);
    assert_eq!(jwks.fetches(), 3, "not exactly one extra JWKS fetch");
}

/// Sends 1,000 tokens, each with its own random `kid`, 100 at a time; their statuses.
async fn random_kid_flood(gateway: &Gateway, keys: &Keys) -> Vec<u16> {
    let claims = claims(&gateway.mcp, "");
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
    futures_util::StreamExt::collect(futures_util::StreamExt::buffer_unordered(
        futures_util::stream::iter(requests),
        100,
    ))
    .await
}

#[tokio::test]
async fn a_flood_of_random_kids_costs_one_fetch_per_window() {
    // Right after start: the start-up fetch leaves the window open, so the flood
    // fetches once, and only once in its hour-long window, however long it takes.
    let (keys, jwks, _upstream, gateway) = one_provider(rsa1_only, HOURLY).await;
    let statuses = random_kid_flood(&gateway, &keys).await;
    assert_eq!(statuses.len(), 1000);
    assert!(statuses.iter().all(|s| *s == 401));
    assert_eq!(
        jwks.fetches(),
        2,
        "1,000 unknown kids did not cost exactly one JWKS fetch"
    );
    assert_eq!(gateway.log_count(KID_REFETCHED), 1);
}

#[tokio::test]
async fn a_flood_of_random_kids_during_an_outage_costs_one_fetch_and_keeps_the_keys() {
    let (keys, jwks, _upstream, gateway) = one_provider(rsa1_only, HOURLY).await;
    jwks.set_failing(true);
    let statuses = random_kid_flood(&gateway, &keys).await;
    assert!(statuses.iter().all(|s| *s == 401));
    assert_eq!(
        jwks.fetches(),
        2,
        "1,000 unknown kids during an outage did not cost exactly one JWKS fetch"
    );
    assert_eq!(
        gateway.log_count("JWKS refetch for an unknown kid failed"),
        1
    );
    let known = rsa1_token(&keys, &gateway);
    assert_eq!(gateway.post(Some(&known)).await.status(), 200);
}

#[tokio::test]
async fn known_keys_survive_an_outage() {
    // max_stale an hour: whatever the speed of the run, the keys are within it.
    let (keys, jwks, _upstream, gateway) =
        one_provider(rsa1_only, &format!("{EVERY_SECOND}        max_stale: 1h\n")).await;
    let token = rsa1_token(&keys, &gateway);
    jwks.set_failing(true);
    let before = jwks.fetches();
    // The refresher's fetch and its retry (1 s later) both fail...
    let mut waited = 0;
    while jwks.fetches() < before + 2 {
        assert!(waited < 1500, "the refresher did not retry within 15 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(
        gateway
            .wait_for_log("JWKS fetch failed; keeping the previous keys")
            .await
    );
    // ...and the last good keys keep verifying (this token was never seen before).
    assert_eq!(
        gateway.post(Some(&token)).await.status(),
        200,
        "known keys were dropped during the outage"
    );
}

#[tokio::test]
async fn stale_keys_fail_closed_past_max_stale_and_come_back() {
    let (keys, jwks, _upstream, gateway) =
        one_provider(rsa1_only, &format!("{EVERY_SECOND}        max_stale: 3s\n")).await;
    let token = rsa1_token(&keys, &gateway);
    jwks.set_failing(true);
    // Past max_stale the provider fails closed with 503 (not invalid_token).
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
    let (_upstream, gateway) = gateway_of(&jwks, "        start_not_ready: true\n").await;
    let token = rsa1_token(&keys, &gateway);
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
    let jwks_b = JwksServer::start(rsa2_only(&keys)).await;
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
    let a_by_a = rsa1_signed(&keys, &as_issuer("https://a.test"));
    let b_by_b = rsa2_signed(&keys, &as_issuer("https://b.test"));
    assert_eq!(gateway.post(Some(&a_by_a)).await.status(), 200);
    assert_eq!(gateway.post(Some(&b_by_b)).await.status(), 200);
    // Issuer A's key signing a token that claims issuer B.
    let b_by_a = rsa1_signed(&keys, &as_issuer("https://b.test"));
    let response = gateway.post(Some(&b_by_a)).await;
    assert_eq!(response.status(), 401);
    assert!(www_authenticate(&response).contains("token signing key is unknown"));
    // An issuer no provider is bound to.
    let stranger = rsa1_signed(&keys, &as_issuer("https://c.test"));
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
    let (_upstream, gateway) = gateway_of(&jwks, "").await;
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
    let (keys, jwks, _upstream, gateway) = one_provider(Keys::jwks, EVERY_SECOND).await;
    let token = rsa1_token(&keys, &gateway);
    // Verified once, then served from the verified-token cache.
    assert_eq!(gateway.post(Some(&token)).await.status(), 200);
    assert_eq!(gateway.post(Some(&token)).await.status(), 200);
    // The IdP retires rsa-1 (say, after a compromise): the cache must not outlive it.
    jwks.replace(rsa2_only(&keys));
    assert!(
        eventually(&gateway, &token, 401).await,
        "a cached token outlived its key"
    );
    let response = gateway.post(Some(&token)).await;
    assert!(www_authenticate(&response).contains("token signing key is unknown"));
}
