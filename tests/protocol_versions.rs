//! MCP revisions at the gateway, against the real binary: a 2026-07-28 request
//! needs no session and carries its version in `_meta` (agreeing with the header);
//! `server/discover` needs only the every-request level; `subscriptions/listen`
//! needs what it opts into; a retried multi round-trip request is judged like the
//! first; an unknown revision is refused. Older revisions keep their sessions.

use serde_json::{Value, json};

use crate::common::*;

const MODERN: &str = "2026-07-28";

const SCOPES: &str = r#"
initialize: [mcp:connect]
tools_list: [mcp:tools:read]
tools_call: [mcp:tools:execute]
prompts_list: [mcp:prompts:read]
default: [mcp:other]
tools:
  get-env: mcp:admin
resources:
  "file:///secret/*": mcp:admin
"#;

struct Setup {
    upstream: Upstream,
    gateway: Gateway,
}

async fn setup() -> Setup {
    let upstream = Upstream::start().await;
    let gateway = Gateway::start(&TestConfig::oauth(&upstream.url).scopes(SCOPES).build()).await;
    Setup { upstream, gateway }
}

/// A 2026-07-28 request: the version in `_meta` and the header, `Mcp-Method` and
/// `Mcp-Name` mirrored.
fn modern(id: u64, method: &str, mut params: Value) -> (Value, Vec<(String, String)>) {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let mut headers = vec![
        ("mcp-protocol-version".to_owned(), MODERN.to_owned()),
        ("mcp-method".to_owned(), method.to_owned()),
    ];
    let name = params
        .get("name")
        .or_else(|| params.get("uri"))
        .and_then(Value::as_str);
    if let Some(name) = name.filter(|_| matches!(method, "tools/call" | "resources/read")) {
        headers.push(("mcp-name".to_owned(), name.to_owned()));
    }
    (
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        headers,
    )
}

impl Setup {
    async fn send(
        &self,
        scopes: &str,
        body: &Value,
        headers: &[(String, String)],
    ) -> reqwest::Response {
        let request = Request::post(&self.gateway).token(scopes).json(body);
        headers
            .iter()
            .fold(request, |request, (name, value)| {
                request.header(name, value)
            })
            .send()
            .await
    }

    async fn send_modern(
        &self,
        scopes: &str,
        id: u64,
        method: &str,
        params: Value,
    ) -> reqwest::Response {
        let (body, headers) = modern(id, method, params);
        self.send(scopes, &body, &headers).await
    }

    fn forwarded(&self) -> Vec<Seen> {
        self.upstream.seen()
    }
}

async fn rpc_error(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body)
}

const ALL: &str = "mcp:connect mcp:tools:read mcp:tools:execute mcp:prompts:read";

#[tokio::test]
async fn a_2026_07_28_request_needs_no_session_and_opens_none() {
    let setup = setup().await;
    let response = setup
        .send_modern(
            ALL,
            1,
            "tools/call",
            json!({"name": "echo", "arguments": {}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // The upstream answered with a session id (it is an older server); it is not
    // passed on, and no mcpgate session is opened for it.
    assert!(response.headers().get("mcp-session-id").is_none());
    // A stray session id is neither checked (no 404) nor forwarded.
    let (body, mut headers) = modern(2, "tools/call", json!({"name": "echo"}));
    headers.push(("mcp-session-id".to_owned(), "not-a-session".to_owned()));
    let response = setup.send(ALL, &body, &headers).await;
    assert_eq!(response.status(), 200);
    let seen = setup.forwarded();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|seen| seen.headers.get("mcp-session-id").is_none())
    );
    assert_eq!(seen[1].headers["mcp-protocol-version"], MODERN);

    // An older revision still gets (and is held to) its session.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = setup.send(ALL, &init, &[]).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("mcp-session-id").is_some());
    let old = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let stray = [
        ("mcp-protocol-version".to_owned(), "2025-11-25".to_owned()),
        ("mcp-session-id".to_owned(), "not-a-session".to_owned()),
    ];
    assert_eq!(setup.send(ALL, &old, &stray).await.status(), 404);
    assert_eq!(setup.forwarded().len(), 3);
}

#[tokio::test]
async fn server_discover_needs_only_the_every_request_level() {
    let setup = setup().await;
    // `default: [mcp:other]` would apply to an unknown method; discover is known.
    let response = setup
        .send_modern("mcp:connect", 1, "server/discover", json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let response = setup
        .send_modern("mcp:connect", 2, "x-vendor/thing", json!({}))
        .await;
    assert_eq!(response.status(), 403);
    assert!(www_authenticate(&response).contains("scope=\"mcp:other\""));
    let response = setup.send_modern("", 3, "server/discover", json!({})).await;
    assert_eq!(response.status(), 403);
    assert!(www_authenticate(&response).contains("scope=\"mcp:connect\""));
    assert_eq!(setup.forwarded().len(), 1);
}

#[tokio::test]
async fn subscriptions_listen_needs_what_it_opts_into() {
    let setup = setup().await;
    let secret = json!({"notifications": {"resourceSubscriptions": ["file:///public/a", "file:///secret/b"]}});
    let response = setup
        .send_modern(ALL, 1, "subscriptions/listen", secret.clone())
        .await;
    assert_eq!(response.status(), 403);
    let challenge = www_authenticate(&response);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp:admin\""), "{challenge}");
    assert!(
        challenge.contains("insufficient scopes for resource file:///secret/b"),
        "{challenge}"
    );
    // A list-changed kind needs that list's level.
    let lists = json!({"notifications": {"toolsListChanged": true, "promptsListChanged": true}});
    let response = setup
        .send_modern(
            "mcp:connect mcp:tools:read",
            2,
            "subscriptions/listen",
            lists.clone(),
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(www_authenticate(&response).contains("scope=\"mcp:prompts:read\""));
    // A kind mcpgate cannot judge is refused rather than passed.
    let unknown = json!({"notifications": {"tasksChanged": true}});
    let (status, body) = rpc_error(
        setup
            .send_modern(ALL, 3, "subscriptions/listen", unknown)
            .await,
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!(-32602)));
    assert_eq!(setup.forwarded().len(), 0);

    assert_eq!(
        setup
            .send_modern(ALL, 4, "subscriptions/listen", lists)
            .await
            .status(),
        200
    );
    let public = json!({"notifications": {"resourceSubscriptions": ["file:///public/a"]}});
    assert_eq!(
        setup
            .send_modern(ALL, 5, "subscriptions/listen", public)
            .await
            .status(),
        200
    );
    let admin = format!("{ALL} mcp:admin");
    assert_eq!(
        setup
            .send_modern(&admin, 6, "subscriptions/listen", secret)
            .await
            .status(),
        200
    );
    assert_eq!(setup.forwarded().len(), 3);
}

