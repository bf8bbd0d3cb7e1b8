//! The handle the request path holds. A record first takes a slot of a semaphore sized
//! to `queue_capacity` (this is where requests wait when the writer falls behind), then
//! goes down an unbounded channel; commands go down the same channel without a slot,
//! so they never wait and are ordered with the records around them.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwapOption;
use tokio::sync::{Semaphore, watch};

use super::event::FacadeRecord;
use super::record::Record;
use super::target::Target;
use super::writer::{self, Message};
use crate::config::{AuditConfig, ConfigError, FsyncPolicy};
use crate::telemetry::metrics::metrics;

/// The audit log. Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    /// All that `record()` needs, swapped whole: the request path never waits on a lock.
    queue: ArcSwapOption<Queue>,
    /// Set by `close()`: a record after it is reported, not silently ignored.
    closed: AtomicBool,
    /// Serialises reconfigure, reopen and close.
    control: Mutex<Control>,
}

struct Queue {
    messages: mpsc::Sender<Message>,
    permits: Arc<Semaphore>,
}

#[derive(Default)]
struct Control {
    /// The config in force (the default is audit off).
    config: AuditConfig,
    /// The writer's queue; dropped by `close()` so the writer ends once in-flight records
    /// are in.
    messages: Option<mpsc::Sender<Message>>,
    /// Turns `true` when the writer has finished; kept after close so every `close()` waits.
    finished: Option<watch::Receiver<bool>>,
    permits: Option<(usize, Arc<Semaphore>)>,
}

impl Default for AuditLog {
    fn default() -> Self {
        Self::disabled()
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.shared.queue.load().is_some())
            .field("closed", &self.shared.closed.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Audit off: `record()` returns at once, nothing written.
    pub fn disabled() -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: ArcSwapOption::empty(),
                closed: AtomicBool::new(false),
                control: Mutex::new(Control::default()),
            }),
        }
    }

    /// Opens the target (a file in append mode, created 0o600 if missing; or stdout)
    /// and starts the writer. A disabled config gives the same as `disabled()`.
    pub fn start(config: &AuditConfig) -> Result<Self, ConfigError> {
        let log = Self::disabled();
        log.reconfigure(config)?;
        Ok(log)
    }

    /// Queues one record. When `queue_capacity` records are waiting to be written this
    /// waits: a record is never dropped. After `close()` the record is not written; an
    /// error naming its `request_id` is logged instead.
    pub async fn record(&self, record: Record) {
        self.queue(record.to_json(), "request_id", &record.request_id)
            .await;
    }

    /// Queues one record of the authorization-server façade, like `record()`: never
    /// dropped, waits when the queue is full.
    pub async fn facade(&self, record: FacadeRecord) {
        self.queue(record.to_json(), "event", record.event).await;
    }

    /// `what`/`which` name the record in the error logged when it cannot be queued.
    async fn queue(&self, line: String, what: &'static str, which: &str) {
        let Some(queue) = self.shared.queue.load_full() else {
            if self.shared.closed.load(Ordering::Acquire) {
                tracing::error!(
                    record = %format_args!("{what}={which}"),
                    "audit log already closed: record not written"
                );
                metrics().audit_write_error();
            }
            return;
        };
        // The slot is held until the writer has written the line (see `Batch`).
        let Ok(permit) = Arc::clone(&queue.permits).acquire_owned().await else {
            // The semaphore is never closed; kept total rather than trusted.
            tracing::error!(record = %format_args!("{what}={which}"), "audit queue closed: record not written");
            metrics().audit_write_error();
            return;
        };
        if queue.messages.send(Message::Line(line, permit)).is_err() {
            tracing::error!(
                record = %format_args!("{what}={which}"),
                "audit writer has stopped: record not written"
            );
            metrics().audit_write_error();
        }
    }

    /// Closes and reopens the file at the same path (SIGHUP, after logrotate moved it).
    /// Records queued before go to the old file or the new one; none is lost. If the
    /// path cannot be opened the old file stays in use and the reopen is retried. No-op
    /// for stdout or when audit is off.
    pub fn reopen(&self) {
        let control = self.control();
        if control.config.path.is_none() {
            return;
        }
        if let Some(messages) = &control.messages
            && messages.send(Message::Reopen).is_err()
        {
            tracing::error!("audit writer has stopped: cannot reopen the audit log");
        }
    }

    /// Applies a reloaded config: another target, fsync policy or queue capacity, or
    /// audit turned on or off. Records queued before go to the old target. On error the
    /// old target stays in use. Ignored after `close()`.
    pub fn reconfigure(&self, config: &AuditConfig) -> Result<(), ConfigError> {
        let mut control = self.control();
        if self.shared.closed.load(Ordering::Acquire) {
            tracing::debug!("audit log closed: reconfigure ignored");
            return Ok(());
        }
        // A reload that left the section alone keeps the file and the queue as they are.
        if control.config == *config {
            return Ok(());
        }
        // Opened here, not in the writer, so the caller gets the error and nothing changes.
        let Some(target) = Target::open(config)? else {
            self.shared.queue.store(None);
            if let Some(messages) = &control.messages {
                // The writer may be gone (it only stops on a panic): audit is off anyway.
                let _ = messages.send(Message::Retarget(None, config.fsync));
            }
            control.config = config.clone();
            return Ok(());
        };

        let capacity = config.queue_capacity.clamp(1, Semaphore::MAX_PERMITS);
        let permits = match &control.permits {
            // Kept when unchanged: records waiting for a slot keep their place.
            Some((current, permits)) if *current == capacity => Arc::clone(permits),
            _ => Arc::new(Semaphore::new(capacity)),
        };
        let messages = match &control.messages {
            Some(messages) => match messages.send(Message::Retarget(Some(target), config.fsync)) {
                Ok(()) => messages.clone(),
                // The writer died (it only stops on a panic): a new one takes over.
                Err(mpsc::SendError(message)) => {
                    Self::spawn(&mut control, message.into_target(), config.fsync)?
                }
            },
            None => Self::spawn(&mut control, Some(target), config.fsync)?,
        };
        control.permits = Some((capacity, Arc::clone(&permits)));
        control.config = config.clone();
        self.shared
            .queue
            .store(Some(Arc::new(Queue { messages, permits })));
        Ok(())
    }

    /// Writes and flushes (and fsyncs if the policy asks) everything queued, stops the
    /// writer and waits for it. Every record passed to `record()` before `close()` was
    /// called is written. Idempotent: later calls wait for the same writer.
    pub async fn close(&self) {
        let finished = {
            let mut control = self.control();
            self.shared.closed.store(true, Ordering::Release);
            self.shared.queue.store(None);
            // The writer ends when the last sender is gone: ours here, and those of
            // record() calls already under way (still waiting for a slot, maybe).
            control.messages = None;
            control.finished.clone()
        };
        if let Some(mut finished) = finished {
            // An error means the writer is gone, which is what is waited for.
            let _ = finished.wait_for(|done| *done).await;
        }
    }

    fn spawn(
        control: &mut Control,
        target: Option<Target>,
        fsync: FsyncPolicy,
    ) -> Result<mpsc::Sender<Message>, ConfigError> {
        let (messages, receiver) = mpsc::channel();
        let finished = writer::spawn(target, fsync, receiver).map_err(|error| {
            ConfigError::invalid("audit", format!("cannot start the audit writer: {error}"))
        })?;
        control.messages = Some(messages.clone());
        control.finished = Some(finished);
        Ok(messages)
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        // Control holds no invariant a panic could break half-way.
        self.shared
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
