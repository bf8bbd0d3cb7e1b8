//! The recipes of `docs/idps/`, exercised: each recipe's configuration block is read
//! from its markdown file, pointed at the test's servers (listen address, upstream,
//! JWKS and introspection URLs; everything else as written: issuers, audiences,
//! `public_url`, mappings, quirks, scope rules), and run as the real binary against
//! access tokens shaped like each identity provider's (claim sets as their
//! documentation shows them), signed by test keys and served from JWKS documents of
//! the provider's shape. The recipe's own example payload is the token that must be
//! accepted; variants of it that the recipe's mapping does not cover are refused, and
//! the example is refused (or read differently) without the quirk option it needs. `mcpgate check` accepts every block
//! as written, and every recipe file is covered.
//!
//! Every recipe has the same policy: calling a tool needs `mcp:read`, the `admin_*`
//! tools need `mcp:admin`, which implies `mcp:read`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

// === the recipes ===

/// Every recipe in `docs/idps/` (file name without `.md`); each has a test below that
/// loads it with `Recipe::load`.
const RECIPES: &[&str] = &[
    "keycloak",
    "auth0",
    "okta",
    "entra-id",
    "cognito",
    "ory-hydra",
    "oidc-provider",
];

/// The info string that marks a recipe's one configuration block.
const FENCE: &str = "```yaml mcpgate-recipe";
/// The info string that marks a recipe's example token payload (or introspection
/// answer): the tests send it, so the example is one the recipe accepts.
const EXAMPLE: &str = "```json mcpgate-example";

fn recipes_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/idps")
}

/// The bodies of the blocks fenced with `fence` in `markdown`. A fence line that
/// mentions the marker in any other way is an error rather than a block silently
/// skipped.
fn recipe_blocks(markdown: &str, fence: &str) -> Vec<String> {
    let marker = fence.rsplit(' ').next().unwrap();
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("```") || !line.contains(marker) {
            continue;
        }
        assert_eq!(line, fence, "a {marker} block starts with exactly {fence}");
        let mut block = String::new();
        let mut closed = false;
        for line in lines.by_ref() {
            if line == "```" {
                closed = true;
                break;
            }
            block.push_str(line);
            block.push('\n');
        }
        assert!(closed, "a recipe block is not closed");
        blocks.push(block);
    }
    blocks
}

/// The one block of `docs/idps/<name>.md` fenced with `fence`, as written.
fn recipe_block(name: &str, fence: &str) -> String {
    let path = recipes_dir().join(format!("{name}.md"));
    let markdown = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut blocks = recipe_blocks(&markdown, fence);
    assert_eq!(
        blocks.len(),
        1,
        "{} must hold exactly one {fence} block",
        path.display()
    );
    blocks.remove(0)
}

/// The configuration block of `docs/idps/<name>.md`, as written.
fn recipe_text(name: &str) -> String {
    recipe_block(name, FENCE)
}

/// The example payload of `docs/idps/<name>.md`, its times (`iat`, `nbf`,
/// `auth_time`, `exp`) moved so that `iat` is now.
fn example(name: &str) -> Value {
    let mut payload: Value = serde_json::from_str(&recipe_block(name, EXAMPLE))
        .unwrap_or_else(|error| panic!("docs/idps/{name}.md example: {error}"));
    let issued = payload["iat"].as_u64().expect("the example has iat");
    let shift = now() - issued;
    for claim in ["iat", "nbf", "auth_time", "exp"] {
        if let Some(time) = payload.get(claim).and_then(Value::as_u64) {
            payload[claim] = json!(time + shift);
        }
    }
    payload
}

/// Where a recipe runs in a test.
#[derive(Clone, Copy)]
struct Local<'a> {
    upstream: &'a Upstream,
    jwks: Option<&'a str>,
    introspection: Option<&'a str>,
}

/// A recipe's configuration, parsed.
struct Recipe {
    name: &'static str,
    config: Value,
}

impl Recipe {
    fn load(name: &'static str) -> Self {
        let text = recipe_text(name);
        let config = serde_saphyr::from_str(&text)
            .unwrap_or_else(|error| panic!("docs/idps/{name}.md: {error}"));
        Self { name, config }
    }

