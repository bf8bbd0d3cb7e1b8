//! Streamed responses (SSE) counted while open; standing GET streams are ended
//! cleanly at shutdown: they never end on their own, so without this a graceful
//! shutdown would wait out its whole grace period and then cut them mid-event.

use axum::body::{Body, Bytes};
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

use crate::telemetry::metrics::metrics;

/// `body`, counted in the open-streams gauge until it ends; given `ends_at_shutdown`,
/// it also ends when shutdown begins.
pub fn tracked(
    body: Body,
    ends_at_shutdown: Option<watch::Receiver<bool>>,
) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send + 'static {
    let guard = metrics().stream_opened();
    let shutdown = async move {
        match ends_at_shutdown {
            Some(shutdown) => shutdown_begun(shutdown).await,
            None => std::future::pending::<()>().await,
        }
    };
    body.into_data_stream()
        .take_until(shutdown)
        .map(move |chunk| {
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
