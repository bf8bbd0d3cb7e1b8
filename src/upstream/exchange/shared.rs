//! Exchanged tokens shared between replicas through the sessions' Redis, so that a
//! caller whose requests land on several replicas costs the provider one exchange,
//! not one per replica. It sits behind each replica's own cache: a local miss looks
//! here before asking the provider, and a new exchanged token is written here.
//!
//! One key per cache key, `mcpgate:exchange:<hex of the cache key>` (a digest over
//! the caller's token and what is asked for, never the token), holding the exchanged
//! token and its expiry sealed (AES-256-GCM, `auth::seal`) under a key derived from
//! the exchange client's secret, endpoint and id: a reader of Redis learns no token,
//! and a writer without the secret cannot plant one. The key lives as long as the
//! token may be reused (its expiry less `renew_before`).
//!
//! An optimisation, not a source of truth: when Redis fails or is slow, the provider
//! is asked directly and the failure is counted
//! (`mcpgate_token_cache_total{cache="exchange_shared",result="error"}`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::{ClientLike, Expiration, KeysInterface, Value as RedisValue};
use serde::{Deserialize, Serialize};

use crate::auth::seal::Sealer;
use crate::auth::shared_cache::TIMEOUT;
use crate::config::TokenExchangeConfig;
use crate::redis::SharedRedis;
use crate::telemetry::metrics::{TokenCache, metrics};

/// Namespace of the keys (the introspection cache's are `mcpgate:introspection:`).
const KEY_PREFIX: &str = "mcpgate:exchange:";
/// HKDF's `info`: this key seals exchanged tokens and nothing else.
const PURPOSE: &[u8] = b"mcpgate token exchange cache v1";

/// What a record holds once opened.
#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    /// Unix milliseconds.
    expires_at: u64,
}

/// The shared store: the process's Redis connection and the sealing key.
pub(super) struct SharedExchanges {
    redis: SharedRedis,
    sealer: Sealer,
}

impl SharedExchanges {
    /// Replicas configured alike (same client, secret and endpoint) share records;
    /// any other reads them as misses.
    pub(super) fn new(redis: SharedRedis, config: &TokenExchangeConfig) -> Self {
        let sealer = Sealer::derive_for(
            config.client_secret.expose().as_bytes(),
            &[
                PURPOSE,
                b"\0",
                config.token_url.as_str().as_bytes(),
                b"\0",
                config.client_id.as_bytes(),
            ],
        );
        Self { redis, sealer }
    }

    /// The exchanged token stored under `key` and when it expires; `None` on a miss,
    /// a record that does not open, or a Redis failure.
    pub(super) async fn get(&self, key: &[u8; 32]) -> Option<(String, SystemTime)> {
        let name = redis_key(key);
        let options = self.redis.options(TIMEOUT);
        let client = self.redis.client().with_options(&options);
        let lookup = client.get::<RedisValue, _>(name.as_str());
        let value = match tokio::time::timeout(TIMEOUT, lookup).await {
            Ok(Ok(value)) => value,
            Ok(Err(error)) if error.details().starts_with("WRONGTYPE") => RedisValue::Null,
            Ok(Err(error)) => return self.failed("lookup", &error.to_string()),
            Err(_) => return self.failed("lookup", "no answer in time"),
        };
        let found = match value {
            RedisValue::String(text) => self.open(&name, &text),
            RedisValue::Bytes(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| self.open(&name, text)),
            _ => None,
        };
        metrics().token_cache(TokenCache::ExchangeShared, found.is_some());
        found
    }

    /// Stores `access_token` (expiring at `expires_at`) for `ttl`; nothing for a
    /// zero `ttl`. A failure is counted and changes nothing else.
    pub(super) async fn put(
        &self,
        key: &[u8; 32],
        access_token: &str,
        expires_at: SystemTime,
        ttl: Duration,
    ) {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if ttl_ms == 0 {
            return;
        }
        let Ok(plaintext) = serde_json::to_vec(&Stored {
            access_token: access_token.to_owned(),
            expires_at: unix_ms(expires_at),
        }) else {
            return;
        };
        let name = redis_key(key);
        let sealed = self.sealer.seal(&name, &plaintext);
        let options = self.redis.options(TIMEOUT);
        let client = self.redis.client().with_options(&options);
        let write = client.set::<(), _, _>(
            name.as_str(),
            sealed,
            Some(Expiration::PX(ttl_ms)),
            None,
            false,
        );
        match tokio::time::timeout(TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.failed::<()>("write", &error.to_string());
            }
            Err(_) => {
                self.failed::<()>("write", "no answer in time");
            }
        }
    }

    /// Removes the record under `key` (its token was refused upstream).
    pub(super) async fn delete(&self, key: &[u8; 32]) {
        let options = self.redis.options(TIMEOUT);
        let client = self.redis.client().with_options(&options);
        let delete = client.del::<i64, _>(redis_key(key));
        match tokio::time::timeout(TIMEOUT, delete).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                self.failed::<()>("delete", &error.to_string());
            }
            Err(_) => {
                self.failed::<()>("delete", "no answer in time");
            }
        }
    }

    fn open(&self, name: &str, sealed: &str) -> Option<(String, SystemTime)> {
        let opened = self.sealer.open(name, sealed);
        if opened.is_none() {
            tracing::warn!(
                "token exchange cache: a record in Redis did not open (another format, another \
                 client secret, or not written by mcpgate); treated as a miss"
            );
        }
        let stored: Stored = serde_json::from_slice(&opened?).ok()?;
        Some((
            stored.access_token,
            UNIX_EPOCH + Duration::from_millis(stored.expires_at),
        ))
    }

    fn failed<T>(&self, what: &str, cause: &str) -> Option<T> {
        metrics().token_cache_error(TokenCache::ExchangeShared);
        tracing::debug!("token exchange cache: Redis {what} failed ({cause}); asking the provider");
        None
    }
}

fn redis_key(key: &[u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", hex::encode(key))
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}
