//! Stdio upstream: a local MCP server speaking newline-delimited JSON-RPC on its
//! stdin/stdout, made to look exactly like a Streamable HTTP MCP server to the rest
//! of mcpgate.
//!
//! Each MCP session gets its own child process (users never share one): an
//! `initialize` POST without a session id spawns it, and the answer carries a new
//! `Mcp-Session-Id` (128 random bits, hex) that names it from then on. mcpgate's
//! session layer maps its client-facing ids to this one and checks who owns them;
//! nothing here does. The rest follows the transport (MCP 2025-06-18 / 2025-11-25):
//!
//! - POST with requests: answered with SSE when `Accept` allows it (every message
//!   the child sends while they are pending, then their answers), or with JSON (just
//!   the answers); only notifications or responses: 202.
//! - GET: the standalone SSE stream; at most one per session (a second gets 409).
//! - DELETE: the child is stopped, then 200.
//! - An unknown or dead session: 404, so the client starts over.
//!
//! No resumability: events carry no `id:`, and `Last-Event-ID` is ignored, as a
//! server without an event store does.

mod child;
mod config;
mod framing;
mod message;
mod response;
mod router;
mod session;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::Value;

use self::config::{Launch, Limits};
pub use self::config::{StdioConfig, StdioConfigError};
use self::message::{Body as Parsed, IdKey, Inbound};
use self::response::{Reply, json_rpc_error, json_value, refusal};
use self::router::OpenError;
use self::session::{End, Registry, Session, WriteError};
pub use crate::config::CommandLine;
use crate::mcp::session::SESSION_HEADER;
use crate::upstream::UpstreamError;

/// Events buffered between the child's reader and one POST's stream. Small: each
/// may be a message of up to 16 MiB, and a full queue makes the reader wait (the
/// child's own output is slowed, nobody else's).
const EXCHANGE_QUEUE: usize = 16;
/// Events buffered for the GET stream, for the same reasons.
const GET_QUEUE: usize = 16;

/// A stdio MCP server, one child process per session.
pub struct StdioUpstream {
    launch: Launch,
    limits: Limits,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for StdioUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioUpstream")
            .field("launch", &self.launch)
            .field("limits", &self.limits)
            .field("open_children", &self.open_children())
            .finish()
    }
}

impl StdioUpstream {
    /// Checks the configuration (the program is resolved to an absolute path now,
    /// so a typo fails at startup, not at the first session). Spawns nothing.
    pub fn from_config(config: &StdioConfig) -> Result<Self, StdioConfigError> {
        let (launch, limits) = config::check(config)?;
        Ok(Self {
            launch,
            registry: Arc::new(Registry::new(limits.max_children)),
            limits,
        })
    }

