//! Rate limits held in Redis, so that every replica charges the same budgets.
//!
//! One script checks and charges all of a request's budgets in one round trip and
//! one atomic step: if any refuses, none is charged, and two replicas charging the
//! same key at once cannot both take its last cell. The arithmetic is the local
//! store's (GCRA, see `limits`), on Redis's clock rather than each replica's, so
//! replicas whose clocks disagree still agree on a budget.
//!
//! A failure is returned, never hidden: the caller falls back to its own
//! per-process budgets (and counts it), never to no limit and never to refusing
//! everyone.

use std::time::Duration;

use fred::prelude::{ClientLike, Error, ErrorKind, Value};
use fred::types::{ClusterHash, CustomCommand};

use crate::redis::SharedRedis;

/// Prefix of every key. The hash tag keeps a request's keys in one cluster slot,
/// which a multi-key script needs.
const KEY_PREFIX: &str = "{mcpgate:limit}:";

/// Longest wait for the script. A limit check sits in front of every request it
/// applies to: when Redis is slow the request goes on under the local budgets
/// rather than waiting.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(250);

/// GCRA over every key, all or nothing, on Redis's clock (microseconds).
///
/// `ARGV` holds three numbers per key: the emission interval, the burst and the
/// cost. A key's value is its theoretical arrival time (TAT). A charge of `cost`
/// is allowed when `max(tat, now) + cost·interval − now ≤ burst·interval`.
/// Answers `{1, remaining…}` (one per key, in order) when every charge is
/// allowed and taken, or `{0, index, wait}` for the first key that refuses (1-based)
/// and the microseconds until it would allow the charge. A key named twice is
/// charged twice. Each key expires when its budget is whole again.
const CHARGE: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tat = tats[key] or tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local allowed_at = new_tat - burst * interval
  if allowed_at > now then
    return {0, i, math.ceil(allowed_at - now)}
  end
  tats[key] = new_tat
end
local answer = {1}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local tat = tats[key]
  redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  answer[i + 1] = math.floor((now + burst * interval - tat) / interval)
end
return answer";

/// One budget a request is charged against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedCharge<'a> {
    /// The budget's key without the prefix: rule and key parts.
    pub(crate) key: &'a str,
    /// Time between two cells (the rate's period divided by its count).
    pub(crate) interval: Duration,
    /// Cells that may be taken at once.
    pub(crate) burst: u32,
    /// Cells this request takes.
    pub(crate) cost: u32,
}

/// What Redis decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SharedVerdict {
    /// Every budget was charged; what each has left, in the charges' order.
    Allowed {
        /// Whole cells left per charge.
        remaining: Vec<u64>,
    },
    /// Nothing was charged: the charge at `index` refuses for `retry_after`.
    Refused {
        /// Which charge (0-based) refused.
        index: usize,
        /// How long until it would be allowed.
        retry_after: Duration,
    },
}

/// Redis did not answer, or answered something this script never returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared rate limits are unavailable: {0}")]
pub(crate) struct SharedUnavailable(String);

