//! RFC 7662 introspection against the real binary, with an in-process endpoint whose
//! answers the tests control: client authentication, `active`, audience, caching,
//! revocation within the TTL, outages as 503, and `validation: both`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Endpoint {
    answers: Arc<Mutex<HashMap<String, Value>>>,
    calls: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    mode: Arc<Mutex<&'static str>>,
}

impl Endpoint {
    async fn start() -> (Self, String) {
        let endpoint = Self::default();
        *endpoint.mode.lock().unwrap() = "up";
        let router = Router::new()
            .route("/introspect", post(answer))
            .with_state(endpoint.clone());
        let url = format!("http://{}/introspect", spawn_router(router).await);
        (endpoint, url)
    }

    fn set(&self, token: &str, answer: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    fn calls(&self) -> Vec<(HeaderMap, String)> {
        self.calls.lock().unwrap().clone()
    }
}

async fn answer(State(endpoint): State<Endpoint>, headers: HeaderMap, body: String) -> Response {
    endpoint.calls.lock().unwrap().push((headers, body.clone()));
    let mode = *endpoint.mode.lock().unwrap();
    match mode {
        "down" => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let answers = endpoint.answers.lock().unwrap();
    axum::Json(
        answers
            .get(&token)
            .cloned()
            .unwrap_or(json!({"active": false})),
    )
    .into_response()
}

/// Introspection at `url` (with `extra` settings of its own) and the `ci` key; no JWKS.
fn config(upstream: &Upstream, url: &str, extra: &str) -> TestConfig {
    let introspection = format!(
        r#"
introspection:
  url: {url}
  client_id: "mcp gate"
  client_secret: "s3cret:&"
  cache_ttl: 1s
  timeout: 500ms
{}"#,
        indent(&dedent(extra), 2)
    );
    TestConfig::oauth(&upstream.url)
        .jwks(None)
        .oauth_yaml(&introspection)
        .api_key(
            "ci",
            "$argon2id$v=19$m=19456,t=2,p=1$WDmkM7DrYLYj2E+dZC9o6Q$HcFEdXhs5r2DvHC3dk3Q7qGNM5BdbDZh2bMCNbrsSE8",
        )
        .scopes("initialize: [mcp:connect]")
}

fn active(gateway: &Gateway, scope: &str) -> Value {
    json!({"active": true, "scope": scope, "aud": gateway.mcp, "iss": "https://issuer.test",
           "client_id": "m2m", "sub": "svc", "exp": now() + 300})
}

#[tokio::test]
async fn opaque_tokens_are_introspected_with_client_authentication() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &url, "").build()).await;
    endpoint.set("opaque-1", active(&gateway, "mcp:connect"));
    assert_eq!(gateway.post(Some("opaque-1")).await.status(), 200);
    let calls = endpoint.calls();
    assert_eq!(calls.len(), 1);
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.encode("mcp+gate:s3cret%3A%26");
    assert_eq!(
        calls[0].0["authorization"],
        format!("Basic {expected}").as_str()
    );
    assert_eq!(calls[0].1, "token=opaque-1&token_type_hint=access_token");

    // Cached: more requests, no more calls.
    for _ in 0..5 {
        assert_eq!(gateway.post(Some("opaque-1")).await.status(), 200);
    }
    assert_eq!(endpoint.calls().len(), 1);

    endpoint.set("low", active(&gateway, "mcp:tools"));
    assert_eq!(gateway.post(Some("low")).await.status(), 403);
    // API keys never reach the authorization server: this one is judged (and
    // refused) by the key store alone.
    let before = endpoint.calls().len();
    let response = gateway.post(Some("mcpk_ci_wrong")).await;
    assert_eq!(response.status(), 401);
    assert!(
        www_authenticate(&response).contains("error_description=\"API key is invalid\""),
        "{}",
        www_authenticate(&response)
    );
    assert_eq!(endpoint.calls().len(), before);
    // The six accepted requests reached the upstream, the two refused ones did not.
    assert_eq!(upstream.seen().len(), 6);
    assert!(upstream.never_saw_authorization());
}

