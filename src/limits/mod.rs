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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::redis::SharedRedis;
use crate::telemetry::metrics::metrics;
pub use charge::{Charge, Standing, Verdict};
pub use concurrency::{Held, InFlight, Permit};
pub use refused::{Exceeded, Limited};
pub use rules::{Asked, Caller, Limit, LimitRules, Planned};

/// The counters: rate limits and calls in flight.
pub struct Limiter {
    local: gcra::Gcra,
    /// With a Redis session store: the counters every replica charges.
    shared: Option<SharedRedis>,
    /// When a fallback to the local counters was last logged (ms since `UNIX_EPOCH`).
    fallback_logged: AtomicU64,
    /// Calls in flight per principal.
    pub in_flight: Arc<InFlight>,
}

/// A Redis outage is logged at most this often (the metric counts every check).
const FALLBACK_LOG_EVERY: Duration = Duration::from_secs(10);

impl Limiter {
    /// Counters for at most about `max_keys` rate-limit keys (`limits.max_keys`),
    /// kept in `shared` when given (the session store's Redis), so that the limits
    /// hold for the whole fleet.
    pub fn new(max_keys: usize, shared: Option<SharedRedis>) -> Self {
        Self {
            local: gcra::Gcra::new(max_keys),
            shared,
            fallback_logged: AtomicU64::new(0),
            in_flight: Arc::new(InFlight::default()),
        }
    }

    /// Charges one request: every charge, or none (see [`charge`]), in Redis when
    /// replicas share it. When Redis does not answer, this process's own counters
    /// judge: limits stay (per process) rather than vanishing, and nobody is
    /// refused for an outage that is not theirs.
    pub async fn charge(&self, charges: &[Charge]) -> Verdict {
        if charges.is_empty() {
            return Verdict::Allowed(Vec::new());
        }
        if let Some(redis) = &self.shared {
            // Boxed: the Redis call's future is large, and inline it would make every
            // request's future as large, with or without Redis.
            match Box::pin(shared::charge(redis, charges)).await {
                Ok(verdict) => return verdict,
                Err(error) => self.fell_back(&error),
            }
        }
        self.local.charge_at(charges, self.local.now())
    }

    fn fell_back(&self, error: &shared::SharedUnavailable) {
        metrics().rate_limit_fallback();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let last = self.fallback_logged.load(Ordering::Relaxed);
        let every = u64::try_from(FALLBACK_LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) >= every
            && self
                .fallback_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("{error}: limits are counted per process until Redis answers");
        }
    }

    /// Keys held in memory (for tests and sizing).
    pub fn keys(&self) -> usize {
        self.local.keys()
    }
}
