//! The HTTP front: the MCP endpoint, RFC 9728 metadata, and serving with graceful
//! shutdown.

pub mod admin;
mod body;
mod client_ip;
mod connect;
mod connection;
mod cors;
mod front;
pub mod host;
pub mod limits;
pub mod mcp;
pub mod observe;
pub mod refusal;
pub mod reload;
pub mod session;
pub mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::audit::AuditLog;
use crate::authorization_server::{self, Facade};
use crate::gateway::{Destination, Gateways};
use crate::limits::Limiter;
use crate::mcp::session::Sessions;
use crate::telemetry::metrics::metrics;
use crate::telemetry::traces::Traces;

/// Shared by every handler: the current gateway (swapped whole on reload) and what
/// outlives a reload: the audit log, the tracer, and the shutdown signal.
#[derive(Clone)]
pub struct AppState {
    /// Every route's gateway, swapped whole on reload.
    pub gateway: Arc<ArcSwap<Gateways>>,
    pub(crate) audit: AuditLog,
    pub(crate) traces: Traces,
    /// Becomes `true` when shutdown begins: open streams end, the listeners stop.
    pub shutdown: watch::Receiver<bool>,
    /// Session ownership: kept across reloads (`session` needs a restart).
    pub sessions: Arc<Sessions>,
    /// The authorization-server façade (sign-ins in progress outlive reloads).
    pub(crate) facade: Option<Arc<Facade>>,
    /// Rate-limit counters and calls in flight: kept across reloads.
    pub(crate) limiter: Arc<Limiter>,
}

impl AppState {
    /// `sessions` comes from [`Sessions::from_config`], made before the gateway so
    /// that the gateway can share its Redis connection.
    pub fn new(
        gateways: Gateways,
        sessions: Arc<Sessions>,
        audit: AuditLog,
        traces: Traces,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        metrics().know(observe::known_labels());
        let redis = sessions.shared_redis();
        let facade = gateways
            .facade()
            .cloned()
            .map(|settings| Facade::new(settings, redis, audit.clone()));
        let limiter = Arc::new(Limiter::new(
            gateways.config.limits.max_keys,
            sessions.shared_redis(),
        ));
        Self {
            facade,
            limiter,
            gateway: Arc::new(ArcSwap::from_pointee(gateways)),
            audit,
            traces,
            shutdown,
            sessions,
        }
    }
}

/// The router. Each route's MCP endpoint and RFC 9728 document are found per
/// request in the current gateways (a reload adds and removes routes); the
/// façade's and the connections' paths come from the configuration at start. CORS
/// runs inside the `Host` check, before every route.
pub fn router(state: AppState) -> Router {
    let gateways = state.gateway.load();
    let mut router = Router::new();
    // Always routed: a reload may turn assertions on (or off: then a 404).
    router = router.route(crate::upstream::JWKS_PATH, get(identity_jwks));
    if let Some(connections) = &gateways.first().connections {
        router = connect::routes(router, connections);
    }
    drop(gateways);
    let mut documents = Vec::new();
    let mut posts = Vec::new();
    if let Some(facade) = &state.facade {
        router = router.merge(authorization_server::router(Arc::clone(facade)));
        (documents, posts) = authorization_server::cross_origin_paths(facade);
    }
    let paths = Arc::new(cors::CorsPaths::new(documents, posts));
    router
        .fallback(by_route)
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), paths),
            front::layer,
        ))
        .with_state(state)
}

/// A route's MCP endpoint or RFC 9728 document, or 404.
async fn by_route(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let gateways = state.gateway.load_full();
    let host = host::of(&request);
    match gateways.destination(host, request.uri().path()) {
        Some(Destination::Endpoint(gateway)) => {
            let gateway = Arc::clone(gateway);
            drop(gateways);
            mcp::handle(state, gateway, request).await
        }
        Some(Destination::Document(gateway)) => match (&gateway.metadata, request.method()) {
            // OAuth off: there is no protected resource to describe.
            (None, _) => not_found().await,
            (Some(metadata), &http::Method::GET | &http::Method::HEAD) => metadata.response(),
            (Some(_), _) => (
                StatusCode::METHOD_NOT_ALLOWED,
                [(http::header::ALLOW, "GET,HEAD")],
            )
                .into_response(),
        },
        None => not_found().await,
    }
}

