//! One MCP session = one child process. The session owns the child's pipes through
//! four tasks (stdin writer, stdout reader, stderr logger, supervisor) and ends when
//! the child exits, whatever the reason: DELETE, idle timeout, crash, a protocol
//! violation, or gateway shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use super::child::{self, Process, StderrTail};
use super::config::{Launch, Limits};
use super::framing::{Line, Lines, truncate_for_log};
use super::message::{self, IdKey, Outbound};
use super::router::{Destination, Event, OpenError, Router};
use crate::telemetry::metrics::{GaugeGuard, metrics};

/// Longest line read from the child's stdout: one message must fit in memory, a
/// child that never ends a line must not take all of it.
pub(super) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Requests pending at once in one session.
pub(super) const MAX_PENDING: usize = 256;
/// Lines waiting for the stdin writer.
const WRITE_QUEUE: usize = 64;
/// How long the reader may still deliver the child's last words after it exited
/// (a grandchild holding stdout open must not keep the session alive).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// A non-JSON stdout line is logged at most this long.
const NOISE_LOG_BYTES: usize = 512;

/// Why a session ended. The text is what pending requests are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// The child exited on its own (crash or otherwise).
    Exited,
    Deleted,
    Idle,
    Shutdown,
    /// The child answered `initialize` with an error: no session was opened.
    NotInitialized,
    /// The child broke the stdio framing or closed stdout: it was stopped.
    Protocol(String),
}

impl End {
    pub(super) fn message(&self) -> String {
        match self {
            Self::Exited => "MCP server process exited".to_owned(),
            Self::Deleted => "MCP session deleted".to_owned(),
            Self::Idle => "MCP session ended after being idle".to_owned(),
            Self::Shutdown => "MCP server stopped: the gateway is shutting down".to_owned(),
            Self::NotInitialized => "MCP server refused to initialize".to_owned(),
            Self::Protocol(why) => format!("MCP server process stopped: {why}"),
        }
    }
}

/// The sessions alive in one stdio upstream, and the budget of children.
pub(super) struct Registry {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    permits: Arc<Semaphore>,
    max_children: usize,
    closed: AtomicBool,
}

impl Registry {
    pub(super) fn new(max_children: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(max_children)),
            max_children,
            closed: AtomicBool::new(false),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map().get(id).cloned()
    }

    fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.map().remove(id)
    }

    /// A child slot, if one is free and the upstream is not shutting down. Held
    /// until the child has exited and been reaped, so the count is of processes.
    pub(super) fn reserve(&self) -> Option<OwnedSemaphorePermit> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    pub(super) fn max_children(&self) -> usize {
        self.max_children
    }

    /// Processes alive (or being stopped) right now.
    pub(super) fn open_children(&self) -> usize {
        self.max_children
            .saturating_sub(self.permits.available_permits())
    }

    /// Tells every child to stop, without waiting.
    pub(super) fn stop_all(&self) {
        self.closed.store(true, Ordering::Release);
        for session in self.map().values() {
            session.request_stop(End::Shutdown);
        }
    }

    /// Stops every child and waits until each has exited. New sessions are refused
    /// from now on.
    pub(super) async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let sessions: Vec<Arc<Session>> = self.map().drain().map(|(_, session)| session).collect();
        for session in &sessions {
            session.request_stop(End::Shutdown);
        }
        futures_util::future::join_all(sessions.iter().map(|session| session.stopped())).await;
    }
}

/// One live child and what is routed to and from it.
pub(super) struct Session {
    pub id: String,
    /// Enough of the id to tell sessions apart in logs, not enough to use it.
    pub short: String,
    pub pid: Option<u32>,
    writer: mpsc::Sender<Bytes>,
    router: Mutex<Router>,
    touched: Mutex<Instant>,
    stop: watch::Sender<Option<End>>,
    /// The reason the session ended, once it has.
    ended: Mutex<Option<End>>,
    done: watch::Receiver<bool>,
    pub limits: Limits,
}

/// Why lines could not be handed to the writer.
#[derive(Debug)]
pub(super) enum WriteError {
    /// The writer is gone: the child is exiting.
    Closed,
    /// The child did not read its stdin in time.
    Timeout,
}

