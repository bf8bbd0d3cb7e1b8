//! Documents already fetched, and failures already met. A document is kept as
//! long as its `Cache-Control` says, within the operator's bounds; a failure for
//! a short fixed time, so that a bad `client_id` sent in a loop costs one fetch
//! per period, not one per request. Concurrent lookups of one URL share a single
//! fetch.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

/// How long a failed fetch is remembered.
pub(crate) const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Most documents (and failures) remembered at once.
const CAPACITY: u64 = 10_000;

/// How long to keep a document served with `cache_control`, within `[min, max]`.
/// `no-store` and `no-cache` mean as briefly as allowed; no header, or one
/// without a readable `max-age`, too.
pub(crate) fn ttl(cache_control: Option<&str>, min: Duration, max: Duration) -> Duration {
    let bounded = |ttl: Duration| ttl.min(max).max(min);
    let Some(text) = cache_control else {
        return bounded(min);
    };
    let mut max_age = None;
    for directive in text.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return bounded(min);
        }
        if let Some(value) = directive.strip_prefix("max-age=") {
            max_age = value.trim_matches('"').parse::<u64>().ok();
        }
    }
    bounded(max_age.map_or(min, Duration::from_secs))
}

/// One remembered outcome and how long it stays.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) outcome: T,
    pub(crate) ttl: Duration,
}

struct PerEntry;

impl<T> Expiry<String, Arc<Entry<T>>> for PerEntry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry<T>>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The outcomes by document URL.
pub(crate) struct DocumentCache<T> {
    entries: moka::future::Cache<String, Arc<Entry<T>>>,
}

impl<T: Send + Sync + 'static> Default for DocumentCache<T> {
    fn default() -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(PerEntry)
                .build(),
        }
    }
}

impl<T: Send + Sync + 'static> DocumentCache<T> {
    /// The remembered outcome for `url`, or the one `fetch` gives (which only one
    /// caller per URL runs; the others wait for it).
    pub(crate) async fn get_or_fetch(
        &self,
        url: &str,
        fetch: impl Future<Output = Entry<T>>,
    ) -> Arc<Entry<T>> {
        self.entries
            .get_with_by_ref(url, async { Arc::new(fetch.await) })
            .await
    }

    /// Every remembered outcome (the admin listing).
    pub(crate) fn outcomes(&self) -> Vec<Arc<Entry<T>>> {
        self.entries.iter().map(|(_, entry)| entry).collect()
    }

    /// Forgets everything (on reload: the rules the outcomes were made under changed).
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}

impl<T> std::fmt::Debug for DocumentCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn ttl_follows_max_age_within_the_bounds() {
        assert_eq!(ttl(Some("max-age=600"), MIN, MAX), Duration::from_secs(600));
        assert_eq!(
            ttl(Some("public, max-age=600"), MIN, MAX),
            Duration::from_secs(600)
        );
        assert_eq!(ttl(Some("max-age=5"), MIN, MAX), MIN);
        assert_eq!(ttl(Some("max-age=0"), MIN, MAX), MIN);
        assert_eq!(ttl(Some("max-age=99999999"), MIN, MAX), MAX);
        assert_eq!(ttl(Some("no-store"), MIN, MAX), MIN);
        assert_eq!(ttl(Some("max-age=600, no-cache"), MIN, MAX), MIN);
        assert_eq!(ttl(Some("max-age=soon"), MIN, MAX), MIN);
        assert_eq!(ttl(None, MIN, MAX), MIN);
    }

    #[tokio::test]
    async fn concurrent_lookups_share_one_fetch_and_its_outcome_is_kept() {
        let cache: Arc<DocumentCache<u32>> = Arc::new(DocumentCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let lookups = (0..8).map(|_| {
            let cache = Arc::clone(&cache);
            let fetches = Arc::clone(&fetches);
            tokio::spawn(async move {
                cache
                    .get_or_fetch("https://a.example/c", async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Entry {
                            outcome: 7,
                            ttl: MIN,
                        }
                    })
                    .await
                    .outcome
            })
        });
        for lookup in lookups.collect::<Vec<_>>() {
            assert_eq!(lookup.await.unwrap(), 7);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        cache.clear();
        let again = cache
            .get_or_fetch("https://a.example/c", async {
                Entry {
                    outcome: 8,
                    ttl: MIN,
                }
            })
            .await;
        assert_eq!(again.outcome, 8);
    }
}
