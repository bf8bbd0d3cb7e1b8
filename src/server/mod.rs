//! The HTTP front: the MCP endpoint, RFC 9728 metadata, and serving with graceful
//! shutdown.

pub mod challenge;
pub mod mcp;
pub mod metadata;

use std::future::IntoFuture;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::StatusCode;

use crate::gateway::Gateway;

/// Shared by every handler: the current gateway, swapped whole on reload.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<ArcSwap<Gateway>>,
}

impl AppState {
    pub fn new(gateway: Gateway) -> Self {
        Self {
            gateway: Arc::new(ArcSwap::from_pointee(gateway)),
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

/// Serves until SIGINT or SIGTERM, then stops accepting and lets in-flight requests
/// finish for up to `grace`. Open SSE streams never finish on their own, so past the
/// grace period they are cut rather than holding the process forever.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown_signal() => {}
    }
    tracing::info!(grace = %humantime::format_duration(grace), "shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("grace period over: closing the connections still open");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
