//! The process's one connection to Redis, as the parts that share data between
//! replicas borrow it: the session store owns it (`mcp::session`), the
//! introspection cache (`auth`) uses it. Its own module so that neither has to
//! import the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use fred::prelude::Options;

/// Connection states as the client's events tell them: to fail fast while Redis
/// is known to be down, and to log each change once rather than every retry.
pub(crate) const STATE_UNKNOWN: u8 = 0;
pub(crate) const STATE_UP: u8 = 1;
pub(crate) const STATE_DOWN: u8 = 2;

/// The session store's Redis connection, lent to the other data replicas share (the
/// introspection cache), so that a process holds one connection, not one per use
/// or per reload. Cloning shares the connection; it lives while any clone does.
#[derive(Clone)]
pub struct SharedRedis {
    client: fred::clients::Client,
    state: Arc<AtomicU8>,
}

impl SharedRedis {
    /// The handle to a connection whose state `state` follows (`STATE_*`).
    pub(crate) fn new(client: fred::clients::Client, state: Arc<AtomicU8>) -> Self {
        Self { client, state }
    }

    pub(crate) fn client(&self) -> &fred::clients::Client {
        &self.client
    }

    /// One attempt, bounded by `timeout`, and an immediate failure while Redis is
    /// known to be unreachable (as the session store's commands).
    pub(crate) fn options(&self, timeout: Duration) -> Options {
        Options {
            timeout: Some(timeout),
            max_attempts: Some(1),
            fail_fast: self.state.load(Ordering::Relaxed) == STATE_DOWN,
            ..Options::default()
        }
    }
}
