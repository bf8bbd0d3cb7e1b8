//! Access tokens shaped like each identity provider's (claim sets as their
//! documentation shows them), signed by test keys and served from JWKS documents of
//! the provider's shape, against the real binary: each accepted with its recipe's
//! config, and refused (or read differently) without the quirk option it needs.
//!
//! The policy is the same everywhere: `admin_reset` needs `mcp:admin`, `db_query`
//! needs `mcp:read`; every other request passes with any valid token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn config(upstream: &Upstream, oauth: &str) -> String {
    format!(
        r#"
server:
  listen: 127.0.0.1:{{port}}
upstream:
  url: {upstream}
auth:
  oauth:
    enabled: true
{oauth}
scopes:
  tools:
    admin_reset: [mcp:admin]
    db_query: [mcp:read]
audit:
  path: "{{dir}}/audit.jsonl"
"#,
        upstream = upstream.url
    )
}

/// An IdP's signing keys behind a JWKS endpoint of its shape, and an upstream.
struct Idp {
    keys: Keys,
    jwks: JwksServer,
    upstream: Upstream,
}

impl Idp {
    /// `jwk` shapes the published RSA key (`kid` `rsa-1`) from the generic one.
    async fn start(jwk: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Self {
        let keys = Keys::load();
        let mut key = public_jwk(&keys.rsa, Algorithm::RS256, "rsa-1");
        if let Some(object) = key.as_object_mut() {
            jwk(object);
        }
        let jwks = JwksServer::start(json!({ "keys": [key] })).await;
        Self {
            keys,
            jwks,
            upstream: Upstream::start().await,
        }
    }

    /// A gateway whose `auth.oauth` holds `oauth` (lines indented by four spaces,
    /// `{jwks}` replaced by the JWKS URL).
    async fn gateway(&self, oauth: &str) -> Gateway {
        Gateway::start(&config(
            &self.upstream,
            &oauth.replace("{jwks}", &self.jwks.url),
        ))
        .await
    }

    /// An RS256 token signed by the published key, with the header the IdP sends.
    fn token(&self, typ: Option<&str>, claims: &Value) -> String {
        sign_with(&self.keys.rsa, Algorithm::RS256, "rsa-1", typ, claims)
    }

    /// How many `tools/call`s of `tool` reached the upstream.
    fn calls_seen(&self, tool: &str) -> usize {
        self.upstream
            .seen()
            .iter()
            .filter(|seen| {
                serde_json::from_slice::<Value>(&seen.body).is_ok_and(|body| {
                    body["method"] == "tools/call" && body["params"]["name"] == tool
                })
            })
            .count()
    }
}

fn sign_with(
    key: &EncodingKey,
    alg: Algorithm,
    kid: &str,
    typ: Option<&str>,
    claims: &Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// The answer to a `tools/call` of `tool`, and the record the audit log holds for it.
struct Outcome {
    status: u16,
    challenge: String,
    record: Value,
}

async fn call(gateway: &Gateway, token: &str, tool: &str) -> Outcome {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": tool, "arguments": {}}});
    let response = Gateway::client()
        .post(&gateway.mcp)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge = www_authenticate(&response);
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("every response carries x-request-id")
        .to_str()
        .unwrap()
        .to_owned();
    let record = audit_record(gateway, &request_id).await;
    Outcome {
        status,
        challenge,
        record,
    }
}

/// The audit record of one request, waiting (up to 5 s) for the writer.
async fn audit_record(gateway: &Gateway, request_id: &str) -> Value {
    let path = gateway.dir().join("audit.jsonl");
    for _ in 0..100 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|record| record["request_id"] == request_id);
        if let Some(record) = found {
            for field in AUDIT_FIELDS {
                assert!(record.get(field).is_some(), "{field} missing in {record}");
            }
            return record;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no audit record for {request_id}");
}

fn assert_insufficient(outcome: &Outcome, scope: &str) {
    assert_eq!(outcome.status, 403, "{}", outcome.record);
    assert!(
        outcome.challenge.contains("error=\"insufficient_scope\"")
            && outcome.challenge.contains(&format!("scope=\"{scope}\"")),
        "{}",
        outcome.challenge
    );
}

fn assert_invalid_token(outcome: &Outcome, reason: &str) {
    assert_eq!(outcome.status, 401, "{}", outcome.record);
    assert!(
        outcome.challenge.contains("error=\"invalid_token\""),
        "{}",
        outcome.challenge
    );
    assert_eq!(outcome.record["auth_result"], reason);
}

fn times() -> (u64, u64) {
    let now = now();
    (now, now + 300)
}

// === Keycloak ===

const KEYCLOAK_ISSUER: &str = "https://keycloak.test/realms/acme";

/// A Keycloak access token: realm roles in `realm_access.roles`, client roles in
/// `resource_access.<client>.roles`, the client in `azp`, `scope` a string, and the
/// gateway in `aud` through an audience mapper (beside `account`).
fn keycloak_claims(audience: &str, realm_roles: &[&str], resource_access: Value) -> Value {
    let (iat, exp) = times();
    json!({
        "exp": exp, "iat": iat, "auth_time": iat - 5,
        "jti": "onrtac:4f5d2c1e-8a7b-4c3d-9e0f-1a2b3c4d5e6f",
        "iss": KEYCLOAK_ISSUER,
        "aud": [audience, "account"],
        "sub": "8a1f6c2e-3b4d-4e5f-9a0b-1c2d3e4f5a6b",
        "typ": "Bearer",
        "azp": "mcp-client",
        "sid": "b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d0e",
        "acr": "1",
        "allowed-origins": ["http://localhost:6274"],
        "realm_access": {"roles": realm_roles},
        "resource_access": resource_access,
        "scope": "openid profile email",
        "email_verified": true,
        "preferred_username": "alice",
        "email": "alice@example.com",
    })
}

const KEYCLOAK_OAUTH: &str = r#"    issuers: [https://keycloak.test/realms/acme]
    claim_scopes:
      realm_access.roles: { mcp-admin: [mcp:admin] }
    jwks:
      - url: {jwks}
        algorithms: [RS256]
        claim_scopes:
          resource_access.mcp-gateway.roles: { tools-reader: [mcp:read] }
"#;

#[tokio::test]
async fn keycloak_realm_and_client_roles_grant_mapped_scopes() {
    let idp = Idp::start(|jwk| {
        jwk.insert("use".into(), json!("sig"));
        jwk.insert("x5t".into(), json!("dGVzdC10aHVtYnByaW50"));
    })
    .await;
    let gateway = idp.gateway(KEYCLOAK_OAUTH).await;
    let token = idp.token(
        Some("JWT"),
        &keycloak_claims(
            &gateway.mcp,
            &[
                "default-roles-acme",
                "offline_access",
                "uma_authorization",
                "mcp-admin",
            ],
            json!({
                "mcp-gateway": {"roles": ["tools-reader"]},
                "account": {"roles": ["manage-account", "view-profile"]},
            }),
        ),
    );

    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(idp.calls_seen("admin_reset"), 1);
    let record = &admin.record;
    assert_eq!(record["action"], "allow");
    assert_eq!(record["oauth_client_id"], "mcp-client");
    assert_eq!(record["scopes"], "openid profile email mcp:admin mcp:read");
    assert_eq!(
        record["mapped_scopes"],
        json!([
            {"scope": "mcp:admin", "claim": "realm_access.roles", "value": "mcp-admin"},
            {"scope": "mcp:read", "claim": "resource_access.mcp-gateway.roles", "value": "tools-reader"},
        ])
    );
    assert_eq!(call(&gateway, &token, "db_query").await.status, 200);

    // The role of another client is not the gateway's client role.
    let elsewhere = idp.token(
        Some("JWT"),
        &keycloak_claims(
            &gateway.mcp,
            &["default-roles-acme"],
            json!({"other-app": {"roles": ["tools-reader", "mcp-admin"]}}),
        ),
    );
    let denied = call(&gateway, &elsewhere, "db_query").await;
    assert_insufficient(&denied, "mcp:read");
    assert_eq!(denied.record["mapped_scopes"], json!([]));

    // Without the mappings the same token carries no MCP scope at all.
    let plain = idp
        .gateway(
            "    issuers: [https://keycloak.test/realms/acme]\n    jwks:\n      - url: {jwks}\n        algorithms: [RS256]\n",
        )
        .await;
    let token = idp.token(
        Some("JWT"),
        &keycloak_claims(
            &plain.mcp,
            &["mcp-admin"],
            json!({"mcp-gateway": {"roles": ["tools-reader"]}}),
        ),
    );
    let refused = call(&plain, &token, "admin_reset").await;
    assert_insufficient(&refused, "mcp:admin");
    assert_eq!(refused.record["mapped_scopes"], json!([]));
    assert_eq!(refused.record["scopes"], "openid profile email");
    assert_eq!(
        idp.calls_seen("admin_reset"),
        1,
        "the refusal reached no upstream"
    );
}

// === Auth0 ===

const AUTH0_ISSUER: &str = "https://acme.us.auth0.com/";

/// An Auth0 access token for an API with RBAC and "Add Permissions in the Access
/// Token": `permissions` an array, `scope` a string, `aud` an array (the API and
/// userinfo), roles added by an Action under a namespaced claim.
fn auth0_claims(audience: &str) -> Value {
    let (iat, exp) = times();
    json!({
        "https://mcp.example.com/roles": ["support"],
        "iss": AUTH0_ISSUER,
        "sub": "auth0|64f1c2a9b3e4d5f6a7b8c9d0",
        "aud": [audience, "https://acme.us.auth0.com/userinfo"],
        "iat": iat,
        "exp": exp,
        "scope": "openid profile email",
        "azp": "Xk3vPq9rS2tU5wY8zA1bC4dE7fG0hJ6k",
        "permissions": ["mcp:admin", "read:reports"],
    })
}

const AUTH0_OAUTH: &str = r#"    issuers: ["https://acme.us.auth0.com/"]
    jwks:
      - url: {jwks}
        algorithms: [RS256]
        scope_claims: [scope, permissions]
        claim_scopes:
          - claim: ["https://mcp.example.com/roles"]
            values: { support: [mcp:read] }
"#;

#[tokio::test]
async fn auth0_permissions_and_namespaced_roles_grant_scopes() {
    let idp = Idp::start(|jwk| {
        jwk.insert("use".into(), json!("sig"));
        jwk.insert("x5t".into(), json!("dGVzdC10aHVtYnByaW50"));
        jwk.insert("x5c".into(), json!(["MIIDHTCCAgWgAwIBAgIJ"]));
    })
    .await;
    let gateway = idp.gateway(AUTH0_OAUTH).await;
    let token = idp.token(Some("JWT"), &auth0_claims(&gateway.mcp));

    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(idp.calls_seen("admin_reset"), 1);
    assert_eq!(
        admin.record["scopes"],
        "openid profile email mcp:admin read:reports mcp:read"
    );
    // `permissions` are the token's own scopes; only the role is a mapping.
    assert_eq!(
        admin.record["mapped_scopes"],
        json!([{"scope": "mcp:read", "claim": "[\"https://mcp.example.com/roles\"]", "value": "support"}])
    );
    assert_eq!(
        admin.record["oauth_client_id"],
        "Xk3vPq9rS2tU5wY8zA1bC4dE7fG0hJ6k"
    );
    assert_eq!(call(&gateway, &token, "db_query").await.status, 200);

    // Without the options, neither the permissions nor the role grant anything; a
    // dotted string cannot name the namespaced claim either.
    let plain = idp
        .gateway(
            "    issuers: [\"https://acme.us.auth0.com/\"]\n    jwks:\n      - url: {jwks}\n        algorithms: [RS256]\n        claim_scopes: { \"https://mcp.example.com/roles\": { support: [mcp:read] } }\n",
        )
        .await;
    let token = idp.token(Some("JWT"), &auth0_claims(&plain.mcp));
    assert_insufficient(&call(&plain, &token, "admin_reset").await, "mcp:admin");
    let read = call(&plain, &token, "db_query").await;
    assert_insufficient(&read, "mcp:read");
    assert_eq!(read.record["scopes"], "openid profile email");
    assert_eq!(idp.calls_seen("admin_reset"), 1);
}

// === Okta ===

const OKTA_ISSUER: &str = "https://acme.okta.com/oauth2/default";

/// An Okta custom authorization server's access token: `scp` an array, the client
/// in `cid` (no `client_id`, no `azp`), the user id in `uid`, `aud` the server's
/// configured audience.
fn okta_claims() -> Value {
    let (iat, exp) = times();
    json!({
        "ver": 1,
        "jti": "AT.7G0hJ6kXk3vPq9rS2tU5wY8zA1bC4dE",
        "iss": OKTA_ISSUER,
        "aud": "api://mcp",
        "iat": iat,
        "exp": exp,
        "cid": "0oa8f5j3ecb5w3dF35d7",
        "uid": "00u1abc2def3GHI4jk5",
        "scp": ["openid", "mcp:admin"],
        "auth_time": iat - 30,
        "sub": "alice@example.com",
    })
}

const OKTA_OAUTH: &str = r#"    issuers: [https://acme.okta.com/oauth2/default]
    audiences: [api://mcp]
    jwks:
      - url: {jwks}
        algorithms: [RS256]
        client_id_claim: cid
"#;

#[tokio::test]
async fn okta_scp_array_and_cid_as_the_client() {
    let idp = Idp::start(|jwk| {
        jwk.insert("use".into(), json!("sig"));
    })
    .await;
    let gateway = idp.gateway(OKTA_OAUTH).await;
    // Okta's header carries `kid` and `alg` only.
    let token = idp.token(None, &okta_claims());
    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(admin.record["oauth_client_id"], "0oa8f5j3ecb5w3dF35d7");
    assert_eq!(admin.record["subject"], "alice@example.com");
    assert_eq!(admin.record["scopes"], "openid mcp:admin");

    // Without `client_id_claim` the token is still valid, but names no client.
    let plain = idp
        .gateway(&OKTA_OAUTH.replace("        client_id_claim: cid\n", ""))
        .await;
    let anonymous = call(&plain, &token, "admin_reset").await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.record["oauth_client_id"], Value::Null);
    assert_eq!(idp.calls_seen("admin_reset"), 2);
}

// === Entra ID ===

const ENTRA_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const ENTRA_API: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";

/// An Entra ID v2.0 access token for the gateway's app registration: `aud` its
/// application id, app roles in `roles`, delegated scopes in `scp` (a string), the
/// client in `azp`.
fn entra_claims() -> Value {
    let (iat, exp) = times();
    json!({
        "aud": ENTRA_API,
        "iss": format!("https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"),
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "aio": "AWQAm/8TAAAA",
        "azp": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        "azpacr": "0",
        "name": "Alice Example",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "preferred_username": "alice@acme.onmicrosoft.com",
        "rh": "0.AXEA",
        "roles": ["Tools.Admin"],
        "scp": "Tools.Read User.Read",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": ENTRA_TENANT,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "2.0",
    })
}

fn entra_oauth() -> String {
    format!(
        r#"    issuers: ["https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"]
    audiences: ["{ENTRA_API}"]
    jwks:
      - url: {{jwks}}
        algorithms: [RS256]
        claim_scopes:
          roles: {{ Tools.Admin: [mcp:admin] }}
          scp: {{ Tools.Read: [mcp:read] }}
"#
    )
}

#[tokio::test]
async fn entra_app_roles_and_a_jwk_without_alg() {
    // Entra's keys carry no `alg`, but `x5t`, `x5c` and `issuer`.
    let idp = Idp::start(|jwk| {
        jwk.remove("alg");
        jwk.insert("use".into(), json!("sig"));
        jwk.insert("x5t".into(), json!("nOo3ZDrODXEK1jKWhXslHR_KXEg"));
        jwk.insert("x5c".into(), json!(["MIIC/jCCAeagAwIBAgIJ"]));
        jwk.insert(
            "issuer".into(),
            json!(format!(
                "https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"
            )),
        );
    })
    .await;
    let gateway = idp.gateway(&entra_oauth()).await;
    let token = idp.token(Some("JWT"), &entra_claims());
    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(
        admin.record["mapped_scopes"],
        json!([
            {"scope": "mcp:admin", "claim": "roles", "value": "Tools.Admin"},
            {"scope": "mcp:read", "claim": "scp", "value": "Tools.Read"},
        ])
    );
    assert_eq!(
        admin.record["oauth_client_id"],
        "d3590ed6-52b3-4102-aeff-aad2292ab01c"
    );
    assert_eq!(call(&gateway, &token, "db_query").await.status, 200);

    // The key without `alg` verifies only what the provider allows (RS256), not
    // every algorithm of its type.
    let pss = sign_with(
        &idp.keys.rsa,
        Algorithm::PS256,
        "rsa-1",
        Some("JWT"),
        &entra_claims(),
    );
    assert_invalid_token(&call(&gateway, &pss, "echo").await, "bad_algorithm");

    // Without the mapping, app roles grant nothing.
    let oauth = entra_oauth();
    let without_mapping = oauth
        .split("        claim_scopes:")
        .next()
        .unwrap_or_default();
    let plain = idp.gateway(without_mapping).await;
    assert_insufficient(&call(&plain, &token, "admin_reset").await, "mcp:admin");
    assert_eq!(idp.calls_seen("admin_reset"), 1);
}

// === Cognito ===

const COGNITO_ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEfGhI";
const COGNITO_CLIENT: &str = "5ab1c2d3e4f5g6h7i8j9k0l1m2";

/// A Cognito user-pool access token: no `aud`, the app client in `client_id`,
/// `token_use: access`, `scope` a string of resource-server scopes, groups in
/// `cognito:groups`.
fn cognito_claims(client_id: &str) -> Value {
    let (iat, exp) = times();
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["mcp-admins"],
        "iss": COGNITO_ISSUER,
        "version": 2,
        "client_id": client_id,
        "origin_jti": "bbbbbbbb-cccc-dddd-eeee-ffffffffffff",
        "event_id": "cccccccc-dddd-eeee-ffff-000000000000",
        "token_use": "access",
        "scope": "mcp-gateway/tools.read openid",
        "auth_time": iat - 10,
        "exp": exp,
        "iat": iat,
        "jti": "dddddddd-eeee-ffff-0000-111111111111",
        "username": "alice",
    })
}

