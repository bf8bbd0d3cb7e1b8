//! Startup checks (DESIGN §3). Each failure names the key; the binary exits 78.
//!
//! Each section is checked by the module that owns it (`edge` the `server:` section,
//! `upstream`, `auth`, `audit`, `telemetry`, `mcp::session`); `config` only reads the
//! file. This is the one list that runs them all, above every owner, so that
//! `mcpgate check`, `serve` and a reload report the same errors in the same order.

use crate::config::{Config, ConfigError, SessionStoreConfig};
use crate::upstream::{UpstreamKind, UpstreamSettings};

/// Checks everything that can be checked without the network, route by route
/// (a file without `routes:` is one route). An error in a route's own section
/// names the key under `routes[i]`.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    for route in config.expand_routes()? {
        check_route(&route).map_err(|error| locate(&route, error))?;
    }
    Ok(())
}

/// A route's error under the key the operator wrote.
pub(crate) fn locate(route: &Config, error: ConfigError) -> ConfigError {
    match &route.route {
        Some(mark) => mark.locate(error),
        None => error,
    }
}

/// Checks one route's expanded configuration. Each section is checked by the
/// module that owns it; what is left here spans sections. The order is the one
/// errors are reported in when a file has several.
pub(crate) fn check_route(config: &Config) -> Result<(), ConfigError> {
    check_public_url_needed(config)?;
    config.server.check()?;
    validate_upstream(config)?;
    config
        .auth
        .oauth
        .check(config.authorization_server.is_some())?;
    config.scopes.check()?;
    crate::auth::api_keys::check_scopes(&config.auth.api_keys)?;
    config.audit.check()?;
    config.telemetry.traces.check()?;
    config.server.check_admin_listen()?;
    config.server.check_allowed_origins()?;
    config.session.check()?;
    crate::auth::api_keys::check_cache_ttl(config.auth.api_key_cache_ttl)?;
    crate::limits::LimitRules::from_config(config).map(drop)
}

/// Without `server.public_url`, the resource URI is made from `server.listen`, which
/// is a client-facing name only on loopback: OAuth advertises it to clients.
fn check_public_url_needed(config: &Config) -> Result<(), ConfigError> {
    let server = &config.server;
    if server.public_url.is_none()
        && config.auth.oauth.enabled()
        && !server.listen.ip().is_loopback()
    {
        return Err(ConfigError::invalid(
            "server.public_url",
            format!(
                "required when OAuth is enabled and server.listen ({}) is not a loopback address: \
                 set it to the URL clients use, e.g. https://mcp.example.com/mcp",
                server.listen
            ),
        ));
    }
    Ok(())
}

