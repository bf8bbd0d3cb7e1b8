//! The policy engine against the real binary: one challenge per request, list
//! filtering in JSON and SSE answers, and the checklist's known bypasses (A4), each
//! refused before anything reaches the upstream.

use crate::common::*;
use serde_json::{Value, json};

const METADATA: &str = "/.well-known/oauth-protected-resource/mcp";

/// The seeds' policy, plus rules for every kind of item.
const POLICY: &str = r#"
  initialize: [mcp:connect]
  tools_list: [mcp:tools:read]
  tools_call: [mcp:tools:execute]
  default: [mcp:other]
  tools:
    execute_operation_get_top_secret_facts: [[read:fact], [read:all]]
    get-env: [[mcp:admin]]
    "admin_*": mcp:admin
  prompts:
    "secret_*": mcp:admin
  resources:
    "file:///secret/*": mcp:admin
  hierarchy:
    mcp:admin: [mcp:tools:read, mcp:tools:execute]
"#;

struct Setup {
    upstream: Upstream,
    gateway: Gateway,
}

async fn setup(oauth_extra: &str) -> Setup {
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .oauth_yaml(oauth_extra)
        .scopes(POLICY);
    let gateway = Gateway::start(&config.build()).await;
    Setup { upstream, gateway }
}

impl Setup {
    fn metadata_url(&self) -> String {
        format!("{}{METADATA}", self.gateway.base)
    }

    async fn send(&self, scopes: &str, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        Request::post(&self.gateway)
            .token(scopes)
            .headers(headers)
            .body(body)
            .send()
            .await
    }

    async fn call(&self, scopes: &str, tool: &str) -> reqwest::Response {
        self.send(scopes, &tools_call(7, tool).to_string(), &[])
            .await
    }

    /// Names in a list answer, from a JSON body or from the SSE event carrying id 1.
    async fn listed(
        &self,
        scopes: &str,
        method: &str,
        cursor: Option<&str>,
    ) -> (Vec<String>, Value) {
        let mut body = list(1, method);
        if let Some(cursor) = cursor {
            body["params"] = json!({"cursor": cursor});
        }
        let response = self.send(scopes, &body.to_string(), &[]).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let answer: Value = if cursor == Some("sse") {
            sse_messages(&text)
                .into_iter()
                .find(|m| m["id"] == 1)
                .unwrap_or_else(|| panic!("no answer in {text:?}"))
        } else {
            serde_json::from_str(&text).unwrap()
        };
        let result = &answer["result"];
        let (array, field) = match method {
            "tools/list" => ("tools", "name"),
            "prompts/list" => ("prompts", "name"),
            "resources/list" => ("resources", "uri"),
            _ => ("resourceTemplates", "uriTemplate"),
        };
        let names = result[array]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[field].as_str().unwrap().to_owned())
            .collect();
        (names, result.clone())
    }

    /// How many requests reached the upstream.
    fn forwarded(&self) -> usize {
        self.upstream.seen().len()
    }
}

// ---- challenges ----