impl Session {
    /// Spawns the child and its tasks, and registers the session.
    pub(super) fn start(
        launch: &Launch,
        limits: Limits,
        registry: &Arc<Registry>,
        permit: OwnedSemaphorePermit,
    ) -> std::io::Result<Arc<Self>> {
        let id = crate::random_id();
        let short = id.chars().take(8).collect::<String>();
        let Process {
            child,
            stdin,
            stdout,
            stderr,
            pid,
        } = child::spawn(launch)?;
        let (writer, lines) = mpsc::channel(WRITE_QUEUE);
        let (closing_tx, closing_rx) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(None);
        let (done_tx, done) = watch::channel(false);
        let session = Arc::new(Self {
            id: id.clone(),
            short: short.clone(),
            pid,
            writer,
            router: Mutex::new(Router::new(MAX_PENDING)),
            touched: Mutex::new(Instant::now()),
            stop,
            ended: Mutex::new(None),
            done,
            limits,
        });
        tracing::info!(
            session = %short,
            pid,
            program = %launch.program.display(),
            "MCP server process started"
        );
        let tail = StderrTail::default();
        let writer_task = tokio::spawn(child::write_lines(stdin, lines, closing_rx, short.clone()));
        tokio::spawn(child::log_stderr(stderr, short, tail.clone()));
        let reader_task = tokio::spawn(read_stdout(session.clone(), stdout));
        registry.map().insert(id, session.clone());
        if registry.closed.load(Ordering::Acquire) {
            // Shutdown began while this child was starting: it missed the sweep.
            session.request_stop(End::Shutdown);
        }
        tokio::spawn(supervise(Supervised {
            session: session.clone(),
            registry: registry.clone(),
            child,
            stop: stop_rx,
            closing: closing_tx,
            writer_task,
            reader_task,
            tail,
            done: done_tx,
            permit,
            counted: metrics().stdio_process_started(),
        }));
        Ok(session)
    }

    fn router(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request arrived or a stream closed: the idle clock restarts.
    pub(super) fn touch(&self) {
        *self.touched.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle_since(&self) -> Instant {
        *self.touched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a POST's requests; the returned guard forgets them when dropped.
    pub(super) fn open_exchange(
        self: &Arc<Self>,
        requests: &[(&Value, &IdKey, Option<&IdKey>)],
        streaming: bool,
        capacity: usize,
    ) -> Result<(ExchangeGuard, mpsc::Receiver<Event>), OpenError> {
        let (tx, rx) = mpsc::channel(capacity);
        let exchange = self.router().open(requests, streaming, tx)?;
        Ok((
            ExchangeGuard {
                session: self.clone(),
                exchange,
            },
            rx,
        ))
    }

    pub(super) fn open_get(
        self: &Arc<Self>,
        capacity: usize,
    ) -> Option<(GetGuard, mpsc::Receiver<Event>)> {
        let (tx, rx) = mpsc::channel(capacity);
        let token = self.router().open_get(tx)?;
        Some((
            GetGuard {
                session: self.clone(),
                token,
            },
            rx,
        ))
    }

    /// The client cancelled one of its pending requests: its stream stops waiting.
    pub(super) fn cancelled_by_client(&self, key: &IdKey) {
        let tx = self.router().cancel(key);
        if let Some(tx) = tx {
            // Best effort: a full stream will still end at its deadline.
            let _ = tx.try_send(Event::Cancelled(key.clone()));
        }
    }

    /// Hands lines to the stdin writer in order, waiting at most until `deadline`.
    pub(super) async fn write(&self, lines: &[Bytes], deadline: Instant) -> Result<(), WriteError> {
        for line in lines {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.writer.send_timeout(line.clone(), remaining).await {
                Ok(()) => {}
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => return Err(WriteError::Timeout),
                Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(WriteError::Closed),
            }
        }
        Ok(())
    }

    /// Tells the child a request is abandoned (its answer took too long), as an SDK
    /// client would; a server that honours it stops working on it.
    pub(super) fn send_cancelled(&self, id: &Value, reason: &str) {
        let notification = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": reason},
        });
        // Best effort, never waiting: the child may be the reason things are stuck.
        let _ = self.writer.try_send(message::to_line(&notification));
    }

    /// Why the session ended, once it has.
    pub(super) fn end_reason(&self) -> Option<End> {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts stopping the child; new requests are refused from now on. The first
    /// reason given is the one reported.
    pub(super) fn request_stop(&self, why: End) {
        self.router().refuse_new();
        self.stop.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(why);
            true
        });
    }

