//! One client connection, served by hyper and watched for the time its client takes
//! to send a request: a client that opens a connection and then sends nothing, or
//! sends headers a byte at a time, loses it (slowloris). Answers are never timed: a
//! standing SSE stream or a long POST answer holds a request in progress, and a
//! connection with a request in progress is left alone (the body read has its own
//! timeout, `server.body_read_timeout`, in `mcp::read_body`).
//!
//! hyper's own header timer is not used: it starts whenever a connection waits for
//! a request, so it cannot tell a slow request from an idle keep-alive connection,
//! and it does not exist for HTTP/2. Here both protocols share one rule, fed by the
//! bytes the socket delivers and the requests the service sees.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::stream::shutdown_begun;

/// How long a client may take, per connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadTimeouts {
    /// To send a request's headers: from the connection's opening for its first
    /// request, from the first byte of each later one.
    pub header: Duration,
    /// To start the next request once the previous answer is complete.
    pub idle: Duration,
}

/// Every open connection, so that at the cap one can be closed to make room.
#[derive(Default)]
pub(super) struct Open {
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
    next: AtomicU64,
}

impl Open {
    fn register(self: &Arc<Self>, activity: &Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(activity));
        Registered {
            open: Arc::clone(self),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // The map holds no invariant a panicking holder could break.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the connection without a request in progress that is nearest its
    /// timeout to close, as nginx does with idle keep-alive connections when it runs
    /// out: a slow or idle client loses a little early what a waiting client needs
    /// now. False when every connection is busy with a request.
    pub(super) fn make_room(&self, timeouts: ReadTimeouts) -> bool {
        let connections = self.lock();
        let victim = connections
            .values()
            .filter(|activity| !activity.evicted.load(Ordering::Relaxed))
            .filter_map(|activity| Some((activity.deadline(timeouts)?, activity)))
            .min_by_key(|(deadline, _)| *deadline);
        match victim {
            Some((_, activity)) => {
                activity.evicted.store(true, Ordering::Relaxed);
                activity.changed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in `Open`, given up when it closes.
struct Registered {
    open: Arc<Open>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

/// The protocol builder shared by every connection.
pub(super) fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timer lets hyper time HTTP/2 keep-alive pings; the header timer stays
    // off (see the module comment).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Serves `tcp` until the client closes it, it times out, or shutdown ends it.
/// `permit` is the connection's place under `server.max_connections`, released
/// when it closes; `open` lists it while it is open.
pub(super) async fn serve(
    builder: Arc<auto::Builder<TokioExecutor>>,
    tcp: TcpStream,
    router: Router,
    timeouts: ReadTimeouts,
    shutdown: watch::Receiver<bool>,
    (open, permit): (Arc<Open>, OwnedSemaphorePermit),
) {
    let activity = Arc::new(Activity::new());
    let registered = open.register(&activity);
    // The client's address, for handlers that limit per address (registration).
    let peer = tcp.peer_addr().ok().map(ConnectInfo);
    let io = TokioIo::new(Watched {
        tcp,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            let guard = InFlight::begin(Arc::clone(&activity));
            let router = router.clone();
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            async move {
                let response: Response = router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response.map(|body| Body::new(Guarded { body, guard })))
            }
        })
    };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let stopping = shutdown_begun(shutdown);
    tokio::pin!(stopping);
    let mut closing = false;
    // Set once a timed-out connection has been asked to close: a client that then
    // neither sends nor reads is cut at this instant.
    let mut cut_at = None;
    loop {
        let deadline = cut_at.or_else(|| activity.deadline(timeouts));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!("client connection ended: {error}");
                }
                break;
            }
            () = &mut stopping, if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = sleep_until(deadline) => {
                if cut_at.is_some() {
                    if activity.deadline(timeouts).is_none() {
                        // A request slipped in before the close: hyper ends the
                        // connection once it is answered.
                        cut_at = None;
                        continue;
                    }
                    tracing::debug!("client connection cut: it did not close in time");
                    break;
                }
                if activity.deadline(timeouts).is_none_or(|at| at > Instant::now()) {
                    continue;
                }
                tracing::debug!(
                    requests = activity.served(),
                    "closing a client connection that sent no complete request in time"
                );
                if activity.owes_request() {
                    break;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
                cut_at = Some(Instant::now() + timeouts.header);
            }
            () = activity.changed.notified() => {
                if activity.evicted.load(Ordering::Relaxed) && cut_at.is_none() {
                    tracing::debug!("closing a client connection to make room for a new one");
                    if activity.owes_request() && activity.deadline(timeouts).is_some() {
                        break;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    cut_at = Some(Instant::now() + timeouts.header);
                }
            }
        }
    }
    drop(registered);
    drop(permit);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// No first byte seen since the connection last went idle.
const NONE: u64 = u64::MAX;

/// What the connection is doing, as the socket and the service see it. Instants
/// are kept as milliseconds since the connection opened, so they fit in atomics.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// When the last request in progress ended (or the clock was restarted).
    idle_since: AtomicU64,
    /// The first byte received since then, if any.
    first_byte: AtomicU64,
    /// Asked to close to make room under the connection cap.
    evicted: AtomicBool,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            evicted: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        // Far enough to mean never, near enough not to overflow an Instant.
        self.opened + Duration::from_millis(millis.min(1 << 40))
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// The client has started a request, or never sent one: closing it is cutting
    /// it off (hyper would otherwise wait for the rest of those headers). A client
    /// that owes nothing is closed politely instead (HTTP/2 `GOAWAY`).
    fn owes_request(&self) -> bool {
        self.served() == 0 || self.first_byte.load(Ordering::Relaxed) != NONE
    }

    /// When the connection is to be closed unless something happens first; `None`
    /// while a request is in progress.
    fn deadline(&self, timeouts: ReadTimeouts) -> Option<Instant> {
        self.deadline_millis(timeouts).map(|millis| self.at(millis))
    }

    /// As `deadline`, in milliseconds since the connection opened.
    fn deadline_millis(&self, timeouts: ReadTimeouts) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let millis = |timeout: Duration| u64::try_from(timeout.as_millis()).unwrap_or(NONE);
        let idle_since = self.idle_since.load(Ordering::Relaxed);
        if self.served() == 0 {
            // A client opens a connection to send a request: the first one's
            // headers are timed from the start.
            return Some(idle_since.saturating_add(millis(timeouts.header)));
        }
        Some(match self.first_byte.load(Ordering::Relaxed) {
            NONE => idle_since.saturating_add(millis(timeouts.idle)),
            first => first.saturating_add(millis(timeouts.header)),
        })
    }

    #[cfg(test)]
    fn first_byte_seen(&self) -> bool {
        self.first_byte.load(Ordering::Relaxed) != NONE
    }

    fn received(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.first_byte.load(Ordering::Relaxed) == NONE
        {
            self.first_byte.store(self.now(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.first_byte.store(NONE, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now(), Ordering::Relaxed);
            self.first_byte.store(NONE, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }
}

/// A request in progress, from the service's call until its answer's body is done
/// (or dropped: the client went away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// An answer's body, holding its request in progress until it is done.
struct Guarded {
    body: Body,
    guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let _ = &self.guard;
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, telling `Activity` when bytes arrive.
struct Watched {
    tcp: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: ReadTimeouts = ReadTimeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    /// What the clock would have stored in `field` at `millis`.
    fn at(field: &AtomicU64, millis: u64) {
        field.store(millis, Ordering::Relaxed);
    }

    #[test]
    fn room_is_made_by_closing_the_idle_connection_nearest_its_timeout() {
        let open = Arc::new(Open::default());
        let busy = Arc::new(Activity::new());
        let _request = InFlight::begin(Arc::clone(&busy));
        let fresh = Arc::new(Activity::new());
        let waiting = Arc::new(Activity::new());
        drop(InFlight::begin(Arc::clone(&waiting)));
        // `waiting` went idle at 0 ms but later received a byte at 5 s: its header
        // deadline (15 s) is after `fresh`'s (10 s).
        at(&waiting.first_byte, 5_000);
        let _registered = [&busy, &fresh, &waiting].map(|activity| open.register(activity));
        assert!(open.make_room(TIMEOUTS));
        assert!(fresh.evicted.load(Ordering::Relaxed));
        assert!(open.make_room(TIMEOUTS));
        assert!(waiting.evicted.load(Ordering::Relaxed));
        // A connection with a request in progress is never taken.
        assert!(!open.make_room(TIMEOUTS));
        assert!(!busy.evicted.load(Ordering::Relaxed));
        drop(_registered);
        assert!(open.lock().is_empty());
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_to_send_its_request() {
        let activity = Activity::new();
        assert_eq!(activity.deadline_millis(TIMEOUTS), Some(10_000));
        // Bytes of the first request do not move its deadline.
        at(&activity.first_byte, 3_000);
        assert_eq!(activity.deadline_millis(TIMEOUTS), Some(10_000));
    }

    #[test]
    fn a_request_in_progress_is_never_timed_here() {
        let activity = Arc::new(Activity::new());
        let first = InFlight::begin(Arc::clone(&activity));
        let second = InFlight::begin(Arc::clone(&activity));
        assert_eq!(activity.deadline_millis(TIMEOUTS), None);
        // Bytes read while a request runs (its body) are not a new request.
        activity.received();
        assert!(!activity.first_byte_seen());
        drop(first);
        assert_eq!(activity.deadline_millis(TIMEOUTS), None);
        drop(second);
        let ended = activity.idle_since.load(Ordering::Relaxed);
        assert_eq!(activity.deadline_millis(TIMEOUTS), Some(ended + 60_000));
    }

    #[test]
    fn after_an_answer_the_idle_timeout_runs_until_a_byte_arrives() {
        let activity = Arc::new(Activity::new());
        drop(InFlight::begin(Arc::clone(&activity)));
        at(&activity.idle_since, 1_000);
        assert_eq!(activity.deadline_millis(TIMEOUTS), Some(61_000));
        at(&activity.first_byte, 20_000);
        assert_eq!(activity.deadline_millis(TIMEOUTS), Some(30_000));
        // Later bytes of the same request do not move it.
        activity.received();
        assert_eq!(activity.first_byte.load(Ordering::Relaxed), 20_000);
        // The next request resets the clock.
        drop(InFlight::begin(Arc::clone(&activity)));
        assert!(!activity.first_byte_seen());
    }
}
