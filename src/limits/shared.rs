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

use super::charge::{Charge, Standing, Verdict};
use crate::redis::SharedRedis;

/// Prefix of every key. The hash tag keeps a request's keys in one cluster slot,
/// which a multi-key script needs.
const KEY_PREFIX: &str = "{mcpgate:limit}:";

/// Longest wait for the script. A limit check sits in front of every request it
/// applies to: when Redis is slow the request goes on under the local budgets
/// rather than waiting.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(250);

/// GCRA over every key, all or nothing, on Redis's clock (microseconds), as
/// `limits::charge` describes it.
///
/// `ARGV` holds four numbers per key: the emission interval, the burst, the cost,
/// and 1 for a probe (judged, never stored). A key's value is its theoretical
/// arrival time (TAT); an earlier charge of the same list for the same key counts
/// first. Answers `{1, remaining, reset, …}` (two numbers per key, in order) when
/// every charge fits (the non-probes are then stored, each key expiring when its
/// budget is whole again), or `{0, index, wait}`: the refusing charge with the
/// longest wait (1-based, the first on a tie) and that wait.
const CHARGE: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats, news, answer = {}, {}, {1}
local refused, longest = 0, -1
for i, key in ipairs(KEYS) do
  local interval = math.max(tonumber(ARGV[4 * i - 3]), 1)
  local burst = tonumber(ARGV[4 * i - 2])
  local cost = tonumber(ARGV[4 * i - 1])
  local tat = tats[key] or tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  local ahead = new_tat - now
  local limit = burst * interval
  if ahead > limit then
    if ahead - limit > longest then refused, longest = i, ahead - limit end
  else
    news[i] = new_tat
    if ARGV[4 * i] ~= '1' then tats[key] = new_tat end
    answer[2 * i] = math.floor((limit - ahead) / interval)
    answer[2 * i + 1] = ahead
  end
end
if refused > 0 then return {0, refused, longest} end
for i, key in ipairs(KEYS) do
  if ARGV[4 * i] ~= '1' and tats[key] == news[i] then
    redis.call('SET', key, string.format('%d', news[i]), 'PX', math.ceil((news[i] - now) / 1000) + 1)
  end
end
return answer";

/// Redis did not answer, or answered something this script never returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared rate limits are unavailable: {0}")]
pub(crate) struct SharedUnavailable(String);