/// Charges every budget in one atomic step (see [`CHARGE`]).
pub(crate) async fn charge(
    redis: &SharedRedis,
    charges: &[SharedCharge<'_>],
) -> Result<SharedVerdict, SharedUnavailable> {
    if charges.is_empty() {
        return Ok(SharedVerdict::Allowed {
            remaining: Vec::new(),
        });
    }
    let mut args = Vec::with_capacity(2 + charges.len() * 4);
    args.push(Value::from(CHARGE));
    args.push(Value::from(charges.len() as i64));
    for charge in charges {
        args.push(Value::from(format!("{KEY_PREFIX}{}", charge.key)));
    }
    for charge in charges {
        args.push(Value::from(micros(charge.interval)));
        args.push(Value::from(i64::from(charge.burst)));
        args.push(Value::from(i64::from(charge.cost)));
    }
    let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
    let answer = redis
        .client()
        .with_options(&redis.options(TIMEOUT))
        .custom::<Value, Value>(eval, args)
        .await
        .map_err(unavailable)?;
    read_answer(answer, charges.len())
}

/// The script's answer as a verdict, refusing anything of another shape.
fn read_answer(answer: Value, charges: usize) -> Result<SharedVerdict, SharedUnavailable> {
    let malformed = || SharedUnavailable("unexpected answer to the rate-limit script".into());
    let Value::Array(items) = answer else {
        return Err(malformed());
    };
    let numbers: Vec<i64> = items
        .iter()
        .map(Value::as_i64)
        .collect::<Option<_>>()
        .ok_or_else(malformed)?;
    match numbers.split_first() {
        Some((1, remaining)) if remaining.len() == charges => Ok(SharedVerdict::Allowed {
            remaining: remaining
                .iter()
                .map(|left| u64::try_from(*left).unwrap_or(0))
                .collect(),
        }),
        Some((0, [index, wait])) => {
            let index = usize::try_from(*index)
                .ok()
                .and_then(|index| index.checked_sub(1))
                .filter(|index| *index < charges)
                .ok_or_else(malformed)?;
            Ok(SharedVerdict::Refused {
                index,
                retry_after: Duration::from_micros(u64::try_from(*wait).unwrap_or(0)),
            })
        }
        _ => Err(malformed()),
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// The cause, for logs. fred's messages never carry the URL.
fn unavailable(error: Error) -> SharedUnavailable {
    let cause = match error.kind() {
        ErrorKind::Timeout => format!(
            "Redis did not answer within {}",
            humantime::format_duration(TIMEOUT)
        ),
        _ => error.details().to_owned(),
    };
    SharedUnavailable(cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(numbers: &[i64]) -> Value {
        Value::Array(numbers.iter().map(|number| Value::from(*number)).collect())
    }

    #[test]
    fn an_allowed_answer_gives_each_charge_its_remaining_cells() {
        assert_eq!(
            read_answer(array(&[1, 4, 0]), 2),
            Ok(SharedVerdict::Allowed {
                remaining: vec![4, 0]
            })
        );
    }

    #[test]
    fn a_refusal_names_the_charge_and_the_wait() {
        assert_eq!(
            read_answer(array(&[0, 2, 1_500_000]), 2),
            Ok(SharedVerdict::Refused {
                index: 1,
                retry_after: Duration::from_millis(1500)
            })
        );
    }

    #[test]
    fn answers_of_another_shape_are_failures_not_permits() {
        for answer in [
            array(&[1, 4]),
            array(&[0, 3, 10]),
            array(&[0, 0, 10]),
            array(&[2]),
            array(&[]),
            Value::from("OK"),
            Value::Null,
        ] {
            assert!(read_answer(answer.clone(), 2).is_err(), "{answer:?}");
        }
    }
}

/// Against a `redis-server` of the test's own (`scripts/test` installs it).
#[cfg(test)]
mod against_redis {
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU8;

    use fred::prelude::{Builder, ClientLike, Config};

    use super::*;
    use crate::redis::STATE_UP;

    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn redis() -> (Server, SharedRedis) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        let server = Server(child);
        let config = Config::from_url(&format!("redis://127.0.0.1:{port}")).unwrap();
        let client = Builder::from_config(config).build().unwrap();
        for _ in 0..100 {
            if client.init().await.is_ok() {
                let redis = SharedRedis::new(client, Arc::new(AtomicU8::new(STATE_UP)));
                return (server, redis);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {port}");
    }

    fn per_second(key: &str, burst: u32, cost: u32) -> SharedCharge<'_> {
        SharedCharge {
            key,
            interval: Duration::from_secs(1),
            burst,
            cost,
        }
    }

    #[tokio::test]
    async fn the_burst_is_taken_then_refused_with_the_wait_until_the_next_cell() {
        let (_server, redis) = redis().await;
        for left in (0..3).rev() {
            let verdict = charge(&redis, &[per_second("burst", 3, 1)]).await.unwrap();
            assert_eq!(
                verdict,
                SharedVerdict::Allowed {
                    remaining: vec![left]
                }
            );
        }
        let SharedVerdict::Refused { index, retry_after } =
            charge(&redis, &[per_second("burst", 3, 1)]).await.unwrap()
        else {
            panic!("the fourth cell of a burst of three was allowed");
        };
        assert_eq!(index, 0);
        assert!(
            retry_after > Duration::from_millis(900) && retry_after <= Duration::from_secs(1),
            "{retry_after:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_charges_none_of_the_budgets() {
        let (_server, redis) = redis().await;
        charge(&redis, &[per_second("small", 1, 1)]).await.unwrap();
        let verdict = charge(
            &redis,
            &[per_second("large", 5, 1), per_second("small", 1, 1)],
        )
        .await
        .unwrap();
        assert!(matches!(verdict, SharedVerdict::Refused { index: 1, .. }));
        // Nothing of `large` was spent by the refused request.
        let verdict = charge(&redis, &[per_second("large", 5, 5)]).await.unwrap();
        assert_eq!(verdict, SharedVerdict::Allowed { remaining: vec![0] });
    }

    #[tokio::test]
    async fn cells_come_back_at_the_rate() {
        let (_server, redis) = redis().await;
        let fast = SharedCharge {
            key: "refill",
            interval: Duration::from_millis(100),
            burst: 2,
            cost: 2,
        };
        charge(&redis, &[fast]).await.unwrap();
        assert!(matches!(
            charge(&redis, &[SharedCharge { cost: 1, ..fast }])
                .await
                .unwrap(),
            SharedVerdict::Refused { .. }
        ));
        tokio::time::sleep(Duration::from_millis(220)).await;
        assert_eq!(
            charge(&redis, &[fast]).await.unwrap(),
            SharedVerdict::Allowed { remaining: vec![0] }
        );
    }

    #[tokio::test]
    async fn a_stopped_redis_is_a_failure_not_a_verdict() {
        let (server, redis) = redis().await;
        drop(server);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(charge(&redis, &[per_second("gone", 3, 1)]).await.is_err());
    }
}
