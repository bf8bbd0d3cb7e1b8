//! GraphQL upstream: mcpgate is the MCP server itself, and each tool call becomes
//! a GraphQL request to the configured endpoint.
//!
//! The operations folder and the schema ([`crate::graphql::Catalog`]) give the
//! tools; `initialize`, `ping`, `server/discover`, `tools/list` and `tools/call`
//! are answered here, statelessly, in JSON, to legacy (2024-11-05 to 2025-11-25)
//! and 2026-07-28 clients alike (see `server`). The endpoint gets only the configured
//! headers and mcpgate's request id and trace context, never anything the MCP
//! client sent (its token above all). Scopes are the gateway's business: this
//! module only computes what an `execute_graphql` query needs
//! ([`GraphqlUpstream::execute_graphql_requirement`]).

mod builtins;
mod call;
mod client;
mod config;
mod result;
mod tools;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use serde_json::Value;

pub use self::builtins::Builtin;
use self::client::Client;
pub use self::client::MAX_RESPONSE_BYTES;
pub use crate::config::{BuiltinScopes, GraphqlUpstreamConfig};
use crate::graphql::{Catalog, CatalogSettings, GraphqlError, OperationTool};
use crate::upstream::UpstreamError;
use crate::upstream::local::rpc_error::RpcError;
use crate::upstream::local::{self, Context, Identity, LocalServer, method_not_found};

const KEY: &str = "upstream.graphql";

/// A configuration problem, naming the key (`upstream.graphql.operations` …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct GraphqlSetupError {
    /// The dotted key at fault, e.g. `upstream.graphql.operations`.
    pub key: String,
    /// What is wrong with it, for the operator.
    pub message: String,
}

impl GraphqlSetupError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A GraphQL API served as MCP tools.
pub struct GraphqlUpstream {
    catalog: Arc<Catalog>,
    client: Client,
    /// Tool name → index in the catalog's tools. The catalog's own look-up also
    /// answers to operation names, which `tools/call` must not.
    tool_index: HashMap<String, usize>,
    builtins: Vec<Builtin>,
    /// The `tools/list` result, built once: it changes only with the catalog.
    tools_list: Value,
    /// `ttlMs` of 2026-07-28 `tools/list` and `server/discover` results.
    cache_ttl_ms: u64,
    exclude_mutations: bool,
    max_scope_combinations: usize,
    scopes: BuiltinScopes,
}

impl std::fmt::Debug for GraphqlUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlUpstream")
            .field("catalog", &self.catalog)
            .field("client", &self.client)
            .field("builtins", &self.builtins)
            .field("exclude_mutations", &self.exclude_mutations)
            .field("max_scope_combinations", &self.max_scope_combinations)
            .finish_non_exhaustive()
    }
}

impl GraphqlUpstream {
    /// Loads the schema and the operations and builds the HTTP client; connects to
    /// nothing. Operations skipped at load are logged as warnings (and stay in
    /// [`Catalog::warnings`]).
    pub fn from_config(
        config: &GraphqlUpstreamConfig,
        max_scope_combinations: usize,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, GraphqlSetupError> {
        let endpoint = &config.endpoint;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(GraphqlSetupError::new(
                format!("{KEY}.endpoint"),
                "must be an http or https URL",
            ));
        }
        let headers = headers(config)?;
        let settings = CatalogSettings {
            schema: config.schema.clone(),
            operations: config.operations.clone(),
            omit_tool_name_prefix: config.omit_tool_name_prefix,
            exclude_mutations: config.exclude_mutations,
            max_scope_combinations,
        };
        let catalog = Catalog::load(&settings).map_err(|error| catalog_error(config, &error))?;
        for warning in catalog.warnings() {
            tracing::warn!("{KEY}: {warning}");
        }
        let client =
            Client::new(endpoint.clone(), headers, timeout, connect_timeout).map_err(|error| {
                GraphqlSetupError::new(KEY, format!("cannot build HTTP client: {error}"))
            })?;
        let builtins: Vec<Builtin> = Builtin::ALL
            .into_iter()
            .filter(|builtin| match builtin {
                Builtin::GetOperationInfo => true,
                Builtin::GetSchema => config.expose_schema,
                Builtin::ExecuteGraphql => config.enable_arbitrary_operations,
            })
            .collect();
        let tools_list = tools::list(&catalog, &builtins, config.exclude_mutations);
        let tool_index = catalog
            .tools()
            .iter()
            .enumerate()
            .map(|(index, tool)| (tool.tool_name.clone(), index))
            .collect();
        Ok(Self {
            catalog: Arc::new(catalog),
            client,
            tool_index,
            builtins,
            tools_list,
            cache_ttl_ms: u64::try_from(config.cache_ttl.as_millis()).unwrap_or(u64::MAX),
            exclude_mutations: config.exclude_mutations,
            max_scope_combinations,
            scopes: config.scopes.clone(),
        })
    }

