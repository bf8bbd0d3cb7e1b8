//! `upstream.graphql` checked by its owner; each failure names the key.

use crate::config::{
    ConfigError, GraphqlUpstreamConfig, check_headers, check_http_url, check_scope_token,
};

impl GraphqlUpstreamConfig {
    /// As far as it can be checked without reading its files (the schema and the
    /// operations are loaded with the upstream, where their errors name the key too).
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        check_http_url("upstream.graphql.endpoint", &self.endpoint)?;
        let paths = [("schema", &self.schema), ("operations", &self.operations)];
        for (name, path) in paths {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    format!("upstream.graphql.{name}"),
                    "must not be empty",
                ));
            }
        }
        check_headers("upstream.graphql.headers", &self.headers)?;
        let scopes = &self.scopes;
        let builtins = [
            ("get_operation_info", &scopes.get_operation_info),
            ("get_schema", &scopes.get_schema),
            ("execute_graphql", &scopes.execute_graphql),
        ];
        for (name, list) in builtins {
            for scope in list {
                check_scope_token(&format!("upstream.graphql.scopes.{name}"), scope)?;
            }
        }
        Ok(())
    }
}