#[tokio::test]
async fn a_retried_multi_round_trip_request_is_judged_like_the_first() {
    let setup = setup().await;
    let retry = json!({
        "name": "get-env",
        "arguments": {},
        "inputResponses": {"confirm": {"action": "accept", "content": {"ok": true}}},
        "requestState": "opaque\u{e9}\\\"state\"/with\\u0000escapes=="
    });
    let first = setup
        .send_modern(
            ALL,
            1,
            "tools/call",
            json!({"name": "get-env", "arguments": {}}),
        )
        .await;
    let again = setup.send_modern(ALL, 2, "tools/call", retry.clone()).await;
    assert_eq!(
        (first.status().as_u16(), again.status().as_u16()),
        (403, 403)
    );
    assert_eq!(www_authenticate(&first), www_authenticate(&again));
    assert_eq!(setup.forwarded().len(), 0);

    let admin = format!("{ALL} mcp:admin");
    let response = setup
        .send_modern(&admin, 3, "tools/call", retry.clone())
        .await;
    assert_eq!(response.status(), 200);
    let seen = setup.forwarded();
    let forwarded: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(forwarded["params"]["requestState"], retry["requestState"]);
    assert_eq!(
        forwarded["params"]["inputResponses"],
        retry["inputResponses"]
    );
}

#[tokio::test]
async fn the_meta_version_must_be_the_headers() {
    let setup = setup().await;
    let cases: [(Value, Vec<(String, String)>); 3] = [
        // The header says 2025-11-25, the body 2026-07-28.
        {
            let (body, mut headers) = modern(1, "tools/list", json!({}));
            headers[0].1 = "2025-11-25".to_owned();
            (body, headers)
        },
        // No header at all (2025-03-26), the body 2026-07-28.
        {
            let (body, headers) = modern(1, "tools/list", json!({}));
            (body, headers[1..].to_vec())
        },
        // A 2026-07-28 request that does not state its version.
        {
            let (mut body, headers) = modern(1, "tools/list", json!({}));
            body["params"] = json!({});
            (body, headers)
        },
    ];
    for (body, headers) in cases {
        let (status, error) = rpc_error(setup.send(ALL, &body, &headers).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error["error"]["code"], -32020, "{error}");
        assert_eq!(error["id"], 1);
    }
    assert_eq!(setup.forwarded().len(), 0);
}

#[tokio::test]
async fn an_unknown_revision_is_refused_with_the_known_ones() {
    let setup = setup().await;
    let (body, mut headers) = modern(5, "tools/list", json!({}));
    headers[0].1 = "2099-01-01".to_owned();
    let (status, error) = rpc_error(setup.send(ALL, &body, &headers).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"jsonrpc": "2.0", "id": 5, "error": {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {
                "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"],
                "requested": "2099-01-01"
            }
        }})
    );
    let stream = Request::get(&setup.gateway)
        .token(ALL)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "1.0")
        .send()
        .await;
    assert_eq!(stream.status(), 400);
    let error: Value = stream.json().await.unwrap();
    assert_eq!(
        (error["id"].clone(), error["error"]["code"].clone()),
        (Value::Null, json!(-32022))
    );
    // Authentication still comes first.
    let anonymous = Request::post(&setup.gateway)
        .without("accept")
        .header("mcp-protocol-version", "2099-01-01")
        .json(&body)
        .send()
        .await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(setup.forwarded().len(), 0);
}
