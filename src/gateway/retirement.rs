//! The end of a route's standing streams. A GET stream carries the upstream's
//! notifications for as long as the client holds it, so without a signal it would
//! keep relaying a server that a reload removed from the configuration. Every
//! gateway built for the same route in front of the same `upstream` section shares
//! one [`Retirement`]; a reload that leaves it out (the route removed, or its
//! upstream changed) retires it, and the streams it watches end.

use tokio::sync::watch;

/// Shared by the gateways of one route and one upstream, across reloads.
#[derive(Debug)]
pub struct Retirement(watch::Sender<bool>);

impl Retirement {
    pub(crate) fn new() -> Self {
        Self(watch::channel(false).0)
    }

    /// Ends every stream that watches this retirement (and every one opened later).
    pub(crate) fn retire(&self) {
        self.0.send_replace(true);
    }

    /// For one stream: see [`retired`].
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Resolves once the route is retired, or once no gateway holds its retirement any
/// more (nothing serves the route's upstream then either).
pub async fn retired(mut watched: watch::Receiver<bool>) {
    let _ = watched.wait_for(|retired| *retired).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_watch_resolves_when_retired_or_dropped_and_not_before() {
        let retirement = Retirement::new();
        let early = tokio::time::timeout(Duration::from_millis(20), retired(retirement.watch()));
        assert!(early.await.is_err(), "resolved before retirement");

        let waiting = tokio::spawn(retired(retirement.watch()));
        retirement.retire();
        waiting.await.unwrap();
        // A stream opened after the retirement ends at once.
        retired(retirement.watch()).await;

        let dropped = Retirement::new();
        let watching = dropped.watch();
        drop(dropped);
        retired(watching).await;
    }
}
