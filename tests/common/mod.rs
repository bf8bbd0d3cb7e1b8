//! Test harness: the real `mcpgate` binary started with a generated config, a JWKS
//! server and a recording upstream MCP server, all on loopback in the test process.
#![allow(dead_code)]

pub mod config;
pub mod facade;
pub mod redis;
pub mod request;
pub mod stdio;

pub use config::*;
pub use request::*;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Every field an audit record carries, always (null when unknown).
pub const AUDIT_FIELDS: &[&str] = &[
    "ts",
    "request_id",
    "route",
    "session_id",
    "http_method",
    "method",
    "tool",
    "resource",
    "prompt",
    "batch",
    "action",
    "auth_result",
    "auth_method",
    "subject",
    "issuer",
    "oauth_client_id",
    "api_key_id",
    "scopes",
    "mapped_scopes",
    "rules_matched",
    "denied_by_rule",
    "status",
    "reason",
    "latency_ms",
    "upstream_latency_ms",
    "token_fingerprint",
    "upstream_identity",
    "upstream_audience",
];

pub const HMAC_SECRET: &str = "a-development-secret-of-at-least-32-bytes!";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// === keys and tokens ===

pub struct Keys {
    pub rsa: EncodingKey,
    pub rsa2: EncodingKey,
    pub ec: EncodingKey,
    pub ed: EncodingKey,
}

impl Keys {
    pub fn load() -> Self {
        let read = |name: &str| std::fs::read(fixture(name)).unwrap();
        Self {
            rsa: EncodingKey::from_rsa_pem(&read("rsa_private.pem")).unwrap(),
            rsa2: EncodingKey::from_rsa_pem(&read("rsa2_private.pem")).unwrap(),
            ec: EncodingKey::from_ec_pem(&read("ec_private.pem")).unwrap(),
            ed: EncodingKey::from_ed_pem(&read("ed25519_private.pem")).unwrap(),
        }
    }

    /// A JWKS with the RSA key as `rsa-1`, the EC key as `ec-1` and the Ed25519 key
    /// as `ed-1`. `rsa-1` carries no `alg`, so it may verify any allowed RSA algorithm.
    pub fn jwks(&self) -> Value {
        let mut rsa = public_jwk(&self.rsa, Algorithm::RS256, "rsa-1");
        rsa.as_object_mut().unwrap().remove("alg");
        json!({"keys": [
            rsa,
            public_jwk(&self.ec, Algorithm::ES256, "ec-1"),
            public_jwk(&self.ed, Algorithm::EdDSA, "ed-1"),
        ]})
    }
}

pub fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

/// Standard claims for a token the gateway at `audience` accepts.
pub fn claims(audience: &str, scope: &str) -> Value {
    let now = now();
    json!({
        "iss": "https://issuer.test",
        "sub": "alice",
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "scope": scope,
        "client_id": "test-client",
    })
}

