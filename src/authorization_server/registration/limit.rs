//! Registrations per client address per minute. Each address gets a fixed
//! one-minute window from its first attempt; IPv6 addresses count per /64, the
//! block one subscriber usually holds (otherwise one host could rotate through
//! addresses).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Most addresses tracked at once (each a few dozen bytes).
const CAPACITY: u64 = 100_000;

struct Window {
    started: Instant,
    used: AtomicU32,
}

/// The windows by address.
pub(crate) struct PerIpLimit {
    windows: moka::sync::Cache<IpAddr, Arc<Window>>,
}

impl Default for PerIpLimit {
    fn default() -> Self {
        Self {
            windows: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(WINDOW)
                .build(),
        }
    }
}

impl PerIpLimit {
    /// Counts one attempt from `ip`; `Err` with the time until the window ends
    /// when `per_minute` were already made in it.
    pub(crate) fn check(&self, ip: IpAddr, per_minute: u32) -> Result<(), Duration> {
        let window = self.windows.get_with(bucket(ip), || {
            Arc::new(Window {
                started: Instant::now(),
                used: AtomicU32::new(0),
            })
        });
        let before = window.used.fetch_add(1, Ordering::Relaxed);
        if before < per_minute {
            Ok(())
        } else {
            // Do not let the counter wrap under a long flood.
            window.used.store(per_minute, Ordering::Relaxed);
            Err(WINDOW.saturating_sub(window.started.elapsed()))
        }
    }
}

/// The address an attempt counts against.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn each_address_gets_its_own_budget() {
        let limit = PerIpLimit::default();
        for _ in 0..3 {
            assert!(limit.check(ip("192.0.2.1"), 3).is_ok());
        }
        let wait = limit.check(ip("192.0.2.1"), 3).unwrap_err();
        assert!(wait > Duration::from_secs(55) && wait <= WINDOW, "{wait:?}");
        assert!(limit.check(ip("192.0.2.2"), 3).is_ok());
        // The mapped form of the same address shares its budget.
        assert!(limit.check(ip("::ffff:192.0.2.1"), 3).is_err());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let limit = PerIpLimit::default();
        assert!(limit.check(ip("2001:db8:1:2::1"), 1).is_ok());
        assert!(limit.check(ip("2001:db8:1:2:ffff::9"), 1).is_err());
        assert!(limit.check(ip("2001:db8:1:3::1"), 1).is_ok());
    }
}
