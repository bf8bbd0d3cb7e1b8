//! The answer's headers (draft-ietf-httpapi-ratelimit-headers, as of draft 10):
//!
//! ```text
//! RateLimit-Policy: "per-user";q=100;w=60
//! RateLimit: "per-user";r=0;t=1
//! Retry-After: 1
//! ```
//!
//! `q` and `w` are the rule's rate (count per window, in seconds); `r` is what is
//! left of the burst, `t` the seconds until the key is full again (on a 429: until
//! the next request fits, as `Retry-After`). Seconds are whole, rounded up: a client
//! that waits as long as it is told is never refused for being a moment early.

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::charge::Standing;
use super::rules::{Limit, ceil_seconds};

/// `RateLimit-Policy`.
pub const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const STATE: HeaderName = HeaderName::from_static("ratelimit");

/// The headers of a 429 refused by `limit`.
pub fn refused(headers: &mut HeaderMap, limit: &Limit, retry_after: Duration) {
    let seconds = ceil_seconds(retry_after).max(1);
    set(headers, POLICY, policy_item(limit));
    set(
        headers,
        STATE,
        format!("\"{}\";r=0;t={seconds}", limit.name),
    );
    set(headers, header::RETRY_AFTER, seconds.to_string());
}

/// The headers of an allowed request: each limit it counted against once (the
/// lowest standing when several keys of one rule were charged). Written straight
/// into two strings: every counted request pays for them.
pub fn allowed(headers: &mut HeaderMap, limits: &[&Limit], standings: &[Standing]) {
    let mut named: Vec<(&Limit, Standing)> = Vec::with_capacity(limits.len());
    for (limit, standing) in limits.iter().zip(standings) {
        match named.iter_mut().find(|(known, _)| known.name == limit.name) {
            Some((_, kept)) if standing.remaining < kept.remaining => *kept = *standing,
            Some(_) => {}
            None => named.push((limit, *standing)),
        }
    }
    if named.is_empty() {
        return;
    }
    let mut policy = String::with_capacity(48 * named.len());
    let mut state = String::with_capacity(48 * named.len());
    for (index, (limit, standing)) in named.iter().enumerate() {
        if index > 0 {
            policy.push_str(", ");
            state.push_str(", ");
        }
        policy.push_str(&policy_item(limit));
        let _ = write!(
            state,
            "\"{}\";r={};t={}",
            limit.name,
            standing.remaining,
            ceil_seconds(standing.reset)
        );
    }
    set(headers, POLICY, policy);
    set(headers, STATE, state);
}

fn policy_item(limit: &Limit) -> String {
    format!(
        "\"{}\";q={};w={}",
        limit.name,
        limit.rate.count,
        limit.rate.period.as_secs()
    )
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: String) {
    // Names are printable ASCII without quotes (checked at load): always a value.
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}