#[tokio::test]
async fn only_active_tokens_for_this_resource_pass() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &url, "").build()).await;
    let mut cases = vec![
        ("inactive", json!({"active": false}), "token is not active"),
        (
            "string-true",
            json!({"active": "true", "aud": gateway.mcp}),
            "token is not active",
        ),
        ("missing", json!({}), "token is not active"),
        (
            "other-aud",
            json!({"active": true, "aud": "https://elsewhere/mcp"}),
            "token audience is not accepted",
        ),
        (
            "no-aud",
            json!({"active": true, "scope": "mcp:connect"}),
            "token audience is not accepted",
        ),
        (
            "expired",
            json!({"active": true, "aud": gateway.mcp, "exp": now() - 600}),
            "token has expired",
        ),
    ];
    let mut other_issuer = active(&gateway, "mcp:connect");
    other_issuer["iss"] = json!("https://evil.test");
    cases.push(("other-iss", other_issuer, "token issuer is not accepted"));
    for (token, answer, reason) in cases {
        endpoint.set(token, answer);
        let response = gateway.post(Some(token)).await;
        assert_eq!(response.status(), 401, "{token}");
        assert!(
            www_authenticate(&response).contains(reason),
            "{token}: {}",
            www_authenticate(&response)
        );
    }
    assert!(
        upstream.seen().is_empty(),
        "a refused token reached the upstream"
    );
}

#[tokio::test]
async fn require_audience_false_accepts_servers_that_send_none() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    let config = config(
        &upstream,
        &url,
        "require_audience: false\nauth_method: client_secret_post",
    );
    let gateway = Gateway::start(&config.build()).await;
    endpoint.set("no-aud", json!({"active": true, "scope": "mcp:connect"}));
    assert_eq!(gateway.post(Some("no-aud")).await.status(), 200);
    // A wrong audience is still refused.
    endpoint.set(
        "other-aud",
        json!({"active": true, "scope": "mcp:connect", "aud": "https://elsewhere"}),
    );
    assert_eq!(gateway.post(Some("other-aud")).await.status(), 401);
    assert_eq!(
        upstream.seen().len(),
        1,
        "the refused token reached the upstream"
    );
    let calls = endpoint.calls();
    assert!(calls[0].0.get("authorization").is_none());
    assert!(
        calls[0]
            .1
            .ends_with("&client_id=mcp+gate&client_secret=s3cret%3A%26"),
        "{}",
        calls[0].1
    );
}

#[tokio::test]
async fn a_revoked_token_stops_within_the_cache_ttl() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &url, "").build()).await;
    endpoint.set("revocable", active(&gateway, "mcp:connect"));
    assert_eq!(gateway.post(Some("revocable")).await.status(), 200);
    endpoint.set("revocable", json!({"active": false}));
    assert!(
        eventually(&gateway, "revocable", 401).await,
        "a revoked token kept working past the 1 s cache TTL"
    );
    assert_refused_upstream_untouched(&gateway, &upstream, "revocable").await;
}

/// Once refused, `token` stays refused (401) and its requests reach nothing.
async fn assert_refused_upstream_untouched(gateway: &Gateway, upstream: &Upstream, token: &str) {
    let before = upstream.seen().len();
    for _ in 0..3 {
        let response = gateway.post(Some(token)).await;
        assert_eq!(response.status(), 401);
        assert!(
            www_authenticate(&response).contains("error_description=\"token is not active\""),
            "{}",
            www_authenticate(&response)
        );
    }
    assert_eq!(
        upstream.seen().len(),
        before,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn an_unreachable_or_slow_endpoint_is_503_never_allow_or_invalid_token() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &url, "").build()).await;
    for mode in ["down", "slow"] {
        *endpoint.mode.lock().unwrap() = mode;
        let token = format!("token-while-{mode}");
        endpoint.set(&token, active(&gateway, "mcp:connect"));
        let response = gateway.post(Some(&token)).await;
        assert_eq!(response.status(), 503, "{mode}");
        assert!(www_authenticate(&response).is_empty());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
        // Outages are not cached: once the endpoint is back, the token works.
        *endpoint.mode.lock().unwrap() = "up";
        assert_eq!(gateway.post(Some(&token)).await.status(), 200, "{mode}");
    }
    assert!(
        upstream.seen().len() == 2,
        "nothing passed during the outage"
    );
}

#[tokio::test]
async fn validation_both_checks_jwts_with_the_authorization_server_too() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    let config = config(&upstream, &url, "")
        .oauth_yaml("validation: both")
        .jwks(Some(&dev_jwks()));
    let gateway = Gateway::start(&config.build()).await;
    let jwt = hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"));
    endpoint.set(&jwt, active(&gateway, "mcp:connect"));
    assert_eq!(gateway.post(Some(&jwt)).await.status(), 200);
    endpoint.set(&jwt, json!({"active": false}));
    assert!(
        eventually(&gateway, &jwt, 401).await,
        "a revoked JWT kept working under validation: both"
    );
    assert_refused_upstream_untouched(&gateway, &upstream, &jwt).await;
}

