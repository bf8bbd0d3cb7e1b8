//! The audit log: one JSON line per decision, written by a dedicated writer behind a
//! bounded queue (requests wait when it is full; records are never dropped).
//!
//! `handle` is what requests hold; `writer` is the thread doing the I/O, `batch` its
//! byte-exact accounting of what is written, `target` the file or stdout, `pacing` the
//! timing decisions (fsync, retries, log rate).

mod batch;
mod config;
mod event;
mod handle;
mod line;
mod pacing;
mod record;
mod target;
mod writer;

pub use event::FacadeRecord;
pub use handle::AuditLog;
pub use record::{Action, BatchEntry, Record};
