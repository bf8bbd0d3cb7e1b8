//! Where allowed requests go: a Streamable HTTP MCP server.

mod http;

pub use self::http::{HttpUpstream, UpstreamError};