    /// Resolves once the child has exited and the session is gone.
    pub(super) async fn stopped(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }

    pub(super) fn is_alive(&self) -> bool {
        !*self.done.borrow() && self.stop.borrow().is_none()
    }

    /// Routes one message from the child.
    async fn deliver(&self, value: Value) {
        let kind = message::classify_outbound(&value);
        if kind == Outbound::Invalid {
            tracing::info!(
                session = %self.short,
                "stdio server {} sent a line that is not a JSON-RPC message; skipped",
                self.short
            );
            return;
        }
        let destination = self.router().route(&kind);
        match destination {
            Destination::Send(tx, answers) => {
                let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
                // Awaited: a slow reader slows its own child, and nobody else's.
                let _ = tx.send(Event::Message { json, answers }).await;
            }
            Destination::Reject(id) => {
                tracing::debug!(session = %self.short, "server request with no stream to carry it; refused");
                let refusal = json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": -32603,
                        "message": "no client stream is open to deliver this request",
                    },
                });
                // Never awaited here: the writer may be waiting on a child that is
                // itself waiting for this reader.
                let _ = self.writer.try_send(message::to_line(&refusal));
            }
            Destination::Drop(why) => {
                tracing::debug!(session = %self.short, "message from the stdio server dropped: {why}");
            }
        }
    }
}

/// A POST's registration; dropping it (stream finished, client gone) forgets the
/// requests it still waits for.
pub(super) struct ExchangeGuard {
    pub session: Arc<Session>,
    exchange: u64,
}

impl Drop for ExchangeGuard {
    fn drop(&mut self) {
        self.session.router().close(self.exchange);
        self.session.touch();
    }
}

pub(super) struct GetGuard {
    pub session: Arc<Session>,
    token: u64,
}

impl Drop for GetGuard {
    fn drop(&mut self) {
        self.session.router().close_get(self.token);
        // The idle clock starts when the last reader leaves, not at the last request.
        self.session.touch();
    }
}

