//! The signals a serving process answers to.

use std::sync::Arc;

use mcpgate::server::reload::Reloader;
use tokio::sync::watch;

/// SIGTERM/SIGINT (shutdown) and SIGHUP (reload), handled one at a time.
pub(super) struct Signals {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                hangup: signal(SignalKind::hangup())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    pub(super) async fn run(mut self, reloader: Arc<Reloader>, stop: watch::Sender<bool>) {
        loop {
            #[cfg(unix)]
            tokio::select! {
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    reloader.on_hangup().await;
                    continue;
                }
                _ = self.terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                let _ = &reloader;
            }
            let _ = stop.send(true);
            return;
        }
    }
}