    /// The resource the recipe protects: the audience its tokens carry.
    fn public_url(&self) -> String {
        self.config["server"]["public_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: server.public_url", self.name))
            .to_owned()
    }

    /// The recipe's configuration run locally, after `edit` (which takes out a quirk
    /// option to show what it is for): the gateway listens on loopback, the upstream,
    /// key sources and introspection endpoint are the test's, and the audit log goes
    /// to the gateway's directory. Written as JSON, which is YAML too.
    fn local(&self, local: Local<'_>, edit: impl FnOnce(&mut Value)) -> String {
        let mut config = self.config.clone();
        let name = self.name;
        assert!(
            config.get("audit").is_none(),
            "{name}: a recipe sets no audit log"
        );
        config["server"]["listen"] = json!("127.0.0.1:{port}");
        assert!(
            config["upstream"]["url"].is_string(),
            "{name}: upstream.url"
        );
        config["upstream"]["url"] = json!(local.upstream.url);
        let oauth = &mut config["auth"]["oauth"];
        if let Some(sources) = oauth.get_mut("jwks").and_then(Value::as_array_mut) {
            for source in sources
                .iter_mut()
                .filter(|source| source.get("url").is_some())
            {
                source["url"] = json!(local.jwks.expect("a JWKS server for a url source"));
            }
        }
        if let Some(introspection) = oauth.get_mut("introspection") {
            introspection["url"] = json!(local.introspection.expect("an introspection endpoint"));
        }
        config["audit"] = json!({"path": "{dir}/audit.jsonl"});
        edit(&mut config);
        serde_json::to_string_pretty(&config).unwrap()
    }

    /// The recipe's `auth.oauth.jwks[0]`, to edit.
    fn source(config: &mut Value) -> &mut serde_json::Map<String, Value> {
        config["auth"]["oauth"]["jwks"][0]
            .as_object_mut()
            .expect("jwks[0]")
    }
}

/// The `${env:NAME}` names a text refers to.
fn env_names(text: &str) -> Vec<String> {
    text.split("${env:")
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[test]
fn every_recipe_file_has_one_block_and_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(recipes_dir())
        .expect("docs/idps/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .filter(|name| name != "README")
        .collect();
    found.sort();
    let mut listed: Vec<String> = RECIPES.iter().map(|name| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed, "docs/idps/*.md and RECIPES differ");

    let index = std::fs::read_to_string(recipes_dir().join("README.md")).unwrap();
    assert!(
        recipe_blocks(&index, FENCE).is_empty() && recipe_blocks(&index, EXAMPLE).is_empty(),
        "the index holds no recipe"
    );
    let tests = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp_tokens.rs"),
    )
    .unwrap();
    for name in RECIPES {
        recipe_text(name);
        example(name);
        assert!(
            index.contains(&format!("({name}.md)")),
            "docs/idps/README.md links {name}.md"
        );
        assert!(
            tests.contains(&format!("Recipe::load(\"{name}\")"))
                && tests.contains(&format!("example(\"{name}\")")),
            "a test runs the {name} recipe and sends its example"
        );
    }
}

