//! Rate limits and calls in flight: which limits a request counts against
//! ([`rules`]), the arithmetic and the in-memory store ([`charge`], [`gcra`]), calls
//! in flight per principal ([`concurrency`]), and the answer's headers
//! ([`headers`]).
//!
//! The counters live in [`Limiter`], made once per process and kept across reloads
//! (like sessions); the rules live in the gateway and are swapped with it. A rule's
//! keys carry a digest of its definition, so an unchanged rule keeps counting
//! where it was and a changed one starts afresh.

pub mod charge;
pub mod concurrency;
pub mod gcra;
pub mod headers;
pub mod rate;
pub mod refused;
pub mod rules;
pub(crate) mod shared;

use std::sync::Arc;

pub use charge::{Charge, Standing, Verdict};
pub use concurrency::{Held, InFlight, Permit};
pub use refused::{Exceeded, Limited};
pub use rules::{Asked, Caller, Limit, LimitRules, Planned};

/// The counters: rate limits and calls in flight.
pub struct Limiter {
    local: gcra::Gcra,
    /// Calls in flight per principal.
    pub in_flight: Arc<InFlight>,
}

impl Limiter {
    /// Counters for at most about `max_keys` rate-limit keys (`limits.max_keys`).
    pub fn new(max_keys: usize) -> Self {
        Self {
            local: gcra::Gcra::new(max_keys),
            in_flight: Arc::new(InFlight::default()),
        }
    }

    /// Charges one request: every charge, or none (see [`charge`]). This is where
    /// another backend (a store replicas share) plugs in, answering the same way.
    pub async fn charge(&self, charges: &[Charge]) -> Verdict {
        if charges.is_empty() {
            return Verdict::Allowed(Vec::new());
        }
        self.local.charge_at(charges, self.local.now())
    }

    /// Keys held in memory (for tests and sizing).
    pub fn keys(&self) -> usize {
        self.local.keys()
    }
}