pub fn sign(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header.typ = Some("at+jwt".to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn hs256(claims: &Value, kid: Option<&str>) -> String {
    sign(
        &EncodingKey::from_secret(HMAC_SECRET.as_bytes()),
        Algorithm::HS256,
        kid,
        claims,
    )
}

/// A token assembled by hand: for attacks a JWT library refuses to produce.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

// === servers in the test process ===

pub async fn spawn_router(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

type JwksState = (
    Arc<Mutex<Value>>,
    Arc<Mutex<usize>>,
    Arc<std::sync::atomic::AtomicBool>,
);

/// Serves a JWKS document that tests can replace, counting fetches.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    document: Arc<Mutex<Value>>,
    fetches: Arc<Mutex<usize>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl JwksServer {
    pub async fn start(document: Value) -> Self {
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(Mutex::new(0));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = (document.clone(), fetches.clone(), failing.clone());
        let router = Router::new()
            .route(
                "/jwks",
                get(
                    |State((doc, count, failing)): State<JwksState>| async move {
                        *count.lock().unwrap() += 1;
                        if failing.load(std::sync::atomic::Ordering::SeqCst) {
                            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                        }
                        axum::Json(doc.lock().unwrap().clone()).into_response()
                    },
                ),
            )
            .with_state(state);
        let addr = spawn_router(router).await;
        Self {
            url: format!("http://{addr}/jwks"),
            document,
            fetches,
            failing,
        }
    }

    /// Makes the endpoint answer 500 (an IdP outage) or recover.
    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn replace(&self, document: Value) {
        *self.document.lock().unwrap() = document;
    }

    pub fn fetches(&self) -> usize {
        *self.fetches.lock().unwrap()
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A recording MCP upstream. POST answers JSON-RPC with JSON; a `tools/call` of
/// `stream` answers SSE, sending its second event only after `release` is notified
/// (so a test can prove the first arrived while the response was still open); `slow`
/// answers after 5 s; `cors-headers` answers with `Access-Control-*` headers of its
/// own. GET opens an SSE stream with one event.
#[derive(Clone)]
pub struct Upstream {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub release: Arc<tokio::sync::Notify>,
}

impl Upstream {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let state = (seen.clone(), release.clone());
        let router = Router::new()
            .route("/mcp", any(upstream_handler))
            .with_state(state);
        let addr = spawn_router(router).await;
        Self {
            url: format!("http://{addr}/mcp"),
            seen,
            release,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// No request that reached the upstream carried an `Authorization` header.
    pub fn never_saw_authorization(&self) -> bool {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .all(|seen| seen.headers.get("authorization").is_none())
    }
}

type UpstreamState = (Arc<Mutex<Vec<Seen>>>, Arc<tokio::sync::Notify>);

/// The headers of the request being handled (the last one recorded).
fn headers_seen(seen: &Mutex<Vec<Seen>>) -> HeaderMap {
    seen.lock()
        .unwrap()
        .last()
        .map(|seen| seen.headers.clone())
        .unwrap_or_default()
}

async fn upstream_handler(
    State((seen, release)): State<UpstreamState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        headers,
        body: body.clone(),
    });
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let tool = message
        .pointer("/params/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if method == Method::GET
        && headers_seen(&seen)
            .get("last-event-id")
            .map(|v| v.as_bytes())
            == Some(b"replay-list")
    {
        // Resumption: the stream replays the answer to an earlier tools/list.
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": list_result(&json!({"method": "tools/list"}))});
        return sse_answer(answer.to_string());
    }
    if method == Method::GET || tool == "stream" {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let stream = async_stream(id, release);
        return Response::builder()
            .header("content-type", "text/event-stream")
            .header("mcp-session-id", "upstream-session-1")
            .header("connection", "keep-alive")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    if tool == "slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if tool == "cors-headers" {
        // An upstream with its own, wider, idea of who may read its answers.
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        return Response::builder()
            .header("content-type", "application/json")
            .header("access-control-allow-origin", "*")
            .header("access-control-allow-credentials", "true")
            .header("access-control-expose-headers", "X-Secret")
            .header("access-control-max-age", "86400")
            .body(Body::from(
                json!({"jsonrpc": "2.0", "id": id, "result": {"ok": true}}).to_string(),
            ))
            .unwrap();
    }
    if tool == "session-gone" {
        // What a Streamable HTTP server answers for a session it no longer has.
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    }
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    if let Some(result) = list_result(&message) {
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
        if message.pointer("/params/cursor") == Some(&json!("sse")) {
            return sse_answer(answer);
        }
        return Response::builder()
            .header("content-type", "application/json")
            .header("mcp-session-id", "upstream-session-1")
            .body(Body::from(answer))
            .unwrap();
    }
    if message.is_array() {
        // A 2025-03-26 batch: one result per request, in order.
        let answers: Vec<Value> = message
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.get("id").is_some())
            .map(|m| {
                let result = list_result(m).unwrap_or(json!({"ok": true}));
                json!({"jsonrpc": "2.0", "id": m["id"], "result": result})
            })
            .collect();
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(Value::Array(answers).to_string()))
            .unwrap();
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("mcp-session-id", "upstream-session-1")
        .body(Body::from(
            json!({"jsonrpc": "2.0", "id": id, "result": {"ok": true}}).to_string(),
        ))
        .unwrap()
}

/// `initialize`, and the lists the upstream offers (every one with a `nextCursor`,
/// to show that filtering leaves it alone).
pub fn list_result(message: &Value) -> Option<Value> {
    let result = match message.get("method")?.as_str()? {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
            "serverInfo": {"name": "test-upstream", "version": "1.0.0"},
        }),
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "get-env", "inputSchema": {"type": "object"}},
            {"name": "admin_reset", "inputSchema": {"type": "object"}},
            {"name": "db_query", "inputSchema": {"type": "object"}},
        ], "nextCursor": "page-2"}),
        "prompts/list" => json!({"prompts": [
            {"name": "greeting"}, {"name": "secret_prompt"},
        ], "nextCursor": "page-2"}),
        "resources/list" => json!({"resources": [
            {"uri": "file:///public/readme.md", "name": "readme"},
            {"uri": "file:///secret/keys.txt", "name": "keys"},
        ], "nextCursor": "page-2"}),
        "resources/templates/list" => json!({"resourceTemplates": [
            {"uriTemplate": "file:///public/{name}", "name": "public"},
            {"uriTemplate": "file:///secret/{name}", "name": "secret"},
        ], "nextCursor": "page-2"}),
        _ => return None,
    };
    if message.pointer("/params/cursor") == Some(&json!("page-2")) {
        // The last page: empty, without a cursor.
        let key = result.as_object()?.keys().next()?.clone();
        return Some(json!({ key: [] }));
    }
    Some(result)
}

