//! mcpgate: an OAuth 2.1 resource server and reverse proxy for MCP servers.
//!
//! A request flows through the folders in order: `server` receives it, `auth` turns
//! its credentials into a `Principal`, `policy` decides, `upstream` forwards it.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod json;
pub mod policy;
pub mod server;
pub mod upstream;
