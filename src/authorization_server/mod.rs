//! mcpgate as the authorization server MCP clients see, for identity providers that
//! cannot register them (no CIMD, no DCR). The client registers here (or is known
//! by its metadata document, or configured), the user consents here to that client
//! using this server, signs in at the real provider through mcpgate's own client
//! there, and gets an mcpgate-issued token for the MCP resource.
//!
//! The request path: `metadata` (RFC 8414) → `authorize` (checked request) →
//! `consent` (the page, CSRF bound to the sign-in and the browser) → the provider
//! → callback. Clients are configured (`clients`), known by their metadata
//! document (`metadata_documents`) or registered (`registration`). `endpoints`
//! and `registration_endpoint` hold the HTTP side; everything else here is free
//! of it.

pub(crate) mod admin;
mod answers;
pub(crate) mod authorize;
mod callback;
pub(crate) mod clients;
mod cookies;
mod endpoints;
pub(crate) mod events;
pub(crate) mod exchange;
pub(crate) mod grants;
pub(crate) mod id_jag;
pub(crate) mod id_token;
pub(crate) mod jws;
pub(crate) mod metadata;
pub(crate) mod metadata_documents;
pub(crate) mod page;
pub(crate) mod pending;
pub(crate) mod provider;
pub(crate) mod random;
pub(crate) mod redirect_uri;
pub(crate) mod registration;
mod registration_endpoint;
pub(crate) mod remembered;
pub(crate) mod scope_limit;
pub(crate) mod secret;
mod settings;
pub(crate) mod shared;
// Shared with the upstream identity assertion, so it lives in `auth`.
pub(crate) use crate::auth::signing;
pub(crate) mod token;

pub(crate) use endpoints::{cross_origin_paths, router};
pub(crate) use settings::{Facade, Settings};