/// `answer` as an SSE stream: a progress notification first, then the answer split
/// across chunks mid-line, with CRLF line ends and an event id.
fn sse_answer(answer: String) -> Response {
    let notification =
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}});
    let text = format!(
        "id: 1\r\nevent: message\r\ndata: {notification}\r\n\r\nid: 2\r\nevent: message\r\ndata: {answer}\r\n\r\n"
    );
    let (head, tail) = text.split_at(text.len() / 2);
    let chunks = vec![
        Ok::<_, std::io::Error>(Bytes::from(head.to_owned())),
        Ok(Bytes::from(tail.to_owned())),
    ];
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

fn async_stream(
    id: Value,
    release: Arc<tokio::sync::Notify>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let first = format!(
        "event: message\ndata: {}\n\n",
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}})
    );
    let second = format!(
        "event: message\ndata: {}\n\n",
        json!({"jsonrpc":"2.0","id":id,"result":{"done":true}})
    );
    futures_util::stream::unfold(0u8, move |step| {
        let (first, second, release) = (first.clone(), second.clone(), release.clone());
        async move {
            match step {
                0 => Some((Ok(Bytes::from(first)), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(Bytes::from(second)), 2))
                }
                _ => None,
            }
        }
    })
}

// === the gateway process ===

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcpgate")
}

/// Whether mcpgate reads `name` from its environment as configuration: every
/// `MCPGATE_*` variable (`MCPGATE_<SECTION>__<KEY>` overrides, the CLI's options)
/// and the `MCP_OAUTH_*` aliases; `RUST_LOG` too, which overrides `log.level`.
pub fn is_gateway_setting(name: &str) -> bool {
    name.starts_with("MCPGATE_") || name.starts_with("MCP_OAUTH_") || name == "RUST_LOG"
}

/// The environment of an mcpgate child: `inherited` (the test process's own, unless
/// a test stands in another) without any gateway setting, then `env`, the settings
/// the test means. An `MCP_OAUTH_ENABLED=false` in the caller's shell must not
/// change what every test checks; the config file is the only source.
pub fn child_env(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    env: &[(&str, &str)],
) -> Vec<(OsString, OsString)> {
    inherited
        .into_iter()
        .filter(|(name, _)| !name.to_str().is_some_and(is_gateway_setting))
        .chain(env.iter().map(|(name, value)| (name.into(), value.into())))
        .collect()
}

