//! Verified tokens, remembered by SHA-256 so that a repeated token costs a hash and a
//! lookup instead of a signature check. Bounded in size; an entry lives until the
//! token's `exp` or the configured TTL, whichever is sooner. The token itself is never
//! stored.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::error::{AuthError, TokenProblem, Unavailability};
use super::jwks::Provider;
use super::principal::Principal;

/// The SHA-256 of a token: the cache key, and (later) the audit fingerprint.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Clone)]
struct Entry {
    principal: Arc<Principal>,
    /// The key provider that verified a JWT; re-checked on every hit.
    verified_by: Option<Arc<Provider>>,
    ttl: Duration,
}

/// A cached value that decides its own lifetime (a token's `exp`, a negative answer's
/// short TTL), for moka caches built with [`OwnTtl`].
pub trait HasTtl {
    /// How long the cache may keep this value from now.
    fn ttl(&self) -> Duration;
}

/// moka expiry policy: each entry lives for its own [`HasTtl::ttl`].
pub struct OwnTtl;

impl<K, V: HasTtl> moka::Expiry<K, V> for OwnTtl {
    fn expire_after_create(&self, _key: &K, value: &V, _now: Instant) -> Option<Duration> {
        Some(value.ttl())
    }
}

impl HasTtl for Entry {
    fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The verified-token cache.
pub struct VerifiedTokens {
    cache: moka::sync::Cache<[u8; 32], Entry>,
    max_ttl: Duration,
}

impl VerifiedTokens {
    pub(crate) fn new(max_entries: u64, max_ttl: Duration) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(OwnTtl)
                .build(),
            max_ttl,
        }
    }

    /// A remembered principal: `None` on a miss (or an expired token), an error when
    /// the keys that verified it are stale or no longer include its key.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Result<Arc<Principal>, AuthError>> {
        let entry = self.cache.get(digest)?;
        // moka's expiry is approximate; `exp` is not.
        if entry
            .principal
            .expires_at
            .is_some_and(|exp| exp <= SystemTime::now())
        {
            self.cache.invalidate(digest);
            return None;
        }
        if let Some(provider) = &entry.verified_by {
            if provider.keys().is_none() {
                return Some(Err(AuthError::Unavailable(Unavailability::KeysUnavailable)));
            }
            if !provider.still_vouches_for(entry.principal.key_id.as_deref()) {
                self.cache.invalidate(digest);
                return Some(Err(TokenProblem::UnknownKid.into()));
            }
        }
        Some(Ok(entry.principal))
    }

    /// Whether a token is remembered (its checks on a hit are cheap).
    pub(crate) fn contains(&self, digest: &[u8; 32]) -> bool {
        self.cache.contains_key(digest)
    }

    pub(crate) fn insert(
        &self,
        digest: [u8; 32],
        principal: Arc<Principal>,
        verified_by: Option<Arc<Provider>>,
    ) {
        let until_exp = principal
            .expires_at
            .and_then(|exp| exp.duration_since(SystemTime::now()).ok())
            .unwrap_or(self.max_ttl);
        let ttl = until_exp.min(self.max_ttl);
        if !ttl.is_zero() {
            self.cache.insert(
                digest,
                Entry {
                    principal,
                    verified_by,
                    ttl,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::{AuthMethod, Scopes};

    fn expiring(expires_at: SystemTime) -> Arc<Principal> {
        Arc::new(Principal {
            issuer: None,
            subject: Some("alice".to_owned()),
            client_id: None,
            scopes: Scopes::new(["mcp:connect"]),
            expires_at: Some(expires_at),
            method: AuthMethod::Jwt,
            key_id: None,
            api_key_id: None,
            claims: serde_json::Map::new(),
            grant_id: None,
            _verified: crate::auth::principal::Verified,
        })
    }

    #[test]
    fn a_token_verified_inside_the_leeway_is_not_honoured_from_the_cache() {
        // Verified after its `exp` (the leeway allowed it): nothing in the entry's
        // lifetime stops it, so only the check on each hit keeps it from being
        // honoured long after `exp` plus the leeway.
        let cache = VerifiedTokens::new(100, Duration::from_secs(300));
        let digest = digest("expired-token");
        cache.insert(
            digest,
            expiring(SystemTime::now() - Duration::from_secs(1)),
            None,
        );
        assert!(cache.get(&digest).is_none());
    }

    #[test]
    fn a_token_is_honoured_from_the_cache_until_its_exp() {
        let cache = VerifiedTokens::new(100, Duration::from_secs(300));
        let digest = digest("live-token");
        let principal = expiring(SystemTime::now() + Duration::from_secs(60));
        cache.insert(digest, Arc::clone(&principal), None);
        let remembered = cache.get(&digest).unwrap().unwrap();
        assert!(Arc::ptr_eq(&remembered, &principal));
    }
}
