//! `mcpgate explain` (and the admin listener's `POST /explain`) against the real
//! binary: for the same token and request, the decision and its reason are those
//! the audit log recorded when the request was really sent, whether it was
//! allowed, refused for scopes, refused by a rule, or its token refused; and the
//! token is never printed.

use crate::common::*;
use serde_json::{Value, json};

fn config(upstream_url: &str, admin_port: u16) -> String {
    TestConfig::oauth(upstream_url)
        .server(&format!("admin_listen: 127.0.0.1:{admin_port}"))
        .oauth_yaml("claim_scopes: { roles: { Tools.Admin: [mcp:admin] } }")
        .scopes("initialize: [mcp:connect]\ntools_call: [mcp:tools:execute]\ntools:\n  admin_reset: mcp:admin")
        .audit()
        .yaml(
            r#"
rules:
  - name: contractors-read-only
    when: { client_ids: ["contractor-*"] }
    deny_tools: ["db_*"]
limits:
  rules:
    - { name: searches, key: [subject, tool], tools: ["search_*"], rate: 100/min }
    - { name: per-contractor-app, key: client_id, rate: 1000/h, burst: 50, principals: { client_ids: ["contractor-*"] } }
"#,
        )
        .build()
}

struct Setup {
    _upstream: Upstream,
    gateway: Gateway,
    admin: String,
}

async fn setup() -> Setup {
    let upstream = Upstream::start().await;
    let admin_port = free_port();
    let gateway = Gateway::start(&config(&upstream.url, admin_port)).await;
    Setup {
        _upstream: upstream,
        gateway,
        admin: format!("http://127.0.0.1:{admin_port}"),
    }
}

impl Setup {
    fn token(&self, client: &str, scopes: &str, extra: Value) -> String {
        let mut claims = claims(&self.gateway.mcp, scopes);
        claims["client_id"] = json!(client);
        if let Value::Object(extra) = extra {
            for (name, value) in extra {
                claims[name] = value;
            }
        }
        hs256(&claims, Some("dev"))
    }

    /// Sends the call; returns its status and `WWW-Authenticate`.
    async fn call(&self, token: &str, tool: &str) -> (u16, String) {
        let response = Request::post(&self.gateway)
            .bearer(token)
            .json(&tools_call(1, tool))
            .send()
            .await;
        (response.status().as_u16(), www_authenticate(&response))
    }

    /// `mcpgate explain … --json`: exit code and the parsed answer; asserts the
    /// token appears nowhere in the output.
    fn explain(&self, token: &str, args: &[&str]) -> (i32, Value) {
        let config = self.gateway.dir().join("mcpgate.yaml");
        let mut all = vec![
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--token",
            token,
            "--json",
        ];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run_cli(&all, &[]);
        assert!(
            !stdout.contains(token) && !stderr.contains(token),
            "the token was printed"
        );
        let answer = serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("{error}: {stdout}\n{stderr}"));
        (code, answer)
    }
}

/// The audit record and the explanation agree on everything they both say.
fn assert_same_decision(record: &Value, answer: &Value) {
    for field in [
        "action",
        "status",
        "auth_result",
        "reason",
        "denied_by_rule",
        "rules_matched",
        "token_fingerprint",
    ] {
        assert_eq!(
            record[field], answer[field],
            "{field}: record {record} / explain {answer}"
        );
    }
}