/// Charges every charge in one atomic step (see [`CHARGE`]).
pub(crate) async fn charge(
    redis: &SharedRedis,
    charges: &[Charge],
) -> Result<Verdict, SharedUnavailable> {
    if charges.is_empty() {
        return Ok(Verdict::Allowed(Vec::new()));
    }
    let mut args = Vec::with_capacity(2 + charges.len() * 5);
    args.push(Value::from(CHARGE));
    args.push(Value::from(charges.len() as i64));
    for charge in charges {
        args.push(Value::from(format!("{KEY_PREFIX}{}", charge.key)));
    }
    for charge in charges {
        args.push(Value::from(micros(charge.interval)));
        args.push(Value::from(i64::from(charge.burst)));
        args.push(Value::from(i64::from(charge.cost)));
        args.push(Value::from(i64::from(charge.probe)));
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
fn read_answer(answer: Value, charges: usize) -> Result<Verdict, SharedUnavailable> {
    let malformed = || SharedUnavailable("unexpected answer to the rate-limit script".into());
    let Value::Array(items) = answer else {
        return Err(malformed());
    };
    let numbers: Vec<u64> = items
        .iter()
        .map(|item| item.as_i64().and_then(|number| u64::try_from(number).ok()))
        .collect::<Option<_>>()
        .ok_or_else(malformed)?;
    match numbers.split_first() {
        Some((1, standings)) if standings.len() == charges * 2 => Ok(Verdict::Allowed(
            standings
                .chunks_exact(2)
                .map(|pair| Standing {
                    remaining: pair.first().copied().unwrap_or(0),
                    reset: Duration::from_micros(pair.get(1).copied().unwrap_or(0)),
                })
                .collect(),
        )),
        Some((0, [index, wait])) => {
            let index = usize::try_from(*index)
                .ok()
                .and_then(|index| index.checked_sub(1))
                .filter(|index| *index < charges)
                .ok_or_else(malformed)?;
            Ok(Verdict::Refused {
                index,
                retry_after: Duration::from_micros(*wait),
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
    fn an_allowed_answer_gives_each_charge_its_standing() {
        assert_eq!(
            read_answer(array(&[1, 4, 200_000, 0, 1_000_000]), 2),
            Ok(Verdict::Allowed(vec![
                Standing {
                    remaining: 4,
                    reset: Duration::from_millis(200)
                },
                Standing {
                    remaining: 0,
                    reset: Duration::from_secs(1)
                },
            ]))
        );
    }

    #[test]
    fn a_refusal_names_the_charge_and_the_wait() {
        assert_eq!(
            read_answer(array(&[0, 2, 1_500_000]), 2),
            Ok(Verdict::Refused {
                index: 1,
                retry_after: Duration::from_millis(1500)
            })
        );
    }

    #[test]
    fn answers_of_another_shape_are_failures_not_permits() {
        for answer in [
            array(&[1, 4, 10]),
            array(&[1, 4, 10, 0, -1]),
            array(&[0, 3, 10]),
            array(&[0, 0, 10]),
            array(&[0, 1, -5]),
            array(&[2]),
            array(&[]),
            Value::from("OK"),
            Value::Null,
        ] {
            assert!(read_answer(answer.clone(), 2).is_err(), "{answer:?}");
        }
    }
}

/// Against a `redis-server` of the test's own (`scripts/test` installs it), and
/// beside the in-memory store: both must judge a sequence of requests alike.
#[cfg(test)]
mod against_redis {
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU8;

    use fred::prelude::{Builder, ClientLike, Config};

    use super::*;
    use crate::limits::gcra::Gcra;
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

    fn charge_of(key: &str, interval: Duration, burst: u32, cost: u32, probe: bool) -> Charge {
        Charge {
            key: key.to_owned(),
            interval,
            burst,
            cost,
            probe,
        }
    }

    fn per_second(key: &str, burst: u32, cost: u32) -> Charge {
        charge_of(key, Duration::from_secs(1), burst, cost, false)
    }

    fn remaining(verdict: &Verdict) -> Vec<u64> {
        match verdict {
            Verdict::Allowed(standings) => standings.iter().map(|s| s.remaining).collect(),
            Verdict::Refused { .. } => panic!("refused: {verdict:?}"),
        }
    }

    #[tokio::test]
    async fn the_burst_is_taken_then_refused_with_the_wait_until_the_next_cell() {
        let (_server, redis) = redis().await;
        for left in (0..3).rev() {
            let verdict = charge(&redis, &[per_second("burst", 3, 1)]).await.unwrap();
            assert_eq!(remaining(&verdict), vec![left]);
        }
        let Verdict::Refused { index, retry_after } =
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
    async fn a_refusal_charges_none_of_the_budgets_and_names_the_longest_wait() {
        let (_server, redis) = redis().await;
        let slow = charge_of("slow", Duration::from_secs(10), 1, 1, false);
        charge(&redis, &[per_second("small", 1, 1), slow.clone()])
            .await
            .unwrap();
        let verdict = charge(
            &redis,
            &[per_second("large", 5, 1), per_second("small", 1, 1), slow],
        )
        .await
        .unwrap();
        assert!(
            matches!(verdict, Verdict::Refused { index: 2, .. }),
            "{verdict:?}"
        );
        // Nothing of `large` was spent by the refused request.
        let verdict = charge(&redis, &[per_second("large", 5, 5)]).await.unwrap();
        assert_eq!(remaining(&verdict), vec![0]);
    }

    #[tokio::test]
    async fn a_probe_is_judged_and_never_stored() {
        let (_server, redis) = redis().await;
        let probe = charge_of("probed", Duration::from_secs(1), 1, 1, true);
        for _ in 0..3 {
            assert_eq!(
                remaining(&charge(&redis, std::slice::from_ref(&probe)).await.unwrap()),
                vec![0]
            );
        }
        charge(&redis, &[per_second("probed", 1, 1)]).await.unwrap();
        assert!(matches!(
            charge(&redis, &[probe]).await.unwrap(),
            Verdict::Refused { .. }
        ));
    }

    #[tokio::test]
    async fn charges_for_one_key_add_up_in_order() {
        let (_server, redis) = redis().await;
        let verdict = charge(
            &redis,
            &[per_second("twice", 3, 1), per_second("twice", 3, 1)],
        )
        .await
        .unwrap();
        assert_eq!(remaining(&verdict), vec![2, 1]);
        assert_eq!(
            remaining(&charge(&redis, &[per_second("twice", 3, 1)]).await.unwrap()),
            vec![0]
        );
    }

    /// The same requests judged by both stores: the arithmetic, all or nothing,
    /// probes and repeated keys agree. The interval is long enough that no cell
    /// comes back during the test, so the two clocks cannot make them differ.
    #[tokio::test]
    async fn redis_and_memory_judge_alike() {
        let (_server, redis) = redis().await;
        let local = Gcra::new(1000);
        let hour = Duration::from_secs(3600);
        let requests: Vec<Vec<Charge>> = (0..14)
            .map(|step| {
                let mut charges = vec![charge_of("a", hour, 6, 1, false)];
                if step % 3 == 0 {
                    charges.push(charge_of("b", hour / 2, 5, 2, false));
                }
                if step % 4 == 1 {
                    charges.push(charge_of("a", hour, 6, 1, true));
                }
                if step % 5 == 2 {
                    charges.push(charge_of("a", hour, 6, 1, false));
                }
                charges
            })
            .collect();
        let outcome = |verdict: &Verdict| match verdict {
            Verdict::Allowed(standings) => {
                Ok(standings.iter().map(|s| s.remaining).collect::<Vec<_>>())
            }
            Verdict::Refused { index, .. } => Err(*index),
        };
        let mut refusals = 0;
        for (step, charges) in requests.iter().enumerate() {
            let shared = charge(&redis, charges).await.unwrap();
            let alone = local.charge_at(charges, local.now());
            assert_eq!(
                outcome(&shared),
                outcome(&alone),
                "request {step}: {charges:?}"
            );
            refusals += usize::from(outcome(&alone).is_err());
        }
        assert!(
            refusals >= 3,
            "the sequence must reach the limits: {refusals}"
        );
    }

    #[tokio::test]
    async fn cells_come_back_at_the_rate() {
        let (_server, redis) = redis().await;
        let fast = charge_of("refill", Duration::from_millis(100), 2, 2, false);
        charge(&redis, std::slice::from_ref(&fast)).await.unwrap();
        let one = Charge {
            cost: 1,
            ..fast.clone()
        };
        assert!(matches!(
            charge(&redis, std::slice::from_ref(&one)).await.unwrap(),
            Verdict::Refused { .. }
        ));
        tokio::time::sleep(Duration::from_millis(230)).await;
        assert_eq!(remaining(&charge(&redis, &[fast]).await.unwrap()), vec![0]);
    }

    #[tokio::test]
    async fn a_stopped_redis_is_a_failure_not_a_verdict() {
        let (server, redis) = redis().await;
        drop(server);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(charge(&redis, &[per_second("gone", 3, 1)]).await.is_err());
    }
}
