//! The façade's state in Redis, for replicas: any replica can take a sign-in
//! another started, redeem a code another issued, and refuses at once a grant
//! another revoked. Used when the session store is Redis; one process keeps it in
//! memory otherwise.
//!
//! Keys are `mcpgate:as:<kind>:<id>`, each with a TTL, so Redis forgets what is
//! over and no replica sweeps. Records that hold anything sensitive (a sign-in in
//! progress, a grant, a code's binding, a client) are sealed ([`super::seal`]);
//! codes and refresh tokens are keyed by their digest, never stored as issued.
//!
//! Failures are never hidden: a command that fails or gets no answer within
//! [`TIMEOUT`] is [`Unavailable`], never a fall-back to memory, which would let a
//! replica accept what the others revoked.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{ClientLike, Error, ErrorKind, Expiration, KeysInterface, Value};
use fred::types::{ClusterHash, CustomCommand, SetOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::seal::Sealer;
use crate::redis::SharedRedis;

/// Namespace of the façade's keys (the sessions' are `mcpgate:session:`).
const KEY_PREFIX: &str = "mcpgate:as:";

/// Longest wait for one command, as the session store's: a request waits on it,
/// and a 503 the client can retry beats a request that hangs.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Spends a one-time secret (a code, a refresh token) and remembers it as spent,
/// in one step, so that two replicas presented the same secret at once cannot
/// both take it, and the second always sees it spent. The stored value starts
/// with its grant id, up to the first space. Answers `{1, value}` when taken now,
/// `{2, grant id}` when spent before, `{0}` when unknown.
const SPEND: &str = "local v = redis.call('GETDEL', KEYS[1])
if v then
  redis.call('SET', KEYS[2], string.match(v, '^[^ ]+'), 'PX', ARGV[1])
  return {1, v}
end
local used = redis.call('GET', KEYS[2])
if used then return {2, used} end
return {0}";

/// Redis could not answer: the request gets 503, never a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the authorization server's shared state is unavailable: {0}")]
pub(crate) struct Unavailable(pub(crate) String);

impl Unavailable {
    /// The browser's answer: 503, try again.
    pub(crate) fn page(&self) -> axum::response::Response {
        super::page::error_page(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "The sign-in service cannot reach its storage. Try again in a moment.",
        )
    }
}

/// What [`SharedState::spend`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Spent {
    /// Taken now: the stored value.
    Now(String),
    /// Spent before: the grant id it belonged to.
    Before(String),
    Unknown,
}

/// The connection and the sealing key.
#[derive(Clone)]
pub(crate) struct SharedState {
    redis: SharedRedis,
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedState(redis)")
    }
}

impl SharedState {
    pub(crate) fn new(redis: SharedRedis, sealer: Arc<Sealer>) -> Self {
        Self { redis, sealer }
    }

    fn client(&self) -> fred::clients::WithOptions<fred::clients::Client> {
        self.redis
            .client()
            .with_options(&self.redis.options(TIMEOUT))
    }