#[tokio::test]
async fn the_seeds_403_examples_hold() {
    let setup = setup("").await;
    let metadata = setup.metadata_url();
    let response = setup.call("mcp:connect", "echo").await;
    assert_insufficient_scope(
        &response,
        "mcp:tools:execute",
        &metadata,
        "missing required scopes: mcp:tools:execute",
    );
    assert!(response.text().await.unwrap().is_empty());
    let response = setup
        .call(
            "mcp:connect mcp:tools:execute",
            "execute_operation_get_top_secret_facts",
        )
        .await;
    assert_insufficient_scope(
        &response,
        "read:fact",
        &metadata,
        "insufficient scopes for tool execute_operation_get_top_secret_facts",
    );
    assert_eq!(setup.forwarded(), 0);
    let response = setup
        .call(
            "mcp:connect mcp:tools:execute read:all",
            "execute_operation_get_top_secret_facts",
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(setup.forwarded(), 1);
}

#[tokio::test]
async fn every_missing_level_is_named_in_one_challenge() {
    let setup = setup("").await;
    let response = setup.call("unrelated", "get-env").await;
    assert_eq!(response.status(), 403);
    let challenge = www_authenticate(&response);
    // mcp:admin alone implies the method levels, so it beats the three-scope group.
    assert!(
        challenge.contains("scope=\"mcp:connect mcp:admin\"")
            && challenge
                .contains("error_description=\"missing required scopes: mcp:connect, mcp:admin\""),
        "{challenge}"
    );
    assert_eq!(setup.forwarded(), 0);
}

#[tokio::test]
async fn echoing_token_scopes_lists_them_before_the_missing_ones() {
    let setup = setup("scope_challenge_include_token_scopes: true").await;
    let response = setup.call("mcp:connect mcp:tools:execute", "get-env").await;
    assert_eq!(response.status(), 403);
    assert!(
        www_authenticate(&response).contains("scope=\"mcp:connect mcp:tools:execute mcp:admin\""),
        "{}",
        www_authenticate(&response)
    );
}

#[tokio::test]
async fn a_hierarchy_scope_passes_the_levels_it_implies() {
    let setup = setup("").await;
    assert_eq!(
        setup
            .call("mcp:connect mcp:admin", "get-env")
            .await
            .status(),
        200
    );
    assert_eq!(
        setup
            .call("mcp:connect mcp:admin", "admin_reset")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn metadata_advertises_the_sorted_union_of_every_rule() {
    let setup = setup("").await;
    let document: Value = get_json(setup.metadata_url()).await;
    assert_eq!(
        document["scopes_supported"],
        json!([
            "mcp:admin",
            "mcp:connect",
            "mcp:other",
            "mcp:tools:execute",
            "mcp:tools:read",
            "read:all",
            "read:fact"
        ])
    );
}

// ---- filtering ----

#[tokio::test]
async fn lists_hide_what_the_caller_may_not_use_in_json_and_sse_answers() {
    let setup = setup("").await;
    let user = "mcp:connect mcp:tools:read mcp:tools:execute";
    for cursor in [None, Some("sse")] {
        let (tools, result) = setup.listed(user, "tools/list", cursor).await;
        assert_eq!(tools, ["echo", "db_query"], "cursor {cursor:?}");
        assert_eq!(result["nextCursor"], "page-2");
        let (tools, _) = setup
            .listed("mcp:connect mcp:admin", "tools/list", cursor)
            .await;
        assert_eq!(tools, ["echo", "get-env", "admin_reset", "db_query"]);
        let (prompts, _) = setup.listed(user, "prompts/list", cursor).await;
        assert_eq!(prompts, ["greeting"]);
        let (resources, _) = setup.listed(user, "resources/list", cursor).await;
        assert_eq!(resources, ["file:///public/readme.md"]);
        let (templates, _) = setup.listed(user, "resources/templates/list", cursor).await;
        assert_eq!(templates, ["file:///public/{name}"]);
    }
    // Hidden, yet still answerable with a step-up challenge rather than "unknown tool".
    let response = setup.call(user, "get-env").await;
    assert_eq!(response.status(), 403);
    assert!(
        www_authenticate(&response)
            .contains("scope=\"mcp:admin\", resource_metadata=\"http://127.0.0.1:")
    );
}

#[tokio::test]
async fn the_sse_answer_keeps_other_events_and_their_ids() {
    let setup = setup("").await;
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": "sse"}});
    let response = setup
        .send("mcp:connect mcp:tools:read", &body.to_string(), &[])
        .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.starts_with("id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\""), "{text:?}");
    assert!(
        text.contains("id: 2\r\nevent: message\r\ndata: "),
        "{text:?}"
    );
    assert!(!text.contains("get-env"), "{text:?}");
}

#[tokio::test]
async fn a_resumed_get_stream_cannot_replay_an_unfiltered_list() {
    let setup = setup("").await;
    let response = Request::get(&setup.gateway)
        .token("mcp:connect mcp:tools:read")
        .header("accept", "text/event-stream")
        .header("last-event-id", "replay-list")
        .send()
        .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let answer = sse_messages(&text)
        .into_iter()
        .find(|m| m["id"] == 1)
        .unwrap_or_else(|| panic!("no replayed answer in {text:?}"));
    let names: Vec<&str> = answer["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "db_query"]);
}

// ---- the envelope and the checklist's known bypasses (A4) ----

#[tokio::test]
async fn batches_are_refused_outside_2025_03_26() {
    let setup = setup("").await;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env"}}]"#;
    let response = setup
        .send(
            "mcp:connect mcp:tools:execute",
            batch,
            &[("mcp-protocol-version", "2025-11-25")],
        )
        .await;
    assert_eq!(rpc_error(response).await, (400, -32600, Value::Null));
    assert_eq!(setup.forwarded(), 0);
}

#[tokio::test]
async fn a_2025_03_26_batch_needs_every_element_allowed() {
    let setup = setup("").await;
    let user = "mcp:connect mcp:tools:read mcp:tools:execute";
    let smuggled = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env"}}]"#;
    let response = setup.send(user, smuggled, &[]).await;
    assert_eq!(response.status(), 403);
    assert!(www_authenticate(&response).contains("scope=\"mcp:admin\""));
    assert_eq!(setup.forwarded(), 0);
    // Allowed as a whole: forwarded, and the list inside the batch answer is filtered.
    let fine = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}]"#;
    let response = setup
        .send(user, fine, &[("mcp-protocol-version", "2025-03-26")])
        .await;
    assert_eq!(response.status(), 200);
    let answers: Value = response.json().await.unwrap();
    assert_eq!(answers[0]["result"]["tools"].as_array().unwrap().len(), 2);
    assert_eq!(answers[1]["result"]["ok"], true);
}

#[tokio::test]
async fn duplicate_keys_at_any_depth_are_refused() {
    let setup = setup("").await;
    let admin = "mcp:connect mcp:admin";
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"get-env"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"get-env"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"a":2}}}"#,
    ] {
        let (status, code, _) = rpc_error(setup.send(admin, body, &[]).await).await;
        assert_eq!((status, code), (400, -32700), "{body}");
    }
    assert_eq!(setup.forwarded(), 0);
}

