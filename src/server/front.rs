//! What every request meets before its route, in order: the `Host` check
//! ([`super::host`]), the client IP ([`super::client_ip`]), CORS ([`super::cors`]).
//!
//! One middleware rather than one per concern: each axum middleware layer costs
//! every request a boxed future and a clone of the boxed service behind it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::cors::{self, CorsPaths};
use super::{client_ip, host};

/// Middleware for every route of the MCP listener.
pub(super) async fn layer(
    State((state, paths)): State<(AppState, Arc<CorsPaths>)>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Err(problem) = host::check(request.version(), request.uri(), request.headers()) {
        return host::refuse(&state, request, problem).await;
    }
    client_ip::tag(&state, &mut request);
    cors::around(&state, &paths, request, next).await
}
