//! The MCP layer: the strict JSON-RPC envelope, what each message is about, the
//! headers that must agree with the body, and list filtering (JSON and SSE).

pub mod envelope;
pub mod error;
pub mod filter;
pub mod headers;
pub mod method;
pub mod names;
pub mod session;
pub mod sse;
pub mod version;
