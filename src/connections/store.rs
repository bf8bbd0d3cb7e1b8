//! Where the connection keeps what it holds: each user's tokens, the connect
//! links and the flows in progress. In this process (memory), or in the session
//! store's Redis so that every replica sees the same (a link made on one replica
//! opens on another, a refresh on one is the others' token). Every value is
//! sealed under the connection's key with its own key as associated data, in
//! memory as in Redis. A Redis failure is an error, never a fall-back to memory.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::seal::Sealer;
use crate::authorization_server::shared::SharedState;
pub(crate) use crate::authorization_server::shared::Unavailable;

/// How long a user's tokens are kept in Redis without being used again. A
/// refresh token that lives longer is rare (GitHub's: six months).
const RECORD_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// How long a refresh lock is held at most.
const LOCK_TTL: Duration = Duration::from_secs(30);
/// Held refresh locks above which expired ones are swept on the next lock.
const MAX_HELD_BEFORE_SWEEP: usize = 1024;

pub(crate) enum Store {
    Memory {
        sealer: Sealer,
        /// The users' tokens: bounded, least recently used out first.
        records: moka::sync::Cache<String, String>,
        /// Links and flows: bounded, and gone after the link TTL.
        pending: moka::sync::Cache<String, String>,
        /// The refresh locks held, by key: holder and end of hold. Not in a
        /// bounded cache, which could evict a lock still held and let a second
        /// refresh spend the same refresh token.
        refreshing: std::sync::Mutex<HashMap<String, (String, Instant)>>,
    },
    Redis {
        shared: SharedState,
        /// Links and flows live this long.
        pending_ttl: Duration,
    },
}

/// What a key holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A user's tokens.
    Record,
    /// A link or a flow: single-use, short-lived.
    Pending,
}

impl Store {
    pub(crate) fn memory(sealer: Sealer, max: u64, pending_ttl: Duration) -> Self {
        Self::Memory {
            sealer,
            records: moka::sync::Cache::builder().max_capacity(max).build(),
            pending: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(pending_ttl)
                .build(),
            refreshing: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
        kind: Kind,
    ) -> Result<Option<T>, Unavailable> {
        match self {
            Self::Memory { .. } => Ok(self.memory_cache(kind).and_then(|(sealer, cache)| {
                let sealed = cache.get(key)?;
                open(sealer, key, &sealed)
            })),
            Self::Redis { shared, .. } => shared.get(key).await,
        }
    }

    pub(crate) async fn put<T: Serialize>(
        &self,
        key: &str,
        kind: Kind,
        value: &T,
    ) -> Result<(), Unavailable> {
        match self {
            Self::Memory { .. } => {
                if let Some((sealer, cache)) = self.memory_cache(kind) {
                    let json = serde_json::to_vec(value).unwrap_or_default();
                    cache.insert(key.to_owned(), sealer.seal(key, &json));
                }
                Ok(())
            }
            Self::Redis {
                shared,
                pending_ttl,
            } => {
                let ttl = match kind {
                    Kind::Record => RECORD_TTL,
                    Kind::Pending => *pending_ttl,
                };
                shared.put(key, value, ttl).await
            }
        }
    }

    /// Removes and returns the value: of two takers, one gets it.
    pub(crate) async fn take<T: DeserializeOwned>(
        &self,
        key: &str,
        kind: Kind,
    ) -> Result<Option<T>, Unavailable> {
        match self {
            Self::Memory { .. } => Ok(self.memory_cache(kind).and_then(|(sealer, cache)| {
                let sealed = cache.remove(key)?;
                open(sealer, key, &sealed)
            })),
            Self::Redis { shared, .. } => Ok(shared
                .take_plain(key)
                .await?
                .and_then(|sealed| shared.open(key, &sealed))),
        }
    }

    /// Whether there was a value.
    pub(crate) async fn delete(&self, key: &str, kind: Kind) -> Result<bool, Unavailable> {
        match self {
            Self::Memory { .. } => Ok(self
                .memory_cache(kind)
                .is_some_and(|(_, cache)| cache.remove(key).is_some())),
            Self::Redis { shared, .. } => {
                let existed = shared.exists(key).await?;
                shared.delete(key).await?;
                Ok(existed)
            }
        }
    }

    /// The refresh lock between replicas, as `holder`: whether it was taken. In
    /// memory there are no other replicas: always taken (the process's own lock
    /// does the rest).
    pub(crate) async fn lock(&self, key: &str, holder: &str) -> Result<bool, Unavailable> {
        match self {
            Self::Memory { refreshing, .. } => {
                let mut held = refreshing.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                // A hold whose future was dropped before `unlock` ends by itself.
                if held.len() > MAX_HELD_BEFORE_SWEEP {
                    held.retain(|_, (_, until)| *until > now);
                }
                match held.get(key) {
                    Some((_, until)) if *until > now => Ok(false),
                    _ => {
                        held.insert(key.to_owned(), (holder.to_owned(), now + LOCK_TTL));
                        Ok(true)
                    }
                }
            }
            Self::Redis { shared, .. } => {
                shared
                    .put_if_absent(&format!("{key}:lock"), holder, LOCK_TTL)
                    .await
            }
        }
    }

    pub(crate) async fn unlock(&self, key: &str, holder: &str) {
        if let Self::Memory { refreshing, .. } = self {
            let mut held = refreshing.lock().unwrap_or_else(PoisonError::into_inner);
            if held.get(key).is_some_and(|(by, _)| by == holder) {
                held.remove(key);
            }
        }
        if let Self::Redis { shared, .. } = self
            && let Err(error) = shared.delete_if(&format!("{key}:lock"), holder).await
        {
            // It expires on its own.
            tracing::warn!("a connection's refresh lock was not released: {error}");
        }
    }

    fn memory_cache(&self, kind: Kind) -> Option<(&Sealer, &moka::sync::Cache<String, String>)> {
        match self {
            Self::Memory {
                sealer,
                records,
                pending,
                ..
            } => Some((
                sealer,
                match kind {
                    Kind::Record => records,
                    Kind::Pending => pending,
                },
            )),
            Self::Redis { .. } => None,
        }
    }
}

fn open<T: DeserializeOwned>(sealer: &Sealer, key: &str, sealed: &str) -> Option<T> {
    sealer
        .open(key, sealed)
        .and_then(|json| serde_json::from_slice(&json).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Store {
        Store::memory(Sealer::derive_for(&[7u8; 32], &[b"test"]), 10, LOCK_TTL)
    }

    #[tokio::test]
    async fn a_memory_refresh_lock_has_one_holder_until_released_or_expired() {
        let store = memory();
        assert!(store.lock("alice", "one").await.unwrap());
        assert!(!store.lock("alice", "two").await.unwrap(), "held");
        assert!(store.lock("bob", "two").await.unwrap(), "per user");
        store.unlock("alice", "two").await;
        assert!(
            !store.lock("alice", "three").await.unwrap(),
            "only its holder releases it"
        );
        store.unlock("alice", "one").await;
        assert!(store.lock("alice", "three").await.unwrap());
        // A hold whose holder went away without releasing it ends by itself.
        if let Store::Memory { refreshing, .. } = &store {
            let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
            refreshing
                .lock()
                .unwrap()
                .insert("carol".into(), ("gone".into(), past));
        }
        assert!(store.lock("carol", "four").await.unwrap());
    }
}
