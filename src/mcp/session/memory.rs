//! Sessions held in this process: one replica, or replicas with sticky routing.

use std::time::Duration;

use super::{SessionEntry, SessionError};

/// A map with an idle timeout. moka's own `max_capacity` is not used: it would
/// evict a live session to admit a new one, where a full store must refuse instead.
pub struct MemoryStore {
    entries: moka::sync::Cache<String, SessionEntry>,
    idle_timeout: Duration,
    max_sessions: u64,
}

impl MemoryStore {
    pub(crate) fn new(idle_timeout: Duration, max_sessions: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .time_to_idle(idle_timeout)
                .build(),
            idle_timeout,
            max_sessions,
        }
    }

    pub(crate) fn insert(&self, id: &str, entry: SessionEntry) -> Result<(), SessionError> {
        if self.entries.entry_count() >= self.max_sessions {
            // The count lags behind expiries; settle it before refusing.
            self.entries.run_pending_tasks();
            if self.entries.entry_count() >= self.max_sessions {
                return Err(SessionError::Full(self.max_sessions));
            }
        }
        self.entries.insert(id.to_owned(), entry);
        Ok(())
    }

    /// Looking an entry up restarts its idle timer.
    pub fn get(&self, id: &str) -> Option<SessionEntry> {
        self.entries.get(id)
    }

    pub(crate) fn remove(&self, id: &str) {
        self.entries.invalidate(id);
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::session::Owner;

    fn entry() -> SessionEntry {
        SessionEntry {
            owner: Owner::of(None),
            upstream_id: None,
        }
    }

    #[test]
    fn a_full_store_refuses_rather_than_evicting() {
        let store = MemoryStore::new(Duration::from_secs(60), 2);
        store.insert("a", entry()).unwrap();
        store.insert("b", entry()).unwrap();
        store.entries.run_pending_tasks();
        assert_eq!(store.insert("c", entry()), Err(SessionError::Full(2)));
        assert!(store.get("a").is_some() && store.get("b").is_some());
        store.remove("a");
        store.insert("c", entry()).unwrap();
    }

    #[test]
    fn idle_sessions_are_forgotten() {
        let store = MemoryStore::new(Duration::from_millis(50), 10);
        store.insert("a", entry()).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(store.get("a"), None);
    }
}