#[tokio::test]
async fn explain_gives_the_reasons_the_audit_log_records() {
    let setup = setup().await;
    let now = now();
    let mut expired = claims(&setup.gateway.mcp, "mcp:connect");
    expired["iat"] = json!(now - 600);
    expired["exp"] = json!(now - 300);
    let cases = [
        // Allowed, with a scope mapped from a claim.
        (
            setup.token(
                "web-app",
                "mcp:connect mcp:tools:execute",
                json!({"roles": ["Tools.Admin"]}),
            ),
            "admin_reset",
            0,
            "allowed",
        ),
        // Short of scopes: the step-up challenge.
        (
            setup.token("web-app", "mcp:connect", json!({})),
            "echo",
            1,
            "refused_scopes",
        ),
        // The tool's own rule.
        (
            setup.token("web-app", "mcp:connect mcp:tools:execute", json!({})),
            "admin_reset",
            1,
            "refused_scopes",
        ),
        // Refused by a rule.
        (
            setup.token("contractor-app", "mcp:connect mcp:tools:execute", json!({})),
            "db_query",
            1,
            "refused_rule",
        ),
        // The token is not accepted.
        (hs256(&expired, Some("dev")), "echo", 3, "refused_token"),
    ];
    let mut challenges = Vec::new();
    for (token, tool, _, _) in &cases {
        challenges.push(setup.call(token, tool).await);
    }
    let records = audit_records(&setup.gateway, cases.len()).await;
    for (((token, tool, code, decision), record), (status, challenge)) in
        cases.iter().zip(&records).zip(&challenges)
    {
        let (exit, answer) = setup.explain(token, &["--tool", tool]);
        assert_eq!(exit, *code, "{answer}");
        assert_eq!(answer["decision"], *decision);
        assert_eq!(answer["status"], *status);
        assert_same_decision(record, &answer);
        assert_eq!(
            answer["challenge"].as_str().unwrap_or(""),
            challenge,
            "{answer}"
        );
        assert_eq!(answer["request"]["tool"], *tool);
    }
    // What the answers show beside the decision.
    let (_, allowed) = setup.explain(&cases[0].0, &["--tool", "admin_reset"]);
    let scopes = &allowed["principal"]["scopes"];
    assert_eq!(
        scopes[0],
        json!({"scope": "mcp:connect", "source": "token", "claim": null, "value": null})
    );
    assert_eq!(
        scopes[2],
        json!({"scope": "mcp:admin", "source": "claim", "claim": "roles", "value": "Tools.Admin"})
    );
    let sources: Vec<&str> = allowed["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|requirement| requirement["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "scopes.initialize",
            "scopes.tools_call",
            "scopes.tools.admin_reset"
        ]
    );
    let (_, refused) = setup.explain(&cases[3].0, &["--tool", "db_query"]);
    assert_eq!(refused["rules_matched"], json!(["contractors-read-only"]));
    assert_eq!(refused["principal"]["client_id"], "contractor-app");
}

