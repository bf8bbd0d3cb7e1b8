//! The writer thread: blocking I/O off the async runtime. It takes everything queued,
//! writes it as one batch, then fsyncs per policy. Commands travel in the same queue as
//! records, so "before" and "after" a reopen or a switch mean queue order.

use std::fmt;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, watch};

use super::batch::Batch;
use super::pacing::{Backoff, FsyncSchedule, LogLimiter};
use super::target::{Target, open_file};
use crate::config::FsyncPolicy;
use crate::telemetry::metrics::metrics;

/// What the writer is asked to do, in queue order.
#[derive(Debug)]
pub(super) enum Message {
    /// One serialised record (without its newline) and its place in the queue.
    Line(String, OwnedSemaphorePermit),
    /// Close and reopen the file at the same path (logrotate).
    Reopen,
    /// A config reload: a target already opened by the caller (`None`: audit off).
    Retarget(Option<Target>, FsyncPolicy),
}

impl Message {
    /// The target a `Retarget` carried, back from a failed send.
    pub(super) fn into_target(self) -> Option<Target> {
        match self {
            Self::Retarget(target, _) => target,
            Self::Line(..) | Self::Reopen => None,
        }
    }
}

/// A batch stops growing here so that a steady stream of records still gets flushed.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Attempts at shutdown before records on a failing target are given up (about 3 s of
/// backoff): a full disk must not stop the process from exiting.
const SHUTDOWN_ATTEMPTS: u32 = 6;

