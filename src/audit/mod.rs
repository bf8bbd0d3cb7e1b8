//! The audit log: one JSON line per decision, written by a dedicated writer behind a
//! bounded queue (requests wait when it is full; records are never dropped).

mod record;

pub use record::{Action, BatchEntry, Record};