/// `mcpgate check` accepts every recipe as written. It fetches each JWKS at start, so
/// only the JWKS URLs are replaced (by a local server's); `${env:…}` variables are set.
#[tokio::test]
async fn every_recipe_checks_out_as_written() {
    let jwks = JwksServer::start(Keys::load().jwks()).await;
    for name in RECIPES {
        let written = recipe_text(name);
        let config: Value = serde_saphyr::from_str(&written).unwrap();
        let mut text = written.clone();
        let sources = config["auth"]["oauth"]["jwks"].as_array().cloned();
        for url in sources
            .iter()
            .flatten()
            .filter_map(|source| source["url"].as_str())
        {
            assert_eq!(text.matches(url).count(), 1, "{name}: {url} once");
            text = text.replace(url, &jwks.url);
        }
        let env: Vec<(String, String)> = env_names(&written)
            .into_iter()
            .map(|var| (var, "a-value-from-the-environment".to_owned()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env
                .iter()
                .map(|(var, value)| (var.as_str(), value.as_str()))
                .collect();
            run_cli(&["check", "--config", path.to_str().unwrap()], &env)
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{name}: {stdout}{stderr}");
        let public_url = config["server"]["public_url"].as_str().unwrap();
        assert!(
            stdout.starts_with(&format!("ok: MCP endpoint {public_url} -> ")),
            "{name}: {stdout}"
        );
        assert!(stdout.contains("OAuth enabled"), "{name}: {stdout}");
    }
}

// === running them ===

/// An IdP's signing keys behind a JWKS endpoint of its shape, and an upstream.
struct Idp {
    keys: Keys,
    jwks: JwksServer,
    upstream: Upstream,
}

impl Idp {
    /// `jwk` shapes the published RSA key (`kid` `rsa-1`) from the generic one;
    /// `more` are published after it.
    async fn start(jwk: impl FnOnce(&mut serde_json::Map<String, Value>), more: &[Value]) -> Self {
        let keys = Keys::load();
        let mut key = public_jwk(&keys.rsa, Algorithm::RS256, "rsa-1");
        if let Some(object) = key.as_object_mut() {
            jwk(object);
        }
        let mut published = vec![key];
        published.extend_from_slice(more);
        let jwks = JwksServer::start(json!({ "keys": published })).await;
        Self {
            keys,
            jwks,
            upstream: Upstream::start().await,
        }
    }

    /// A gateway running `recipe`, after `edit`.
    async fn gateway(&self, recipe: &Recipe, edit: impl FnOnce(&mut Value)) -> Gateway {
        let local = Local {
            upstream: &self.upstream,
            jwks: Some(&self.jwks.url),
            introspection: None,
        };
        Gateway::start(&recipe.local(local, edit)).await
    }

    /// An RS256 token signed by the published key, with the header the IdP sends.
    fn token(&self, typ: Option<&str>, claims: &Value) -> String {
        sign_with(&self.keys.rsa, Algorithm::RS256, "rsa-1", typ, claims)
    }

    /// How many `tools/call`s of `tool` reached the upstream.
    fn calls_seen(&self, tool: &str) -> usize {
        calls_seen(&self.upstream, tool)
    }
}

fn calls_seen(upstream: &Upstream, tool: &str) -> usize {
    upstream
        .seen()
        .iter()
        .filter(|seen| {
            serde_json::from_slice::<Value>(&seen.body)
                .is_ok_and(|body| body["method"] == "tools/call" && body["params"]["name"] == tool)
        })
        .count()
}

/// No change: the recipe as written.
fn as_written(_: &mut Value) {}

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
    let response = Request::post(gateway)
        .bearer(token)
        .json(&body)
        .send()
        .await;
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

/// A Keycloak access token: realm roles in `realm_access.roles`, client roles in
/// `resource_access.<client>.roles`, the client in `azp`, `scope` a string, and the
/// gateway in `aud` through an audience mapper (beside `account`).
/// The recipe's example payload, with these values.
fn keycloak_claims(audience: Value, realm_roles: &[&str], resource_access: Value) -> Value {
    let mut claims = example("keycloak");
    claims["aud"] = audience;
    claims["realm_access"]["roles"] = json!(realm_roles);
    claims["resource_access"] = resource_access;
    claims
}

#[tokio::test]
async fn keycloak_realm_and_client_roles_grant_mapped_scopes() {
    let recipe = Recipe::load("keycloak");
    // Keycloak publishes an encryption key beside the signing key.
    let keys = Keys::load();
    let mut encryption = public_jwk(&keys.rsa2, Algorithm::RS256, "enc-1");
    encryption["alg"] = json!("RSA-OAEP");
    encryption["use"] = json!("enc");
    let idp = Idp::start(
        |jwk| {
            jwk.insert("use".into(), json!("sig"));
            jwk.insert("x5t".into(), json!("dGVzdC10aHVtYnByaW50"));
        },
        &[encryption],
    )
    .await;
    let gateway = idp.gateway(&recipe, as_written).await;
    let audience = json!([recipe.public_url(), "account"]);
    // The recipe's example: realm role mcp-admin, client role tools-reader.
    let token = idp.token(Some("JWT"), &example("keycloak"));

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
            audience.clone(),
            &["default-roles-acme"],
            json!({"other-app": {"roles": ["tools-reader", "mcp-admin"]}}),
        ),
    );
    let denied = call(&gateway, &elsewhere, "db_query").await;
    assert_insufficient(&denied, "mcp:read");
    assert_eq!(denied.record["mapped_scopes"], json!([]));

    // A reader is not an admin.
    let reader = idp.token(
        Some("JWT"),
        &keycloak_claims(
            audience.clone(),
            &["default-roles-acme"],
            json!({"mcp-gateway": {"roles": ["tools-reader"]}}),
        ),
    );
    assert_eq!(call(&gateway, &reader, "db_query").await.status, 200);
    assert_insufficient(&call(&gateway, &reader, "admin_reset").await, "mcp:admin");

    // Without the audience mapper, Keycloak's token names `account` only.
    let unmapped = idp.token(
        Some("JWT"),
        &keycloak_claims(
            json!("account"),
            &["mcp-admin"],
            json!({"mcp-gateway": {"roles": ["tools-reader"]}}),
        ),
    );
    assert_invalid_token(&call(&gateway, &unmapped, "echo").await, "bad_audience");

    // Without the mappings the same token carries no MCP scope at all.
    let plain = idp
        .gateway(&recipe, |config| {
            config["auth"]["oauth"]
                .as_object_mut()
                .unwrap()
                .remove("claim_scopes");
            Recipe::source(config).remove("claim_scopes");
        })
        .await;
    let refused = call(&plain, &token, "admin_reset").await;
    assert_insufficient(&refused, "mcp:admin");
    assert_eq!(refused.record["mapped_scopes"], json!([]));
    assert_eq!(refused.record["scopes"], "openid profile email");
    assert_eq!(
        idp.calls_seen("admin_reset"),
        1,
        "the refusals reached no upstream"
    );
}