/// The upstream section is checked by its owner (`upstream::config`); what is left
/// here spans sections: a stdio session is a local process.
fn validate_upstream(config: &Config) -> Result<(), ConfigError> {
    let settings = UpstreamSettings::from_section(config.upstream.as_ref())?;
    if let UpstreamKind::Stdio(_) = settings.kind {
        if config.session.stateless {
            return Err(ConfigError::invalid(
                "session.stateless",
                "a stdio upstream needs sessions: each session is its own process",
            ));
        }
        if matches!(config.session.store, SessionStoreConfig::Redis(_)) {
            return Err(ConfigError::invalid(
                "session.store",
                "a stdio session is a process on one replica and cannot move to another: \
                 use the memory store and route each session to the replica that opened it",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn refusal(yaml: &str) -> (String, String) {
        let config = crate::config::load_from_str(yaml).expect("parses");
        match validate(&config) {
            Err(ConfigError::Invalid { key, message }) => (key, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Each section is checked by its owner; a file with errors in several sections
    /// still gets them one at a time, in this order.
    #[test]
    fn errors_in_several_sections_are_reported_in_section_order() {
        let errors: [(&[(&str, serde_json::Value)], &str); 12] = [
            (
                &[
                    ("server.listen", serde_json::json!("0.0.0.0:5025")),
                    ("auth.oauth.enabled", serde_json::json!(true)),
                ],
                "server.public_url",
            ),
            (
                &[("server.max_body_bytes", serde_json::json!(0))],
                "server.max_body_bytes",
            ),
            (
                &[("upstream.cwd", serde_json::json!("/tmp"))],
                "upstream.cwd",
            ),
            (
                &[("auth.oauth.leeway", serde_json::json!("2m"))],
                "auth.oauth.leeway",
            ),
            (
                &[("scopes.tools_call", serde_json::json!("a b"))],
                "scopes.tools_call",
            ),
            (
                &[(
                    "auth.api_keys",
                    serde_json::json!([{"id": "k", "hash": "x", "scopes": ["a b"]}]),
                )],
                "auth.api_keys[0].scopes",
            ),
            (
                &[("audit.queue_capacity", serde_json::json!(0))],
                "audit.queue_capacity",
            ),
            (
                &[("telemetry.traces.sample_ratio", serde_json::json!(2.0))],
                "telemetry.traces.sample_ratio",
            ),
            (
                &[("server.admin_listen", serde_json::json!("127.0.0.1:5025"))],
                "server.admin_listen",
            ),
            (
                &[("server.allowed_origins", serde_json::json!(["nope"]))],
                "server.allowed_origins[0]",
            ),
            (
                &[("session.max_sessions", serde_json::json!(0))],
                "session.max_sessions",
            ),
            (
                &[("auth.api_key_cache_ttl", serde_json::json!("0s"))],
                "auth.api_key_cache_ttl",
            ),
        ];
        for first in 0..errors.len() {
            let mut file = serde_json::json!({"upstream": {"url": "http://127.0.0.1:1/mcp"}});
            for (settings, _) in &errors[first..] {
                for (path, value) in settings.iter() {
                    let mut at = &mut file;
                    for part in path.split('.') {
                        at = &mut at[part];
                    }
                    *at = value.clone();
                }
            }
            let (key, _) = refusal(&file.to_string());
            assert_eq!(key, errors[first].1, "{file}");
        }
    }

    #[test]
    fn connection_limits_default_parse_and_refuse_zero() {
        let config = crate::config::load_from_str("upstream:\n  url: http://127.0.0.1:1/mcp\n")
            .expect("parses");
        let server = &config.server;
        assert_eq!(server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(server.body_read_timeout, Duration::from_secs(30));
        assert_eq!(server.idle_timeout, Duration::from_secs(60));
        assert_eq!(server.max_connections, None);
        let config = crate::config::load_from_str(
            "server:\n  header_read_timeout: 2s\n  body_read_timeout: 500ms\n  idle_timeout: 5m\n  max_connections: 300\nupstream:\n  url: http://127.0.0.1:1/mcp\n",
        )
        .expect("parses");
        validate(&config).expect("valid");
        let server = &config.server;
        assert_eq!(server.header_read_timeout, Duration::from_secs(2));
        assert_eq!(server.body_read_timeout, Duration::from_millis(500));
        assert_eq!(server.idle_timeout, Duration::from_secs(300));
        assert_eq!(server.max_connections, Some(300));
        for (key, zero) in [
            ("header_read_timeout", "0s"),
            ("body_read_timeout", "0ms"),
            ("idle_timeout", "0s"),
            ("max_connections", "0"),
        ] {
            let (refused, message) = refusal(&format!(
                "server:\n  {key}: {zero}\nupstream:\n  url: http://127.0.0.1:1/mcp\n"
            ));
            assert_eq!(refused, format!("server.{key}"));
            assert!(message.contains("greater than 0"), "{message}");
        }
        for (key, value) in [
            ("header_read_timeout", "soon"),
            ("body_read_timeout", "-1s"),
            ("idle_timeout", "10"),
            ("max_connections", "-5"),
            ("max_connections", "many"),
        ] {
            match crate::config::load_from_str(&format!(
                "server:\n  {key}: {value}\nupstream:\n  url: http://127.0.0.1:1/mcp\n"
            )) {
                Err(ConfigError::Invalid { key: refused, .. }) => {
                    assert_eq!(refused, format!("server.{key}"), "{value}");
                }
                other => panic!("{key}: {value} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn the_two_upstream_kinds_keep_to_their_own_keys() {
        let (key, message) =
            refusal("upstream:\n  url: http://127.0.0.1:1/mcp\n  command: [node]\n");
        assert_eq!(key, "upstream");
        assert!(message.contains("not both"), "{message}");
        let (key, _) = refusal("upstream:\n  url: http://127.0.0.1:1/mcp\n  env: { A: b }\n");
        assert_eq!(key, "upstream.env");
        let (key, _) = refusal("upstream:\n  command: [node]\n  headers: { X-A: b }\n");
        assert_eq!(key, "upstream.headers");
        let (key, _) = refusal("upstream: {}\n");
        assert_eq!(key, "upstream.url");
    }

    #[test]
    fn a_graphql_upstream_is_exclusive_and_keeps_to_its_own_keys() {
        const GRAPHQL: &str = "  graphql: { endpoint: http://127.0.0.1:1/graphql, schema: s.graphql, operations: ops }\n";
        let (key, message) = refusal(&format!(
            "upstream:\n  url: http://127.0.0.1:1/mcp\n{GRAPHQL}"
        ));
        assert_eq!(key, "upstream");
        assert!(message.contains("not both url and graphql"), "{message}");
        let (key, message) = refusal(&format!(
            "upstream:\n  url: http://127.0.0.1:1/mcp\n  command: [node]\n{GRAPHQL}"
        ));
        assert_eq!(key, "upstream");
        assert!(message.contains("not all three"), "{message}");
        for (extra, expected) in [
            ("  cwd: /tmp\n", "upstream.cwd"),
            ("  max_children: 2\n", "upstream.max_children"),
            ("  headers: { X-A: b }\n", "upstream.headers"),
            (
                "  oauth: { token_url: http://127.0.0.1:1/t, client_id: a, client_secret: b }\n",
                "upstream.oauth",
            ),
        ] {
            let (key, _) = refusal(&format!("upstream:\n{extra}{GRAPHQL}"));
            assert_eq!(key, expected);
        }
        let (key, _) = refusal(
            "upstream:\n  graphql: { endpoint: \"file:///x\", schema: s.graphql, operations: ops }\n",
        );
        assert_eq!(key, "upstream.graphql.endpoint");
        let (key, _) = refusal(
            "upstream:\n  graphql: { endpoint: http://127.0.0.1:1/graphql, schema: \"\", operations: ops }\n",
        );
        assert_eq!(key, "upstream.graphql.schema");
        let (key, _) = refusal(
            &format!("upstream:\n{GRAPHQL}").replace(" }", ", headers: { \"bad name\": x } }"),
        );
        assert_eq!(key, "upstream.graphql.headers.bad name");
        let (key, _) = refusal(
            &format!("upstream:\n{GRAPHQL}")
                .replace(" }", ", scopes: { execute_graphql: [\"a\\\\b\"] } }"),
        );
        assert_eq!(key, "upstream.graphql.scopes.execute_graphql");
    }

    #[test]
    fn a_graphql_upstream_works_with_sessions_or_without() {
        for session in [
            "",
            "session: { stateless: true }\n",
            "session: { store: redis://127.0.0.1:6379 }\n",
        ] {
            let yaml = format!(
                "upstream:\n  graphql: {{ endpoint: http://127.0.0.1:1/graphql, schema: s.graphql, operations: ops }}\n{session}"
            );
            let config = crate::config::load_from_str(&yaml).expect("parses");
            validate(&config).unwrap_or_else(|error| panic!("{yaml}: {error}"));
        }
    }

    #[test]
    fn a_stdio_upstream_needs_local_sessions() {
        let (key, _) = refusal("upstream:\n  command: [node]\nsession:\n  stateless: true\n");
        assert_eq!(key, "session.stateless");
        let (key, message) =
            refusal("upstream:\n  command: [node]\nsession:\n  store: redis://127.0.0.1:6379\n");
        assert_eq!(key, "session.store");
        assert!(message.contains("one replica"), "{message}");
    }

    #[test]
    fn mcpgates_own_authorization_server_is_key_source_and_issuer_enough() {
        let bare = "server:\n  public_url: http://127.0.0.1:5025/mcp\nupstream:\n  url: http://127.0.0.1:1/mcp\nauth:\n  oauth:\n    enabled: true\n";
        let (key, _) = refusal(bare);
        assert_eq!(key, "auth.oauth.jwks");
        let with_facade = format!(
            "{bare}authorization_server:\n  provider:\n    issuer: https://idp.example.com\n    client_id: m\n    client_secret: s\n"
        );
        let config = crate::config::load_from_str(&with_facade).unwrap();
        validate(&config).unwrap_or_else(|error| panic!("{with_facade}: {error}"));
    }

    const OAUTH: &str = "server:\n  public_url: http://127.0.0.1:5025/mcp\nupstream:\n  url: http://127.0.0.1:1/mcp\nauth:\n  oauth:\n    enabled: true\n    issuers: [https://issuer.test]\n";

    #[test]
    fn claim_scopes_name_claims_and_valid_scopes() {
        for (section, expected_key, needle) in [
            (
                "    claim_scopes: { \"realm_access..roles\": { admin: [mcp:admin] } }\n    jwks: [{ secret: \"0123456789abcdef0123456789abcdef\" }]\n",
                "auth.oauth.claim_scopes.realm_access..roles",
                "empty segment",
            ),
            (
                "    claim_scopes: { \"\": { admin: [mcp:admin] } }\n    jwks: [{ secret: \"0123456789abcdef0123456789abcdef\" }]\n",
                "auth.oauth.claim_scopes.",
                "empty claim path",
            ),
            (
                "    jwks:\n      - secret: \"0123456789abcdef0123456789abcdef\"\n        claim_scopes:\n          - claim: [\"https://example.com/roles\", \"\"]\n            values: { admin: [mcp:admin] }\n",
                "auth.oauth.jwks[0].claim_scopes[0].claim",
                "empty segment",
            ),
            (
                "    jwks:\n      - secret: \"0123456789abcdef0123456789abcdef\"\n        claim_scopes:\n          - claim: []\n            values: { admin: [mcp:admin] }\n",
                "auth.oauth.jwks[0].claim_scopes[0].claim",
                "empty claim path",
            ),
            (
                "    jwks:\n      - secret: \"0123456789abcdef0123456789abcdef\"\n        claim_scopes: { roles: { Admin: [\"\"] } }\n",
                "auth.oauth.jwks[0].claim_scopes.roles.Admin",
                "not a valid scope",
            ),
            (
                "    jwks:\n      - secret: \"0123456789abcdef0123456789abcdef\"\n        claim_scopes: { roles: { Admin: [] } }\n",
                "auth.oauth.jwks[0].claim_scopes.roles.Admin",
                "no scope",
            ),
            (
                "    jwks: [{ secret: \"0123456789abcdef0123456789abcdef\" }]\n    introspection:\n      url: http://127.0.0.1:1/introspect\n      client_id: a\n      client_secret: b\n      claim_scopes: [{ claim: groups, values: { ops: [\"mcp admin\"] } }]\n",
                "auth.oauth.introspection.claim_scopes[0].values.ops",
                "not a valid scope",
            ),
        ] {
            let (key, message) = refusal(&format!("{OAUTH}{section}"));
            assert_eq!(key, expected_key, "{section}");
            assert!(message.contains(needle), "{section}: {message}");
        }
    }

    #[test]
    fn an_audience_from_another_claim_needs_its_own_allowlist() {
        let provider = |extra: &str| {
            format!(
                "{OAUTH}    jwks:\n      - secret: \"0123456789abcdef0123456789abcdef\"\n{extra}"
            )
        };
        let (key, message) = refusal(&provider("        audience_claim: client_id\n"));
        assert_eq!(key, "auth.oauth.jwks[0].audiences");
        assert!(message.contains("client_id"), "{message}");
        let (key, _) = refusal(&provider(
            "        audience_claim: \"\"\n        audiences: [x]\n",
        ));
        assert_eq!(key, "auth.oauth.jwks[0].audience_claim");
        let (key, _) = refusal(&provider("        client_id_claim: \"\"\n"));
        assert_eq!(key, "auth.oauth.jwks[0].client_id_claim");
        let (key, _) = refusal(&provider("        scope_claims: [scope, \"\"]\n"));
        assert_eq!(key, "auth.oauth.jwks[0].scope_claims[1]");
        for fine in [
            "        audience_claim: client_id\n        audiences: [5ab1c2d3]\n",
            "        audience_claim: aud\n",
            "        scope_claims: [scope, scp, permissions]\n        client_id_claim: cid\n",
            "        claim_scopes:\n          - claim: [\"https://example.com/roles\"]\n            values: { admin: mcp:admin }\n",
        ] {
            let config = crate::config::load_from_str(&provider(fine)).expect("parses");
            validate(&config).unwrap_or_else(|error| panic!("{fine}: {error}"));
        }
    }
}
