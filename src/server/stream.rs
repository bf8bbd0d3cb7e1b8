//! Streamed responses (SSE) counted while open; standing GET streams are ended
//! cleanly at shutdown: they never end on their own, so without this a graceful
//! shutdown would wait out its whole grace period and then cut them mid-event. They
//! also end when a reload removes their route or changes its upstream.

use axum::body::{Body, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

use crate::telemetry::metrics::metrics;

/// When a standing stream ends: at shutdown, and when a reload retires its route.
pub struct Standing {
    /// `AppState::shutdown`.
    pub shutdown: watch::Receiver<bool>,
    /// The route's [`crate::gateway::Retirement`], watched.
    pub retired: Option<watch::Receiver<bool>>,
}

/// `body`, counted in the open-streams gauge until it ends; given `standing`, it
/// also ends when shutdown begins or its route is retired.
pub fn tracked(
    body: Body,
    standing: Option<Standing>,
) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static {
    let guard = metrics().stream_opened();
    let end = async move {
        let Some(Standing { shutdown, retired }) = standing else {
            return std::future::pending::<()>().await;
        };
        let retired = async move {
            match retired {
                Some(watched) => crate::gateway::retired(watched).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = shutdown_begun(shutdown) => {}
            () = retired => {}
        }
    };
    body.into_data_stream().take_until(end).map(move |chunk| {
        // Owned by the stream: dropped (and the gauge decremented) when it ends.
        let _ = &guard;
        chunk
    })
}

/// Resolves when shutdown begins; never, if nobody can start one.
pub async fn shutdown_begun(mut shutdown: watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}