// === Auth0 ===

/// An Auth0 access token for an API with RBAC and "Add Permissions in the Access
/// Token": `permissions` an array, `scope` a string, `aud` an array (the API and
/// userinfo), roles added by an Action under a namespaced claim.
/// The recipe's example payload, with these values.
fn auth0_claims(audience: &str, permissions: &[&str], roles: &[&str]) -> Value {
    let mut claims = example("auth0");
    claims["aud"][0] = json!(audience);
    claims["permissions"] = json!(permissions);
    claims["https://mcp.example.com/roles"] = json!(roles);
    claims
}

#[tokio::test]
async fn auth0_permissions_and_namespaced_roles_grant_scopes() {
    let recipe = Recipe::load("auth0");
    let idp = Idp::start(
        |jwk| {
            jwk.insert("use".into(), json!("sig"));
            jwk.insert("x5t".into(), json!("dGVzdC10aHVtYnByaW50"));
            jwk.insert("x5c".into(), json!(["MIIDHTCCAgWgAwIBAgIJ"]));
        },
        &[],
    )
    .await;
    let gateway = idp.gateway(&recipe, as_written).await;
    let audience = recipe.public_url();
    // The recipe's example: permission mcp:admin, role support.
    let token = idp.token(Some("JWT"), &example("auth0"));

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

    // A user with the role only may read, not administer.
    let support = idp.token(Some("JWT"), &auth0_claims(&audience, &[], &["support"]));
    assert_eq!(call(&gateway, &support, "db_query").await.status, 200);
    assert_insufficient(&call(&gateway, &support, "admin_reset").await, "mcp:admin");

    // A token for another API (or Auth0's default audience) is not for the gateway.
    let elsewhere = idp.token(
        Some("JWT"),
        &auth0_claims("https://api.example.com/", &["mcp:admin"], &["support"]),
    );
    assert_invalid_token(&call(&gateway, &elsewhere, "echo").await, "bad_audience");

    // Without the options, neither the permissions nor the role grant anything; a
    // dotted string cannot name the namespaced claim either.
    let plain = idp
        .gateway(&recipe, |config| {
            let source = Recipe::source(config);
            source.remove("scope_claims");
            source.insert(
                "claim_scopes".into(),
                json!({"https://mcp.example.com/roles": {"support": ["mcp:read"]}}),
            );
        })
        .await;
    assert_insufficient(&call(&plain, &token, "admin_reset").await, "mcp:admin");
    let read = call(&plain, &token, "db_query").await;
    assert_insufficient(&read, "mcp:read");
    assert_eq!(read.record["scopes"], "openid profile email");
    assert_eq!(idp.calls_seen("admin_reset"), 1);
}

// === Okta ===

