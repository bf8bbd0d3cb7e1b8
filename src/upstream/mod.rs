//! Where allowed requests go: a Streamable HTTP MCP server, or a local one started
//! as a child process (stdio) and made to look like one.

pub mod credentials;
pub mod graphql;
mod http;
pub mod inventory;
pub mod stdio;

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;

use self::credentials::UpstreamCredentials;
pub use self::http::{HttpUpstream, UpstreamError};
pub use self::inventory::{Inventory, InventoryError, fetch_inventory};
use self::stdio::StdioUpstream;
use crate::config::{ConfigError, UpstreamConfig};

/// The configured upstream.
#[derive(Debug)]
pub enum Upstream {
    Http(HttpUpstream),
    Stdio(StdioUpstream),
}

impl Upstream {
    /// Builds the upstream; spawns nothing (a stdio child starts with its session).
    pub fn from_config(config: &UpstreamConfig) -> Result<Self, ConfigError> {
        match config.stdio() {
            Some(stdio) => StdioUpstream::from_config(&stdio)
                .map(Self::Stdio)
                .map_err(|error| ConfigError::invalid(error.key, error.message)),
            None => HttpUpstream::from_config(config).map(Self::Http),
        }
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
        }
    }

    /// mcpgate's own token source, for an HTTP upstream with `upstream.oauth`.
    pub fn credentials(&self) -> Option<&Arc<UpstreamCredentials>> {
        match self {
            Self::Http(upstream) => upstream.credentials(),
            Self::Stdio(_) => None,
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

    /// Stops what the upstream runs itself (stdio children); nothing for HTTP.
    pub async fn shutdown(&self) {
        if let Self::Stdio(upstream) = self {
            upstream.shutdown().await;
        }
    }
}