/// The public keys of the identity assertions sent upstream.
async fn identity_jwks(State(state): State<AppState>) -> Response {
    let jwks = state.gateway.load().identity_jwks().cloned();
    match jwks {
        Some(jwks) => crate::edge::json::public_document(jwks),
        None => not_found().await,
    }
}

async fn not_found() -> Response {
    crate::edge::json::json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        .into_response()
}

/// How the listener serves its clients (from `server:`; bound at start).
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long in-flight requests may take to finish once shutdown begins.
    pub grace: Duration,
    /// How long a client has to send a request's headers (from connection open, then from
    /// each request's first byte).
    pub header_read_timeout: Duration,
    /// How long a connection with no request in progress may wait for the next one.
    pub idle_timeout: Duration,
    /// Most client connections open at once.
    pub max_connections: usize,
}

/// Serves until shutdown begins (`state.shutdown`), then stops accepting and lets
/// in-flight requests (a POST answered as a stream among them) finish for up to
/// `grace`. Standing GET streams end at once (see `stream`), so a drained server
/// returns well before the grace period; what is still running when it is over is cut.
///
/// At `max_connections`, a newcomer makes room: the connection without a request in
/// progress that is nearest its read timeout is closed (a slow client loses a little
/// early what it would lose anyway). When every connection is busy with a request,
/// the newcomer waits for one to end, and those behind it wait in the kernel's listen
/// backlog, holding no descriptor and no memory of ours. Closing newcomers instead
/// would turn valid clients away exactly when slow ones fill the server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: ServeOptions,
) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let router = router(state);
    let builder = Arc::new(connection::builder());
    let timeouts = connection::ReadTimeouts {
        header: options.header_read_timeout,
        idle: options.idle_timeout,
    };
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let open = Arc::new(connection::Open::default());
    let mut connections = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    let stopping = stream::shutdown_begun(shutdown.clone());
    tokio::pin!(stopping);
    'accepting: loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopping => break,
            // Reaps finished connection tasks while no one connects.
            Some(_) = connections.join_next() => continue,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                accept_errors.report(&error);
                // Most accept errors concern one connection (it was reset before
                // being taken); running out of descriptors lasts until some close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // At the cap this one newcomer is held (the cap leaves descriptors to
        // spare) while room is made, or until a busy connection ends.
        let mut made_room = false;
        let permit = loop {
            if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                break permit;
            }
            // One connection closed per newcomer, however long it takes to go.
            made_room = made_room || open.make_room(timeouts);
            tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => break 'accepting,
                },
                // A busy connection may have gone idle since: look again.
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = &mut stopping => break 'accepting,
            }
        };
        // Answers are written as they come (SSE events, a streamed list): with
        // Nagle's algorithm on, the last small segment of one waits for the
        // client's delayed ACK (tens of milliseconds on Linux).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY not set on a client connection: {error}");
        }
        connections.spawn(connection::serve(
            Arc::clone(&builder),
            tcp,
            router.clone(),
            timeouts,
            shutdown.clone(),
            (Arc::clone(&open), permit),
        ));
    }
    // New connections are refused from here on; open ones close as soon as their
    // requests are answered (each watches `shutdown`).
    drop(listener);
    if connections.is_empty() {
        return Ok(());
    }
    let grace = options.grace;
    tracing::info!(grace = %humantime::format_duration(grace), "shutting down: finishing in-flight requests");
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("grace period over: closing the connections still open");
        connections.abort_all();
    }
    Ok(())
}

/// Failed `accept`s, logged at most once a second with how many there were.
#[derive(Default)]
struct AcceptErrors {
    last: Option<tokio::time::Instant>,
    since: u64,
}

impl AcceptErrors {
    fn report(&mut self, error: &std::io::Error) {
        self.since += 1;
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now - last < Duration::from_secs(1))
        {
            return;
        }
        let hint = if error.raw_os_error() == Some(24) || error.raw_os_error() == Some(23) {
            " (the open-file limit is reached: see server.max_connections and LimitNOFILE in \
             docs/operations.md)"
        } else {
            ""
        };
        tracing::warn!(
            failures = self.since,
            "cannot accept a client connection: {error}{hint}"
        );
        self.last = Some(now);
        self.since = 0;
    }
}