/// An Okta custom authorization server's access token: `scp` an array, the client
/// in `cid` (no `client_id`, no `azp`), the user id in `uid`, `aud` the server's
/// configured audience.
/// The recipe's example payload, with these values.
fn okta_claims(audience: &str, scp: &[&str]) -> Value {
    let mut claims = example("okta");
    claims["aud"] = json!(audience);
    claims["scp"] = json!(scp);
    claims
}

#[tokio::test]
async fn okta_scp_array_and_cid_as_the_client() {
    let recipe = Recipe::load("okta");
    let idp = Idp::start(
        |jwk| {
            jwk.insert("use".into(), json!("sig"));
        },
        &[],
    )
    .await;
    let gateway = idp.gateway(&recipe, as_written).await;
    let audience = recipe.public_url();
    // Okta's header carries `kid` and `alg` only.
    let token = idp.token(None, &example("okta"));
    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(admin.record["oauth_client_id"], "0oa8f5j3ecb5w3dF35d7");
    assert_eq!(admin.record["subject"], "alice@example.com");
    assert_eq!(admin.record["scopes"], "openid mcp:admin");

    // A token the access policy granted `mcp:read` only.
    let reader = idp.token(None, &okta_claims(&audience, &["openid", "mcp:read"]));
    assert_eq!(call(&gateway, &reader, "db_query").await.status, 200);
    assert_insufficient(&call(&gateway, &reader, "admin_reset").await, "mcp:admin");

    // The `default` server's audience is not the gateway.
    let default = idp.token(
        None,
        &okta_claims("api://default", &["openid", "mcp:admin"]),
    );
    assert_invalid_token(&call(&gateway, &default, "echo").await, "bad_audience");

    // Without `client_id_claim` the token is still valid, but names no client.
    let plain = idp
        .gateway(&recipe, |config| {
            Recipe::source(config).remove("client_id_claim");
        })
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
/// The recipe's example payload, with these values.
fn entra_claims(roles: &[&str], scp: &str) -> Value {
    let mut claims = example("entra-id");
    claims["roles"] = json!(roles);
    claims["scp"] = json!(scp);
    claims
}

/// The same grant as a v1.0 token (the app registration left at
/// `requestedAccessTokenVersion: null`): another issuer, `aud` the Application ID URI.
fn entra_v1_claims() -> Value {
    let mut claims = entra_claims(&["Tools.Admin"], "Tools.Read");
    let object = claims.as_object_mut().unwrap();
    object.insert(
        "iss".into(),
        json!(format!("https://sts.windows.net/{ENTRA_TENANT}/")),
    );
    object.insert("aud".into(), json!(format!("api://{ENTRA_API}")));
    object.insert(
        "appid".into(),
        json!("d3590ed6-52b3-4102-aeff-aad2292ab01c"),
    );
    object.insert("ver".into(), json!("1.0"));
    object.remove("azp");
    claims
}

#[tokio::test]
async fn entra_app_roles_and_a_jwk_without_alg() {
    let recipe = Recipe::load("entra-id");
    // Entra's keys carry no `alg`, but `x5t`, `x5c` and `issuer`.
    let idp = Idp::start(
        |jwk| {
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
        },
        &[],
    )
    .await;
    let gateway = idp.gateway(&recipe, as_written).await;
    let token = idp.token(Some("JWT"), &example("entra-id"));
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

    // The delegated scope alone reads; the app role is what administers.
    let reader = idp.token(Some("JWT"), &entra_claims(&[], "Tools.Read"));
    assert_eq!(call(&gateway, &reader, "db_query").await.status, 200);
    assert_insufficient(&call(&gateway, &reader, "admin_reset").await, "mcp:admin");

    // A v1.0 token for the same API has another issuer (and audience).
    let v1 = idp.token(Some("JWT"), &entra_v1_claims());
    assert_invalid_token(&call(&gateway, &v1, "echo").await, "bad_issuer");

    // The key without `alg` verifies only what the provider allows (RS256), not
    // every algorithm of its type.
    let pss = sign_with(
        &idp.keys.rsa,
        Algorithm::PS256,
        "rsa-1",
        Some("JWT"),
        &entra_claims(&["Tools.Admin"], "Tools.Read"),
    );
    assert_invalid_token(&call(&gateway, &pss, "echo").await, "bad_algorithm");

    // Without the mapping, app roles grant nothing.
    let plain = idp
        .gateway(&recipe, |config| {
            Recipe::source(config).remove("claim_scopes");
        })
        .await;
    assert_insufficient(&call(&plain, &token, "admin_reset").await, "mcp:admin");
    assert_eq!(idp.calls_seen("admin_reset"), 1);
    assert_eq!(idp.calls_seen("echo"), 0);
}

// === Cognito ===

const COGNITO_ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEfGhI";
const COGNITO_CLIENT: &str = "5ab1c2d3e4f5g6h7i8j9k0l1m2";

/// A Cognito user-pool access token: no `aud`, the app client in `client_id`,
/// `token_use: access`, `scope` a string of resource-server scopes, groups in
/// `cognito:groups`.
/// The recipe's example payload, with these values.
fn cognito_claims(client_id: &str, groups: &[&str]) -> Value {
    let mut claims = example("cognito");
    claims["client_id"] = json!(client_id);
    claims["cognito:groups"] = json!(groups);
    claims
}

/// The ID token of the same sign-in: `aud` the app client, no `client_id`, no scopes.
fn cognito_id_token_claims() -> Value {
    let (iat, exp) = times();
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["mcp-admins"],
        "email_verified": true,
        "iss": COGNITO_ISSUER,
        "cognito:username": "alice",
        "origin_jti": "bbbbbbbb-cccc-dddd-eeee-ffffffffffff",
        "aud": COGNITO_CLIENT,
        "event_id": "cccccccc-dddd-eeee-ffff-000000000000",
        "token_use": "id",
        "auth_time": iat - 10,
        "exp": exp,
        "iat": iat,
        "jti": "eeeeeeee-ffff-0000-1111-222222222222",
        "email": "alice@example.com",
    })
}