    /// Stores `value` sealed under `key` for `ttl`.
    pub(crate) async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let sealed = self.seal(key, value);
        self.put_plain(key, &sealed, ttl).await
    }

    /// Stores `value` as is (an id, a digest's grant id: nothing secret).
    pub(crate) async fn put_plain(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        self.client()
            .set::<(), _, _>(key, value, Some(Expiration::PX(millis(ttl))), None, false)
            .await
            .map_err(unavailable)
    }

    /// `value` sealed for `key`, to store as part of a larger value.
    pub(crate) fn seal<T: Serialize>(&self, key: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        self.sealer.seal(key, &json)
    }

    /// The record sealed under `key`; one that does not open or read back is absent.
    pub(crate) fn open<T: DeserializeOwned>(&self, key: &str, sealed: &str) -> Option<T> {
        let record = self
            .sealer
            .open(key, sealed)
            .and_then(|json| serde_json::from_slice(&json).ok());
        if record.is_none() {
            tracing::warn!(
                key = key_kind(key),
                "a state record in Redis does not open (another secret_key, or altered); treated as absent"
            );
        }
        record
    }

    /// The sealed record under `key`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, Unavailable> {
        let stored = self.get_plain(key).await?;
        Ok(stored.and_then(|sealed| self.open(key, &sealed)))
    }

    /// The sealed record under `key`, its TTL restarted at `ttl` (a lookup counts
    /// as use): one `GETEX`.
    pub(crate) async fn get_touch<T: DeserializeOwned>(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<T>, Unavailable> {
        let getex = CustomCommand::new_static("GETEX", ClusterHash::FirstKey, false);
        let args = vec![
            Value::from(key),
            Value::from("PX"),
            Value::from(millis(ttl)),
        ];
        let value = self
            .client()
            .custom::<Value, Value>(getex, args)
            .await
            .map_err(unavailable)?;
        Ok(text(value).and_then(|sealed| self.open(key, &sealed)))
    }

    pub(crate) async fn get_plain(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let value = self
            .client()
            .get::<Value, _>(key)
            .await
            .map_err(unavailable)?;
        Ok(text(value))
    }

    /// Removes and returns what `key` holds, atomically: one replica gets it.
    pub(crate) async fn take_plain(&self, key: &str) -> Result<Option<String>, Unavailable> {
        let value = self
            .client()
            .getdel::<Value, _>(key)
            .await
            .map_err(unavailable)?;
        Ok(text(value))
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, Unavailable> {
        self.client()
            .exists::<u64, _>(key)
            .await
            .map(|count| count > 0)
            .map_err(unavailable)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), Unavailable> {
        self.client().del::<(), _>(key).await.map_err(unavailable)
    }

    /// Adds `member` to the set at `key` and restarts the set's TTL at `ttl`
    /// (an index: the set lives as long as its newest member may).
    pub(crate) async fn index(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let sadd = CustomCommand::new_static("SADD", ClusterHash::FirstKey, false);
        self.client()
            .custom::<Value, Value>(sadd, vec![Value::from(key), Value::from(member)])
            .await
            .map_err(unavailable)?;
        self.touch(key, ttl).await
    }

    /// The members of the set at `key` (none when it is absent).
    pub(crate) async fn members(&self, key: &str) -> Result<Vec<String>, Unavailable> {
        let smembers = CustomCommand::new_static("SMEMBERS", ClusterHash::FirstKey, false);
        let value = self
            .client()
            .custom::<Value, Value>(smembers, vec![Value::from(key)])
            .await
            .map_err(unavailable)?;
        Ok(match value {
            Value::Array(items) => items.into_iter().filter_map(text).collect(),
            _ => Vec::new(),
        })
    }

    /// Sets `key` to `value` for `ttl` unless it exists (`SET NX`): whether it
    /// was set. A lock between replicas.
    pub(crate) async fn put_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let set: Value = self
            .client()
            .set(
                key,
                value,
                Some(Expiration::PX(millis(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(!matches!(set, Value::Null))
    }

    /// Deletes `key` if it still holds `value` (a lock released by its holder
    /// only, not after it expired and another took it).
    pub(crate) async fn delete_if(&self, key: &str, value: &str) -> Result<(), Unavailable> {
        const SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                              return redis.call('DEL', KEYS[1]) else return 0 end";
        let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
        self.client()
            .custom::<Value, Value>(
                eval,
                vec![
                    Value::from(SCRIPT),
                    Value::from(1),
                    Value::from(key),
                    Value::from(value),
                ],
            )
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Restarts `key`'s TTL at `ttl`.
    pub(crate) async fn touch(&self, key: &str, ttl: Duration) -> Result<(), Unavailable> {
        self.client()
            .pexpire::<(), _>(key, millis(ttl), None)
            .await
            .map_err(unavailable)
    }

    /// Sets `key` for `ttl` unless it is set (`SET NX`): whether it was not.
    pub(crate) async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let answer: Option<String> = self
            .client()
            .set(
                key,
                "1",
                Some(Expiration::PX(millis(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(answer.is_some())
    }

    /// Spends the one-time secret under `key`, remembering it under `spent_key`
    /// for `memory` (see [`SPEND`]).
    pub(crate) async fn spend(
        &self,
        key: &str,
        spent_key: &str,
        memory: Duration,
    ) -> Result<Spent, Unavailable> {
        let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
        let args = vec![
            Value::from(SPEND),
            Value::from(2),
            Value::from(key),
            Value::from(spent_key),
            Value::from(millis(memory)),
        ];
        let answer = self
            .client()
            .custom::<Value, Value>(eval, args)
            .await
            .map_err(unavailable)?;
        let Value::Array(items) = answer else {
            return Err(Unavailable("unexpected answer to the spend script".into()));
        };
        let mut items = items.into_iter();
        let outcome = items.next().and_then(|value| value.as_i64());
        let value = items.next().and_then(text);
        Ok(match (outcome, value) {
            (Some(1), Some(value)) => Spent::Now(value),
            (Some(2), Some(grant_id)) => Spent::Before(grant_id),
            _ => Spent::Unknown,
        })
    }
}

/// `mcpgate:as:<kind>:<id>`.
pub(crate) fn key(kind: &str, id: &str) -> String {
    format!("{KEY_PREFIX}{kind}:{id}")
}

/// The kind part of a key, for logs (never the id).
fn key_kind(key: &str) -> &str {
    key.strip_prefix(KEY_PREFIX)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("?")
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.to_string()),
        Value::Bytes(bytes) => String::from_utf8(bytes.to_vec()).ok(),
        _ => None,
    }
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The cause, for logs. fred's messages never carry the URL.
fn unavailable(error: Error) -> Unavailable {
    let cause = match error.kind() {
        ErrorKind::Timeout => format!(
            "Redis did not answer within {}",
            humantime::format_duration(TIMEOUT)
        ),
        ErrorKind::Canceled => "not connected to Redis (reconnecting)".to_owned(),
        _ => format!("Redis: {error}"),
    };
    tracing::warn!("authorization server state: {cause}");
    Unavailable(cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_logged_by_kind_only() {
        assert_eq!(key("code", "abc"), "mcpgate:as:code:abc");
        assert_eq!(key_kind("mcpgate:as:code:abc"), "code");
        assert_eq!(key_kind("other"), "?");
    }
}
