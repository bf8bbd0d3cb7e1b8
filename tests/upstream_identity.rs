//! `upstream.identity` against the real binary: the upstream learns who calls from
//! an assertion mcpgate signs (verified here with `jsonwebtoken` against the JWKS
//! mcpgate publishes) and, when turned on, plain headers; a client's own copy of
//! any identity header never reaches the upstream.

use crate::common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

const ASSERTION: &str = "x-mcpgate-identity";

/// The one request the upstream saw.
fn only_seen(upstream: &Upstream) -> Seen {
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen.into_iter().next().unwrap()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|value| value.to_str().unwrap())
}

/// A `tools/list` from a caller who also sends every identity header itself.
async fn spoofing(gateway: &Gateway, names: &[&str]) -> reqwest::Response {
    let mut request = Request::post(gateway).token("tools:read");
    for name in names {
        request = request.header(name, "mallory");
    }
    request.json(&list(1, "tools/list")).send().await
}

#[tokio::test]
async fn a_client_copy_of_an_identity_header_never_reaches_the_upstream() {
    // Names that the client-header allowlist would let through (`mcp-*`), with the
    // plain headers configured but off and no principal to assert: only the
    // stripping keeps the client's values from the upstream.
    let upstream = Upstream::start().await;
    let config = TestConfig::new(&upstream.url)
        .upstream(
            "identity:\n  headers:\n    enabled: false\n    subject: Mcp-User\n    \
             client_id: Mcp-Client\n    scopes: Mcp-Scopes",
        )
        .build();
    let gateway = Gateway::start(&config).await;
    let response = spoofing(
        &gateway,
        &["Mcp-User", "Mcp-Client", "Mcp-Scopes", "Mcp-Other"],
    )
    .await;
    assert_eq!(response.status(), 200);
    let seen = only_seen(&upstream);
    for name in ["mcp-user", "mcp-client", "mcp-scopes"] {
        assert_eq!(header(&seen, name), None, "{name} reached the upstream");
    }
    // Other `mcp-*` headers still pass: the stripping is by name, not a wider block.
    assert_eq!(header(&seen, "mcp-other"), Some("mallory"));
}

/// The JWKS mcpgate publishes, as a verifier would fetch it.
async fn decoding_key(gateway: &Gateway, kid: &str) -> DecodingKey {
    let jwks = get_json(format!(
        "{}/.well-known/mcpgate-identity-jwks.json",
        gateway.base
    ))
    .await;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = set.find(kid).expect("the assertion's kid is published");
    DecodingKey::from_jwk(jwk).unwrap()
}

async fn verify(gateway: &Gateway, token: &str, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("mcpgate-identity+jwt"));
    let key = decoding_key(gateway, header.kid.as_deref().unwrap()).await;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[gateway.mcp.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn the_upstream_verifies_the_assertion_with_the_published_jwks() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .server("public_url: http://127.0.0.1:{port}/mcp")
        .upstream("identity:\n  assertion:\n    ttl: 30s")
        .build();
    let gateway = Gateway::start(&config).await;
    let response = spoofing(&gateway, &[ASSERTION, "x-mcpgate-subject"]).await;
    assert_eq!(response.status(), 200);
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|value| value.to_str().unwrap().to_owned());
    let seen = only_seen(&upstream);
    let token = header(&seen, ASSERTION).expect("an assertion");
    assert_ne!(token, "mallory");
    let claims = verify(&gateway, token, &upstream.url).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "test-client");
    assert_eq!(claims["scope"], "tools:read");
    assert_eq!(claims["request_id"].as_str(), request_id.as_deref());
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 30);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    // Plain headers are off unless turned on; the client's copy is gone anyway
    // (not on the allowlist).
    assert_eq!(header(&seen, "x-mcpgate-subject"), None);
    // The client's token never goes up.
    assert!(upstream.never_saw_authorization());
}

#[tokio::test]
async fn the_assertion_names_the_session_and_its_configured_audience() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .upstream(
            "identity:\n  assertion:\n    header: X-Caller\n    audience: https://api.internal",
        )
        .build();
    let gateway = Gateway::start(&config).await;
    let bearer = hs256(&claims(&gateway.mcp, "tools:read"), Some("dev"));
    let session = open_session(&gateway, &bearer).await;
    let response = post_in_session(&gateway, &bearer, &session, &list(2, "tools/list")).await;
    assert_eq!(response.status(), 200);
    let seen = upstream.seen();
    let last = seen.last().unwrap();
    let upstream_session = header(last, "mcp-session-id").expect("a session upstream");
    let token = header(last, "x-caller").expect("an assertion under the configured name");
    let claims = verify(&gateway, token, "https://api.internal").await;
    assert_eq!(claims["session_id"], upstream_session);
    assert_eq!(header(last, ASSERTION), None);
}