/// A Go or C# server binds `NAME` (or the Kelvin sign's `tas\u212a`) to the field
/// mcpgate judged as `name`: keys differing only in case are refused as duplicates.
#[tokio::test]
async fn keys_that_differ_only_in_case_are_refused() {
    let setup = setup("").await;
    let user = "mcp:connect mcp:tools:execute";
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"get-env"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"get-env","name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","\u004eame":"get-env"}}"#,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"tas\u{212a}\":1,\"task\":2}}}",
    ] {
        let (status, code, _) = rpc_error(setup.send(user, body, &[]).await).await;
        assert_eq!((status, code), (400, -32700), "{body}");
    }
    assert_eq!(setup.forwarded(), 0);
    // The same call with one spelling of each key goes through.
    let fine = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"Text":"a","text2":"b"}}}"#;
    assert_eq!(setup.send(user, fine, &[]).await.status(), 200);
}

#[tokio::test]
async fn method_look_alikes_are_refused_whatever_the_scopes() {
    let setup = setup("").await;
    // Even a caller holding `default`'s scope: a look-alike is not an unknown method.
    let user = "mcp:connect mcp:tools:execute mcp:other";
    for method in [
        "Tools/Call",
        "tools/call ",
        "tools/call\\u0000",
        "tools//call",
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"get-env"}}}}"#
        );
        let (status, code, id) = rpc_error(setup.send(user, &body, &[]).await).await;
        assert_eq!(
            (status, code, id),
            (400, -32601, serde_json::json!(1)),
            "{method}"
        );
    }
    assert_eq!(setup.forwarded(), 0);
    // An escaped spelling that decodes to the real method is the real method, and is
    // forwarded in its canonical form.
    let escaped = r#"{"jsonrpc":"2.0","id":1,"method":"tools\u002fcall","params":{"name":"echo"}}"#;
    assert_eq!(setup.send(user, escaped, &[]).await.status(), 200);
    let seen = setup.upstream.seen();
    assert_eq!(
        std::str::from_utf8(&seen[0].body).unwrap(),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#
    );
}

