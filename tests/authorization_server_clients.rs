//! The façade's two run-time ways a client becomes known, against the binary:
//! a Client ID Metadata Document fetched from the client's URL, and dynamic
//! registration (RFC 7591); and the attacks on each (SSRF, a document that lies
//! about its URL, redirects, oversized and slow documents, unregistered redirect
//! URIs, dangerous redirect URIs at registration, missing tokens, floods).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::common::config::TestConfig;
use crate::common::{Gateway, Upstream, run_cli, spawn_router};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const CLIENT_REDIRECT: &str = "http://127.0.0.1/callback";
const TOKEN: &str = "initial-access-token-for-tests";

/// The façade with CIMD limits small enough to test and (unless `strict`) the
/// test-only permission to fetch from loopback; registration on, with a token.
fn config(upstream: &Upstream, strict: bool, per_minute: u32) -> String {
    TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:read]")
        .yaml(&format!(
            "authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret
  client_metadata_documents:
    allow_private_addresses: {}
    max_bytes: 2048
    timeout: 1s
  registration:
    enabled: true
    initial_access_token: {TOKEN}
    per_ip_per_minute: {per_minute}",
            !strict
        ))
        .build()
}

/// A server of client metadata documents, recording every path requested.
#[derive(Clone, Default)]
struct Documents {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Documents {
    async fn start() -> (Self, String) {
        let documents = Self::default();
        let router = Router::new()
            .route("/good.json", get(good))
            .route("/liar.json", get(liar))
            .route("/moved.json", get(moved))
            .route("/huge.json", get(huge))
            .route("/slow.json", get(slow))
            .layer(axum::middleware::from_fn_with_state(
                documents.clone(),
                record,
            ))
            .with_state(documents.clone());
        let addr = spawn_router(router).await;
        (documents, format!("127.0.0.1:{}", addr.port()))
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    State(documents): State<Documents>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    documents
        .seen
        .lock()
        .unwrap()
        .push(request.uri().path().to_owned());
    next.run(request).await
}

/// A document naming itself by the URL it is served at (from the Host header).
fn document(host: &str, path: &str) -> Value {
    json!({
        "client_id": format!("http://{host}{path}"),
        "client_name": "Doc Client",
        "redirect_uris": [CLIENT_REDIRECT],
        "token_endpoint_auth_method": "none",
    })
}

fn host(headers: &axum::http::HeaderMap) -> String {
    headers[header::HOST].to_str().unwrap().to_owned()
}

async fn good(headers: axum::http::HeaderMap) -> Response {
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        axum::Json(document(&host(&headers), "/good.json")),
    )
        .into_response()
}

async fn liar(headers: axum::http::HeaderMap) -> Response {
    // Claims to be the good client.
    axum::Json(document(&host(&headers), "/good.json")).into_response()
}

async fn moved() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/good.json")]).into_response()
}

async fn huge() -> Response {
    // No length announced: the body runs on until the reader stops.
    let chunks = futures_util::stream::iter(
        (0..10_000).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))),
    );
    Body::from_stream(chunks).into_response()
}

async fn slow(headers: axum::http::HeaderMap) -> Response {
    tokio::time::sleep(Duration::from_secs(5)).await;
    axum::Json(document(&host(&headers), "/slow.json")).into_response()
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn authorize_url(gateway: &Gateway, client_id: &str, redirect_uri: &str) -> String {
    format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&state=st8&scope=mcp:read",
        gateway.base,
        urlencode(client_id),
        urlencode(redirect_uri),
    )
}

