//! What the HTTP edge says that does not depend on a request: the `WWW-Authenticate`
//! challenges, the RFC 9728 metadata document, the browser-origin allowlist, the
//! plain JSON error bodies, and the checks of the `server:` section that configures them. `gateway` builds them once per configuration and
//! `server` answers with them, so they sit below both.

pub mod challenge;
pub mod client_ip;
mod config;
pub mod json;
pub mod metadata;
pub mod origin;