const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the writer thread; the receiver turns `true` once it has finished (after the
/// queue's last sender is gone and everything was written).
pub(super) fn spawn(
    target: Option<Target>,
    fsync: FsyncPolicy,
    messages: Receiver<Message>,
) -> std::io::Result<watch::Receiver<bool>> {
    let (stopped, finished) = watch::channel(false);
    let writer = Writer::new(target, fsync, Instant::now());
    thread::Builder::new()
        .name("audit-writer".to_owned())
        .spawn(move || {
            // Signals even if the thread unwinds, so close() never waits forever.
            let _stopped = Stopped(stopped);
            writer.run(&messages);
        })?;
    Ok(finished)
}

struct Stopped(watch::Sender<bool>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

#[derive(Debug)]
pub(super) struct Writer {
    target: Option<Target>,
    policy: FsyncPolicy,
    fsync: FsyncSchedule,
    batch: Batch,
    retry: Backoff,
    /// A reopen failed; it is tried again before each write, the old file is used meanwhile.
    reopen_pending: bool,
    errors: LogLimiter,
    shutdown_attempts: u32,
}

impl Writer {
    pub(super) fn new(target: Option<Target>, policy: FsyncPolicy, now: Instant) -> Self {
        Self {
            target,
            policy,
            fsync: FsyncSchedule::new(policy, now),
            batch: Batch::default(),
            retry: Backoff::default(),
            reopen_pending: false,
            errors: LogLimiter::new(ERROR_LOG_INTERVAL),
            shutdown_attempts: SHUTDOWN_ATTEMPTS,
        }
    }

    pub(super) fn run(mut self, messages: &Receiver<Message>) {
        loop {
            let first = match self.wake_at() {
                None => messages.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => messages.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match first {
                Ok(message) => {
                    self.handle(message);
                    while self.batch.bytes() < MAX_BATCH_BYTES {
                        match messages.try_recv() {
                            Ok(message) => self.handle(message),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone: close() was called (or every handle dropped).
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.write_out(false);
        }
        self.finish();
    }

    /// When the writer must act even if nothing arrives: a retry or an fsync.
    fn wake_at(&self) -> Option<Instant> {
        let retry = if self.batch.is_empty() {
            None
        } else {
            self.retry.wake_at()
        };
        match (retry, self.fsync.wake_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn handle(&mut self, message: Message) {
        match message {
            Message::Line(line, permit) => {
                // Audit was turned off with this record already on its way: dropping it
                // (and its permit) is what "off" means.
                if self.target.is_some() {
                    self.batch.push(&line, permit);
                }
            }
            Message::Reopen => {
                self.write_out(true);
                self.reopen_pending = true;
                self.try_reopen();
            }
            Message::Retarget(target, policy) => {
                self.write_out(true);
                self.close_target();
                self.target = target;
                self.policy = policy;
                self.reopen_pending = false;
                self.switched();
                if self.target.is_none() {
                    let lost = self.batch.discard();
                    if lost > 0 {
                        tracing::error!(
                            lost,
                            "audit log turned off with {lost} records its old target refused: they are lost"
                        );
                    }
                }
            }
        }
    }

    /// Writes the batch unless a failed target is still backing off (`force` skips the
    /// wait), then fsyncs if the policy says so.
    fn write_out(&mut self, force: bool) {
        let now = Instant::now();
        if !self.batch.is_empty() && (force || self.retry.ready(now)) {
            if self.reopen_pending {
                self.try_reopen();
            }
            self.write_batch(now);
        }
        if self.fsync.due(now) {
            self.sync(now);
        }
    }

    fn write_batch(&mut self, now: Instant) {
        let Some(target) = &mut self.target else {
            return;
        };
        let (done, result) = target.write(&mut self.batch);
        self.fsync.wrote();
        if done > 0 {
            metrics().audit_written(done as u64);
        }
        match result {
            Ok(()) => self.retry.succeeded(),
            Err(error) => {
                metrics().audit_write_error();
                self.retry.failed(now);
                self.report(now, format_args!("cannot write: {error}"));
            }
        }
    }

    fn sync(&mut self, now: Instant) {
        let Some(target) = &self.target else {
            return;
        };
        match target.sync() {
            Ok(()) => self.fsync.synced(now),
            Err(error) => {
                metrics().audit_write_error();
                self.fsync.sync_failed(now);
                self.report(now, format_args!("cannot fsync: {error}"));
            }
        }
    }

    fn try_reopen(&mut self) {
        let Some(Target::File { path, .. }) = &self.target else {
            self.reopen_pending = false;
            return;
        };
        match open_file(path) {
            Ok(file) => {
                let path = path.clone();
                self.close_target();
                self.target = Some(Target::File { path, file });
                self.reopen_pending = false;
                self.switched();
            }
            Err(error) => {
                let message = format!("cannot reopen {}: {error}", path.display());
                metrics().audit_write_error();
                self.report(
                    Instant::now(),
                    format_args!("{message}; still writing to the old file"),
                );
            }
        }
    }

    /// Before the current file is let go: what was written reaches the disk if the
    /// policy asks for it.
    fn close_target(&mut self) {
        if self.fsync.due_at_close() {
            self.sync(Instant::now());
        }
    }

    /// A fresh target: nothing on it to sync, no reason to wait before writing to it.
    fn switched(&mut self) {
        let now = Instant::now();
        self.fsync = FsyncSchedule::new(self.policy, now);
        self.retry.succeeded();
        if self.batch.restart_line() {
            tracing::warn!(
                "audit log: a record cut short on the old target is written whole to the new one"
            );
        }
    }

    /// The queue is closed: write what is left (retrying a failing target a few times),
    /// then fsync. Returns how many records had to be given up.
    pub(super) fn finish(mut self) -> usize {
        let mut attempts = 0;
        let mut lost = 0;
        while !self.batch.is_empty() {
            if self.reopen_pending {
                self.try_reopen();
            }
            self.write_batch(Instant::now());
            if self.batch.is_empty() {
                break;
            }
            attempts += 1;
            if attempts >= self.shutdown_attempts {
                lost = self.batch.discard();
                tracing::error!(
                    lost,
                    "audit log closed with {lost} records its target refused: they are lost"
                );
                break;
            }
            if let Some(at) = self.retry.wake_at() {
                thread::sleep(at.saturating_duration_since(Instant::now()));
            }
        }
        self.close_target();
        lost
    }

    fn report(&mut self, now: Instant, what: fmt::Arguments<'_>) {
        if let Some(suppressed) = self.errors.allow(now) {
            tracing::error!(
                pending = self.batch.lines(),
                suppressed,
                "audit log: {what}; records are kept and retried"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    fn file_target(path: &Path) -> Option<Target> {
        Some(Target::File {
            path: path.to_owned(),
            file: open_file(path).expect("open test file"),
        })
    }

    fn line(permits: &Arc<Semaphore>, text: &str) -> Message {
        let permit = Arc::clone(permits)
            .try_acquire_owned()
            .expect("test permit");
        Message::Line(text.to_owned(), permit)
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read test file")
    }

    #[test]
    fn reopen_splits_at_its_place_in_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let permits = Arc::new(Semaphore::new(4));
        let mut writer = Writer::new(file_target(&path), FsyncPolicy::Never, Instant::now());

        writer.handle(line(&permits, "a"));
        std::fs::rename(&path, &rotated).expect("rename");
        // One drain: both lines and the reopen arrive in the same batch.
        writer.handle(Message::Reopen);
        writer.handle(line(&permits, "b"));
        assert_eq!(writer.finish(), 0);

        assert_eq!(read(&rotated), "a\n");
        assert_eq!(read(&path), "b\n");
        assert_eq!(permits.available_permits(), 4);
    }

    #[test]
    fn records_refused_by_a_full_disk_go_to_the_next_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("audit.jsonl");
        let permits = Arc::new(Semaphore::new(4));
        let full = file_target(Path::new("/dev/full"));
        let mut writer = Writer::new(full, FsyncPolicy::Always, Instant::now());

        writer.handle(line(&permits, "a"));
        writer.handle(line(&permits, "b"));
        writer.write_out(true);
        assert_eq!(writer.batch.lines(), 2, "kept, not dropped");
        assert_eq!(
            permits.available_permits(),
            2,
            "and still holding the queue"
        );

        writer.handle(Message::Retarget(file_target(&good), FsyncPolicy::Always));
        writer.write_out(false);
        assert!(writer.batch.is_empty());
        assert_eq!(read(&good), "a\nb\n");
        assert_eq!(writer.finish(), 0);
    }

    #[test]
    fn shutdown_on_a_failing_target_gives_up_and_counts() {
        let permits = Arc::new(Semaphore::new(4));
        let full = file_target(Path::new("/dev/full"));
        let mut writer = Writer::new(full, FsyncPolicy::Never, Instant::now());
        writer.shutdown_attempts = 1;
        for text in ["a", "b", "c"] {
            writer.handle(line(&permits, text));
        }
        assert_eq!(writer.finish(), 3);
        assert_eq!(permits.available_permits(), 4);
    }

    #[test]
    fn turning_audit_off_writes_what_came_before_and_drops_what_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let permits = Arc::new(Semaphore::new(4));
        let mut writer = Writer::new(file_target(&path), FsyncPolicy::Never, Instant::now());

        writer.handle(line(&permits, "before"));
        writer.handle(Message::Retarget(None, FsyncPolicy::Never));
        writer.handle(line(&permits, "after"));
        assert_eq!(writer.finish(), 0);
        assert_eq!(read(&path), "before\n");
        assert_eq!(permits.available_permits(), 4);
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).expect("mkdir");
        let path = sub.join("audit.jsonl");
        let moved = dir.path().join("moved");
        let permits = Arc::new(Semaphore::new(4));
        let mut writer = Writer::new(file_target(&path), FsyncPolicy::Never, Instant::now());

        // The directory is gone from under the path: reopen cannot create the file.
        std::fs::rename(&sub, &moved).expect("rename dir");
        writer.handle(Message::Reopen);
        assert!(writer.reopen_pending);
        writer.handle(line(&permits, "kept"));
        assert_eq!(writer.finish(), 0);
        assert_eq!(read(&moved.join("audit.jsonl")), "kept\n");
    }
}