/// Follows an authorization request to the consent page's HTML.
async fn consent_page(gateway: &Gateway, client_id: &str) -> String {
    let client = browser();
    let response = client
        .get(authorize_url(gateway, client_id, CLIENT_REDIRECT))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page_url = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(page_url.contains("/oauth/consent?request="), "{page_url}");
    let page = client
        .get(&page_url)
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

/// An authorization request refused with a page (never a redirect); its HTML.
async fn refused_page(gateway: &Gateway, client_id: &str, redirect_uri: &str) -> String {
    let response = browser()
        .get(authorize_url(gateway, client_id, redirect_uri))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "{client_id}");
    assert!(response.headers().get(LOCATION).is_none(), "{client_id}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let html = response.text().await.unwrap();
    assert!(html.contains("Sign-in cannot continue"), "{html}");
    html
}

async fn register(gateway: &Gateway, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = browser()
        .post(format!("{}/oauth/register", gateway.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_metadata_document_client_reaches_consent_with_its_verified_host() {
    let upstream = Upstream::start().await;
    let (documents, host) = Documents::start().await;
    let gateway = Gateway::start(&config(&upstream, false, 10)).await;
    let client_id = format!("http://{host}/good.json");

    let html = consent_page(&gateway, &client_id).await;
    assert!(html.contains("Doc Client"), "{html}");
    assert!(html.contains("published by 127.0.0.1"), "{html}");
    assert!(!html.contains("registered itself"));
    // The second sign-in uses the remembered document.
    consent_page(&gateway, &client_id).await;
    assert_eq!(documents.seen(), ["/good.json"]);

    // A redirect URI the document does not list is refused with a page.
    let html = refused_page(&gateway, &client_id, "http://127.0.0.1/other").await;
    assert!(html.contains("not one the client registered"), "{html}");
}

#[tokio::test]
async fn documents_that_lie_move_overflow_or_stall_are_refused() {
    let upstream = Upstream::start().await;
    let (documents, host) = Documents::start().await;
    let gateway = Gateway::start(&config(&upstream, false, 10)).await;
    let cases = [
        ("/liar.json", "is not the URL it was fetched from"),
        ("/moved.json", "answered with a redirect (302)"),
        ("/huge.json", "larger than 2048 bytes"),
        ("/slow.json", "took longer than 1s"),
    ];
    for (path, reason) in cases {
        let client_id = format!("http://{host}{path}");
        let started = Instant::now();
        let html = refused_page(&gateway, &client_id, CLIENT_REDIRECT).await;
        assert!(html.contains(reason), "{path}: {html}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
        // A failure is remembered: asking again fetches nothing.
        let again = refused_page(&gateway, &client_id, CLIENT_REDIRECT).await;
        assert!(again.contains(reason), "{path}: {again}");
    }
    // One fetch each, and the redirect was not followed.
    assert_eq!(
        documents.seen(),
        ["/liar.json", "/moved.json", "/huge.json", "/slow.json"]
    );
}

#[tokio::test]
async fn loopback_client_ids_are_never_fetched_without_the_test_option() {
    let upstream = Upstream::start().await;
    let (documents, host) = Documents::start().await;
    // A bare TCP listener for the https cases: it counts connections, so even a
    // TLS handshake that never becomes a request would show.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let gateway = Gateway::start(&config(&upstream, true, 10)).await;
    let cases = [
        (
            format!("https://127.0.0.1:{port}/good.json"),
            "private or reserved address",
        ),
        (
            format!("https://localhost:{port}/good.json"),
            "private or reserved address",
        ),
        (
            format!("https://[::1]:{port}/good.json"),
            "private or reserved address",
        ),
        (
            format!("https://[::ffff:7f00:1]:{port}/good.json"),
            "private or reserved address",
        ),
        (format!("http://{host}/good.json"), "must use https"),
    ];
    for (client_id, reason) in cases {
        let html = refused_page(&gateway, &client_id, CLIENT_REDIRECT).await;
        assert!(html.contains(reason), "{client_id}: {html}");
    }
    assert!(documents.seen().is_empty(), "{:?}", documents.seen());
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn with_documents_off_a_url_client_id_is_an_unknown_client() {
    let upstream = Upstream::start().await;
    let (documents, host) = Documents::start().await;
    let yaml = config(&upstream, false, 10).replace(
        "  client_metadata_documents:\n",
        "  client_metadata_documents:\n    enabled: false\n",
    );
    let gateway = Gateway::start(&yaml).await;
    let html = refused_page(
        &gateway,
        &format!("http://{host}/good.json"),
        CLIENT_REDIRECT,
    )
    .await;
    assert!(html.contains("not known"), "{html}");
    assert!(documents.seen().is_empty());
}

#[tokio::test]
async fn a_denied_host_is_never_fetched() {
    let upstream = Upstream::start().await;
    let (documents, host) = Documents::start().await;
    let yaml = config(&upstream, false, 10).replace(
        "  client_metadata_documents:\n",
        "  client_metadata_documents:\n    allowed_hosts: [\"*.example.com\", 127.0.0.1]\n    denied_hosts: [127.0.0.1]\n",
    );
    let gateway = Gateway::start(&yaml).await;
    let html = refused_page(
        &gateway,
        &format!("http://{host}/good.json"),
        CLIENT_REDIRECT,
    )
    .await;
    assert!(
        html.contains("127.0.0.1 is not allowed to publish clients here"),
        "{html}"
    );
    assert!(documents.seen().is_empty());
}

#[tokio::test]
async fn a_registered_client_reaches_consent_with_the_unverified_warning() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, false, 10)).await;
    let metadata: Value = browser()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            gateway.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{}/oauth/register", gateway.base)
    );

    let response = register(
        &gateway,
        Some(TOKEN),
        &json!({
            "client_name": "Self Made",
            "redirect_uris": [CLIENT_REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "unknown_field": {"ignored": true},
        }),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let registered: Value = response.json().await.unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    assert!(client_id.len() >= 43);
    assert!(registered["client_id_issued_at"].as_u64().unwrap() > 1_700_000_000);
    assert!(registered.get("client_secret").is_none());
    assert_eq!(registered["token_endpoint_auth_method"], "none");
    assert_eq!(registered["redirect_uris"], json!([CLIENT_REDIRECT]));
    assert_eq!(registered["response_types"], json!(["code"]));
    assert!(registered.get("unknown_field").is_none());

    let html = consent_page(&gateway, client_id).await;
    assert!(html.contains("Self Made"));
    assert!(
        html.contains("This application registered itself"),
        "{html}"
    );

    // A confidential client gets its secret once; mcpgate keeps only a hash.
    let response = register(
        &gateway,
        Some(TOKEN),
        &json!({"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await.unwrap();
    assert!(registered["client_secret"].as_str().unwrap().len() >= 43);
    assert_eq!(registered["client_secret_expires_at"], 0);
    assert!(
        !gateway
            .stderr()
            .contains(registered["client_secret"].as_str().unwrap())
    );
}

#[tokio::test]
async fn registrations_with_dangerous_redirect_uris_are_refused() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, false, 50)).await;
    for uri in [
        "javascript:alert(document.cookie)",
        "http://evil.example/callback",
        "https://app.example/cb#fragment",
        "data:text/html,<script>alert(1)</script>",
        "https://user@app.example/cb",
    ] {
        let response = register(
            &gateway,
            Some(TOKEN),
            &json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"}),
        )
        .await;
        assert_eq!(response.status(), 400, "{uri}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_redirect_uri", "{uri}");
        assert!(
            error["error_description"]
                .as_str()
                .unwrap()
                .contains("redirect_uris[0]")
        );
    }
    let response = register(
        &gateway,
        Some(TOKEN),
        &json!({"redirect_uris": [CLIENT_REDIRECT], "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_client_metadata");
    // Over the size limit.
    let big = json!({"redirect_uris": [CLIENT_REDIRECT], "client_name": "x".repeat(20_000)});
    let response = register(&gateway, Some(TOKEN), &big).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn registration_needs_the_initial_access_token() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, false, 50)).await;
    let body = json!({"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"});
    for token in [None, Some("wrong"), Some("initial-access-token-for-test")] {
        let response = register(&gateway, token, &body).await;
        assert_eq!(response.status(), 401, "{token:?}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    assert_eq!(register(&gateway, Some(TOKEN), &body).await.status(), 201);
}

#[tokio::test]
async fn a_registration_flood_from_one_address_is_cut_off() {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&config(&upstream, false, 3)).await;
    let body = json!({"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"});
    for _ in 0..3 {
        assert_eq!(register(&gateway, Some(TOKEN), &body).await.status(), 201);
    }
    for _ in 0..5 {
        let response = register(&gateway, Some(TOKEN), &body).await;
        assert_eq!(response.status(), 429);
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
    }
    // Guesses at the token count too.
    assert_eq!(register(&gateway, Some("wrong"), &body).await.status(), 429);
    // Another address has its own budget.
    let elsewhere = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let response = elsewhere
        .post(format!("{}/oauth/register", gateway.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[test]
fn a_bad_pinned_document_is_a_config_error_naming_its_key() {
    let yaml = "upstream:
  url: http://127.0.0.1:1/mcp
authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret
  client_metadata_documents:
    pinned:
      \"https://app.example/client.json\":
        client_id: https://app.example/client.json
        redirect_uris: [\"http://app.example/cb\"]
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (code, _, stderr) = run_cli(&["check", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(
            "config error: authorization_server.client_metadata_documents.pinned.\"https://app.example/client.json\": redirect_uris[0]"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn registrations_are_audited_and_clients_listed_without_secrets() {
    let upstream = Upstream::start().await;
    let (_documents, host) = Documents::start().await;
    let admin_port = crate::common::free_port();
    // The server section comes first (before `authorization_server:`).
    let yaml = config(&upstream, false, 10).replacen(
        "server:\n",
        &format!(
            "audit:\n  path: \"{{dir}}/audit.jsonl\"\nserver:\n  admin_listen: 127.0.0.1:{admin_port}\n"
        ),
        1,
    );
    let gateway = Gateway::start(&yaml).await;
    let refused = register(&gateway, None, &json!({"redirect_uris": [CLIENT_REDIRECT]})).await;
    assert_eq!(refused.status(), 401);
    let registered: Value = register(
        &gateway,
        Some(TOKEN),
        &json!({"client_name": "Self Made", "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    let secret = registered["client_secret"].as_str().unwrap();
    let document_client = format!("http://{host}/good.json");
    consent_page(&gateway, &document_client).await;

    let clients: Value = browser()
        .get(format!(
            "http://127.0.0.1:{admin_port}/authorization-server/clients"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = clients["clients"].as_array().unwrap();
    let find = |id: &str| {
        listed
            .iter()
            .find(|client| client["client_id"] == id)
            .unwrap()
    };
    assert_eq!(listed.len(), 2, "{clients}");
    assert_eq!(find(client_id)["kind"], "registered");
    assert_eq!(find(client_id)["confidential"], true);
    assert_eq!(find(client_id)["client_name"], "Self Made");
    assert_eq!(find(&document_client)["kind"], "metadata_document");
    assert!(!clients.to_string().contains(secret));
    assert!(!clients.to_string().contains("argon2"));

    let log = std::fs::read_to_string(gateway.dir().join("audit.jsonl")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let events: Vec<&str> = records
        .iter()
        .map(|record| record["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["registration_refused", "client_registered", "consent_shown"]
    );
    assert_eq!(records[0]["error"], "invalid_token");
    assert_eq!(records[0]["remote_addr"], "127.0.0.1");
    assert_eq!(records[1]["client_id"], client_id);
    assert_eq!(records[1]["client_kind"], "registered");
    assert_eq!(records[2]["client_kind"], "metadata_document");
    assert!(!log.contains(secret) && !log.contains(TOKEN));
}
