//! The in-memory GCRA store: each key's theoretical arrival time (`tat`), in
//! sharded maps, bounded in size.
//!
//! Written here rather than taken from `governor`: a request is charged against
//! several rules at once, all or nothing (if one refuses, none is spent), as the
//! shared Redis script does; governor checks one limiter at a time and spends on
//! each check. It also reports no `remaining` for the `RateLimit` header and needs a
//! limiter per quota, where rules here differ per key.
//!
//! Memory: a key whose `tat` has passed is the same as an absent one, so it can be
//! dropped at any time; each shard drops them every [`SWEEP_EVERY`]. A flood of
//! addresses that are all still counting fills a shard up to its share of
//! `limits.max_keys`; then the tenth of its keys closest to full is forgotten,
//! which forgives the least (an evicted key starts again at its full burst).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::charge::{Charge, Standing, Verdict, nanos, step};

/// Shards: requests for different keys rarely wait for one another.
const SHARDS: usize = 16;
/// How often a shard drops the keys that are full again.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The store.
pub struct Gcra {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
    epoch: Instant,
}

#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64>,
    last_sweep: u64,
}

impl Gcra {
    /// A store keeping at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the store was made: the clock every `tat` is on.
    pub fn now(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }

    /// How many keys are held (for tests and sizing).
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).tats.len()).sum()
    }

    /// Charges a request at `now` (see [`super::charge`]).
    pub fn charge_at(&self, charges: &[Charge], now: u64) -> Verdict {
        let homes: Vec<usize> = charges
            .iter()
            .map(|charge| self.shard_of(&charge.key))
            .collect();
        let mut wanted = homes.clone();
        wanted.sort_unstable();
        wanted.dedup();
        // Locked in index order, so two requests never wait on each other in a cycle.
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> = wanted
            .into_iter()
            .filter_map(|index| Some((index, lock(self.shards.get(index)?))))
            .collect();
        let mut pending: Vec<Option<u64>> = Vec::with_capacity(charges.len());
        let mut standings = Vec::with_capacity(charges.len());
        let mut refused: Option<(usize, u64)> = None;
        for (position, charge) in charges.iter().enumerate() {
            // An earlier charge of this list for the same key counts first.
            let earlier = charges
                .iter()
                .zip(&pending)
                .take(position)
                .rev()
                .find(|(other, tat)| other.key == charge.key && !other.probe && tat.is_some())
                .and_then(|(_, tat)| *tat);
            let stored = earlier.or_else(|| {
                let home = homes.get(position)?;
                let (_, shard) = guards.iter().find(|(index, _)| index == home)?;
                shard.tats.get(&charge.key).copied()
            });
            match step(
                stored,
                now,
                nanos(charge.interval),
                charge.burst,
                charge.cost,
            ) {
                Ok((tat, standing)) => {
                    pending.push(Some(tat));
                    standings.push(standing);
                }
                Err(wait) => {
                    pending.push(None);
                    standings.push(Standing {
                        remaining: 0,
                        reset: Duration::from_nanos(wait),
                    });
                    if refused.is_none_or(|(_, longest)| wait > longest) {
                        refused = Some((position, wait));
                    }
                }
            }
        }
        if let Some((index, wait)) = refused {
            return Verdict::Refused {
                index,
                retry_after: Duration::from_nanos(wait),
            };
        }
        for ((charge, tat), home) in charges.iter().zip(&pending).zip(&homes) {
            let (Some(tat), false) = (tat, charge.probe) else {
                continue;
            };
            if let Some((_, shard)) = guards.iter_mut().find(|(index, _)| index == home) {
                shard.store(&charge.key, *tat, now, self.per_shard);
            }
        }
        Verdict::Allowed(standings)
    }

    fn shard_of(&self, key: &str) -> usize {
        let hash = self.hasher.hash_one(key);
        usize::try_from(hash % SHARDS as u64).unwrap_or(0)
    }
}

impl Shard {
    fn store(&mut self, key: &str, tat: u64, now: u64, capacity: usize) {
        if now.saturating_sub(self.last_sweep) >= nanos(SWEEP_EVERY) {
            self.tats.retain(|_, kept| *kept > now);
            self.last_sweep = now;
        }
        if let Some(kept) = self.tats.get_mut(key) {
            *kept = tat;
            return;
        }
        if self.tats.len() >= capacity {
            self.make_room(now, capacity);
        }
        self.tats.insert(key.to_owned(), tat);
    }

