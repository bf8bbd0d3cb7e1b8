//! The commands: `check` (exit 78 naming the key), layering of env overrides and
//! aliases, `token`, and `demo` (its printed commands work as printed).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const GOOD: &str = r#"
server:
  listen: 127.0.0.1:5025
upstream:
  url: http://127.0.0.1:3001/mcp
auth:
  oauth:
    enabled: true
    issuers: [https://issuer.test]
    jwks:
      - secret: "${env:TEST_SECRET}"
        header_key_id: dev
scopes:
  initialize: [mcp:connect]
"#;

const SECRET: (&str, &str) = ("TEST_SECRET", HMAC_SECRET);

/// Asserts exit 78 and a single error line starting with `config error: <key>:`.
fn assert_config_error(yaml: &str, env: &[(&str, &str)], key: &str) -> String {
    let (code, _, stderr) = check_config(yaml, env);
    assert_eq!(code, 78, "expected exit 78 for {key}; stderr: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("config error:"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.starts_with(&format!("config error: {key}: ")),
        "expected the error to name {key}: {stderr}"
    );
    line
}

#[test]
fn a_good_config_checks_out() {
    let (code, stdout, stderr) = check_config(GOOD, &[SECRET]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with(
        "ok: MCP endpoint http://127.0.0.1:5025/mcp -> http://127.0.0.1:3001/mcp; OAuth enabled, 0 API key(s)"
    ));
}

/// Key sources without an `enabled` line would have run with authentication off;
/// they are an error naming `auth.oauth.enabled`, and either written value loads.
#[test]
fn key_sources_without_enabled_are_a_config_error() {
    let unset = GOOD.replace("    enabled: true\n", "");
    let line = assert_config_error(&unset, &[SECRET], "auth.oauth.enabled");
    assert!(line.contains("enabled: true"), "{line}");
    let introspected = unset.replace(
        "    jwks:\n      - secret: \"${env:TEST_SECRET}\"\n        header_key_id: dev\n",
        "    introspection:\n      url: http://127.0.0.1:9/introspect\n      client_id: gw\n      client_secret: s\n",
    );
    assert_config_error(&introspected, &[], "auth.oauth.enabled");
    // The alias and the override count as writing it.
    let (code, _, stderr) = check_config(&unset, &[SECRET, ("MCP_OAUTH_ENABLED", "false")]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) =
        check_config(&GOOD.replace("enabled: true", "enabled: false"), &[SECRET]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("NO AUTHENTICATION"), "{stdout}");
}

/// A link-local IPv6 listen address carries a zone (`%3`), which a URL cannot: the
/// derived endpoint leaves it out instead of panicking.
#[test]
fn a_listen_address_with_an_ipv6_zone_checks_out() {
    let yaml = GOOD
        .replace("listen: 127.0.0.1:5025", "listen: \"[fe80::1%3]:5025\"")
        .replace("enabled: true", "enabled: false");
    let (code, stdout, stderr) = check_config(&yaml, &[SECRET]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("ok: MCP endpoint http://[fe80::1]:5025/mcp -> "),
        "{stdout}"
    );
}

#[test]
fn mcpgate_variables_without_a_section_are_not_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    std::fs::write(&path, GOOD).unwrap();
    // MCPGATE_CONFIG is the CLI's own variable; MCPGATE_BIN belongs to the e2e harness.
    let (code, stdout, stderr) = run_cli(
        &["check"],
        &[
            SECRET,
            ("MCPGATE_CONFIG", path.to_str().unwrap()),
            ("MCPGATE_BIN", "/usr/bin/true"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ok:"));
}

#[test]
fn oauth_enabled_without_a_key_source_exits_78() {
    let yaml = GOOD.replace(
        "    jwks:\n      - secret: \"${env:TEST_SECRET}\"\n        header_key_id: dev\n",
        "",
    );
    let line = assert_config_error(&yaml, &[], "auth.oauth.jwks");
    assert!(line.contains("no key source"), "{line}");
}

#[test]
fn startup_validation_names_each_key() {
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            GOOD.to_owned(),
            vec![("TEST_SECRET", "too-short")],
            "auth.oauth.jwks[0].secret",
        ),
        (
            GOOD.replace("127.0.0.1:5025", "0.0.0.0:5025"),
            vec![SECRET],
            "server.public_url",
        ),
        (
            GOOD.replace("  listen:", "  lisen:"),
            vec![SECRET],
            "server.lisen",
        ),
        (
            GOOD.replace("enabled: true", "enabled: true\n    leeway: soon"),
            vec![SECRET],
            "auth.oauth.leeway",
        ),
        (GOOD.to_owned(), vec![], "auth.oauth.jwks[0].secret"),
        (
            GOOD.replace(
                "header_key_id: dev",
                "header_key_id: dev\n        symmetric_algorithm: RS256",
            ),
            vec![SECRET],
            "auth.oauth.jwks[0].symmetric_algorithm",
        ),
        (
            GOOD.replace("url: http://127.0.0.1:3001/mcp", "url: ftp://x/mcp"),
            vec![SECRET],
            "upstream.url",
        ),
        (
            GOOD.replace("upstream:\n  url: http://127.0.0.1:3001/mcp\n", ""),
            vec![SECRET],
            "upstream.url",
        ),
        (
            GOOD.replace("[mcp:connect]", "[\"mcp connect\"]"),
            vec![SECRET],
            "scopes.initialize",
        ),
        (
            GOOD.replace("    issuers: [https://issuer.test]\n", ""),
            vec![SECRET],
            "auth.oauth.authorization_servers",
        ),
        (
            GOOD.replace("enabled: true", "enabled: true\n    leeway: 2m"),
            vec![SECRET],
            "auth.oauth.leeway",
        ),
        (
            GOOD.replace(
                "header_key_id: dev",
                "header_key_id: dev\n        issuer: https://other.test",
            ),
            vec![SECRET],
            "auth.oauth.jwks[0].issuer",
        ),
    ];
    for (yaml, env, key) in cases {
        assert_config_error(&yaml, &env, key);
    }
}

#[test]
fn duplicate_keys_are_an_error() {
    let yaml = GOOD.replace(
        "  listen: 127.0.0.1:5025\n",
        "  listen: 127.0.0.1:5025\n  listen: 127.0.0.1:5026\n",
    );
    let (code, _, stderr) = check_config(&yaml, &[SECRET]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.starts_with("config error: listen: duplicate key at line 4"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("DuplicateKeyPolicy"),
        "library internals leaked: {stderr}"
    );
}

#[test]
fn an_unreachable_jwks_at_start_exits_78() {
    let yaml = GOOD.replace(
        "      - secret: \"${env:TEST_SECRET}\"\n        header_key_id: dev\n",
        &format!("      - url: http://127.0.0.1:{}/jwks\n", free_port()),
    );
    let line = assert_config_error(&yaml, &[], "auth.oauth.jwks[0].url");
    assert!(line.contains("cannot fetch JWKS at start"), "{line}");
}

#[test]
fn env_overrides_and_aliases_layer_over_the_file() {
    // MCPGATE_<SECTION>__<KEY> reaches a nested key: an invalid override is reported under it.
    assert_config_error(
        GOOD,
        &[SECRET, ("MCPGATE_AUTH__OAUTH__LEEWAY", "never")],
        "auth.oauth.leeway",
    );
    // An alias turns OAuth on in a file that leaves it off; with no key source that is fatal.
    let off = GOOD.replace("enabled: true", "enabled: false").replace(
        "    jwks:\n      - secret: \"${env:TEST_SECRET}\"\n        header_key_id: dev\n",
        "",
    );
    let (code, _, stderr) = check_config(&off, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_config_error(&off, &[("MCP_OAUTH_ENABLED", "true")], "auth.oauth.jwks");
    // MCPGATE_* wins over the alias.
    let (code, _, stderr) = check_config(
        &off,
        &[
            ("MCP_OAUTH_ENABLED", "true"),
            ("MCPGATE_AUTH__OAUTH__ENABLED", "false"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_config_error(
        GOOD,
        &[SECRET, ("MCP_OAUTH_MAX_SCOPE_COMBINATIONS", "0")],
        "auth.oauth.max_scope_combinations",
    );
    assert_config_error(
        GOOD,
        &[SECRET, ("MCP_OAUTH_AUTHORIZATION_SERVER_URL", "not a url")],
        "auth.oauth.authorization_servers[0]",
    );
    assert_config_error(
        GOOD,
        &[
            SECRET,
            ("MCP_OAUTH_SCOPE_CHALLENGE_INCLUDE_TOKEN_SCOPES", "maybe"),
        ],
        "auth.oauth.scope_challenge_include_token_scopes",
    );
}

#[tokio::test]
async fn env_overrides_take_effect_in_serve() {
    let upstream = Upstream::start().await;
    let yaml = TestConfig::oauth(&upstream.url)
        .oauth_enabled(false)
        .build();
    let gateway = Gateway::start_with_env(
        &yaml,
        &[
            ("MCP_OAUTH_ENABLED", "true"),
            (
                "MCP_OAUTH_AUTHORIZATION_SERVER_URL",
                "https://as.example.com",
            ),
            ("MCPGATE_SCOPES__INITIALIZE", "[mcp:connect, mcp:extra]"),
        ],
    )
    .await;
    let response = gateway.post(None).await;
    assert_eq!(response.status(), 401);
    assert!(www_authenticate(&response).contains("scope=\"mcp:connect mcp:extra\""));
    let metadata: Value = get_json(format!(
        "{}/.well-known/oauth-protected-resource",
        gateway.base
    ))
    .await;
    assert_eq!(
        metadata["authorization_servers"],
        serde_json::json!(["https://as.example.com"])
    );
}

#[tokio::test]
async fn token_command_mints_what_serve_accepts() {
    let upstream = Upstream::start().await;
    let yaml = TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:connect]")
        .build();
    let gateway = Gateway::start(&yaml).await;
    let port = gateway.base.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    std::fs::write(&path, yaml.replace("{port}", &port)).unwrap();
    let path = path.to_str().unwrap();

    let (code, stdout, stderr) = run_cli(
        &[
            "token",
            "--config",
            path,
            "--scope",
            "mcp:connect mcp:tools",
            "--sub",
            "bob",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let token = stdout.trim();
    assert_eq!(gateway.post(Some(token)).await.status(), 200);

    let (_, stdout, _) = run_cli(&["token", "--config", path, "--scope", "mcp:tools"], &[]);
    assert_eq!(gateway.post(Some(stdout.trim())).await.status(), 403);
    // A token for another audience is refused: the default audience is the public URL.
    let (_, stdout, _) = run_cli(
        &[
            "token",
            "--config",
            path,
            "--scope",
            "mcp:connect",
            "--aud",
            "https://elsewhere/mcp",
        ],
        &[],
    );
    assert_eq!(gateway.post(Some(stdout.trim())).await.status(), 401);

    let (code, _, stderr) = run_cli(&["token", "--secret", "short", "--aud", "x"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("at least 32"), "{stderr}");
}

/// Runs the demo, then the curl commands it printed, exactly as printed.
#[tokio::test]
async fn demo_prints_commands_that_work_as_printed() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is required for this test");
    }
    let mut child = gateway_command(&[])
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("Press Ctrl-C");
            printed.push_str(&line);
            printed.push('\n');
            if done {
                let _ = tx.send(printed.clone());
            }
        }
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("demo printed nothing");
    let curls: Vec<&str> = printed.lines().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 6, "{printed}");
    let run = |command: &str| {
        let out = Command::new("bash").args(["-c", command]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    };

    let unauthenticated = run(curls[0]);
    let url = printed
        .lines()
        .find_map(|l| l.strip_prefix("MCP endpoint (OAuth-protected):"))
        .unwrap()
        .trim();
    let origin = url.trim_end_matches("/mcp");
    assert!(
        unauthenticated.starts_with("HTTP/1.1 401"),
        "{unauthenticated}"
    );
    assert!(
        unauthenticated.contains(&format!(
            "www-authenticate: Bearer realm=\"mcp\", scope=\"mcp:connect\", resource_metadata=\"{origin}/.well-known/oauth-protected-resource/mcp\"\n"
        )),
        "{unauthenticated}"
    );
    let listed: Value = serde_json::from_str(&run(curls[1])).unwrap();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "add", "current_time"]);
    let called: Value = serde_json::from_str(&run(curls[2])).unwrap();
    assert_eq!(called["result"]["content"][0]["text"], "Echo: hello");
    let hidden = run(curls[3]);
    assert!(hidden.starts_with("HTTP/1.1 403"), "{hidden}");
    assert!(
        hidden.contains("error=\"insufficient_scope\", scope=\"mcp:admin\"")
            && hidden.contains("error_description=\"insufficient scopes for tool admin_stats\""),
        "{hidden}"
    );
    let refused = run(curls[4]);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused.contains("error=\"insufficient_scope\", scope=\"mcp:connect\""),
        "{refused}"
    );
    let metadata: Value = serde_json::from_str(&run(curls[5])).unwrap();
    assert_eq!(metadata["resource"], url);

    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn policy_prints_the_matrix_and_the_drift_against_the_live_upstream() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcpgate.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
upstream: {{ url: "{}" }}
scopes:
  initialize: mcp:connect
  tools_call: mcp:tools:execute
  tools:
    get-env: [[mcp:admin], [read:env]]
    "admin_*": mcp:admin
    retired_tool: mcp:admin
  resources:
    "file:///secret/*": mcp:admin
"#,
            upstream.url
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap().to_owned();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_cli(&["policy", "--config", &config], &[]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("(test-upstream, protocol 2025-11-25)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("get-env      mcp:connect AND mcp:tools:execute AND mcp:admin  OR  mcp:connect AND mcp:tools:execute AND read:env   [rules: get-env]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tools no rule names (tools_call alone applies): echo, db_query"),
        "{stdout}"
    );
    assert!(
        stdout.contains("scopes.tools keys matching no tool: retired_tool"),
        "{stdout}"
    );

    let config = path.to_str().unwrap().to_owned();
    let (code, stdout, _) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["policy", "--config", &config, "--json", "--fail-on-drift"],
            &[],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    let manifest: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(manifest["server_name"], "test-upstream");
    assert_eq!(manifest["tools"][2]["name"], "admin_reset");
    assert_eq!(
        manifest["tools"][2]["requires"],
        json!([["mcp:connect", "mcp:tools:execute", "mcp:admin"]])
    );
    assert_eq!(
        manifest["resource_templates"][1]["rules"],
        json!(["file:///secret/*"])
    );
    assert_eq!(
        manifest["drift"]["tool_rules_matching_nothing"],
        json!(["retired_tool"])
    );
    // The session the command opened was ended.
    assert!(
        upstream
            .seen()
            .iter()
            .any(|seen| seen.method == reqwest::Method::DELETE)
    );
}

#[test]
fn policy_with_an_unreachable_upstream_says_so() {
    let yaml = "upstream: { url: \"http://127.0.0.1:9/mcp\" }\n";
    let (code, _, stderr) = run_with_config("policy", yaml, &[], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot list what http://127.0.0.1:9/mcp offers"),
        "{stderr}"
    );
    let (code, _, stderr) = run_with_config(
        "policy",
        yaml,
        &[],
        &[("MCPGATE_SCOPES__HIERARCHY__A", "[a]")],
    );
    assert_eq!(code, 78, "{stderr}");
}

/// A configuration with the authorization-server façade in front of `issuer`
/// (its endpoints discovered).
fn facade_config(issuer: &str) -> String {
    crate::common::config::TestConfig::oauth("http://127.0.0.1:3001/mcp")
        .yaml(&format!(
            "authorization_server:
  provider:
    issuer: {issuer}
    client_id: mcpgate-at-idp
    client_secret: s3cret"
        ))
        .build()
        .replace("{port}", "5025")
}

#[tokio::test]
async fn check_reaches_the_authorization_servers_identity_provider() {
    let router = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(|headers: http::HeaderMap| async move {
            let issuer = format!("http://{}", headers["host"].to_str().unwrap());
            axum::Json(json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
            }))
        }),
    );
    let issuer = format!("http://{}", spawn_router(router).await);
    let yaml = facade_config(&issuer);
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || check_config(&yaml, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.trim_end().ends_with(&format!(
            "; authorization server: identity provider {issuer} (discovery document read)"
        )),
        "{stdout}"
    );

    // Nobody there: exit 78, naming the key to fix.
    let yaml = facade_config(&format!("http://127.0.0.1:{}", free_port()));
    let line = tokio::task::spawn_blocking(move || {
        assert_config_error(&yaml, &[], "authorization_server.provider.issuer")
    })
    .await
    .unwrap();
    assert!(line.contains("cannot be reached"), "{line}");
}