#[tokio::test]
async fn params_tricks_are_refused() {
    let setup = setup("").await;
    let admin = "mcp:connect mcp:admin";
    for params in [
        r#"["get-env"]"#,
        r#""get-env""#,
        r#"{"name":["get-env"]}"#,
        r#"{"name":7}"#,
        r#"{}"#,
        r#"{"name":"get-env\u0000"}"#,
        r#"{"name":"get\u200b-env"}"#,
        r#"{"name":"get-env\u202e"}"#,
        r#"{"name":"ｇｅｔ-env"}"#,
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#);
        let (status, code, id) = rpc_error(setup.send(admin, &body, &[]).await).await;
        assert_eq!(status, 400, "{params}");
        assert!(code == -32600 || code == -32602, "{params}: {code}");
        assert_eq!(id, 1, "{params}");
    }
    assert_eq!(setup.forwarded(), 0);
}

#[tokio::test]
async fn ambiguous_envelopes_are_refused() {
    let setup = setup("").await;
    let admin = "mcp:connect mcp:admin";
    for body in [
        r#"{"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":true}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"} {"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
        r#"[]"#,
        r#""ping""#,
    ] {
        let response = setup.send(admin, body, &[]).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(setup.forwarded(), 0);
    // Allow-listed notifications and answers to server requests pass (authenticated).
    for body in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":"srv-1","result":{"roots":[]}}"#,
        r#"{"jsonrpc":"2.0","id":"srv-2","error":{"code":-1,"message":"declined"}}"#,
    ] {
        assert_eq!(
            setup.send("mcp:connect", body, &[]).await.status(),
            200,
            "{body}"
        );
    }
}