#[tokio::test]
async fn the_text_answer_names_each_part_and_never_the_token() {
    let setup = setup().await;
    let token = setup.token(
        "contractor-app",
        "mcp:connect mcp:tools:execute",
        json!({"roles": "Tools.Admin"}),
    );
    let config = setup.gateway.dir().join("mcpgate.yaml");
    let config = config.to_str().unwrap();
    let (code, stdout, stderr) = run_cli(
        &[
            "explain", "--config", config, "--token", &token, "--tool", "db_query",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    for needle in [
        "principal (jwt)",
        "client id: contractor-app",
        "mcp:admin  (mapped from claim roles = Tools.Admin)",
        "[met] method (scopes.tools_call): mcp:tools:execute",
        "matched: contractors-read-only",
        "decision: REFUSED by a rule (HTTP 403)",
        "reason:    tool db_query refused by rule contractors-read-only (deny_tools)",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in\n{stdout}");
    }
    assert!(!stdout.contains(&token) && !stderr.contains(&token));
    // From standard input, and for a method without an item.
    let mut child = gateway_command(&[])
        .args([
            "explain",
            "--config",
            config,
            "--token",
            "-",
            "--method",
            "tools/list",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("decision: ALLOWED"), "{stdout}");
    // A bad signature: refused, and why, as the audit log words it.
    // One character in the middle of the signature changed.
    let at = token.len() - 8;
    let replacement = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{replacement}{}", &token[..at], &token[at + 1..]);
    let (code, stdout, stderr) = run_cli(
        &[
            "explain", "--config", config, "--token", &forged, "--tool", "echo",
        ],
        &[],
    );
    assert_eq!(code, 3, "{stdout}");
    assert!(
        stdout.contains("REFUSED: the token is not accepted (HTTP 401)"),
        "{stdout}"
    );
    assert!(stdout.contains("auth:      bad_signature"), "{stdout}");
    assert!(
        stderr.contains("error: the token is not accepted: invalid token: "),
        "{stderr}"
    );
    assert!(!stdout.contains(&forged));
    // A config error is 78, as for every command.
    let bad = setup.gateway.dir().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - name: a\n    deny_tools: [x]\n").unwrap();
    let (code, _, stderr) = run_cli(
        &["explain", "--config", bad.to_str().unwrap(), "--token", "t"],
        &[],
    );
    assert_eq!(code, 78, "{stderr}");
}

#[tokio::test]
async fn the_admin_listener_answers_the_same_as_json() {
    let setup = setup().await;
    let token = setup.token("contractor-app", "mcp:connect mcp:tools:execute", json!({}));
    let (exit, cli) = setup.explain(&token, &["--tool", "db_query"]);
    assert_eq!(exit, 1);
    let response = Gateway::client()
        .post(format!("{}/explain", setup.admin))
        .json(&json!({"token": token, "tool": "db_query"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&token));
    let admin: Value = serde_json::from_str(&text).unwrap();
    for field in [
        "decision",
        "status",
        "reason",
        "denied_by_rule",
        "rules_matched",
        "challenge",
        "principal",
        "requirements",
    ] {
        assert_eq!(admin[field], cli[field], "{field}");
    }
    for bad in [
        json!({"tool": "x"}),
        json!({"token": token, "tool": "a", "prompt": "b"}),
        json!({"token": token, "extra": 1}),
    ] {
        let response = Gateway::client()
            .post(format!("{}/explain", setup.admin))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert!(!response.text().await.unwrap().contains(&token));
    }
}

#[tokio::test]
async fn a_name_the_gateway_would_refuse_as_a_look_alike_is_refused_here_too() {
    let setup = setup().await;
    let token = setup.token("app", "mcp:connect mcp:tools:execute", json!({}));
    let config = setup.gateway.dir().join("mcpgate.yaml");
    let config = config.to_str().unwrap();
    for name in ["ADMIN_RESET", " admin_reset", "DB_query"] {
        let (code, stdout, stderr) = run_cli(
            &[
                "explain", "--config", config, "--token", &token, "--tool", name,
            ],
            &[],
        );
        assert_ne!(code, 0, "{name:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("differs from a name the policy rules only by case"),
            "{name:?}: {stderr}"
        );
    }
    // And the gateway itself answers 400 for the same name.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ADMIN_RESET"}});
    let response = Request::post(&setup.gateway)
        .bearer(&token)
        .json(&body)
        .send()
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn explain_lists_the_limits_that_count_the_request() {
    let s = setup().await;
    let contractor = s.token("contractor-7", "mcp:connect mcp:tools:execute", json!({}));
    let (_, answer) = s.explain(&contractor, &["--tool", "search_web"]);
    assert_eq!(
        answer["limits"],
        json!([
            {"name": "searches", "key": ["subject", "tool"], "rate": "100/min", "burst": 100},
            {"name": "per-contractor-app", "key": ["client_id"], "rate": "1000/h", "burst": 50},
        ])
    );
    assert!(
        answer["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|note| note.as_str().unwrap().contains("at most 64 calls")),
        "{answer}"
    );
    // Another tool, another caller: the tool rule does not count it, nor the
    // contractors' rule this caller.
    let other = s.token("web-app", "mcp:connect mcp:tools:execute", json!({}));
    let (_, answer) = s.explain(&other, &["--tool", "echo"]);
    assert_eq!(answer["limits"], json!([]));
    let config = s.gateway.dir().join("mcpgate.yaml");
    let (code, stdout, _) = run_cli(
        &[
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--token",
            &contractor,
            "--tool",
            "search_web",
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains("searches: 100/min per subject + tool (burst 100)"),
        "{stdout}"
    );
}