#[tokio::test]
async fn plain_headers_are_sent_only_when_turned_on() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .upstream("identity:\n  headers:\n    enabled: true")
        .build();
    let gateway = Gateway::start(&config).await;
    let response = spoofing(
        &gateway,
        &[
            "x-mcpgate-subject",
            "x-mcpgate-client-id",
            "x-mcpgate-scopes",
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let seen = only_seen(&upstream);
    assert_eq!(header(&seen, "x-mcpgate-subject"), Some("alice"));
    assert_eq!(header(&seen, "x-mcpgate-client-id"), Some("test-client"));
    assert_eq!(header(&seen, "x-mcpgate-scopes"), Some("tools:read"));
    // No assertion unless it is configured; no JWKS either.
    assert_eq!(header(&seen, ASSERTION), None);
    let jwks = Gateway::client()
        .get(format!(
            "{}/.well-known/mcpgate-identity-jwks.json",
            gateway.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 404);
}

#[tokio::test]
async fn a_subject_that_is_no_header_value_is_left_out() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .upstream("identity:\n  headers:\n    enabled: true")
        .build();
    let gateway = Gateway::start(&config).await;
    let mut claims = claims(&gateway.mcp, "tools:read");
    claims["sub"] = json!("alice\nX-Injected: yes");
    let response = Request::post(&gateway)
        .bearer(&hs256(&claims, Some("dev")))
        .json(&list(1, "tools/list"))
        .send()
        .await;
    assert_eq!(response.status(), 200);
    let seen = only_seen(&upstream);
    assert_eq!(header(&seen, "x-mcpgate-subject"), None);
    assert_eq!(header(&seen, "x-injected"), None);
    assert_eq!(header(&seen, "x-mcpgate-client-id"), Some("test-client"));
}

#[tokio::test]
async fn without_a_principal_no_assertion_is_sent() {
    let upstream = Upstream::start().await;
    let config = TestConfig::new(&upstream.url)
        .upstream("identity:\n  assertion: {}\n  headers: { enabled: true }")
        .build();
    let gateway = Gateway::start(&config).await;
    let response = spoofing(&gateway, &[ASSERTION, "x-mcpgate-subject"]).await;
    assert_eq!(response.status(), 200);
    let seen = only_seen(&upstream);
    assert_eq!(header(&seen, ASSERTION), None);
    assert_eq!(header(&seen, "x-mcpgate-subject"), None);
}

#[test]
fn a_bad_identity_header_name_is_a_config_error_naming_its_key() {
    for (section, key) in [
        (
            "{ assertion: { header: \"X Bad\" } }",
            "upstream.identity.assertion.header",
        ),
        (
            "{ headers: { subject: Authorization } }",
            "upstream.identity.headers.subject",
        ),
        (
            "{ assertion: {}, headers: { scopes: X-Mcpgate-Identity } }",
            "upstream.identity.headers.scopes",
        ),
    ] {
        let yaml = format!(
            "server: {{ listen: 127.0.0.1:1 }}\nupstream:\n  url: http://127.0.0.1:2/mcp\n  identity: {section}\n"
        );
        let (code, _, stderr) = check_config(&yaml, &[]);
        assert_eq!(code, 78, "{yaml}\n{stderr}");
        assert!(stderr.contains(key), "{key} not in {stderr}");
    }
}

/// The `kid`s the JWKS publishes, in order.
async fn published_kids(gateway: &Gateway) -> Vec<String> {
    let jwks = get_json(format!(
        "{}/.well-known/mcpgate-identity-jwks.json",
        gateway.base
    ))
    .await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The `kid` of the assertion on the last request the upstream saw.
fn last_kid(upstream: &Upstream) -> String {
    let seen = upstream.seen();
    let token = header(seen.last().unwrap(), ASSERTION).unwrap().to_owned();
    jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn a_reload_rotates_the_key_and_keeps_publishing_the_previous_one() {
    let upstream = Upstream::start().await;
    let config = |section: &str| {
        TestConfig::oauth(&upstream.url)
            .upstream(&format!("identity:\n  assertion:\n{section}"))
            .build()
    };
    let gateway = Gateway::start(&config("    signing_key_file: \"{dir}/old.pem\"")).await;
    let response = spoofing(&gateway, &[]).await;
    assert_eq!(response.status(), 200);
    let old_kid = last_kid(&upstream);
    assert_eq!(
        published_kids(&gateway).await,
        std::slice::from_ref(&old_kid)
    );

    let old_pem = std::fs::read_to_string(gateway.dir().join("old.pem")).unwrap();
    gateway.rewrite_config(&config(&format!(
        "    signing_key_file: \"{{dir}}/new.pem\"\n    previous_signing_keys: [{}]",
        serde_json::to_string(&old_pem).unwrap()
    )));
    gateway.signal("HUP");
    assert!(
        gateway.wait_for_log("config reloaded").await,
        "{}",
        gateway.stderr()
    );
    let response = spoofing(&gateway, &[]).await;
    assert_eq!(response.status(), 200);
    let new_kid = last_kid(&upstream);
    assert_ne!(new_kid, old_kid, "the new key signs");
    assert_eq!(published_kids(&gateway).await, [new_kid, old_kid]);
    // What the new key signed verifies against the published set.
    let seen = upstream.seen();
    let token = header(seen.last().unwrap(), ASSERTION).unwrap();
    assert_eq!(verify(&gateway, token, &upstream.url).await["sub"], "alice");
}

#[tokio::test]
async fn audit_records_name_the_mechanisms_never_the_assertion() {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .upstream("identity:\n  assertion: {}\n  headers: { enabled: true }")
        .audit()
        .build();
    let gateway = Gateway::start(&config).await;
    let response = spoofing(&gateway, &[]).await;
    assert_eq!(response.status(), 200);
    let records = audit_records(&gateway, 1).await;
    let record = &records[0];
    assert_eq!(record["upstream_identity"], "assertion identity_headers");
    assert_eq!(record["upstream_audience"], Value::Null);
    let token = header(&only_seen(&upstream), ASSERTION).unwrap().to_owned();
    assert!(!record.to_string().contains(&token), "{record}");
}