/// `mcpgate` as a command whose environment is [`child_env`] of this process's and
/// `env`. Every test that runs the binary starts it through here.
pub fn gateway_command(env: &[(&str, &str)]) -> Command {
    gateway_command_inheriting(std::env::vars_os(), env)
}

fn gateway_command_inheriting(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    env: &[(&str, &str)],
) -> Command {
    let mut command = Command::new(bin());
    command.env_clear().envs(child_env(inherited, env));
    command
}

/// A running `mcpgate serve`, killed on drop.
pub struct Gateway {
    pub base: String,
    pub mcp: String,
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Gateway {
    /// Starts `mcpgate serve` with `config` (YAML; `{port}` is replaced by a free port,
    /// `{dir}` by the gateway's own temporary directory).
    pub async fn start(config: &str) -> Self {
        Self::start_with_env(config, &[]).await
    }

    /// Starts the gateway with its open-file limit set to `soft` (and `hard`), as a
    /// service manager would before `exec`.
    pub async fn start_with_open_files(config: &str, soft: u64, hard: u64) -> Self {
        for _ in 0..3 {
            let inherited: Vec<(OsString, OsString)> = std::env::vars_os().collect();
            let limit = Some((soft, hard));
            if let Some(gateway) = Self::try_start(config, &inherited, &[], limit).await {
                return gateway;
            }
        }
        panic!("mcpgate could not get a free port in three tries");
    }

    pub async fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_inheriting(config, std::env::vars_os().collect(), env).await
    }

    /// Starts the gateway as if the test process's environment were `inherited`
    /// (what the harness strips from it, and what it keeps), with `env` on top.
    pub async fn start_inheriting(
        config: &str,
        inherited: Vec<(OsString, OsString)>,
        env: &[(&str, &str)],
    ) -> Self {
        // `free_port` releases the port it found, so until the gateway binds it any
        // other test's server can be given it. The gateway then fails to start, and
        // is started again on another port; readiness is the gateway's own
        // "listening" line, never just a connection, which that other server would
        // accept.
        for _ in 0..3 {
            if let Some(gateway) = Self::try_start(config, &inherited, env, None).await {
                return gateway;
            }
        }
        panic!("mcpgate could not get a free port in three tries");
    }

    /// `None` when the port was taken before the gateway could bind it.
    /// `open_files`: the soft and hard open-file limits to start it with.
    async fn try_start(
        config: &str,
        inherited: &[(OsString, OsString)],
        env: &[(&str, &str)],
        open_files: Option<(u64, u64)>,
    ) -> Option<Self> {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcpgate.yaml");
        let listens_on_port = config.contains("{port}");
        let config = config
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        std::fs::write(&path, config).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut command = gateway_command_inheriting(inherited.iter().cloned(), env);
        command
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some((soft, hard)) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only setrlimit runs, which is
            // async-signal-safe and allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    rustix::process::setrlimit(
                        rustix::process::Resource::Nofile,
                        rustix::process::Rlimit {
                            current: Some(soft),
                            maximum: Some(hard),
                        },
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let child = command.spawn().unwrap();
        let mut gateway = Self {
            base: format!("http://127.0.0.1:{port}"),
            mcp: format!("http://127.0.0.1:{port}/mcp"),
            child,
            dir,
            port,
        };
        if listens_on_port {
            gateway.wait_listening().await.then_some(gateway)
        } else {
            gateway.wait_ready().await;
            Some(gateway)
        }
    }

