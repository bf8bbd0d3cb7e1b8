//! mcpgate: an OAuth 2.1 resource server and reverse proxy for MCP servers.
//!
//! A request flows through the folders in order: `server` receives it, `auth` turns
//! its credentials into a `Principal`, `mcp` reads what it asks for, `policy`
//! decides, `upstream` forwards it. Imports point the same way (docs/architecture.md;
//! `tests/module_graph.rs` fails on a cycle):
//!
//! - `server`: connections, the MCP endpoint and its checks in order, the one
//!   [`server::refusal::Refusal`] type, metadata and admin endpoints, observation,
//!   and reload (SIGHUP);
//! - `gateway`, `explain`: one configuration checked
//!   ([`gateway::validate`] runs every section's check) and built into the parts a
//!   request uses, swapped whole on reload, and the same decision explained;
//! - `edge`: what the HTTP front says whatever the request (challenges, RFC 9728
//!   metadata, the origin allowlist, JSON error bodies) and the `server:` section's
//!   checks, built by `gateway` and answered with by `server`;
//! - `upstream`: HTTP, stdio children, and the GraphQL server mode;
//! - `mcp`: the JSON-RPC envelope, methods, protocol versions, headers, sessions,
//!   list filtering;
//! - `policy`: principal × targets → [`policy::Policy::decide`], no I/O;
//! - `auth`: bearer parsing, JWT and JWKS, introspection, API keys, token caches;
//! - `config`: the YAML file's shape (plain data, checked by each section's owner)
//!   and environment overrides;
//! - leaves: `json` (strict parsing), `redis` (the shared handle), `telemetry`,
//!   `audit`, `graphql` (schema analysis), `demo`.
#![forbid(unsafe_code)]
// Unit tests may unwrap and index: a panic there is a failed test.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod audit;
pub mod auth;
pub(crate) mod authorization_server;
pub mod config;
pub mod connections;
pub mod demo;
pub mod edge;
pub mod explain;
pub mod gateway;
pub mod graphql;
pub mod json;
pub mod limits;
pub mod mcp;
pub mod policy;
pub mod redis;
pub mod server;
pub mod telemetry;
pub mod upstream;

/// An error and its causes on one line: reqwest's own `Display` stops at "error
/// sending request", and the cause (connection refused, DNS, TLS) is what an operator needs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// 128 bits from the thread's CSPRNG, as 32 lowercase hex digits: unguessable, and
/// unique without coordination between replicas (session and request ids).
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character
/// boundary: for bounding what a client sent before it goes into a log or a record.
pub fn char_prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}
