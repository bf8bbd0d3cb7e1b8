//! What a backend is asked and answers: the charges of one request, and whether
//! they all fit. The in-memory store ([`super::gcra`]) and a shared one answer the
//! same question with the same arithmetic (GCRA, below), so a request is judged the
//! same wherever it is counted.
//!
//! For one key with emission interval `T` (period / count) and `burst`, a charge of
//! cost `n` at `now`:
//!
//! ```text
//! tat      = max(stored_tat, now)            (absent: now)
//! new_tat  = tat + n·T
//! allowed  = new_tat − now ≤ burst·T
//! remaining = floor((now + burst·T − new_tat) / T)
//! reset    = new_tat − now                   (until the key is full again)
//! retry_after (refused) = new_tat − now − burst·T
//! ```
//!
//! All or nothing: the new `tat`s are stored only when every charge is allowed. A
//! request one rule refuses spends nothing from the others (the client retries it
//! whole). Charges for the same key in one list add up in order.

use std::time::Duration;

/// One rule's charge for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// `<rule identity>:<key parts>` (a shared backend prefixes it).
    pub key: String,
    /// The emission interval `T`: period / count.
    pub interval: Duration,
    /// How many requests may come at once.
    pub burst: u32,
    /// How many units the request costs (its messages the rule counts).
    pub cost: u32,
    /// Judged like the others, never stored: "would one more be refused?" (the
    /// failed-authentication limit is looked at before a credential is checked and
    /// charged only when the check fails).
    pub probe: bool,
}

/// Where a key stands after an allowed charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Requests of cost 1 still allowed at once.
    pub remaining: u64,
    /// Until the key is back at its full burst.
    pub reset: Duration,
}

/// The answer for a request's charges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every charge fit and was stored; one standing per charge, in order.
    Allowed(Vec<Standing>),
    /// At least one charge did not fit and nothing was stored. `index` is the
    /// refusing charge with the longest wait (the first on a tie).
    Refused {
        /// Which charge refused.
        index: usize,
        /// When that charge would fit (and so every refusing one).
        retry_after: Duration,
    },
}

/// The GCRA step for one key, in nanoseconds: the new `tat` and the standing, or
/// how long until it would fit.
pub(crate) fn step(
    stored: Option<u64>,
    now: u64,
    interval: u64,
    burst: u32,
    cost: u32,
) -> Result<(u64, Standing), u64> {
    let interval = interval.max(1);
    let tat = stored.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(interval.saturating_mul(u64::from(cost)));
    let limit = interval.saturating_mul(u64::from(burst));
    let ahead = new_tat - now;
    if ahead > limit {
        return Err(ahead - limit);
    }
    Ok((
        new_tat,
        Standing {
            remaining: (limit - ahead) / interval,
            reset: Duration::from_nanos(ahead),
        },
    ))
}

/// A duration in whole nanoseconds (saturating; a day is 8.64e13).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
