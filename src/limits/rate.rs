//! `<count>/<unit>` as written in `limits:` (`100/min`, `10/s`, `1000/h`, `5000/day`).

use std::time::Duration;

/// A rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period (the `q` of `RateLimit-Policy`).
    pub count: u32,
    /// The period (the `w` of `RateLimit-Policy`).
    pub period: Duration,
}

impl Rate {
    /// Parses `<count>/<unit>`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "{text:?} is not a rate: write <count>/<unit> with a unit of s, min, h or day \
                 (e.g. 100/min)"
            )
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(usage)?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 {
            return Err(format!("{text:?}: the count must be at least 1"));
        }
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(usage()),
        };
        Ok(Self {
            count,
            period: Duration::from_secs(seconds),
        })
    }

    /// The GCRA emission interval: one request's worth of time (period / count).
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_units() {
        let rate = Rate::parse("100/min").unwrap();
        assert_eq!(rate.count, 100);
        assert_eq!(rate.period, Duration::from_secs(60));
        assert_eq!(rate.interval(), Duration::from_millis(600));
        assert_eq!(
            Rate::parse("10/s").unwrap().interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            Rate::parse(" 1000 / h ").unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(
            Rate::parse("3/day").unwrap().interval(),
            Duration::from_secs(28_800)
        );
        for bad in ["100", "0/s", "-1/s", "10/week", "ten/s", "10/", "1.5/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}
