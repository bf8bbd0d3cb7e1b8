//! Each user's tokens for the connection, sealed (AES-256-GCM under a key of the
//! connection's own) before they are kept, with the record's key as associated
//! data: a record copied under another user's key does not open, so one user's
//! token cannot be served to another even by whoever can write the store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{AuthMethod, Principal};
use crate::authorization_server::seal::Sealer;

/// Who a connection belongs to: the verified principal's issuer and subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) issuer: String,
    pub(crate) subject: String,
}

impl User {
    /// The user a principal is. `None` for an API key (nobody can prove in a
    /// browser that they hold it) and for a token without issuer or subject.
    pub(crate) fn of(principal: &Principal) -> Option<Self> {
        if principal.method == AuthMethod::ApiKey {
            return None;
        }
        Some(Self {
            issuer: principal.issuer.clone()?,
            subject: principal.subject.clone()?,
        })
    }
}

/// One user's connection.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    /// Seconds since the epoch; `None`: the service gave no lifetime.
    pub(crate) expires_at: Option<u64>,
    pub(crate) scope: Option<String>,
    pub(crate) connected_at: u64,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Stored {
    /// Whether the token must be refreshed before use: it expires within `before`.
    pub(crate) fn due(&self, before: Duration, now: u64) -> bool {
        self.expires_at
            .is_some_and(|at| at <= now.saturating_add(before.as_secs()))
    }

    /// Whether it has expired.
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The sealed records, bounded.
pub(crate) struct Vault {
    name: String,
    sealer: Sealer,
    memory: moka::sync::Cache<String, String>,
}

impl Vault {
    pub(crate) fn new(name: &str, sealer: Sealer, max: u64) -> Self {
        Self {
            name: name.to_owned(),
            sealer,
            memory: moka::sync::Cache::builder().max_capacity(max).build(),
        }
    }

    /// The record's key: the user by digest (no name of theirs in a key), under
    /// the connection's name.
    pub(crate) fn key(&self, user: &User) -> String {
        let mut digest = Sha256::new();
        for part in [user.issuer.as_bytes(), user.subject.as_bytes()] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        format!(
            "mcpgate:connection:{}:{}",
            self.name,
            hex::encode(digest.finalize())
        )
    }

    pub(crate) fn get(&self, user: &User) -> Option<Stored> {
        let key = self.key(user);
        let sealed = self.memory.get(&key)?;
        let plain = self.sealer.open(&key, &sealed)?;
        serde_json::from_slice(&plain).ok()
    }

    pub(crate) fn put(&self, user: &User, stored: &Stored) {
        let key = self.key(user);
        let Ok(plain) = serde_json::to_vec(stored) else {
            return;
        };
        let sealed = self.sealer.seal(&key, &plain);
        self.memory.insert(key, sealed);
    }

    /// Whether there was one.
    pub(crate) fn delete(&self, user: &User) -> bool {
        self.memory.remove(&self.key(user)).is_some()
    }

    #[cfg(test)]
    pub(crate) fn raw(&self, user: &User) -> Option<String> {
        self.memory.get(&self.key(user))
    }

    #[cfg(test)]
    pub(crate) fn raw_put(&self, key: String, sealed: String) {
        self.memory.insert(key, sealed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(subject: &str) -> User {
        User {
            issuer: "https://idp".into(),
            subject: subject.into(),
        }
    }

    fn stored(token: &str) -> Stored {
        Stored {
            access_token: token.into(),
            refresh_token: Some("r".into()),
            expires_at: Some(100),
            scope: None,
            connected_at: 1,
        }
    }

    #[test]
    fn tokens_are_sealed_and_bound_to_their_user() {
        let vault = Vault::new("github", Sealer::derive_for(b"test", &[1u8; 32]), 10);
        vault.put(&user("alice"), &stored("alice-token"));
        let raw = vault.raw(&user("alice")).unwrap();
        assert!(!raw.contains("alice-token"), "sealed at rest");
        assert_eq!(
            vault.get(&user("alice")).unwrap().access_token,
            "alice-token"
        );
        // Alice's record copied under Bob's key does not open.
        vault.raw_put(vault.key(&user("bob")), raw);
        assert!(vault.get(&user("bob")).is_none());
        assert!(vault.delete(&user("alice")));
        assert!(vault.get(&user("alice")).is_none());
    }

    #[test]
    fn refresh_is_due_before_expiry() {
        let record = stored("t");
        assert!(!record.due(Duration::from_secs(10), 80));
        assert!(record.due(Duration::from_secs(30), 80));
        assert!(!record.expired(99));
        assert!(record.expired(100));
    }
}
