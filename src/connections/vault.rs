//! Each user's tokens for the connection, sealed (AES-256-GCM under a key of the
//! connection's own) before they are kept, with the record's key as associated
//! data: a record copied under another user's key does not open, so one user's
//! token cannot be served to another even by whoever can write the store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{Kind, Store, Unavailable};
#[cfg(test)]
use crate::auth::seal::Sealer;
use crate::auth::{AuthMethod, Principal};

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

/// The users' records, in the connection's store.
pub(crate) struct Vault {
    name: String,
    pub(crate) store: Store,
}

impl Vault {
    pub(crate) fn new(name: &str, store: Store) -> Self {
        Self {
            name: name.to_owned(),
            store,
        }
    }

    /// A key under the connection's name: `kind` and the digest of `parts` (no
    /// user's name and no link reference appears in a key).
    pub(crate) fn key_of(&self, kind: &str, parts: &[&str]) -> String {
        let mut digest = Sha256::new();
        for part in parts {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        format!(
            "mcpgate:connection:{}:{kind}:{}",
            self.name,
            hex::encode(digest.finalize())
        )
    }

    /// The record's key. The issuer without a trailing `/`: a token's `iss` and
    /// the sign-in provider's configured issuer may differ by it alone (as
    /// `id_token::same_issuer` allows).
    pub(crate) fn key(&self, user: &User) -> String {
        self.key_of("user", &[user.issuer.trim_end_matches('/'), &user.subject])
    }

    pub(crate) async fn get(&self, user: &User) -> Result<Option<Stored>, Unavailable> {
        self.store.get(&self.key(user), Kind::Record).await
    }

    pub(crate) async fn put(&self, user: &User, stored: &Stored) -> Result<(), Unavailable> {
        self.store.put(&self.key(user), Kind::Record, stored).await
    }

    /// Whether there was one.
    pub(crate) async fn delete(&self, user: &User) -> Result<bool, Unavailable> {
        self.store.delete(&self.key(user), Kind::Record).await
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

    #[tokio::test]
    async fn tokens_are_sealed_and_bound_to_their_user() {
        let store = Store::memory(
            Sealer::derive_for(&[1u8; 32], &[b"test"]),
            10,
            Duration::from_secs(60),
        );
        let vault = Vault::new("github", store);
        vault
            .put(&user("alice"), &stored("alice-token"))
            .await
            .unwrap();
        let Store::Memory { records, .. } = &vault.store else {
            panic!("memory")
        };
        let raw = records.get(&vault.key(&user("alice"))).unwrap();
        assert!(!raw.contains("alice-token"), "sealed at rest");
        let got = vault.get(&user("alice")).await.unwrap().unwrap();
        assert_eq!(got.access_token, "alice-token");
        // Alice's record copied under Bob's key does not open.
        records.insert(vault.key(&user("bob")), raw);
        assert!(vault.get(&user("bob")).await.unwrap().is_none());
        assert!(vault.delete(&user("alice")).await.unwrap());
        assert!(vault.get(&user("alice")).await.unwrap().is_none());
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
