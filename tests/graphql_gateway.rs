//! A GraphQL API as MCP tools, through the real binary: `upstream.graphql` in the
//! configuration, per-tool scopes from `@requiresScopes` in tools/list and in 403
//! challenges, `execute_graphql` checked per request, the schema's scopes in the
//! RFC 9728 document, reloads of the schema and operations, and the example in
//! `examples/graphql/`. The GraphQL endpoint is faked in the test process and
//! records what reaches it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::common::*;
use axum::Router;
use axum::extract::State;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

const METADATA: &str = "/.well-known/oauth-protected-resource/mcp";
const UPSTREAM_SECRET: &str = "Bearer the-apis-own-credential";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphql")
}

// === the fake GraphQL endpoint ===

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Value,
}

/// Answers every POST with the same `data`, keeping each request.
#[derive(Clone, Default)]
struct Endpoint {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Endpoint {
    async fn start() -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let router = Router::new()
            .fallback(
                |State(received): State<Arc<Mutex<Vec<Received>>>>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    received.lock().unwrap().push(Received { headers, body });
                    axum::Json(json!({"data": {"facts": [{"title": "Water is wet"}]}}))
                },
            )
            .with_state(Arc::clone(&received));
        let address = spawn_router(router).await;
        Self {
            url: format!("http://{address}/graphql"),
            received,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

// === set-up ===

/// The schema and a copy of the fixture operations in a directory of the test's
/// own, so that reload tests can change them.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(operations: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            fixtures().join("schema.graphql"),
            dir.path().join("schema.graphql"),
        )
        .unwrap();
        let target = dir.path().join("operations");
        std::fs::create_dir(&target).unwrap();
        for entry in std::fs::read_dir(fixtures().join(operations)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
        Self { dir }
    }

    fn schema(&self) -> PathBuf {
        self.dir.path().join("schema.graphql")
    }

    fn operations(&self) -> PathBuf {
        self.dir.path().join("operations")
    }

    /// `upstream:` for these files, an endpoint nobody listens on, then `rest`
    /// (more top-level YAML).
    fn config(&self, rest: &str) -> String {
        format!(
            "upstream:\n  graphql:\n    endpoint: http://127.0.0.1:9/graphql\n    schema: {}\n    operations: {}\n{rest}",
            self.schema().display(),
            self.operations().display()
        )
    }

    fn write_operation(&self, name: &str, text: &str) {
        let staged = self.dir.path().join(format!("{name}.new"));
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(staged, self.operations().join(name)).unwrap();
    }
}

fn config(endpoint: &str, files: &Files, limit: usize) -> String {
    let upstream = format!(
        r#"
graphql:
  endpoint: {endpoint}
  schema: {}
  operations: {}
  headers:
    Authorization: "{UPSTREAM_SECRET}"
  expose_schema: true
  enable_arbitrary_operations: true
  scopes:
    execute_graphql: [mcp:graphql:execute]
    get_schema: [mcp:schema:read]
"#,
        files.schema().display(),
        files.operations().display(),
    );
    TestConfig::upstream_yaml(&upstream)
        .with_oauth()
        .oauth_yaml(&format!("max_scope_combinations: {limit}"))
        .scopes("initialize: [mcp:connect]\ntools_list: [mcp:tools:read]\ntools_call: [mcp:tools:execute]")
        .build()
}

struct Setup {
    endpoint: Endpoint,
    files: Files,
    gateway: Gateway,
}

async fn setup(limit: usize) -> Setup {
    let endpoint = Endpoint::start().await;
    let files = Files::new("operations");
    let gateway = Gateway::start(&config(&endpoint.url, &files, limit)).await;
    Setup {
        endpoint,
        files,
        gateway,
    }
}

impl Setup {
    fn token(&self, scopes: &str) -> String {
        hs256(&claims(&self.gateway.mcp, scopes), Some("dev"))
    }

