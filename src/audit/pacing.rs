//! When the writer acts on its own: fsync per policy, retrying a failed write, and
//! rate-limiting error logs. Plain state over `Instant`s handed in by the caller, so
//! every decision is tested without a clock.

use std::time::{Duration, Instant};

use crate::config::FsyncPolicy;

/// Decides when written bytes are forced to disk.
#[derive(Debug)]
pub(super) struct FsyncSchedule {
    policy: FsyncPolicy,
    last_sync: Instant,
    /// Bytes reached the OS since the last fsync.
    dirty: bool,
}

impl FsyncSchedule {
    pub(super) fn new(policy: FsyncPolicy, now: Instant) -> Self {
        Self {
            policy,
            last_sync: now,
            dirty: false,
        }
    }

    pub(super) fn wrote(&mut self) {
        self.dirty = true;
    }

    pub(super) fn synced(&mut self, now: Instant) {
        self.dirty = false;
        self.last_sync = now;
    }

    /// A failed fsync is retried one period later, not at once: a file that refuses
    /// fsync would otherwise keep the writer spinning.
    pub(super) fn sync_failed(&mut self, now: Instant) {
        self.last_sync = now;
    }

    /// After a batch, or when woken by `wake_at`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.dirty
            && match self.policy {
                FsyncPolicy::Never => false,
                FsyncPolicy::Always => true,
                FsyncPolicy::Every(period) => {
                    now.saturating_duration_since(self.last_sync) >= period
                }
            }
    }

    /// With `Every`, the last records of a burst must not wait for the next burst to
    /// reach the disk: the writer wakes up by itself then.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        match self.policy {
            FsyncPolicy::Every(period) if self.dirty => self.last_sync.checked_add(period),
            _ => None,
        }
    }

    /// Before a file is closed (shutdown, reopen, switch): anything not yet synced is,
    /// unless the policy leaves it to the OS.
    pub(super) fn due_at_close(&self) -> bool {
        self.dirty && self.policy != FsyncPolicy::Never
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Exponential backoff between attempts to write to a failing target.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Option<Instant>,
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: None,
            delay: FIRST_RETRY,
        }
    }
}

impl Backoff {
    pub(super) fn failed(&mut self, now: Instant) {
        self.next = now.checked_add(self.delay);
        self.delay = (self.delay * 2).min(MAX_RETRY);
    }

    pub(super) fn succeeded(&mut self) {
        *self = Self::default();
    }

    pub(super) fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    pub(super) fn wake_at(&self) -> Option<Instant> {
        self.next
    }
}

/// At most one error log per interval: a full disk fails every batch, and the logs
/// usually live on that same disk.
#[derive(Debug)]
pub(super) struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(errors suppressed since the last log)` when this one should be logged.
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        let open = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if open {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn never_syncs_only_flushes() {
        let t0 = Instant::now();
        let mut schedule = FsyncSchedule::new(FsyncPolicy::Never, t0);
        schedule.wrote();
        assert!(!schedule.due(t0 + 3600 * SEC));
        assert!(!schedule.due_at_close());
        assert_eq!(schedule.wake_at(), None);
    }

    #[test]
    fn always_syncs_after_every_batch_that_wrote() {
        let t0 = Instant::now();
        let mut schedule = FsyncSchedule::new(FsyncPolicy::Always, t0);
        assert!(!schedule.due(t0), "nothing written, nothing to sync");
        schedule.wrote();
        assert!(schedule.due(t0));
        assert!(schedule.due_at_close());
        schedule.synced(t0);
        assert!(!schedule.due(t0));
        assert_eq!(schedule.wake_at(), None);
    }

    #[test]
    fn every_waits_for_the_period_and_wakes_the_writer_for_it() {
        let t0 = Instant::now();
        let mut schedule = FsyncSchedule::new(FsyncPolicy::Every(SEC), t0);
        schedule.wrote();
        assert!(!schedule.due(t0 + SEC / 2));
        assert_eq!(schedule.wake_at(), Some(t0 + SEC));
        assert!(schedule.due(t0 + SEC));
        assert!(schedule.due_at_close(), "close syncs whatever is pending");
        schedule.synced(t0 + SEC);
        assert_eq!(schedule.wake_at(), None, "clean: no reason to wake");
        assert!(!schedule.due_at_close());
    }

    #[test]
    fn a_failed_sync_is_retried_a_period_later() {
        let t0 = Instant::now();
        let mut schedule = FsyncSchedule::new(FsyncPolicy::Every(SEC), t0);
        schedule.wrote();
        schedule.sync_failed(t0 + SEC);
        assert!(!schedule.due(t0 + SEC));
        assert_eq!(schedule.wake_at(), Some(t0 + 2 * SEC));
        assert!(schedule.due(t0 + 2 * SEC));
    }

    #[test]
    fn backoff_doubles_up_to_a_cap_and_resets_on_success() {
        let t0 = Instant::now();
        let mut backoff = Backoff::default();
        assert!(backoff.ready(t0));
        backoff.failed(t0);
        assert!(!backoff.ready(t0));
        assert_eq!(backoff.wake_at(), Some(t0 + FIRST_RETRY));
        backoff.failed(t0);
        assert_eq!(backoff.wake_at(), Some(t0 + FIRST_RETRY * 2));
        for _ in 0..20 {
            backoff.failed(t0);
        }
        assert_eq!(backoff.wake_at(), Some(t0 + MAX_RETRY));
        backoff.succeeded();
        assert!(backoff.ready(t0));
        assert_eq!(backoff.wake_at(), None);
    }

    #[test]
    fn limiter_logs_once_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(10 * SEC);
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.allow(t0 + SEC), None);
        assert_eq!(limiter.allow(t0 + 9 * SEC), None);
        assert_eq!(limiter.allow(t0 + 10 * SEC), Some(2));
        assert_eq!(limiter.allow(t0 + 25 * SEC), Some(0));
    }
}
