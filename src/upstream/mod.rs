//! Where allowed requests go: a Streamable HTTP MCP server.

pub mod credentials;
mod http;
pub mod inventory;

pub use self::http::{HttpUpstream, UpstreamError};
pub use self::inventory::{Inventory, InventoryError, fetch_inventory};
