//! Where allowed requests go: a Streamable HTTP MCP server, a local one started as
//! a child process (stdio) and made to look like one, or a GraphQL API whose
//! operations mcpgate serves as MCP tools itself.

pub(crate) mod client;
mod config;
pub mod credentials;
mod exchange;
pub mod graphql;
mod http;
mod identity;
pub mod inventory;
mod local;
pub mod stdio;
mod tls;
mod virtual_server;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;

pub use self::config::{HttpUpstreamConfig, UpstreamKind, UpstreamSettings};
use self::credentials::UpstreamCredentials;
pub use self::exchange::{ExchangeError, TokenExchange};
use self::graphql::Builtin;
use self::graphql::GraphqlUpstream;
pub use self::http::{FailureKind, HttpUpstream, UpstreamError};
pub use self::identity::{ASSERTION_TYPE, Identity, JWKS_PATH};
pub use self::inventory::{Inventory, InventoryError, fetch_inventory, inventory_of};
use self::stdio::StdioUpstream;
pub use self::tls::TlsRoots;
pub(crate) use self::virtual_server::Member;
pub use self::virtual_server::VirtualUpstream;
use crate::config::{ConfigError, UpstreamConfig};
use crate::policy::{DeclaredTool, Requirement};

/// The configured upstream.
#[derive(Debug)]
pub enum Upstream {
    /// Boxed, like the GraphQL upstream: their pooled clients (and catalog) make
    /// them several times larger than the stdio one.
    Http(Box<HttpUpstream>),
    /// Local MCP servers over stdio: one child process per MCP session.
    Stdio(StdioUpstream),
    /// A GraphQL endpoint behind tools mcpgate serves itself.
    Graphql(Box<GraphqlUpstream>),
    /// Other routes behind one MCP server mcpgate serves itself.
    Virtual(Box<VirtualUpstream>),
}

impl Upstream {
    /// Builds the upstream; spawns nothing (a stdio child starts with its session)
    /// and connects to nothing. A GraphQL upstream reads its schema and operations
    /// here, with `max_scope_combinations` bounding each operation's requirement.
    pub fn from_config(
        config: &UpstreamConfig,
        max_scope_combinations: usize,
    ) -> Result<Self, ConfigError> {
        Self::from_settings(
            &config.resolve()?,
            max_scope_combinations,
            &TlsRoots::default(),
        )
    }

    /// As [`Self::from_config`], from a section already resolved; an HTTP upstream
    /// verifies with `tls`, the roots every upstream of a build shares.
    pub fn from_settings(
        settings: &UpstreamSettings,
        max_scope_combinations: usize,
        tls: &TlsRoots,
    ) -> Result<Self, ConfigError> {
        match &settings.kind {
            UpstreamKind::Graphql(graphql) => {
                let upstream = GraphqlUpstream::from_config(
                    graphql,
                    max_scope_combinations,
                    settings.timeout,
                    settings.connect_timeout,
                )
                .map_err(|error| ConfigError::invalid(error.key, error.message))?;
                check_schema_scopes(&upstream)?;
                Ok(Self::Graphql(Box::new(upstream)))
            }
            UpstreamKind::Stdio(stdio) => StdioUpstream::from_config(stdio)
                .map(Self::Stdio)
                .map_err(|error| ConfigError::invalid(error.key, error.message)),
            UpstreamKind::Http(http) => {
                HttpUpstream::from_config(http, settings.connect_timeout, settings.timeout, tls)
                    .map(|upstream| Self::Http(Box::new(upstream)))
            }
            // Its members are routes: `Gateways` builds it once they are built.
            UpstreamKind::Virtual(_) => Err(ConfigError::invalid(
                "upstream.virtual",
                "merges routes: it is only an upstream of a route of a file with routes:",
            )),
        }
    }

    /// The GraphQL upstream, when that is what this is.
    pub fn graphql(&self) -> Option<&GraphqlUpstream> {
        match self {
            Self::Graphql(upstream) => Some(upstream),
            Self::Http(_) | Self::Stdio(_) | Self::Virtual(_) => None,
        }
    }

    /// The virtual server, when that is what this is.
    pub fn virtual_server(&self) -> Option<&VirtualUpstream> {
        match self {
            Self::Virtual(upstream) => Some(upstream),
            Self::Http(_) | Self::Stdio(_) | Self::Graphql(_) => None,
        }
    }