fn cognito_oauth(quirk: bool) -> String {
    let audience = if quirk {
        format!("        audience_claim: client_id\n        audiences: [{COGNITO_CLIENT}]\n")
    } else {
        String::new()
    };
    format!(
        r#"    issuers: [{COGNITO_ISSUER}]
    jwks:
      - url: {{jwks}}
        algorithms: [RS256]
{audience}        claim_scopes:
          cognito:groups: {{ mcp-admins: [mcp:admin] }}
          scope: {{ mcp-gateway/tools.read: [mcp:read] }}
"#
    )
}

#[tokio::test]
async fn cognito_audience_in_client_id_and_groups() {
    // Cognito's keys do carry `alg`.
    let idp = Idp::start(|jwk| {
        jwk.insert("use".into(), json!("sig"));
    })
    .await;
    let gateway = idp.gateway(&cognito_oauth(true)).await;
    let token = idp.token(None, &cognito_claims(COGNITO_CLIENT));
    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(admin.record["oauth_client_id"], COGNITO_CLIENT);
    assert_eq!(
        admin.record["mapped_scopes"],
        json!([
            {"scope": "mcp:admin", "claim": "cognito:groups", "value": "mcp-admins"},
            {"scope": "mcp:read", "claim": "scope", "value": "mcp-gateway/tools.read"},
        ])
    );
    assert_eq!(call(&gateway, &token, "db_query").await.status, 200);

    // Another app client of the same pool is another audience.
    let other = idp.token(None, &cognito_claims("7zz9yy8xx7ww6vv5uu4tt3ss2r"));
    assert_invalid_token(&call(&gateway, &other, "echo").await, "bad_audience");

    // Without `audience_claim` a token without `aud` is refused, as always.
    let strict = idp.gateway(&cognito_oauth(false)).await;
    assert_invalid_token(&call(&strict, &token, "echo").await, "bad_audience");
    assert_eq!(idp.calls_seen("admin_reset"), 1);
    assert_eq!(idp.calls_seen("echo"), 0);
}

