//! `upstream.graphql` and `upstream.command`: the shapes of the parts of `upstream:`
//! that are more than a value. Plain data: `upstream::UpstreamSettings` checks them
//! and turns the section into the one kind it names.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::Secret;

/// `command: npx` or `command: [npx, -y, "@modelcontextprotocol/server-everything"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// A program name alone, run without arguments.
    Program(String),
    /// The program and its arguments, passed as is (no shell).
    WithArgs(Vec<String>),
}

/// Where the GraphQL API is, which operations become tools, and which built-in
/// tools are offered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphqlUpstreamConfig {
    /// GraphQL over HTTP: every operation is a POST of `{query, variables}` here.
    pub endpoint: Url,
    /// The SDL file; `@requiresScopes` in it sets each operation's scopes.
    pub schema: PathBuf,
    /// A folder of `*.graphql`/`*.gql` files, one operation each.
    pub operations: PathBuf,
    /// Sent with every request to the endpoint: the API's own credentials. Nothing
    /// of the MCP client's request is ever sent there.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Tool names without the `execute_operation_` prefix.
    #[serde(default)]
    pub omit_tool_name_prefix: bool,
    /// Mutations become no tools, and `execute_graphql` refuses them.
    #[serde(default)]
    pub exclude_mutations: bool,
    /// Offer the `get_schema` tool (the SDL).
    #[serde(default)]
    pub expose_schema: bool,
    /// Offer the `execute_graphql` tool (any query the caller writes, with the
    /// scopes its fields need checked per request).
    #[serde(default)]
    pub enable_arbitrary_operations: bool,
    /// Scopes for the built-in tools, on top of those for every `tools/call`.
    #[serde(default)]
    pub scopes: BuiltinScopes,
    /// How long a 2026-07-28 client may keep a `tools/list` or `server/discover`
    /// result (`ttlMs`). The list changes only on a reload, and this server sends
    /// no change notifications, so this bounds how long a client may miss one.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}

impl GraphqlUpstreamConfig {
    /// A configuration with the defaults (every flag off, no headers), for code and
    /// tests that build one by hand.
    pub fn new(endpoint: Url, schema: impl Into<PathBuf>, operations: impl Into<PathBuf>) -> Self {
        Self {
            endpoint,
            schema: schema.into(),
            operations: operations.into(),
            headers: BTreeMap::new(),
            omit_tool_name_prefix: false,
            exclude_mutations: false,
            expose_schema: false,
            enable_arbitrary_operations: false,
            scopes: BuiltinScopes::default(),
            cache_ttl: default_cache_ttl(),
        }
    }
}

/// `upstream.graphql.scopes`: what each built-in tool needs (an AND list), checked by
/// the gateway's policy, not here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinScopes {
    /// Scopes `get_operation_info` needs, all of them; empty: none.
    #[serde(default)]
    pub get_operation_info: Vec<String>,
    /// Scopes `get_schema` needs, all of them; empty: none.
    #[serde(default)]
    pub get_schema: Vec<String>,
    /// Scopes `execute_graphql` needs, all of them, before the query's own; empty: none.
    #[serde(default)]
    pub execute_graphql: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_minimal_form_with_defaults() {
        let config: GraphqlUpstreamConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:4000/graphql",
            "schema": "schema.graphql",
            "operations": "operations",
        }))
        .unwrap();
        let expected = GraphqlUpstreamConfig::new(
            Url::parse("http://127.0.0.1:4000/graphql").unwrap(),
            "schema.graphql",
            "operations",
        );
        assert_eq!(config, expected);
        assert_eq!(config.cache_ttl, Duration::from_secs(300));
    }

    #[test]
    fn reads_every_key() {
        let config: GraphqlUpstreamConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "https://api.example.com/graphql",
            "schema": "s.graphql",
            "operations": "ops",
            "headers": {"Authorization": "Bearer upstream"},
            "omit_tool_name_prefix": true,
            "exclude_mutations": true,
            "expose_schema": true,
            "enable_arbitrary_operations": true,
            "cache_ttl": "90s",
            "scopes": {
                "get_operation_info": ["a"],
                "get_schema": ["b"],
                "execute_graphql": ["c", "d"],
            },
        }))
        .unwrap();
        assert_eq!(
            config.headers.get("Authorization").map(Secret::expose),
            Some("Bearer upstream")
        );
        assert!(config.omit_tool_name_prefix);
        assert!(config.exclude_mutations);
        assert!(config.expose_schema);
        assert!(config.enable_arbitrary_operations);
        assert_eq!(config.cache_ttl, Duration::from_secs(90));
        assert_eq!(config.scopes.get_operation_info, ["a"]);
        assert_eq!(config.scopes.get_schema, ["b"]);
        assert_eq!(config.scopes.execute_graphql, ["c", "d"]);
    }

    #[test]
    fn refuses_unknown_keys_at_both_levels() {
        let top = serde_json::from_value::<GraphqlUpstreamConfig>(serde_json::json!({
            "endpoint": "http://127.0.0.1:4000/graphql",
            "schema": "s.graphql",
            "operations": "ops",
            "expose_shema": true,
        }));
        assert!(top.unwrap_err().to_string().contains("expose_shema"));
        let nested = serde_json::from_value::<GraphqlUpstreamConfig>(serde_json::json!({
            "endpoint": "http://127.0.0.1:4000/graphql",
            "schema": "s.graphql",
            "operations": "ops",
            "scopes": {"execute": ["x"]},
        }));
        assert!(nested.unwrap_err().to_string().contains("execute"));
    }

    #[test]
    fn header_values_stay_out_of_debug_output() {
        let mut config = GraphqlUpstreamConfig::new(
            Url::parse("http://127.0.0.1:4000/graphql").unwrap(),
            "s.graphql",
            "ops",
        );
        config
            .headers
            .insert("Authorization".to_owned(), Secret::new("Bearer hunter2"));
        let shown = format!("{config:?}");
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("hunter2"));
    }
}
