//! `rules:` against the real binary: a rule takes tools, resources and prompts from
//! the callers it matches (by client id, subject, claim), with a 403 naming the rule
//! and no scope challenge, and their lists lose the same items, whatever the
//! caller's scopes; other callers with the same scopes keep everything. Rules follow
//! reloads and are recorded in the audit log.

use crate::common::*;
use serde_json::{Value, json};

const RULES: &str = r#"
rules:
  - name: contractors-read-only
    when: { client_ids: ["contractor-app", "ext-*"] }
    deny_tools: ["admin_*", "db_*"]
    deny_resources: ["file:///secret/**"]
    deny_prompts: ["secret_*"]
  - name: user-42-echo-only
    when: { subjects: [user-42] }
    allow_tools: [echo]
  - name: sales-no-env
    when:
      claims:
        - { claim: org.department, equals: "sales*" }
        - { claim: groups, contains: staff }
    deny_tools: [get-env]
  - name: ci-key
    when: { subjects: ["api-key:ci"] }
    deny_tools: [echo]
"#;

/// Every scope any rule needs, so that what is refused is refused by a rule.
const ALL_SCOPES: &str = "mcp:connect mcp:tools:read mcp:tools:execute mcp:admin";

/// The gateway of these tests: the CI key with every scope, an admin tool, `rules`.
fn config(upstream_url: &str, ci_hash: &str, rules: &str) -> String {
    TestConfig::oauth(upstream_url)
        .api_key_with_scopes("ci", ci_hash, r#"["*"]"#)
        .scopes("initialize: [mcp:connect]\ntools_call: [mcp:tools:execute]\ntools:\n  admin_reset: mcp:admin")
        .audit()
        .yaml(rules)
        .build()
}

struct Setup {
    upstream: Upstream,
    gateway: Gateway,
    ci_key: String,
    ci_hash: String,
}

async fn setup() -> Setup {
    let upstream = Upstream::start().await;
    let (ci_key, ci_hash) = mcpgate::auth::api_keys::generate("ci").unwrap();
    let gateway = Gateway::start(&config(&upstream.url, &ci_hash, RULES)).await;
    Setup {
        upstream,
        gateway,
        ci_key,
        ci_hash,
    }
}

/// A token with every scope, for this client and subject, with extra claims.
fn token(setup: &Setup, client: &str, subject: &str, extra: Value) -> String {
    let mut claims = claims(&setup.gateway.mcp, ALL_SCOPES);
    claims["client_id"] = json!(client);
    claims["sub"] = json!(subject);
    if let Value::Object(extra) = extra {
        for (name, value) in extra {
            claims[name] = value;
        }
    }
    hs256(&claims, Some("dev"))
}

async fn send(setup: &Setup, bearer: &str, body: &Value) -> reqwest::Response {
    Request::post(&setup.gateway)
        .bearer(bearer)
        .json(body)
        .send()
        .await
}

async fn call(setup: &Setup, bearer: &str, tool: &str) -> reqwest::Response {
    send(setup, bearer, &tools_call(7, tool)).await
}

fn sse_answer(text: &str, id: i64) -> Value {
    sse_messages(text)
        .into_iter()
        .find(|message| message["id"] == id)
        .unwrap_or_else(|| panic!("no answer {id} in {text:?}"))
}

/// The names a list answer carries (JSON, or SSE with `sse`).
async fn listed(setup: &Setup, bearer: &str, method: &str, sse: bool) -> Vec<String> {
    let mut body = json!({"jsonrpc": "2.0", "id": 1, "method": method});
    if sse {
        body["params"] = json!({"cursor": "sse"});
    }
    let response = send(setup, bearer, &body).await;
    assert_eq!(response.status(), 200, "{method}");
    let text = response.text().await.unwrap();
    let answer: Value = if sse {
        sse_answer(&text, 1)
    } else {
        serde_json::from_str(&text).unwrap()
    };
    let (array, field) = match method {
        "tools/list" => ("tools", "name"),
        "prompts/list" => ("prompts", "name"),
        "resources/list" => ("resources", "uri"),
        _ => ("resourceTemplates", "uriTemplate"),
    };
    answer["result"][array]
        .as_array()
        .unwrap_or_else(|| panic!("no {array} in {answer}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a rule denial: 403, `access_denied` naming the rule, no scope challenge.
async fn assert_rule_denial(response: reqwest::Response, rule: &str, description: &str) {
    assert_eq!(response.status(), 403);
    let challenge = www_authenticate(&response);
    assert!(
        challenge.starts_with("Bearer realm=\"mcp\", error=\"access_denied\""),
        "{challenge}"
    );
    assert!(
        challenge.ends_with(&format!("error_description=\"{description}\"")),
        "{challenge}"
    );
    assert!(!challenge.contains("insufficient_scope"), "{challenge}");
    assert!(!challenge.contains("scope="), "{challenge}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["message"], description);
    assert_eq!(body["error"]["data"]["error"], "access_denied");
    assert_eq!(body["error"]["data"]["rule"], rule);
}

#[tokio::test]
async fn a_client_denied_by_rule_gets_403_naming_it_and_never_sees_the_tool() {
    let setup = setup().await;
    let contractor = token(&setup, "contractor-app", "bob", json!({}));
    let external = token(&setup, "ext-partner", "bob", json!({}));
    let staff = token(&setup, "web-app", "bob", json!({}));
    for bearer in [&contractor, &external] {
        assert_rule_denial(
            call(&setup, bearer, "db_query").await,
            "contractors-read-only",
            "tool db_query refused by rule contractors-read-only (deny_tools)",
        )
        .await;
        for sse in [false, true] {
            assert_eq!(
                listed(&setup, bearer, "tools/list", sse).await,
                ["echo", "get-env"],
                "sse: {sse}"
            );
        }
    }
    assert_eq!(
        setup.upstream.seen().len(),
        4,
        "only the lists were forwarded"
    );
    // The same scopes from another client: everything.
    assert_eq!(call(&setup, &staff, "db_query").await.status(), 200);
    for sse in [false, true] {
        assert_eq!(
            listed(&setup, &staff, "tools/list", sse).await,
            ["echo", "get-env", "admin_reset", "db_query"]
        );
    }
    assert_eq!(call(&setup, &contractor, "echo").await.status(), 200);
}

#[tokio::test]
async fn subjects_and_claims_select_callers_too() {
    let setup = setup().await;
    let user_42 = token(&setup, "web-app", "user-42", json!({}));
    assert_rule_denial(
        call(&setup, &user_42, "get-env").await,
        "user-42-echo-only",
        "tool get-env refused by rule user-42-echo-only (not in allow_tools)",
    )
    .await;
    assert_eq!(
        listed(&setup, &user_42, "tools/list", false).await,
        ["echo"]
    );
    assert_eq!(call(&setup, &user_42, "echo").await.status(), 200);

    let sales_staff = token(
        &setup,
        "web-app",
        "carol",
        json!({"org": {"department": "sales-emea"}, "groups": ["staff", "emea"]}),
    );
    assert_rule_denial(
        call(&setup, &sales_staff, "get-env").await,
        "sales-no-env",
        "tool get-env refused by rule sales-no-env (deny_tools)",
    )
    .await;
    assert_eq!(
        listed(&setup, &sales_staff, "tools/list", true).await,
        ["echo", "admin_reset", "db_query"]
    );
    // Both claim conditions must hold.
    for claims in [
        json!({"org": {"department": "engineering"}, "groups": ["staff"]}),
        json!({"org": {"department": "sales"}, "groups": ["contractors"]}),
        json!({"department": "sales", "groups": ["staff"]}),
    ] {
        let other = token(&setup, "web-app", "dave", claims.clone());
        assert_eq!(
            call(&setup, &other, "get-env").await.status(),
            200,
            "{claims}"
        );
    }
}

#[tokio::test]
async fn resources_and_prompts_are_denied_by_uri_template_and_name() {
    let setup = setup().await;
    let contractor = token(&setup, "contractor-app", "bob", json!({}));
    let read = json!({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "file:///secret/keys.txt"}});
    assert_rule_denial(
        send(&setup, &contractor, &read).await,
        "contractors-read-only",
        "resource file:///secret/keys.txt refused by rule contractors-read-only (deny_resources)",
    )
    .await;
    let get = json!({"jsonrpc": "2.0", "id": 7, "method": "prompts/get", "params": {"name": "secret_prompt"}});
    assert_rule_denial(
        send(&setup, &contractor, &get).await,
        "contractors-read-only",
        "prompt secret_prompt refused by rule contractors-read-only (deny_prompts)",
    )
    .await;
    for sse in [false, true] {
        assert_eq!(
            listed(&setup, &contractor, "resources/list", sse).await,
            ["file:///public/readme.md"]
        );
        assert_eq!(
            listed(&setup, &contractor, "resources/templates/list", sse).await,
            ["file:///public/{name}"]
        );
        assert_eq!(
            listed(&setup, &contractor, "prompts/list", sse).await,
            ["greeting"]
        );
    }
    let public = json!({"jsonrpc": "2.0", "id": 7, "method": "resources/read", "params": {"uri": "file:///public/readme.md"}});
    assert_eq!(send(&setup, &contractor, &public).await.status(), 200);
}

#[tokio::test]
async fn scopes_are_checked_first_and_api_keys_match_by_subject() {
    let setup = setup().await;
    // Short of scopes: the usual step-up challenge, not the rule.
    let mut claims = claims(&setup.gateway.mcp, "mcp:connect");
    claims["client_id"] = json!("contractor-app");
    let response = call(&setup, &hs256(&claims, Some("dev")), "db_query").await;
    assert_eq!(response.status(), 403);
    assert!(
        www_authenticate(&response)
            .contains("error=\"insufficient_scope\", scope=\"mcp:tools:execute\""),
        "{}",
        www_authenticate(&response)
    );
    // An API key with every scope: its list is still cut for the rule.
    assert_rule_denial(
        call(&setup, &setup.ci_key, "echo").await,
        "ci-key",
        "tool echo refused by rule ci-key (deny_tools)",
    )
    .await;
    assert_eq!(
        listed(&setup, &setup.ci_key, "tools/list", false).await,
        ["get-env", "admin_reset", "db_query"]
    );
    assert_eq!(call(&setup, &setup.ci_key, "db_query").await.status(), 200);
}

#[tokio::test]
async fn the_audit_record_names_the_rules_that_matched_and_the_one_that_denied() {
    let setup = setup().await;
    let both = token(
        &setup,
        "contractor-app",
        "user-42",
        json!({"org": {"department": "sales"}, "groups": "staff"}),
    );
    assert_eq!(call(&setup, &both, "db_query").await.status(), 403);
    assert_eq!(call(&setup, &both, "echo").await.status(), 200);
    let staff = token(&setup, "web-app", "bob", json!({}));
    assert_eq!(call(&setup, &staff, "echo").await.status(), 200);
    let records = audit_records(&setup.gateway, 3).await;
    let matched = json!(["contractors-read-only", "user-42-echo-only", "sales-no-env"]);
    assert_eq!(records[0]["rules_matched"], matched);
    // The deny list wins over the allow list that also leaves db_query out.
    assert_eq!(records[0]["denied_by_rule"], "contractors-read-only");
    assert_eq!(
        records[0]["reason"],
        "tool db_query refused by rule contractors-read-only (deny_tools)"
    );
    assert_eq!(records[0]["action"], "deny");
    assert_eq!(records[1]["rules_matched"], matched);
    assert_eq!(records[1]["denied_by_rule"], Value::Null);
    assert_eq!(records[1]["action"], "allow");
    assert_eq!(records[2]["rules_matched"], json!([]));
    for record in &records {
        for field in AUDIT_FIELDS {
            assert!(record.get(*field).is_some(), "{field} missing in {record}");
        }
    }
}

#[tokio::test]
async fn a_reload_applies_new_rules() {
    let setup = setup().await;
    let staff = token(&setup, "web-app", "bob", json!({"groups": ["beta"]}));
    assert_eq!(call(&setup, &staff, "echo").await.status(), 200);
    let reloaded = "rules:\n  - name: no-beta-echo\n    when:\n      claims: [{ claim: groups, contains: \"be*\" }]\n    deny_tools: [echo]\n";
    setup
        .gateway
        .rewrite_config(&config(&setup.upstream.url, &setup.ci_hash, reloaded));
    setup.gateway.signal("HUP");
    assert!(setup.gateway.wait_for_log("config reloaded").await);
    // The new gateway verifies the token again, against the new rules.
    assert_rule_denial(
        call(&setup, &staff, "echo").await,
        "no-beta-echo",
        "tool echo refused by rule no-beta-echo (deny_tools)",
    )
    .await;
    let contractor = token(&setup, "contractor-app", "bob", json!({}));
    assert_eq!(call(&setup, &contractor, "db_query").await.status(), 200);
    // A rule that does not compile leaves the running ones in force.
    setup.gateway.rewrite_config(&config(
        &setup.upstream.url,
        &setup.ci_hash,
        "rules:\n  - name: bad\n    deny_tools: [\"db_[\"]\n",
    ));
    setup.gateway.signal("HUP");
    assert!(setup.gateway.wait_for_log("rules[0].deny_tools[0]").await);
    assert_eq!(call(&setup, &staff, "echo").await.status(), 403);
}

#[test]
fn a_bad_rule_is_a_config_error_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    let (_, hash) = mcpgate::auth::api_keys::generate("ci").unwrap();
    for (rules, needle) in [
        (
            "rules:\n  - name: a\n    deny_tools: [x]\n  - name: b\n    when:\n      claims: [{ claim: \"\", equals: x }]\n    deny_tools: [x]\n",
            "config error: rules[1].when.claims[0].claim: ",
        ),
        (
            "rules:\n  - name: a\n    deny_tools: [x]\n  - name: a\n    deny_prompts: [x]\n",
            "config error: rules[1].name: ",
        ),
    ] {
        let text = config("http://127.0.0.1:9/mcp", &hash, rules)
            .replace("{port}", "1")
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(code, 78, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

/// A GraphQL API served as tools goes through the same rules: its operations and
/// `execute_graphql` are refused and hidden like any upstream's tools.
#[tokio::test]
async fn rules_apply_to_the_tools_of_a_graphql_upstream() {
    let fixtures =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphql");
    let endpoint_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&endpoint_seen);
    let router = axum::Router::new().fallback(move || {
        let seen = std::sync::Arc::clone(&seen);
        async move {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            axum::Json(json!({"data": {"facts": [{"title": "Water is wet"}]}}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let upstream = format!(
        "graphql:\n  endpoint: http://{address}/graphql\n  schema: {}\n  operations: {}\n  enable_arbitrary_operations: true",
        fixtures.join("schema.graphql").display(),
        fixtures.join("operations").display(),
    );
    let config = TestConfig::upstream_yaml(&upstream)
        .with_oauth()
        .scopes("initialize: [mcp:connect]")
        .yaml(
            r#"
rules:
  - name: partners-no-graphql
    when: { client_ids: ["partner-*"] }
    deny_tools: [execute_graphql, "*top_secret*"]
"#,
        );
    let gateway = Gateway::start(&config.build()).await;
    let bearer = |client: &str| {
        let mut claims = claims(&gateway.mcp, "mcp:connect read:all read:private");
        claims["client_id"] = json!(client);
        hs256(&claims, Some("dev"))
    };
    let names = |body: Value| -> Vec<String> {
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let post =
        |bearer: String, body: Value| Request::post(&gateway).bearer(&bearer).json(&body).send();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let partner: Value = post(bearer("partner-1"), list.clone())
        .await
        .json()
        .await
        .unwrap();
    let own: Value = post(bearer("web-app"), list).await.json().await.unwrap();
    let (partner, own) = (names(partner), names(own));
    for hidden in ["execute_graphql", "execute_operation_get_top_secret_facts"] {
        assert!(own.contains(&hidden.to_owned()), "{hidden} not in {own:?}");
        assert!(
            !partner.contains(&hidden.to_owned()),
            "{hidden} in {partner:?}"
        );
    }
    assert_eq!(partner.len() + 2, own.len(), "{partner:?} / {own:?}");
    let query = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "execute_graphql", "arguments": {"query": "{ facts { title } }"}}});
    assert_rule_denial(
        post(bearer("partner-1"), query.clone()).await,
        "partners-no-graphql",
        "tool execute_graphql refused by rule partners-no-graphql (deny_tools)",
    )
    .await;
    assert_eq!(endpoint_seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(post(bearer("web-app"), query).await.status(), 200);
    assert_eq!(endpoint_seen.load(std::sync::atomic::Ordering::SeqCst), 1);
}