// === oidc-provider ===

/// node-oidc-provider with a resource indicator: an RFC 9068 access token (`typ:
/// at+jwt`, `aud` the resource, `client_id`, `scope` a string), ES256 here.
#[tokio::test]
async fn oidc_provider_rfc9068_tokens_need_no_quirk() {
    let keys = Keys::load();
    let jwks =
        JwksServer::start(json!({"keys": [public_jwk(&keys.ec, Algorithm::ES256, "ec-1")]})).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(
        &upstream,
        &format!(
            "    issuers: [https://op.example.test]\n    jwks:\n      - url: {}\n        algorithms: [ES256, RS256]\n        require_at_jwt: true\n",
            jwks.url
        ),
    ))
    .await;
    let (iat, exp) = times();
    let claims = json!({
        "jti": "sZk3lW9mQeY1", "sub": "alice", "iat": iat, "exp": exp,
        "scope": "openid mcp:admin", "client_id": "mcp-inspector",
        "iss": "https://op.example.test", "aud": gateway.mcp,
    });
    let token = sign_with(&keys.ec, Algorithm::ES256, "ec-1", Some("at+jwt"), &claims);
    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(admin.record["oauth_client_id"], "mcp-inspector");
    assert_eq!(admin.record["mapped_scopes"], json!([]));
    let id_token_shaped = sign_with(&keys.ec, Algorithm::ES256, "ec-1", Some("JWT"), &claims);
    assert_invalid_token(&call(&gateway, &id_token_shaped, "echo").await, "bad_type");
}