#[tokio::test]
async fn check_reads_the_trusted_assertion_issuers_keys() {
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(|headers: http::HeaderMap| async move {
                let issuer = format!("http://{}", headers["host"].to_str().unwrap());
                axum::Json(json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                }))
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(|| async { axum::Json(crate::common::Keys::load().jwks()) }),
        )
        .route(
            "/empty-jwks",
            axum::routing::get(|| async { axum::Json(json!({"keys": []})) }),
        );
    let issuer = format!("http://{}", spawn_router(router).await);
    let with_issuer = |jwks_uri: &str| {
        format!(
            "{}  identity_assertion_issuers:\n    - issuer: https://idp.enterprise.example\n      jwks_uri: {jwks_uri}\n",
            facade_config(&issuer).trim_end().to_owned() + "\n"
        )
    };
    let yaml = with_issuer(&format!("{issuer}/jwks"));
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || check_config(&yaml, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout
            .trim_end()
            .ends_with("1 trusted identity-assertion issuer(s)"),
        "{stdout}"
    );
    for (jwks_uri, needle) in [
        (format!("{issuer}/empty-jwks"), "holds no key"),
        (
            format!("http://127.0.0.1:{}/jwks", free_port()),
            "cannot be read",
        ),
    ] {
        let yaml = with_issuer(&jwks_uri);
        let line = tokio::task::spawn_blocking(move || {
            assert_config_error(
                &yaml,
                &[],
                "authorization_server.identity_assertion_issuers[0].jwks_uri",
            )
        })
        .await
        .unwrap();
        assert!(line.contains(needle), "{line}");
    }
}

/// `--version` names the release and the commit it was built from (12 hex digits
/// from git, or `unknown` for a source tree without `.git`).
#[test]
fn version_names_the_release_and_the_revision() {
    let output = Command::new(bin()).arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let rest = text
        .trim_end()
        .strip_prefix(concat!("mcpgate ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        rest == "unknown" || (rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text:?}"
    );
}