    /// Handles one HTTP request to the MCP endpoint the way a Streamable HTTP server
    /// would. The session id is read from `own_headers` (mcpgate puts the checked
    /// upstream id there, as for the HTTP upstream) and else from `client_headers`
    /// (callers without a session layer). Transport-level refusals (400, 404, 406,
    /// 409, 503) are `Ok` responses; `Err` is for a child that cannot be started or
    /// does not answer in time, which mcpgate turns into 502 / 504.
    pub async fn forward(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        own_headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, UpstreamError> {
        // Only mcpgate's own header names the session: the client's was checked
        // against its owner and replaced, and must never be trusted here.
        let session_id = session_id(&own_headers);
        let session_id = match session_id {
            Some(Ok(id)) => Some(id),
            // Unreadable or repeated: no session can be meant by it.
            Some(Err(())) => return Ok(response::session_not_found()),
            None => None,
        };
        match method {
            Method::POST => self.post(session_id, client_headers, body).await,
            Method::GET => Ok(self.get(session_id, client_headers)),
            Method::DELETE => Ok(self.delete(session_id).await),
            _ => {
                let mut response = response::empty(StatusCode::METHOD_NOT_ALLOWED);
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                Ok(response)
            }
        }
    }

    /// Child processes running (or being stopped) right now.
    pub fn open_children(&self) -> usize {
        self.registry.open_children()
    }

    /// Stops every child (stdin closed, then SIGTERM, then SIGKILL, a second apart)
    /// and waits until all have exited. New sessions are refused afterwards.
    pub async fn shutdown(&self) {
        self.registry.shutdown().await;
    }

    fn live_session(&self, id: &str) -> Option<Arc<Session>> {
        self.registry.get(id).filter(|session| session.is_alive())
    }

    async fn post(
        &self,
        session_id: Option<&str>,
        client_headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, UpstreamError> {
        let parsed = match message::parse(&body) {
            Ok(parsed) => parsed,
            Err(error) => {
                return Ok(json_value(
                    StatusCode::BAD_REQUEST,
                    &json_rpc_error(None, error.code, &error.message),
                ));
            }
        };
        let Some(session_id) = session_id else {
            if parsed.is_initialize() {
                return self.initialize(parsed, client_headers).await;
            }
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
            ));
        };
        let Some(session) = self.live_session(session_id) else {
            return Ok(response::session_not_found());
        };
        if parsed.mentions_initialize() {
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: Server already initialized",
            ));
        }
        session.touch();
        for message in &parsed.messages {
            if let Inbound::Notification {
                cancels: Some(key), ..
            } = message
            {
                session.cancelled_by_client(key);
            }
        }
        let timeout = self.limits.request_timeout;
        let deadline = Instant::now() + timeout;
        if !parsed.has_requests() {
            // Notifications and the client's answers to server requests.
            return match session.write(&parsed.lines, deadline).await {
                Ok(()) => Ok(response::accepted()),
                Err(WriteError::Closed) => Ok(response::session_not_found()),
                Err(WriteError::Timeout) => Err(UpstreamError::Timeout(timeout)),
            };
        }
        let Some(reply) = response::negotiate(client_headers) else {
            return Ok(response::not_acceptable(
                "application/json or text/event-stream",
            ));
        };
        let requests = registrations(&parsed);
        let (guard, mut rx) = match session.open_exchange(
            &requests,
            reply == Reply::Sse,
            EXCHANGE_QUEUE,
        ) {
            Ok(opened) => opened,
            Err(OpenError::Ended) => return Ok(response::session_not_found()),
            Err(OpenError::Duplicate(id)) => {
                // Answers are matched to requests by id alone: a second request
                // with a pending id would make both answers ambiguous.
                return Ok(json_value(
                    StatusCode::CONFLICT,
                    &json_rpc_error(
                        Some(&id),
                        -32600,
                        "Invalid Request: a request with this id is already pending in this session",
                    ),
                ));
            }
            Err(OpenError::TooMany(limit)) => {
                return Ok(response::gateway_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_pending_requests",
                    &format!("this session already has {limit} requests pending"),
                ));
            }
        };
        match session.write(&parsed.lines, deadline).await {
            Ok(()) => {}
            Err(WriteError::Closed) => return Ok(response::session_not_found()),
            Err(WriteError::Timeout) => return Err(UpstreamError::Timeout(timeout)),
        }
        let owed = owed(&parsed);
        if reply == Reply::Sse {
            return Ok(response::sse_stream(guard, rx, owed, deadline));
        }
        let gathered = response::gather(&mut rx, owed, deadline).await;
        drop(guard);
        let mut answers = gathered.answers;
        if gathered.timed_out {
            for id in &gathered.missing {
                session.send_cancelled(id, "request timed out");
            }
            if answers.is_empty() {
                return Err(UpstreamError::Timeout(timeout));
            }
            answers.extend(
                gathered
                    .missing
                    .iter()
                    .map(|id| response::timeout_answer(id, timeout)),
            );
        } else {
            let end = session.end_reason().unwrap_or(End::Exited);
            answers.extend(
                gathered
                    .missing
                    .iter()
                    .map(|id| response::ended_answer(id, &end)),
            );
        }
        Ok(response::json_reply(&answers, parsed.batch, &session.id))
    }

    /// A new session: a new child, its `initialize` answered before the session
    /// exists for anyone. A child that dies, stalls, or refuses the handshake leaves
    /// no session behind.
    async fn initialize(
        &self,
        parsed: Parsed,
        client_headers: &HeaderMap,
    ) -> Result<Response<Body>, UpstreamError> {
        let Some(reply) = response::negotiate(client_headers) else {
            return Ok(response::not_acceptable(
                "application/json or text/event-stream",
            ));
        };
        let Some(permit) = self.registry.reserve() else {
            return Ok(response::gateway_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_sessions",
                &format!(
                    "the MCP server already runs {} sessions (upstream.max_children), or is shutting down; try again later",
                    self.registry.max_children()
                ),
            ));
        };
        let session =
            Session::start(&self.launch, self.limits, &self.registry, permit).map_err(|error| {
                UpstreamError::Unreachable(format!(
                    "cannot start the MCP server {}: {error}",
                    self.launch.program.display()
                ))
            })?;
        let timeout = self.limits.request_timeout;
        let deadline = Instant::now() + timeout;
        let requests = registrations(&parsed);
        let exited = || {
            UpstreamError::Unreachable(
                "the MCP server process exited before answering initialize".to_owned(),
            )
        };
        let Ok((guard, mut rx)) = session.open_exchange(&requests, true, EXCHANGE_QUEUE) else {
            return Err(exited());
        };
        match session.write(&parsed.lines, deadline).await {
            Ok(()) => {}
            Err(WriteError::Closed) => return Err(exited()),
            Err(WriteError::Timeout) => {
                session.request_stop(End::Protocol("it did not read initialize in time".into()));
                return Err(UpstreamError::Timeout(timeout));
            }
        }
        let gathered = response::gather(&mut rx, owed(&parsed), deadline).await;
        drop(guard);
        if gathered.timed_out {
            session.request_stop(End::Protocol("it did not answer initialize in time".into()));
            return Err(UpstreamError::Timeout(timeout));
        }
        let Some(answer) = gathered.answers.first() else {
            // The channel closed: the child is gone (its exit is logged with stderr).
            return Err(exited());
        };
        let refused = serde_json::from_slice::<Value>(answer)
            .map(|answer| answer.get("error").is_some())
            .unwrap_or(true);
        // A refused handshake (say, an unsupported protocol version) opens no
        // session: the answer goes back without a session id and the child stops.
        let session_header = if refused {
            session.request_stop(End::NotInitialized);
            ""
        } else {
            session.id.as_str()
        };
        Ok(match reply {
            Reply::Json => response::json_reply(&gathered.answers, false, session_header),
            Reply::Sse => response::sse_reply(&gathered.messages, session_header),
        })
    }

    fn get(&self, session_id: Option<&str>, client_headers: &HeaderMap) -> Response<Body> {
        let Some(session_id) = session_id else {
            return refusal(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
            );
        };
        if !response::accepts_sse(client_headers) {
            return response::not_acceptable("text/event-stream");
        }
        let Some(session) = self.live_session(session_id) else {
            return response::session_not_found();
        };
        session.touch();
        match session.open_get(GET_QUEUE) {
            Some((guard, rx)) => response::get_stream(guard, rx),
            None if !session.is_alive() => response::session_not_found(),
            None => refusal(
                StatusCode::CONFLICT,
                -32000,
                "Conflict: Only one SSE stream is allowed per session",
            ),
        }
    }

    async fn delete(&self, session_id: Option<&str>) -> Response<Body> {
        let Some(session_id) = session_id else {
            return refusal(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
            );
        };
        let Some(session) = self.live_session(session_id) else {
            return response::session_not_found();
        };
        session.request_stop(End::Deleted);
        // Answered once the process is gone: a client (or test) that sees 200 can
        // rely on it.
        session.stopped().await;
        response::empty(StatusCode::OK)
    }
}

impl Drop for StdioUpstream {
    /// Children must not outlive the upstream that could reach them (a config
    /// reload that builds a new one, say): they are told to stop; their supervising
    /// tasks finish the job on the runtime.
    fn drop(&mut self) {
        self.registry.stop_all();
    }
}

/// The one `Mcp-Session-Id` value, `Err` when unreadable or repeated.
fn session_id(headers: &HeaderMap) -> Option<Result<&str, ()>> {
    let mut values = headers.get_all(SESSION_HEADER).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    Some(first.to_str().map_err(|_| ()))
}

fn registrations(parsed: &Parsed) -> Vec<(&Value, &IdKey, Option<&IdKey>)> {
    parsed
        .messages
        .iter()
        .filter_map(|message| match message {
            Inbound::Request {
                id,
                key,
                progress_token,
                ..
            } => Some((id, key, progress_token.as_ref())),
            _ => None,
        })
        .collect()
}

fn owed(parsed: &Parsed) -> Vec<(IdKey, Value)> {
    parsed
        .requests()
        .map(|(id, key)| (key.clone(), id.clone()))
        .collect()
}