    /// Waits for the gateway to say it listens on its port; false if it exited
    /// because the port was in use.
    async fn wait_listening(&mut self) -> bool {
        let line = format!("listening on 127.0.0.1:{},", self.port);
        for _ in 0..400 {
            let stderr = self.stderr();
            if stderr.contains(&line) {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                if stderr.contains("Address already in use") {
                    return false;
                }
                panic!("mcpgate exited ({status}) before listening; stderr:\n{stderr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mcpgate did not start; stderr:\n{}", self.stderr());
    }

    async fn wait_ready(&self) {
        let addr = self.base.trim_start_matches("http://").to_owned();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mcpgate did not start; stderr:\n{}", self.stderr());
    }

    /// Sends SIGTERM to the gateway.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal (`HUP`, `TERM`, `INT`) to the gateway.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The gateway's temporary directory (its config file, its stderr log, and any
    /// file a config put under `{dir}`).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Replaces the config file (same placeholders as `start`); send `HUP` to apply.
    pub fn rewrite_config(&self, config: &str) {
        let config = config
            .replace("{port}", &self.port.to_string())
            .replace("{dir}", &self.dir.path().display().to_string());
        let path = self.dir.path().join("mcpgate.yaml");
        let staged = self.dir.path().join("mcpgate.yaml.new");
        std::fs::write(&staged, config).unwrap();
        // Renamed into place so a reload never reads a half-written file.
        std::fs::rename(staged, path).unwrap();
    }

    /// Waits up to 15 s for `needle` to appear in the gateway's stderr.
    pub async fn wait_for_log(&self, needle: &str) -> bool {
        for _ in 0..300 {
            if self.stderr().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// How many times `needle` appears in the gateway's stderr.
    pub fn log_count(&self, needle: &str) -> usize {
        self.stderr().matches(needle).count()
    }

    /// Waits up to `limit` for the process to exit; its exit code, or `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    /// A plain GET of `path` on the gateway's origin: no token, no `Accept`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        Self::client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// POSTs a JSON-RPC `tools/list` with an optional bearer token.
    pub async fn post(&self, token: Option<&str>) -> reqwest::Response {
        let mut request = Self::client()
            .post(&self.mcp)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls with `token` until the gateway answers `status`, up to 15 s: for changes that
/// take effect after a refresh or a cache TTL, without a fixed sleep.
pub async fn eventually(gateway: &Gateway, token: &str, status: u16) -> bool {
    for _ in 0..150 {
        if gateway.post(Some(token)).await.status() == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn www_authenticate(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The challenge of a 403 for want of `scope`: `metadata` is the resource metadata
/// URL, `description` the `error_description`.
pub fn insufficient_scope(scope: &str, metadata: &str, description: &str) -> String {
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{metadata}\", \
         error_description=\"{description}\""
    )
}

/// Asserts that `response` is a 403 with the challenge [`insufficient_scope`] makes.
#[track_caller]
pub fn assert_insufficient_scope(
    response: &reqwest::Response,
    scope: &str,
    metadata: &str,
    description: &str,
) {
    assert_eq!(response.status(), 403);
    assert_eq!(
        www_authenticate(response),
        insufficient_scope(scope, metadata, description)
    );
}

/// A token of the examples' issuer (`https://auth.example.com/`) for `audience`.
pub fn example_token(audience: &str, scopes: &str) -> String {
    let mut claims = claims(audience, scopes);
    claims["iss"] = json!("https://auth.example.com/");
    hs256(&claims, Some("dev"))
}

/// Runs `mcpgate <args>` to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = gateway_command(env).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `mcpgate <command> --config <a file holding yaml> <args>` to completion:
/// (exit code, stdout, stderr).
pub fn run_with_config(
    command: &str,
    yaml: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut all = vec![command, "--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    run_cli(&all, env)
}

/// `mcpgate check` of `yaml`: (exit code, stdout, stderr).
pub fn check_config(yaml: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    run_with_config("check", yaml, &[], env)
}

/// Audit records, once at least `count` are written.
pub async fn audit_records(gateway: &Gateway, count: usize) -> Vec<Value> {
    let path = gateway.dir().join("audit.jsonl");
    for _ in 0..100 {
        let records: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        if records.len() >= count {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} audit records");
}