    /// The schema and the operation tools.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The built-in tools offered, in `tools/list` order.
    pub fn builtins(&self) -> &[Builtin] {
        &self.builtins
    }

    /// Whether `builtin` is offered (switched on in the configuration).
    pub fn offers(&self, builtin: Builtin) -> bool {
        self.builtins.contains(&builtin)
    }

    /// `upstream.graphql.scopes`, for the gateway's policy.
    pub fn builtin_scopes(&self) -> &BuiltinScopes {
        &self.scopes
    }

    /// Answers one HTTP request to the MCP endpoint as a stateless Streamable HTTP
    /// server answering in JSON. `body` is one JSON-RPC message or a batch.
    /// Of `client_headers`, only `MCP-Protocol-Version` is read (which era the
    /// request speaks), and nothing of them reaches the endpoint; of
    /// `own_headers`, only `traceparent`, `tracestate` and `x-request-id` do.
    /// Never `Err`: a GraphQL endpoint that fails makes a tool result with
    /// `isError: true`, not a gateway error.
    pub async fn forward(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        own_headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, UpstreamError> {
        Ok(local::forward(self, method, (client_headers, &own_headers), &[], &body).await)
    }

    fn builtin(&self, name: &str) -> Option<Builtin> {
        Builtin::from_name(name).filter(|builtin| self.offers(*builtin))
    }

    fn operation_tool(&self, tool_name: &str) -> Option<&OperationTool> {
        self.tool_index
            .get(tool_name)
            .and_then(|&index| self.catalog.tools().get(index))
    }
}

/// The configured headers, marked sensitive so that no log or debug output shows them.
fn headers(config: &GraphqlUpstreamConfig) -> Result<HeaderMap, GraphqlSetupError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let key = format!("{KEY}.headers.{name}");
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| GraphqlSetupError::new(&key, "not a valid HTTP header name"))?;
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| GraphqlSetupError::new(&key, "not a valid HTTP header value"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The key a load error is about: the schema file, or the operations folder.
fn catalog_error(config: &GraphqlUpstreamConfig, error: &GraphqlError) -> GraphqlSetupError {
    let field = match error {
        GraphqlError::Io { path, .. } if *path == config.schema => "schema",
        GraphqlError::Schema { .. } | GraphqlError::ScopesDirective { .. } => "schema",
        GraphqlError::Io { .. }
        | GraphqlError::Operation { .. }
        | GraphqlError::ToolScopes { .. } => "operations",
        // Request-time errors; a load does not produce them.
        GraphqlError::InvalidQuery { .. } | GraphqlError::QueryScopes { .. } => {
            return GraphqlSetupError::new(KEY, error.to_string());
        }
    };
    GraphqlSetupError::new(format!("{KEY}.{field}"), error.to_string())
}

impl LocalServer for GraphqlUpstream {
    fn identity(&self) -> &Identity {
        &IDENTITY
    }

    fn cache_ttl_ms(&self) -> u64 {
        self.cache_ttl_ms
    }

    async fn handle(
        &self,
        method: &str,
        params: Option<&Value>,
        context: &Context<'_>,
    ) -> Result<Value, RpcError> {
        match method {
            "tools/list" => Ok(self.tools_list.clone()),
            "tools/call" => self.call_tool(params, context.own_headers).await,
            _ => Err(method_not_found(method)),
        }
    }
}

/// Tools only, with no change notifications.
static IDENTITY: std::sync::LazyLock<Identity> = std::sync::LazyLock::new(|| Identity {
    name: "mcpgate-graphql",
    capabilities: serde_json::json!({"tools": {"listChanged": false}}),
});

// The gateway shares one upstream across requests.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<GraphqlUpstream>();
};