async fn read_stdout(session: Arc<Session>, stdout: tokio::process::ChildStdout) {
    let mut lines = Lines::new(stdout, MAX_LINE_BYTES);
    loop {
        let line = match lines.next().await {
            Ok(Some(Line::Complete(line))) => line,
            Ok(Some(Line::TooLong(_))) => {
                tracing::warn!(
                    session = %session.short,
                    "stdio server {} wrote a line over {MAX_LINE_BYTES} bytes; stopping it",
                    session.short
                );
                session.request_stop(End::Protocol(format!(
                    "it sent a message over {MAX_LINE_BYTES} bytes"
                )));
                return;
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(session = %session.short, "cannot read the stdio server's stdout: {error}");
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(&line) {
            // A 2025-03-26 server may answer a batch on one line.
            Ok(Value::Array(items)) => {
                for item in items {
                    session.deliver(item).await;
                }
            }
            Ok(value) => session.deliver(value).await,
            Err(_) => {
                // Banners and stray prints happen; they are not messages.
                let text = String::from_utf8_lossy(&line);
                tracing::info!(
                    session = %session.short,
                    "stdio server {} printed a non-JSON line on stdout (skipped): {}",
                    session.short,
                    truncate_for_log(&text, NOISE_LOG_BYTES)
                );
            }
        }
    }
}

struct Supervised {
    session: Arc<Session>,
    registry: Arc<Registry>,
    child: tokio::process::Child,
    stop: watch::Receiver<Option<End>>,
    closing: watch::Sender<bool>,
    writer_task: JoinHandle<()>,
    reader_task: JoinHandle<()>,
    tail: StderrTail,
    done: watch::Sender<bool>,
    /// Released when this task ends: after the child has been reaped.
    permit: OwnedSemaphorePermit,
    /// The `mcpgate_stdio_processes` gauge, for as long as the permit.
    counted: GaugeGuard,
}

/// Waits for whichever comes first: the child exiting, a stop request, its stdout
/// closing, or the idle deadline; then stops the child and ends the session.
async fn supervise(mut job: Supervised) {
    let session = job.session.clone();
    let idle = session.limits.idle_timeout;
    let mut reader_done = false;
    // While requests are pending or a GET stream is open the idle clock is stale;
    // it is looked at again one idle period later rather than spun on.
    let mut recheck = Instant::now();
    let (requested, status) = loop {
        let idle_deadline = (session.idle_since() + idle).max(recheck);
        let wake = tokio::select! {
            status = job.child.wait() => Wake::Exited(status),
            () = stop_requested(&mut job.stop) => Wake::Stop,
            _ = &mut job.reader_task, if !reader_done => Wake::StdoutClosed,
            () = tokio::time::sleep_until(idle_deadline.into()) => Wake::IdleCheck,
        };
        match wake {
            Wake::Exited(status) => break (None, status),
            Wake::Stop => {
                let why = job.stop.borrow().clone().unwrap_or(End::Shutdown);
                break (Some(why), stop(&mut job).await);
            }
            Wake::StdoutClosed => {
                reader_done = true;
                // Stdout closed: usually the child is exiting; give it a moment
                // to be seen as an exit (a crash) rather than stopped by us.
                if let Ok(status) = tokio::time::timeout(DRAIN_GRACE, job.child.wait()).await {
                    break (None, status);
                }
                if job.stop.borrow().is_none() {
                    session.request_stop(End::Protocol("it closed its stdout".to_owned()));
                }
            }
            Wake::IdleCheck => {
                if !session.router().is_idle() {
                    // Busy: the end of the request or stream restarts the clock.
                    recheck = Instant::now() + idle;
                } else if session.idle_since() + idle <= Instant::now() {
                    session.request_stop(End::Idle);
                }
                // Else it was used since this deadline was set: the next deadline
                // follows from that use (not a whole period from now, which could
                // stretch the wait to twice `idle_timeout`).
            }
        }
    };
    // No new requests, and no route to this session from now on.
    session.router().refuse_new();
    job.registry.remove(&session.id);
    // Let the reader deliver what the child wrote before it died (its last answer
    // may be in the pipe), but not forever.
    if !reader_done
        && tokio::time::timeout(DRAIN_GRACE, &mut job.reader_task)
            .await
            .is_err()
    {
        job.reader_task.abort();
    }
    let _ = job.closing.send(true);
    child::kill_stragglers(session.pid);
    // A stop asked for while the child was already dying still names the cause.
    let why = requested
        .or_else(|| job.stop.borrow().clone())
        .unwrap_or(End::Exited);
    *session.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
    // Every stream's channel closes; each answers its own pending requests with the
    // reason above.
    session.router().end();
    let status = match &status {
        Ok(status) => status.to_string(),
        Err(error) => format!("unknown ({error})"),
    };
    match why {
        End::Exited | End::Protocol(_) => tracing::warn!(
            session = %session.short,
            pid = session.pid,
            "MCP server process ended ({}): {status}; last stderr lines: {}",
            why.message(),
            child::tail_text(&job.tail)
        ),
        _ => tracing::info!(
            session = %session.short,
            pid = session.pid,
            "MCP server process stopped ({}): {status}",
            why.message()
        ),
    }
    // The slot and the gauge go before "done": whoever waits for it (a DELETE)
    // then sees the process gone everywhere.
    drop(job.permit);
    drop(job.counted);
    let _ = job.done.send(true);
}

enum Wake {
    Exited(std::io::Result<std::process::ExitStatus>),
    Stop,
    StdoutClosed,
    IdleCheck,
}

async fn stop_requested(stop: &mut watch::Receiver<Option<End>>) {
    // The sender lives in the session, which outlives this task's use of it.
    let _ = stop.wait_for(Option::is_some).await;
}

/// The MCP stdio shutdown sequence: close stdin, wait, SIGTERM, wait, SIGKILL.
async fn stop(job: &mut Supervised) -> std::io::Result<std::process::ExitStatus> {
    let _ = job.closing.send(true);
    // The writer drops stdin as it returns; it returns promptly on `closing`.
    let _ = tokio::time::timeout(child::STOP_GRACE, &mut job.writer_task).await;
    child::terminate(&mut job.child, job.session.pid).await
}