// === Ory Hydra (opaque tokens, introspection) ===

/// Hydra's introspection answers, by token.
type Answers = Arc<Mutex<Vec<(String, Value)>>>;

async fn introspection_endpoint(answers: Answers) -> String {
    let router = Router::new()
        .route(
            "/admin/oauth2/introspect",
            post(|State(answers): State<Answers>, body: String| async move {
                let token = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(name, _)| name == "token")
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                let answer = answers
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(known, _)| *known == token)
                    .map_or(json!({"active": false}), |(_, answer)| answer.clone());
                axum::Json(answer)
            }),
        )
        .with_state(answers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/admin/oauth2/introspect",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn hydra_oauth(url: &str, mapping: bool) -> String {
    let mapping = if mapping {
        "      claim_scopes:\n        ext.roles: { admin: [mcp:admin] }\n"
    } else {
        ""
    };
    format!(
        "    issuers: [https://hydra.example.test/]\n    introspection:\n      url: {url}\n      client_id: mcpgate\n      client_secret: hydra-secret\n{mapping}"
    )
}

/// An Ory Hydra opaque access token as its introspection endpoint describes it:
/// `scope` a string, `aud` the audiences granted, session claims under `ext`.
fn hydra_answer(audience: &str) -> Value {
    let (iat, exp) = times();
    json!({
        "active": true,
        "scope": "openid offline mcp:read",
        "client_id": "mcp-client",
        "sub": "alice",
        "exp": exp, "iat": iat, "nbf": iat,
        "aud": [audience],
        "iss": "https://hydra.example.test/",
        "token_type": "Bearer",
        "token_use": "access_token",
        "ext": {"roles": ["admin"]},
    })
}

#[tokio::test]
async fn hydra_introspected_session_claims_grant_mapped_scopes() {
    let answers: Answers = Arc::default();
    let url = introspection_endpoint(answers.clone()).await;
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, &hydra_oauth(&url, true))).await;
    let plain = Gateway::start(&config(&upstream, &hydra_oauth(&url, false))).await;
    let token = "ory_at_Qm9uam91ciBsZSBtb25kZQ.c2lnbmF0dXJl";
    let other = "ory_at_QXUgcmV2b2lyIGxlIG1vbmRl.c2lnbmF0dXJl";
    answers.lock().unwrap().extend([
        (token.to_owned(), hydra_answer(&gateway.mcp)),
        (other.to_owned(), hydra_answer(&plain.mcp)),
    ]);

    let admin = call(&gateway, token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(admin.record["auth_method"], "introspection");
    assert_eq!(
        admin.record["mapped_scopes"],
        json!([{"scope": "mcp:admin", "claim": "ext.roles", "value": "admin"}])
    );
    assert_eq!(call(&gateway, token, "db_query").await.status, 200);

    assert_insufficient(&call(&plain, other, "admin_reset").await, "mcp:admin");
}