    async fn send(
        &self,
        scopes: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        Request::post(&self.gateway)
            .token(scopes)
            .headers(headers)
            .json(body)
            .send()
            .await
    }

    async fn call(&self, scopes: &str, tool: &str, arguments: Value) -> reqwest::Response {
        let body = rpc(
            7,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        );
        self.send(scopes, &body, &[]).await
    }

    async fn tool_names(&self, scopes: &str) -> Vec<String> {
        let response = self.send(scopes, &list(1, "tools/list"), &[]).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "tools/list for {scopes:?}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        answer["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools in {answer}"))
            .iter()
            .map(|tool| tool["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn metadata_url(&self) -> String {
        format!("{}{METADATA}", self.gateway.base)
    }

    /// A 403 whose challenge asks for `scope` on `tool`.
    #[track_caller]
    fn assert_challenged(&self, response: &reqwest::Response, scope: &str, tool: &str) {
        assert_insufficient_scope(
            response,
            scope,
            &self.metadata_url(),
            &format!("insufficient scopes for tool {tool}"),
        );
    }
}

const CALLER: &str = "mcp:connect mcp:tools:read mcp:tools:execute";

fn check(config_text: &str) -> (i32, String) {
    let (code, _, stderr) = check_config(config_text, &[]);
    (code, stderr)
}

// === configuration ===

#[test]
fn upstream_kinds_are_exclusive_and_keep_to_their_own_keys() {
    let files = Files::new("operations");
    let graphql = format!(
        "  graphql:\n    endpoint: http://127.0.0.1:9/graphql\n    schema: {}\n    operations: {}\n",
        files.schema().display(),
        files.operations().display()
    );
    let cases = [
        (
            format!("upstream:\n  url: http://127.0.0.1:9/mcp\n{graphql}"),
            "config error: upstream: ",
            "not both url and graphql",
        ),
        (
            format!("upstream:\n  command: [node]\n{graphql}"),
            "config error: upstream: ",
            "not both command and graphql",
        ),
        (
            format!("upstream:\n  args: [x]\n{graphql}"),
            "config error: upstream.args: ",
            "not to upstream.graphql",
        ),
        (
            format!("upstream:\n  headers: {{ X-Key: a }}\n{graphql}"),
            "config error: upstream.headers: ",
            "upstream.graphql.headers",
        ),
        (
            "upstream:\n  graphql:\n    endpoint: http://127.0.0.1:9/graphql\n    operations: ops\n"
                .to_owned(),
            "config error: upstream.graphql: ",
            "schema",
        ),
        (
            format!(
                "upstream:\n  graphql:\n    endpoint: http://127.0.0.1:9/graphql\n    schema: {}/missing.graphql\n    operations: {}\n",
                files.dir.path().display(),
                files.operations().display()
            ),
            "config error: upstream.graphql.schema: ",
            "missing.graphql",
        ),
        (
            format!("upstream:\n{graphql}    scopes: {{ get_schema: [\"a b\"] }}\n"),
            "config error: upstream.graphql.scopes.get_schema: ",
            "not a valid scope",
        ),
    ];
    for (text, key, detail) in cases {
        let (code, stderr) = check(&text);
        assert_eq!(code, 78, "{text}\n{stderr}");
        assert!(stderr.starts_with(key), "{text}\n{stderr}");
        assert!(stderr.contains(detail), "{text}\n{stderr}");
    }
}

#[test]
fn an_operation_over_the_combination_limit_is_a_load_error_naming_it() {
    let files = Files::new("too_many");
    let text = files.config("auth:\n  oauth:\n    max_scope_combinations: 8\n");
    let (code, stderr) = check(&text);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.starts_with("config error: upstream.graphql.operations: "),
        "{stderr}"
    );
    assert!(stderr.contains("operation AuditEverything"), "{stderr}");
    assert!(stderr.contains("more than the limit of 8"), "{stderr}");
    // The same operation within the limit loads.
    let (code, stderr) =
        check(&text.replace("max_scope_combinations: 8", "max_scope_combinations: 16"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_operation_within_the_limit_alone_but_not_with_tools_call_is_refused() {
    // AuditEverything needs 16 groups; a two-way tools_call makes 32.
    let files = Files::new("too_many");
    let text = files.config(
        "auth:\n  oauth:\n    max_scope_combinations: 16\nscopes:\n  tools_call: [[mcp:a], [mcp:b]]\n",
    );
    let (code, stderr) = check(&text);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.starts_with("config error: upstream.graphql.operations: operation AuditEverything"),
        "{stderr}"
    );
    assert!(stderr.contains("scopes.tools_call"), "{stderr}");
}

#[test]
fn the_example_loads_without_its_endpoint_running() {
    let (code, stdout, stderr) = run_cli(
        &["check", "--config", "examples/graphql/mcpgate.yaml"],
        &[("MCPGATE_DEV_SECRET", HMAC_SECRET)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("-> graphql: http://127.0.0.1:4000/graphql"),
        "{stdout}"
    );
    assert!(stdout.contains("operation tool(s)"), "{stdout}");
}

/// The example served as written (only its addresses changed), against the fake
/// endpoint: the seeds' 403 and their `scopes_supported`.
#[tokio::test]
async fn the_example_reproduces_the_seeds_challenge_and_metadata() {
    let endpoint = Endpoint::start().await;
    let text = std::fs::read_to_string("examples/graphql/mcpgate.yaml")
        .unwrap()
        .replace("127.0.0.1:5025", "127.0.0.1:{port}")
        .replace("http://127.0.0.1:4000/graphql", &endpoint.url);
    let gateway = Gateway::start_with_env(&text, &[("MCPGATE_DEV_SECRET", HMAC_SECRET)]).await;
    let call = |scopes: &str, tool: &str| {
        Request::post(&gateway)
            .bearer(&example_token(&gateway.mcp, scopes))
            .json(&tools_call(1, tool))
            .send()
    };
    let metadata_url = format!("{}{METADATA}", gateway.base);
    let response = call(
        "mcp:connect mcp:tools:execute",
        "execute_operation_get_top_secret_facts",
    )
    .await;
    assert_insufficient_scope(
        &response,
        "read:fact",
        &metadata_url,
        "insufficient scopes for tool execute_operation_get_top_secret_facts",
    );
    let response = call(
        "mcp:connect mcp:tools:execute read:fact",
        "execute_operation_get_top_secret_facts",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(endpoint.received().len(), 1);
    let metadata: Value = get_json(&metadata_url).await;
    assert_eq!(
        metadata["scopes_supported"],
        json!([
            "mcp:connect",
            "mcp:graphql:execute",
            "mcp:tools:execute",
            "mcp:tools:read",
            "read:all",
            "read:employee",
            "read:fact",
            "read:private",
        ])
    );
}

// === tools, calls and challenges ===

#[tokio::test]
async fn tools_list_shows_only_the_tools_the_token_may_call() {
    let setup = setup(2048).await;
    let plain = setup.tool_names(CALLER).await;
    for hidden in [
        "execute_operation_get_facts",
        "execute_operation_get_top_secret_facts",
        "execute_operation_list_employees",
        "execute_graphql",
        "get_schema",
    ] {
        assert!(!plain.contains(&hidden.to_owned()), "{hidden} in {plain:?}");
    }
    for shown in [
        "execute_operation_get_api_status",
        "execute_operation_60_status",
        "get_operation_info",
    ] {
        assert!(
            plain.contains(&shown.to_owned()),
            "{shown} missing from {plain:?}"
        );
    }
    let facts = setup.tool_names(&format!("{CALLER} read:fact")).await;
    assert!(facts.contains(&"execute_operation_get_facts".to_owned()));
    // read:fact alone is not enough for the top secret ones (read:fact AND read:private).
    assert!(!facts.contains(&"execute_operation_get_top_secret_facts".to_owned()));
    let all = setup
        .tool_names(&format!(
            "{CALLER} read:all read:private mcp:graphql:execute"
        ))
        .await;
    assert!(all.contains(&"execute_operation_get_top_secret_facts".to_owned()));
    assert!(all.contains(&"execute_graphql".to_owned()));
    assert!(!all.contains(&"get_schema".to_owned()));
    assert!(setup.endpoint.received().is_empty());
}

#[tokio::test]
async fn a_tool_call_without_its_fields_scopes_gets_the_seed_challenge() {
    let setup = setup(2048).await;
    // Seed 002: a token with mcp:connect and mcp:tools:execute calling a tool whose
    // fields need read:fact or read:all.
    let response = setup
        .call(
            "mcp:connect mcp:tools:execute",
            "execute_operation_get_facts",
            json!({}),
        )
        .await;
    setup.assert_challenged(&response, "read:fact", "execute_operation_get_facts");
    assert_eq!(response.text().await.unwrap(), "");
    // Fields combine: topSecretFacts (read:fact AND read:private, or read:all) and
    // Fact.private (read:private). On a tie, the first group.
    let response = setup
        .call(
            "mcp:connect mcp:tools:execute",
            "execute_operation_get_top_secret_facts",
            json!({}),
        )
        .await;
    setup.assert_challenged(
        &response,
        "read:fact read:private",
        "execute_operation_get_top_secret_facts",
    );
    // The cheapest group, not the first: ListEmployees needs read:employee and
    // read:private with read:fact or read:all; holding read:all, two are missing
    // from the second group against three from the first.
    let response = setup
        .call(
            "mcp:connect mcp:tools:execute read:all",
            "execute_operation_list_employees",
            json!({}),
        )
        .await;
    setup.assert_challenged(
        &response,
        "read:employee read:private",
        "execute_operation_list_employees",
    );
    // A built-in tool's scopes join tools_call.
    let response = setup
        .call("mcp:connect mcp:tools:execute", "get_schema", json!({}))
        .await;
    setup.assert_challenged(&response, "mcp:schema:read", "get_schema");
    assert!(setup.endpoint.received().is_empty());
}

#[tokio::test]
async fn an_allowed_call_reaches_the_api_with_its_credentials_never_the_callers() {
    let setup = setup(2048).await;
    let token = setup.token("mcp:connect mcp:tools:execute read:fact");
    let body = json!({
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "execute_operation_get_facts", "arguments": {"limit": 2}},
    });
    let response = Request::post(&setup.gateway)
        .bearer(&token)
        .json(&body)
        .send()
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let result = &answer["result"];
    assert_eq!(result["isError"], false, "{answer}");
    assert_eq!(
        result["structuredContent"],
        json!({"facts": [{"title": "Water is wet"}]})
    );
    let received = setup.endpoint.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.body["variables"], json!({"limit": 2}));
    assert!(
        request.body["query"]
            .as_str()
            .unwrap()
            .contains("query GetFacts")
    );
    let authorization: Vec<&str> = request
        .headers
        .get_all("authorization")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(authorization, [UPSTREAM_SECRET]);
    for (_, value) in &request.headers {
        assert!(!value.to_str().unwrap_or("").contains(&token));
    }
}

// === MCP 2026-07-28 through the gateway ===

const MODERN: &str = "2026-07-28";

/// A 2026-07-28 request: the version and capabilities in `_meta`, no session.
fn modern_request(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-client", "version": "1.0.0"},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn graphql_server_info() -> Value {
    json!({"name": "mcpgate-graphql", "version": env!("CARGO_PKG_VERSION")})
}

/// Status, `Mcp-Session-Id` (if any) and JSON body of one response.
async fn read(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|value| value.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, session, body)
}

#[tokio::test]
async fn a_2026_07_28_client_discovers_lists_and_calls_with_no_initialize_and_no_session() {
    let setup = setup(2048).await;
    let scopes = format!("{CALLER} read:fact");
    let version = ("mcp-protocol-version", MODERN);

    let discover = modern_request(1, "server/discover", json!({}));
    let (status, session, answer) = read(
        setup
            .send(
                &scopes,
                &discover,
                &[version, ("mcp-method", "server/discover")],
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(session, None);
    let result = &answer["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["supportedVersions"][0], MODERN);
    assert_eq!(
        result["supportedVersions"].as_array().unwrap().len(),
        5,
        "{result}"
    );
    assert_eq!(
        result["capabilities"]["tools"],
        json!({"listChanged": false})
    );
    assert_eq!(result["ttlMs"], 300_000);
    assert_eq!(result["cacheScope"], "private");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"],
        graphql_server_info()
    );

    let list = modern_request(2, "tools/list", json!({}));
    let (status, session, answer) = read(
        setup
            .send(&scopes, &list, &[version, ("mcp-method", "tools/list")])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(session, None);
    let result = &answer["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["ttlMs"], 300_000);
    assert_eq!(result["cacheScope"], "private");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"],
        graphql_server_info()
    );
    // Filtered for this caller as a legacy list is: the reason for "private".
    let names: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"execute_operation_get_facts"), "{names:?}");
    assert!(
        !names.contains(&"execute_operation_get_top_secret_facts"),
        "{names:?}"
    );

    let call = modern_request(
        3,
        "tools/call",
        json!({"name": "execute_operation_get_facts", "arguments": {"limit": 1}}),
    );
    let (status, session, answer) = read(
        setup
            .send(
                &scopes,
                &call,
                &[
                    version,
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "execute_operation_get_facts"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(session, None);
    let result = &answer["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["isError"], false);
    assert_eq!(
        result["structuredContent"],
        json!({"facts": [{"title": "Water is wet"}]})
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"],
        graphql_server_info()
    );
    let received = setup.endpoint.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["variables"], json!({"limit": 1}));
}

#[tokio::test]
async fn a_2026_07_28_call_short_of_scopes_is_still_refused_by_the_gateway() {
    let setup = setup(2048).await;
    let call = modern_request(
        3,
        "tools/call",
        json!({"name": "execute_operation_get_facts", "arguments": {}}),
    );
    let response = setup
        .send(
            CALLER,
            &call,
            &[
                ("mcp-protocol-version", MODERN),
                ("mcp-method", "tools/call"),
                ("mcp-name", "execute_operation_get_facts"),
            ],
        )
        .await;
    setup.assert_challenged(&response, "read:fact", "execute_operation_get_facts");
    assert!(setup.endpoint.received().is_empty());
}

#[tokio::test]
async fn a_2026_07_28_request_whose_header_and_meta_disagree_is_refused() {
    let setup = setup(2048).await;
    let scopes = format!("{CALLER} read:fact");
    let call = modern_request(
        4,
        "tools/call",
        json!({"name": "execute_operation_get_facts", "arguments": {}}),
    );
    // The body says 2026-07-28, the header an older version (which also lets the
    // request past the gateway's 2026-07-28 header rules).
    for header in ["2025-11-25", "2025-06-18"] {
        let (status, _, answer) = read(
            setup
                .send(&scopes, &call, &[("mcp-protocol-version", header)])
                .await,
        )
        .await;
        assert_eq!(status, 400, "{header}: {answer}");
        assert_eq!(answer["id"], 4);
        assert_eq!(answer["error"]["code"], -32020, "{header}: {answer}");
    }
    // The header says 2026-07-28, `_meta` an older version.
    let mut older = call.clone();
    older["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-11-25");
    let (status, _, answer) = read(
        setup
            .send(
                &scopes,
                &older,
                &[
                    ("mcp-protocol-version", MODERN),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "execute_operation_get_facts"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], -32020, "{answer}");
    assert!(setup.endpoint.received().is_empty());
}

#[tokio::test]
async fn an_unsupported_protocol_version_gets_the_supported_ones() {
    let setup = setup(2048).await;
    let mut list = modern_request(5, "tools/list", json!({}));
    list["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let (status, _, answer) = read(
        setup
            .send(
                CALLER,
                &list,
                &[
                    ("mcp-protocol-version", "2099-01-01"),
                    ("mcp-method", "tools/list"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["id"], 5);
    assert_eq!(answer["error"]["code"], -32022);
    assert_eq!(
        answer["error"]["data"],
        json!({
            "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"],
            "requested": "2099-01-01",
        })
    );
}

#[tokio::test]
async fn ping_is_gone_in_2026_07_28_and_still_there_before() {
    let setup = setup(2048).await;
    let ping = modern_request(6, "ping", json!({}));
    let (status, _, answer) = read(
        setup
            .send(
                CALLER,
                &ping,
                &[("mcp-protocol-version", MODERN), ("mcp-method", "ping")],
            )
            .await,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], -32601);
    let legacy = json!({"jsonrpc": "2.0", "id": 6, "method": "ping"});
    let (status, _, answer) = read(
        setup
            .send(CALLER, &legacy, &[("mcp-protocol-version", "2025-11-25")])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], json!({}));
}

#[tokio::test]
async fn scopes_supported_lists_every_scope_of_the_schema_and_the_built_ins() {
    let setup = setup(2048).await;
    let metadata: Value = get_json(setup.metadata_url()).await;
    let scopes: Vec<&str> = metadata["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|scope| scope.as_str().unwrap())
        .collect();
    let mut sorted = scopes.clone();
    sorted.sort_unstable();
    assert_eq!(scopes, sorted);
    for expected in [
        "mcp:connect",
        "mcp:tools:read",
        "mcp:tools:execute",
        "mcp:graphql:execute",
        "mcp:schema:read",
        "read:fact",
        "read:all",
        "read:private",
        "read:employee",
        "read:node",
        "read:level",
        "write:fact",
        "audit:cpu",
        "ops:network",
    ] {
        assert!(
            scopes.contains(&expected),
            "{expected} missing from {scopes:?}"
        );
    }
}

// === execute_graphql ===

#[tokio::test]
async fn execute_graphql_needs_the_scopes_of_the_fields_it_selects() {
    let setup = setup(2048).await;
    let caller = "mcp:connect mcp:tools:execute mcp:graphql:execute";
    let query = json!({"query": "{ facts { title } status { healthy } }"});
    let response = setup.call(caller, "execute_graphql", query.clone()).await;
    setup.assert_challenged(&response, "read:fact", "execute_graphql");
    assert!(setup.endpoint.received().is_empty());
    // Without the built-in's own scope, the static level refuses first.
    let response = setup
        .call(
            "mcp:connect mcp:tools:execute read:fact",
            "execute_graphql",
            query.clone(),
        )
        .await;
    setup.assert_challenged(&response, "mcp:graphql:execute", "execute_graphql");
    // With them, the query goes through.
    let response = setup
        .call(&format!("{caller} read:all"), "execute_graphql", query)
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(setup.endpoint.received().len(), 1);
    // A query selecting nothing scoped needs only the static levels.
    let response = setup
        .call(
            caller,
            "execute_graphql",
            json!({"query": "{ status { healthy } }"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // One that does not validate is the upstream's to answer, as a tool error.
    let response = setup
        .call(caller, "execute_graphql", json!({"query": "{ nope }"}))
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(setup.endpoint.received().len(), 2);
}

#[tokio::test]
async fn execute_graphql_is_checked_per_message_of_a_batch() {
    let setup = setup(2048).await;
    let caller = "mcp:connect mcp:tools:execute mcp:graphql:execute";
    let call = |id: u64, query: &str| {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "tools/call",
            "params": {"name": "execute_graphql", "arguments": {"query": query}},
        })
    };
    let batch = json!([
        call(1, "{ status { healthy } }"),
        call(2, "{ employees { name } }"),
    ]);
    let response = setup
        .send(caller, &batch, &[("mcp-protocol-version", "2025-03-26")])
        .await;
    setup.assert_challenged(&response, "read:employee", "execute_graphql");
    assert!(setup.endpoint.received().is_empty());
    let response = setup
        .send(
            &format!("{caller} read:employee"),
            &batch,
            &[("mcp-protocol-version", "2025-03-26")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(setup.endpoint.received().len(), 2);
}

#[tokio::test]
async fn execute_graphql_over_the_combination_limit_is_refused_without_a_scope() {
    let setup = setup(8).await;
    let caller = "mcp:connect mcp:tools:execute mcp:graphql:execute";
    let response = setup
        .call(
            caller,
            "execute_graphql",
            json!({"query": "{ audit { cpu memory disk network } }"}),
        )
        .await;
    assert_eq!(response.status(), 403);
    let challenge = www_authenticate(&response);
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"mcp\", resource_metadata=\"{}\", error_description=\"the query needs 16 \
             scope combinations, more than the limit of 8\"",
            setup.metadata_url()
        )
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "query_too_complex");
    // Even a caller holding one scope of every group gets no further.
    let response = setup
        .call(
            &format!("{caller} audit:cpu audit:memory audit:disk audit:network"),
            "execute_graphql",
            json!({"query": "{ audit { cpu memory disk network } }"}),
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(!www_authenticate(&response).contains("scope="));
    assert!(setup.endpoint.received().is_empty());
    // Within the limit, the same fields pass for a caller holding their scopes.
    let response = setup
        .call(
            &format!("{caller} audit:cpu audit:memory audit:disk"),
            "execute_graphql",
            json!({"query": "{ audit { cpu memory disk } }"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(setup.endpoint.received().len(), 1);
}

// === reload ===

#[tokio::test]
async fn reload_with_a_broken_operation_keeps_the_running_tools() {
    let setup = setup(2048).await;
    let before = setup.tool_names(&format!("{CALLER} read:all")).await;
    setup.files.write_operation(
        "99_broken.graphql",
        "query Broken {\n  status {\n    uptime\n  }\n}\n",
    );
    setup.gateway.signal("HUP");
    assert!(setup.gateway.wait_for_log("config reload failed").await);
    let stderr = setup.gateway.stderr();
    assert!(stderr.contains("upstream.graphql.operations"), "{stderr}");
    assert!(stderr.contains("99_broken.graphql"), "{stderr}");
    assert_eq!(
        setup.tool_names(&format!("{CALLER} read:all")).await,
        before
    );
    // The running tools still answer.
    let response = setup
        .call(
            "mcp:connect mcp:tools:execute read:all",
            "execute_operation_get_facts",
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn reload_reads_the_operations_again_with_an_unchanged_config() {
    let setup = setup(2048).await;
    let tool = "execute_operation_list_private_facts".to_owned();
    assert!(
        !setup
            .tool_names(&format!("{CALLER} read:all"))
            .await
            .contains(&tool)
    );
    setup.files.write_operation(
        "99_private.graphql",
        "query ListPrivateFacts {\n  facts {\n    private\n  }\n}\n",
    );
    setup.gateway.signal("HUP");
    assert!(setup.gateway.wait_for_log("config reloaded").await);
    assert!(
        setup
            .tool_names(&format!("{CALLER} read:all read:private"))
            .await
            .contains(&tool)
    );
    // Its requirement came with it: facts (read:fact or read:all) AND private.
    assert!(
        !setup
            .tool_names(&format!("{CALLER} read:all"))
            .await
            .contains(&tool)
    );
    let response = setup
        .call("mcp:connect mcp:tools:execute read:fact", &tool, json!({}))
        .await;
    setup.assert_challenged(&response, "read:private", &tool);
}

// === mcpgate policy ===

#[test]
fn policy_lists_the_operation_tools_with_their_requirements() {
    let files = Files::new("operations");
    let yaml = files.config("scopes:\n  tools_call: [mcp:tools:execute]\n");
    let (code, stdout, stderr) = run_with_config("policy", &yaml, &["--json"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let matrix: Value = serde_json::from_str(&stdout).unwrap();
    let tools = matrix["tools"].as_array().unwrap();
    let entry = |name: &str| -> &Value {
        tools
            .iter()
            .find(|tool| tool["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {stdout}"))
    };
    assert_eq!(
        entry("execute_operation_get_facts")["requires"],
        json!([
            ["mcp:tools:execute", "read:fact"],
            ["mcp:tools:execute", "read:all"]
        ])
    );
    assert_eq!(
        entry("execute_operation_get_facts")["rules"],
        json!(["@requiresScopes of operation GetFacts"])
    );
    assert_eq!(
        entry("get_operation_info")["requires"],
        json!([["mcp:tools:execute"]])
    );
    assert_eq!(matrix["server_name"], "mcpgate-graphql");
}

/// Through a virtual server, a GraphQL member's queries need what they need on the
/// member's own route: the fields' scopes are computed for the prefixed name too.
#[tokio::test]
async fn a_query_through_a_virtual_server_needs_the_scopes_of_its_fields() {
    let endpoint = Endpoint::start().await;
    let files = Files::new("operations");
    let config = format!(
        "server:\n  listen: 127.0.0.1:{{port}}\nauth:\n  oauth:\n    enabled: true\n    issuers: [https://issuer.test]\n    jwks:\n      - secret: \"{HMAC_SECRET}\"\n        header_key_id: dev\nroutes:\n  - name: gql\n    public_url: http://127.0.0.1:{{port}}/gql/mcp\n    upstream:\n      graphql:\n        endpoint: {}\n        schema: {}\n        operations: {}\n        enable_arbitrary_operations: true\n        scopes:\n          execute_graphql: [mcp:graphql:execute]\n  - name: all\n    public_url: http://127.0.0.1:{{port}}/all/mcp\n    upstream:\n      virtual:\n        members:\n          - {{route: gql, prefix: g_}}\n",
        endpoint.url,
        files.schema().display(),
        files.operations().display()
    );
    // `mcpgate explain` says the fields' scopes are decided per query there too.
    let fixed = config.replace("{port}", "5025");
    let token = hs256(
        &claims("http://127.0.0.1:5025/all/mcp", "mcp:graphql:execute"),
        Some("dev"),
    );
    let (_, stdout, stderr) = run_with_config(
        "explain",
        &fixed,
        &[
            "--route",
            "all",
            "--token",
            &token,
            "--tool",
            "g_execute_graphql",
        ],
        &[],
    );
    assert!(
        stdout.contains("execute_graphql also needs the scopes of the fields its query selects"),
        "{stdout}{stderr}"
    );
    let gateway = Gateway::start(&config).await;
    let all = format!("{}/all/mcp", gateway.base);
    let call = |scopes: &str| {
        let token = hs256(&claims(&all, scopes), Some("dev"));
        let body = rpc(
            7,
            "tools/call",
            json!({"name": "g_execute_graphql", "arguments": {"query": "{ facts { title } }"}}),
        );
        Request::to(reqwest::Method::POST, &all)
            .bearer(&token)
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body)
            .send()
    };
    let refused = call("mcp:graphql:execute").await;
    assert_eq!(refused.status(), 403);
    let challenge = www_authenticate(&refused);
    assert!(challenge.contains("scope=\"read:fact\""), "{challenge}");
    assert!(endpoint.received().is_empty(), "the query reached the API");
    let refused = call("read:all").await;
    assert_eq!(refused.status(), 403);
    assert!(www_authenticate(&refused).contains("mcp:graphql:execute"));
    assert!(endpoint.received().is_empty());
    let allowed = call("mcp:graphql:execute read:all").await;
    assert_eq!(allowed.status(), 200, "{}", gateway.stderr());
    let answer: Value = allowed.json().await.unwrap();
    assert_eq!(answer["result"]["isError"], json!(false), "{answer}");
    assert_eq!(endpoint.received().len(), 1);
}