    /// Tool requirements the upstream itself declares, for the gateway's policy: a
    /// GraphQL operation's from `@requiresScopes`, a built-in tool's from
    /// `upstream.graphql.scopes`. Also the scopes to advertise beyond those (every
    /// scope the schema names). Nothing for an MCP server, whose tools only the
    /// `scopes:` section governs.
    pub fn declared_tools(&self) -> (Vec<DeclaredTool>, Vec<String>) {
        if let Self::Virtual(merged) = self {
            // The members' own declarations, under their prefixes.
            let mut declared = Vec::new();
            let mut scopes = Vec::new();
            for member in merged.members() {
                let (tools, more) = member.upstream.declared_tools();
                declared.extend(tools.into_iter().map(|mut tool| {
                    tool.tool = format!("{}{}", member.prefix, tool.tool);
                    tool.subject = format!("{} ({})", tool.subject, member.name);
                    tool
                }));
                scopes.extend(more);
            }
            return (declared, scopes);
        }
        let Self::Graphql(upstream) = self else {
            return (Vec::new(), Vec::new());
        };
        let catalog = upstream.catalog();
        let mut declared: Vec<DeclaredTool> = catalog
            .tools()
            .iter()
            .map(|tool| DeclaredTool {
                tool: tool.tool_name.clone(),
                requirement: tool.requirement.clone(),
                source: format!("@requiresScopes of operation {}", tool.operation_name),
                key: "upstream.graphql.operations".to_owned(),
                subject: format!(
                    "operation {} ({})",
                    tool.operation_name,
                    tool.file.display()
                ),
            })
            .collect();
        let scopes = upstream.builtin_scopes();
        for builtin in upstream.builtins() {
            let (name, list) = match builtin {
                Builtin::GetOperationInfo => ("get_operation_info", &scopes.get_operation_info),
                Builtin::GetSchema => ("get_schema", &scopes.get_schema),
                Builtin::ExecuteGraphql => ("execute_graphql", &scopes.execute_graphql),
            };
            let key = format!("upstream.graphql.scopes.{name}");
            declared.push(DeclaredTool {
                tool: builtin.name().to_owned(),
                requirement: Requirement::all_of(list.iter().cloned()),
                source: key.clone(),
                subject: format!("built-in tool {}", builtin.name()),
                key,
            });
        }
        (declared, catalog.schema_scopes())
    }

    /// Sends one request and returns the answer with its body still streaming.
    /// `own_headers` (request id, trace context, the upstream's session id) replace
    /// any the client sent under the same names.
    pub async fn forward(
        &self,
        method: ::http::Method,
        client_headers: &::http::HeaderMap,
        own_headers: ::http::HeaderMap,
        body: Bytes,
    ) -> Result<::http::Response<Body>, UpstreamError> {
        match self {
            Self::Http(upstream) => {
                upstream
                    .forward(method, client_headers, own_headers, body)
                    .await
            }
            Self::Stdio(upstream) => {
                upstream
                    .forward(method, client_headers, own_headers, body)
                    .await
            }
            // Boxed: its future (GraphQL requests for a whole batch) is large, and
            // unboxed it would size every request's future, HTTP ones included.
            Self::Graphql(upstream) => {
                Box::pin(upstream.forward(method, client_headers, own_headers, body)).await
            }
            // Without a caller (`mcpgate policy` listing it): an anonymous one.
            Self::Virtual(upstream) => {
                upstream
                    .forward_boxed(method, (client_headers, own_headers), &[], body)
                    .await
            }
        }
    }

    /// mcpgate's own token source, for an HTTP upstream with `upstream.oauth`.
    pub fn credentials(&self) -> Option<&Arc<UpstreamCredentials>> {
        match self {
            Self::Http(upstream) => upstream.credentials(),
            // A GraphQL API's credentials are static headers (`upstream.graphql.headers`).
            Self::Stdio(_) | Self::Graphql(_) | Self::Virtual(_) => None,
        }
    }

    /// Gets mcpgate's own upstream token once (with `upstream.oauth`), so that a
    /// wrong secret or token URL shows at start, like a JWKS that cannot be fetched,
    /// instead of as 502s later.
    pub async fn check_credentials(&self) -> Result<(), ConfigError> {
        match self.credentials() {
            Some(credentials) => credentials
                .authorization()
                .await
                .map(drop)
                .map_err(|error| {
                    ConfigError::invalid("upstream.oauth.token_url", error.to_string())
                }),
            None => Ok(()),
        }
    }

    /// Stops what the upstream runs itself (stdio children); nothing for HTTP or GraphQL.
    pub async fn shutdown(&self) {
        if let Self::Stdio(upstream) = self {
            upstream.shutdown().await;
        }
    }
}

/// Every scope the schema's `@requiresScopes` names goes into challenges and the
/// metadata document as is, so each must be a scope-token (RFC 6749 §3.3), like
/// the scopes of the configuration.
fn check_schema_scopes(upstream: &GraphqlUpstream) -> Result<(), ConfigError> {
    match upstream
        .catalog()
        .schema_scopes()
        .into_iter()
        .find(|scope| !crate::config::is_scope_token(scope))
    {
        Some(scope) => Err(ConfigError::invalid(
            "upstream.graphql.schema",
            format!(
                "@requiresScopes names {scope:?}, which is not a valid scope \
                 (RFC 6749 §3.3: no spaces, quotes or backslashes)"
            ),
        )),
        None => Ok(()),
    }
}