    /// Drops the keys that are full again, then, if that freed less than a tenth,
    /// the tenth closest to full: each eviction pass pays for many insertions.
    fn make_room(&mut self, now: u64, capacity: usize) {
        self.tats.retain(|_, kept| *kept > now);
        let target = capacity - capacity.div_ceil(10);
        if self.tats.len() <= target {
            return;
        }
        let excess = self.tats.len() - target;
        let mut tats: Vec<u64> = self.tats.values().copied().collect();
        let (_, threshold, _) = tats.select_nth_unstable(excess - 1);
        let threshold = *threshold;
        let mut left = excess;
        self.tats.retain(|_, kept| {
            if left > 0 && *kept <= threshold {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard leaves plain numbers behind: still usable.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn charge(key: &str, interval_ms: u64, burst: u32, cost: u32) -> Charge {
        Charge {
            key: key.to_owned(),
            interval: Duration::from_millis(interval_ms),
            burst,
            cost,
            probe: false,
        }
    }

    fn remaining(verdict: &Verdict) -> Vec<u64> {
        match verdict {
            Verdict::Allowed(standings) => standings.iter().map(|s| s.remaining).collect(),
            Verdict::Refused { .. } => panic!("refused: {verdict:?}"),
        }
    }

    #[test]
    fn a_burst_then_one_per_interval_exactly() {
        // 10/s with a burst of 3: T = 100 ms.
        let store = Gcra::new(100);
        let start = 1_000 * MS;
        for left in [2, 1, 0] {
            assert_eq!(
                remaining(&store.charge_at(&[charge("k", 100, 3, 1)], start)),
                [left]
            );
        }
        assert_eq!(
            store.charge_at(&[charge("k", 100, 3, 1)], start),
            Verdict::Refused {
                index: 0,
                retry_after: Duration::from_millis(100)
            }
        );
        // One nanosecond early is still refused, with exactly that wait.
        assert_eq!(
            store.charge_at(&[charge("k", 100, 3, 1)], start + 100 * MS - 1),
            Verdict::Refused {
                index: 0,
                retry_after: Duration::from_nanos(1)
            }
        );
        assert_eq!(
            remaining(&store.charge_at(&[charge("k", 100, 3, 1)], start + 100 * MS)),
            [0]
        );
        // After a full burst's time the key is full again.
        assert_eq!(
            remaining(&store.charge_at(&[charge("k", 100, 3, 1)], start + 500 * MS)),
            [2]
        );
    }

    #[test]
    fn the_standing_reports_remaining_and_reset() {
        let store = Gcra::new(100);
        let Verdict::Allowed(standings) = store.charge_at(&[charge("k", 600, 100, 5)], 0) else {
            panic!()
        };
        assert_eq!(standings[0].remaining, 95);
        assert_eq!(standings[0].reset, Duration::from_secs(3));
        // A cost larger than the burst never fits, and waits for the difference.
        assert_eq!(
            store.charge_at(&[charge("j", 100, 2, 5)], 0),
            Verdict::Refused {
                index: 0,
                retry_after: Duration::from_millis(300)
            }
        );
    }

    #[test]
    fn all_or_nothing_across_rules() {
        let store = Gcra::new(100);
        let wide = charge("wide", 100, 10, 1);
        let narrow = charge("narrow", 1_000, 1, 1);
        assert_eq!(
            remaining(&store.charge_at(&[wide.clone(), narrow.clone()], 0)),
            [9, 0]
        );
        // The narrow rule refuses: the wide one is not charged.
        for _ in 0..5 {
            let verdict = store.charge_at(&[wide.clone(), narrow.clone()], 0);
            assert_eq!(
                verdict,
                Verdict::Refused {
                    index: 1,
                    retry_after: Duration::from_secs(1)
                }
            );
        }
        assert_eq!(remaining(&store.charge_at(&[wide], 0)), [8]);
    }

    #[test]
    fn the_longest_wait_is_reported_and_same_keys_add_up() {
        let store = Gcra::new(100);
        let a = charge("a", 100, 1, 1);
        let b = charge("b", 1_000, 1, 1);
        remaining(&store.charge_at(&[a.clone(), b.clone()], 0));
        assert_eq!(
            store.charge_at(&[a.clone(), b], 0),
            Verdict::Refused {
                index: 1,
                retry_after: Duration::from_secs(1)
            }
        );
        // Two charges of one key in a list: the second sees the first.
        assert_eq!(
            store.charge_at(&[charge("c", 100, 2, 1), charge("c", 100, 2, 1)], 0),
            Verdict::Allowed(vec![
                Standing {
                    remaining: 1,
                    reset: Duration::from_millis(100)
                },
                Standing {
                    remaining: 0,
                    reset: Duration::from_millis(200)
                },
            ])
        );
        assert!(matches!(
            store.charge_at(&[charge("d", 100, 2, 2), charge("d", 100, 2, 1)], 0),
            Verdict::Refused { index: 1, .. }
        ));
    }

    #[test]
    fn a_probe_is_judged_but_never_stored() {
        let store = Gcra::new(100);
        let mut probe = charge("failures", 100, 1, 1);
        probe.probe = true;
        for _ in 0..3 {
            assert_eq!(remaining(&store.charge_at(&[probe.clone()], 0)), [0]);
        }
        assert_eq!(store.keys(), 0);
        remaining(&store.charge_at(&[charge("failures", 100, 1, 1)], 0));
        assert!(matches!(
            store.charge_at(&[probe], 0),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let store = Gcra::new(1_000);
        // Long intervals: no key is full again before the flood ends.
        for index in 0..50_000 {
            let key = format!("ip:{index}");
            remaining(&store.charge_at(&[charge(&key, 60_000, 10, 1)], index * MS));
        }
        assert!(store.keys() <= 1_000 + SHARDS, "{}", store.keys());
        // Keys that are full again are dropped by the next sweep.
        let later = 50_000 * MS + 10 * 60_000 * MS;
        // Enough keys that every shard gets some (and so sweeps).
        for index in 0..400 {
            remaining(&store.charge_at(&[charge(&format!("late:{index}"), 1, 1, 1)], later));
        }
        assert!(store.keys() <= 400, "{}", store.keys());
    }
}
