//! Prometheus metrics, process-wide so that counters survive config reloads.
//! (Stub: the recording methods are filled in with the admin endpoints.)

use crate::audit::Record;

/// Every metric mcpgate exports.
pub struct Metrics {}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| Metrics {});
    &METRICS
}

impl Metrics {
    /// One decided request (every audit record passes through here).
    pub fn request(&self, _record: &Record) {}

    /// The upstream failed to answer (`unreachable`, `timeout`).
    pub fn upstream_error(&self, _kind: &'static str) {}

    /// A config reload was tried.
    pub fn reload(&self, _ok: bool) {}

    /// Audit records written, and failures to write them.
    pub fn audit_written(&self, _records: u64) {}
    pub fn audit_write_error(&self) {}

    /// An SSE stream to a client opened; it counts as open until the guard drops.
    pub fn stream_opened(&self) -> StreamGuard {
        StreamGuard {}
    }

    /// A session was created by `initialize` (its id from the upstream's answer) or
    /// ended by DELETE.
    pub fn session_opened(&self, _session_id: &str) {}
    pub fn session_closed(&self, _session_id: &str) {}

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        String::new()
    }
}

/// Keeps an SSE stream counted as open.
pub struct StreamGuard {}
