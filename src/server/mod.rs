//! The HTTP front: the MCP endpoint, RFC 9728 metadata, and serving with graceful
//! shutdown.

pub mod admin;
pub mod challenge;
mod graphql;
pub mod mcp;
pub mod metadata;
pub mod observe;
pub mod origin;
pub mod session;
pub mod stream;

use std::future::IntoFuture;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use http::StatusCode;
use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::gateway::Gateway;
use crate::mcp::session::Sessions;
use crate::telemetry::traces::Traces;

/// Shared by every handler: the current gateway (swapped whole on reload) and what
/// outlives a reload: the audit log, the tracer, and the shutdown signal.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<ArcSwap<Gateway>>,
    pub audit: AuditLog,
    pub traces: Traces,
    /// Becomes `true` when shutdown begins: open streams end, the listeners stop.
    pub shutdown: watch::Receiver<bool>,
    /// Session ownership: kept across reloads (`session` needs a restart).
    pub sessions: Arc<Sessions>,
}

impl AppState {
    /// `sessions` comes from [`Sessions::from_config`], made before the gateway so
    /// that the gateway can share its Redis connection.
    pub fn new(
        gateway: Gateway,
        sessions: Arc<Sessions>,
        audit: AuditLog,
        traces: Traces,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            gateway: Arc::new(ArcSwap::from_pointee(gateway)),
            audit,
            traces,
            shutdown,
            sessions,
        }
    }
}

/// The router. Paths come from the configuration at start (changing them needs a
/// restart); the metadata routes sit outside authentication.
pub fn router(state: AppState) -> Router {
    let gateway = state.gateway.load();
    let mut router = Router::new().route(&gateway.config.mcp_path(), any(mcp::handle));
    for path in gateway.config.metadata_paths() {
        router = router.route(&path, get(metadata_document));
    }
    drop(gateway);
    router.fallback(not_found).with_state(state)
}

async fn metadata_document(State(state): State<AppState>) -> Response {
    match &state.gateway.load().metadata {
        Some(metadata) => metadata.response(),
        // OAuth off: there is no protected resource to describe.
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    mcp::json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}

/// Serves until shutdown begins (`state.shutdown`), then stops accepting and lets
/// in-flight requests (a POST answered as a stream among them) finish for up to
/// `grace`. Standing GET streams end at once (see `stream`), so a drained server
/// returns well before the grace period; what is still running when it is over is cut.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    // Answers are written as they come (SSE events, a streamed list): with Nagle's
    // algorithm on, the last small segment of one waits for the client's delayed ACK
    // (tens of milliseconds on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set on a client connection: {error}");
        }
    });
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(stream::shutdown_begun(shutdown.clone()))
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = stream::shutdown_begun(shutdown) => {}
    }
    tracing::info!(grace = %humantime::format_duration(grace), "shutting down: finishing in-flight requests");
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("grace period over: closing the connections still open");
            Ok(())
        }
    }
}
