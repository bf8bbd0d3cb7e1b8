//! MCP servers mcpgate runs itself rather than forwards to: the GraphQL tools and
//! virtual servers. What they share is the server side of the protocol: JSON-RPC
//! over Streamable HTTP, stateless, answered in JSON, in both eras (a legacy
//! client's `initialize`, a 2026-07-28 client's `server/discover` and marked
//! results). Each server answers only its own methods ([`LocalServer`]).

pub(crate) mod modern;
pub(crate) mod protocol;
pub(crate) mod rpc_error;
mod server;

pub(crate) use self::server::{Context, Identity, LocalServer, forward, method_not_found};

/// A server offering tools only, as the GraphQL tools do: for the tests of the
/// shared server side.
#[cfg(test)]
pub(crate) fn tools_only(name: &'static str) -> Identity {
    Identity {
        name,
        capabilities: serde_json::json!({"tools": {"listChanged": false}}),
    }
}
