//! Every integration test in one binary. Each file beside this one is a module;
//! one binary links the gateway's dependency tree once instead of once per file,
//! which keeps a clean build's target directory (and its link time) a fraction of
//! what twenty-odd test executables with debug info would take.
//!
//! Run one area with a filter, e.g. `cargo test --test integration policy::`.

// A failed assumption in a test should fail the test loudly: the package's lints
// against panics are for the gateway's code. The helpers in `common` are `pub` for
// the sibling modules, not for export.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub,
    missing_docs
)]

mod common;

mod api_keys;
mod audit_log;
mod auth_jwt;
mod authorization_server;
mod authorization_server_clients;
mod authorization_server_id_jag;
mod authorization_server_replicas;
mod cli;
mod cors;
mod explain;
mod graphql_catalog;
mod graphql_gateway;
mod graphql_upstream;
mod http_edge;
mod idp_tokens;
mod introspection;
mod inventory;
mod jwks_cache;
mod list_filter;
mod look_alikes;
mod metrics;
mod module_graph;
mod operations;
mod policy;
mod protocol_versions;
mod proxy;
mod rate_limits;
mod rate_limits_shared;
mod redis_introspection;
mod redis_sessions;
mod routes;
mod rules;
mod sessions;
mod stdio_gateway;
mod stdio_upstream;
mod traces;
mod upstream_connections;
mod upstream_credentials;
mod upstream_exchange;
mod upstream_identity;
mod virtual_servers;