#[tokio::test]
async fn no_bearer_token_reaches_the_log_even_at_trace() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    let live_key = "mcpk_live_secret-9c1d55e7";
    let live_hash = {
        use argon2::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(live_key.as_bytes())
            .unwrap()
            .to_string()
    };
    let config = config(&upstream, &url, "")
        .jwks(Some(&dev_jwks()))
        .api_key_with_scopes("live", &live_hash, "[mcp:connect]")
        .yaml("log:\n  level: trace");
    let gateway = Gateway::start(&config.build()).await;
    let valid = hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"));
    let expired = hs256(
        &json!({"iss": "https://issuer.test", "sub": "alice", "aud": gateway.mcp,
                "exp": now() - 600, "scope": "mcp:connect"}),
        Some("dev"),
    );
    let forged = {
        let mut parts: Vec<&str> = valid.split('.').collect();
        parts[2] = "c2lnbmF0dXJlLW9mLWEtZm9yZ2VyeS10aGF0LWlzLWxvbmctZW5vdWdo";
        parts.join(".")
    };
    endpoint.set("opaque-active-7f3c91d2", active(&gateway, "mcp:connect"));
    endpoint.set("opaque-inactive-55b0e8aa", json!({"active": false}));
    let cases: [(&str, u16); 9] = [
        (&valid, 200),
        (live_key, 200),
        (&expired, 401),
        (&forged, 401),
        ("not-a-jwt-but-a-secret-0a9d4e", 401),
        ("mcpk_ci_wrong-secret-b71c0e", 401),
        ("mcpk_nobody_secret-4e2f90", 401),
        ("opaque-active-7f3c91d2", 200),
        ("opaque-inactive-55b0e8aa", 401),
    ];
    for (token, status) in cases {
        // Twice: the second use is answered from a cache.
        for _ in 0..2 {
            assert_eq!(gateway.post(Some(token)).await.status(), status, "{token}");
        }
    }
    let log = gateway.stderr();
    assert!(
        log.contains("TRACE"),
        "the log is not at trace level:\n{log}"
    );
    for (token, _) in cases {
        assert!(!log.contains(token), "the log holds the token {token}");
        // The part that is the credential on its own: a key's secret, a JWT's signature.
        let secret = match token
            .strip_prefix("mcpk_")
            .and_then(|rest| rest.split_once('_'))
        {
            Some((_, secret)) => secret,
            None => token.rsplit('.').next().unwrap(),
        };
        assert!(
            !log.contains(secret),
            "the log holds the secret part of {token}"
        );
    }
}

/// A flood of made-up opaque tokens from one address reaches the introspection
/// endpoint only as often as `limits.unauthenticated` allows; the rest get 429
/// without a call, and a token introspected before (cached) is never counted.
#[tokio::test]
async fn an_opaque_token_flood_costs_a_bounded_number_of_introspection_calls() {
    let (endpoint, url) = Endpoint::start().await;
    let upstream = Upstream::start().await;
    // Cached long enough that the good token is still cached at the end.
    let config = config(&upstream, &url, "")
        .yaml(
            "limits:\n  unauthenticated: { rate: 1/min, burst: 5 }\n  \
             failed_authentications: { enabled: false, rate: 1/s }\n",
        )
        .build()
        .replace("cache_ttl: 1s", "cache_ttl: 5m");
    let gateway = Gateway::start(&config).await;
    endpoint.set("opaque-good", active(&gateway, "mcp:connect"));
    assert_eq!(gateway.post(Some("opaque-good")).await.status(), 200);
    let requests = (0..40).map(|index| {
        let gateway = &gateway;
        async move {
            gateway
                .post(Some(&format!("opaque-guess-{index}")))
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    let checked = statuses.iter().filter(|status| **status == 401).count();
    let limited = statuses.iter().filter(|status| **status == 429).count();
    // The good token took one of the five units.
    assert_eq!((checked, limited), (4, 36), "{statuses:?}");
    assert_eq!(
        endpoint.calls().len(),
        5,
        "one call per unit, none for a 429"
    );
    // Cached, the good token is neither counted nor refused.
    assert_eq!(gateway.post(Some("opaque-good")).await.status(), 200);
    assert_eq!(endpoint.calls().len(), 5);
}