#[tokio::test]
async fn cognito_audience_in_client_id_and_groups() {
    let recipe = Recipe::load("cognito");
    // Cognito's keys do carry `alg`.
    let idp = Idp::start(
        |jwk| {
            jwk.insert("use".into(), json!("sig"));
        },
        &[],
    )
    .await;
    let gateway = idp.gateway(&recipe, as_written).await;
    let token = idp.token(None, &example("cognito"));
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

    // Outside the group: the custom scope reads, nothing administers.
    let reader = idp.token(None, &cognito_claims(COGNITO_CLIENT, &["readers"]));
    assert_eq!(call(&gateway, &reader, "db_query").await.status, 200);
    assert_insufficient(&call(&gateway, &reader, "admin_reset").await, "mcp:admin");

    // Another app client of the same pool is another audience.
    let other = idp.token(
        None,
        &cognito_claims("7zz9yy8xx7ww6vv5uu4tt3ss2r", &["mcp-admins"]),
    );
    assert_invalid_token(&call(&gateway, &other, "echo").await, "bad_audience");

    // The ID token names the client in `aud`, not `client_id`: refused.
    let id_token = idp.token(None, &cognito_id_token_claims());
    assert_invalid_token(&call(&gateway, &id_token, "echo").await, "bad_audience");

    // Without `audience_claim` a token without `aud` is refused, as always.
    let strict = idp
        .gateway(&recipe, |config| {
            let source = Recipe::source(config);
            source.remove("audience_claim");
            source.remove("audiences");
        })
        .await;
    assert_invalid_token(&call(&strict, &token, "echo").await, "bad_audience");
    assert_eq!(idp.calls_seen("admin_reset"), 1);
    assert_eq!(idp.calls_seen("echo"), 0);
}

// === oidc-provider ===