#[tokio::test]
async fn media_type_and_encoding_must_be_plain_json() {
    let setup = setup("").await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let send = |content_type: &'static str, encoding: Option<&'static str>| {
        let request = Request::post(&setup.gateway)
            .without("accept")
            .token("mcp:connect")
            .header("content-type", content_type);
        let request = match encoding {
            Some(encoding) => request.header("content-encoding", encoding),
            None => request,
        };
        request.body(body).send()
    };
    assert_eq!(send("text/plain", None).await.status(), 415);
    assert_eq!(
        send("application/json; charset=latin1", None)
            .await
            .status(),
        415
    );
    assert_eq!(send("application/json", Some("gzip")).await.status(), 415);
    assert_eq!(setup.forwarded(), 0);
    assert_eq!(
        send("application/json; charset=utf-8", Some("identity"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn mirrored_headers_must_match_the_body() {
    let setup = setup("").await;
    let admin = "mcp:connect mcp:admin";
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-env"}}"#;
    for headers in [
        vec![("mcp-name", "echo")],
        vec![("mcp-method", "tools/list")],
        vec![
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
        ],
        // 2026-07-28 requires the headers.
        vec![("mcp-protocol-version", "2026-07-28")],
        vec![
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
    ] {
        let (status, code, id) = rpc_error(setup.send(admin, call, &headers).await).await;
        assert_eq!((status, code, id), (400, -32020, json!(3)), "{headers:?}");
    }
    assert_eq!(setup.forwarded(), 0);
    let matching = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "=?base64?Z2V0LWVudg==?="),
    ];
    // A 2026-07-28 request also states its version in `_meta`.
    assert_eq!(setup.send(admin, call, &matching).await.status(), 400);
    let stated = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-env","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    assert_eq!(setup.send(admin, stated, &matching).await.status(), 200);
}

#[tokio::test]
async fn every_http_method_needs_a_token() {
    let setup = setup("").await;
    for request in [
        Request::get(&setup.gateway),
        Request::delete(&setup.gateway),
    ] {
        let response = request
            .without("accept")
            .header("mcp-session-id", "someone-elses")
            .send()
            .await;
        assert_eq!(response.status(), 401);
    }
    let response = Request::get(&setup.gateway)
        .without("accept")
        .token("unrelated")
        .send()
        .await;
    assert_eq!(response.status(), 403);
    assert!(www_authenticate(&response).contains("scope=\"mcp:connect\""));
    assert_eq!(setup.forwarded(), 0);
}

// ---- configuration ----

#[test]
fn policy_errors_stop_the_start_with_exit_78_naming_the_key() {
    let cases = [
        (
            "auth: { oauth: { max_scope_combinations: 2 } }\nscopes:\n  initialize: [[a], [b]]\n  tools:\n    wide: [[c], [d]]\n",
            "scopes.tools.wide: combined with scopes.initialize and scopes.tools_call it needs 4 scope combinations",
        ),
        (
            "scopes:\n  hierarchy: { a: [b], b: [a] }\n",
            "scopes.hierarchy: cycle: a -> b -> a",
        ),
        (
            "scopes:\n  tools: { \"db_[\": a }\n",
            "scopes.tools.db_[: bad glob",
        ),
        ("scopes:\n  tools_call: [a, [b]]\n", "scopes.tools_call"),
        ("scopes:\n  tools: { x: [[]] }\n", "scopes.tools.x"),
        (
            "scopes:\n  prompts: { x: \"two words\" }\n",
            "scopes.prompts.x",
        ),
    ];
    for (yaml, expected) in cases {
        let (code, _, stderr) = check_config(
            &format!("upstream: {{ url: http://127.0.0.1:9/mcp }}\n{yaml}"),
            &[],
        );
        assert_eq!(code, 78, "{yaml}\n{stderr}");
        assert!(stderr.contains(expected), "{yaml}\n{stderr}");
    }
}

// ---- the seeds' example configuration ----

#[tokio::test]
async fn the_seed_example_config_reproduces_the_seeds_403s() {
    let upstream = Upstream::start().await;
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/seed-scopes.yaml"),
    )
    .unwrap();
    let config = example
        .replace("127.0.0.1:5025", "127.0.0.1:{port}")
        .replace("http://127.0.0.1:3001/mcp", &upstream.url);
    let gateway = Gateway::start_with_env(&config, &[("MCPGATE_DEV_SECRET", HMAC_SECRET)]).await;
    let call = |scopes: &str, tool: &str| {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}});
        Request::post(&gateway)
            .without("accept")
            .bearer(&example_token("https://mcp.example.com/mcp", scopes))
            .json(&body)
            .send()
    };
    let metadata = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
    let response = call("mcp:connect", "echo").await;
    assert_insufficient_scope(
        &response,
        "mcp:tools:execute",
        metadata,
        "missing required scopes: mcp:tools:execute",
    );
    let response = call(
        "mcp:connect mcp:tools:execute",
        "execute_operation_get_top_secret_facts",
    )
    .await;
    assert_insufficient_scope(
        &response,
        "read:fact",
        metadata,
        "insufficient scopes for tool execute_operation_get_top_secret_facts",
    );
    let response = call(
        "mcp:connect mcp:tools:execute read:fact",
        "execute_operation_get_top_secret_facts",
    )
    .await;
    assert_eq!(response.status(), 200, "{}", gateway.stderr());
}