/// node-oidc-provider with a resource indicator: an RFC 9068 access token (`typ:
/// at+jwt`, `aud` the resource, `client_id`, `scope` a string), ES256 here.
#[tokio::test]
async fn oidc_provider_rfc9068_tokens_need_no_quirk() {
    let recipe = Recipe::load("oidc-provider");
    let keys = Keys::load();
    let jwks =
        JwksServer::start(json!({"keys": [public_jwk(&keys.ec, Algorithm::ES256, "ec-1")]})).await;
    let upstream = Upstream::start().await;
    let local = Local {
        upstream: &upstream,
        jwks: Some(&jwks.url),
        introspection: None,
    };
    let gateway = Gateway::start(&recipe.local(local, as_written)).await;
    let claims = |scope: &str| {
        let mut claims = example("oidc-provider");
        claims["scope"] = json!(scope);
        claims
    };
    // The recipe's example: scope `openid mcp:admin`.
    let admin_claims = example("oidc-provider");
    let token = sign_with(
        &keys.ec,
        Algorithm::ES256,
        "ec-1",
        Some("at+jwt"),
        &admin_claims,
    );
    let admin = call(&gateway, &token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(admin.record["oauth_client_id"], "mcp-inspector");
    assert_eq!(admin.record["mapped_scopes"], json!([]));

    let reader = sign_with(
        &keys.ec,
        Algorithm::ES256,
        "ec-1",
        Some("at+jwt"),
        &claims("mcp:read"),
    );
    assert_eq!(call(&gateway, &reader, "db_query").await.status, 200);
    assert_insufficient(&call(&gateway, &reader, "admin_reset").await, "mcp:admin");

    let id_token_shaped = sign_with(
        &keys.ec,
        Algorithm::ES256,
        "ec-1",
        Some("JWT"),
        &admin_claims,
    );
    assert_invalid_token(&call(&gateway, &id_token_shaped, "echo").await, "bad_type");
    assert_eq!(calls_seen(&upstream, "admin_reset"), 1);
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

/// An Ory Hydra opaque access token as its introspection endpoint describes it:
/// `scope` a string, `aud` the audiences granted, session claims under `ext`.
/// The recipe's example payload, with these values.
fn hydra_answer(audience: &str, scope: &str, roles: &[&str]) -> Value {
    let mut answer = example("ory-hydra");
    answer["aud"] = json!([audience]);
    answer["scope"] = json!(scope);
    answer["ext"]["roles"] = json!(roles);
    answer
}

#[tokio::test]
async fn hydra_introspected_session_claims_grant_mapped_scopes() {
    let recipe = Recipe::load("ory-hydra");
    let secret = env_names(&recipe_text("ory-hydra"));
    assert_eq!(
        secret.len(),
        1,
        "the introspection secret comes from the environment"
    );
    let env = [(secret[0].as_str(), "hydra-secret")];
    let answers: Answers = Arc::default();
    let url = introspection_endpoint(answers.clone()).await;
    let upstream = Upstream::start().await;
    let local = Local {
        upstream: &upstream,
        jwks: None,
        introspection: Some(&url),
    };
    let gateway = Gateway::start_with_env(&recipe.local(local, as_written), &env).await;
    let plain = Gateway::start_with_env(
        &recipe.local(local, |config| {
            config["auth"]["oauth"]["introspection"]
                .as_object_mut()
                .unwrap()
                .remove("claim_scopes");
        }),
        &env,
    )
    .await;
    let audience = recipe.public_url();
    let token = "ory_at_Qm9uam91ciBsZSBtb25kZQ.c2lnbmF0dXJl";
    let reader = "ory_at_QXUgcmV2b2lyIGxlIG1vbmRl.c2lnbmF0dXJl";
    let elsewhere = "ory_at_RW4gdm95YWdlIGFpbGxldXJz.c2lnbmF0dXJl";
    answers.lock().unwrap().extend([
        // The recipe's example: scope mcp:read, session role admin.
        (token.to_owned(), example("ory-hydra")),
        (
            reader.to_owned(),
            hydra_answer(&audience, "openid offline mcp:read", &[]),
        ),
        (
            elsewhere.to_owned(),
            hydra_answer("https://api.example.com/", "openid mcp:read", &["admin"]),
        ),
    ]);

    let admin = call(&gateway, token, "admin_reset").await;
    assert_eq!(admin.status, 200, "{}", admin.record);
    assert_eq!(admin.record["auth_method"], "introspection");
    assert_eq!(
        admin.record["mapped_scopes"],
        json!([{"scope": "mcp:admin", "claim": "ext.roles", "value": "admin"}])
    );
    assert_eq!(call(&gateway, token, "db_query").await.status, 200);

    assert_eq!(call(&gateway, reader, "db_query").await.status, 200);
    assert_insufficient(&call(&gateway, reader, "admin_reset").await, "mcp:admin");
    assert_invalid_token(&call(&gateway, elsewhere, "echo").await, "bad_audience");

    assert_insufficient(&call(&plain, token, "admin_reset").await, "mcp:admin");
    assert_eq!(calls_seen(&upstream, "admin_reset"), 1);
}
