//! Sessions in Redis, shared by every replica: any replica can serve any session,
//! and every replica checks ownership against the same record.
//!
//! One key per session, `mcpgate:session:<id>`, holding a compact string (see
//! [`encode`]) whose TTL is the idle timeout. A lookup is one `GETEX … PX`, which
//! reads the record and restarts its idle timer in a single round trip; a new
//! session is one `SET … PX`, a closed one one `DEL`. Redis expires idle sessions by
//! itself, so no replica sweeps.
//!
//! Failures are never hidden: a command that fails or gets no answer within
//! [`COMMAND_TIMEOUT`] is [`SessionError::Unavailable`] (503), never a fall-back to
//! memory, which would let a replica hand out sessions the others cannot see.
//!
//! The connection is the process's only one to Redis: what else replicas share (the
//! introspection cache) borrows it as a [`crate::redis::SharedRedis`], with its own timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use fred::prelude::{
    ClientLike, Config, ConnectionConfig, Error, ErrorKind, EventInterface, Expiration,
    KeysInterface, Options, PerformanceConfig, ReconnectPolicy, Value,
};
use fred::types::config::UnresponsiveConfig;
use fred::types::{ClusterHash, CustomCommand};

use super::{Owner, SessionEntry, SessionError};
use crate::config::Secret;
use crate::redis::{STATE_DOWN, STATE_UNKNOWN, STATE_UP, SharedRedis};

/// Namespace of mcpgate's keys, so that a Redis shared with other software (or
/// with other mcpgate data later) never collides with them.
const KEY_PREFIX: &str = "mcpgate:session:";

/// First field of a stored record: a record of another format (a future mcpgate
/// during a rolling upgrade) reads as an unknown session rather than a wrong one.
const FORMAT: &str = "1";

/// An [`Owner`] in hex: a 16-byte digest.
const OWNER_HEX_LEN: usize = 32;

/// How long one command may take, connection problems included. Short: a request
/// waits on it, and a 503 the client can retry beats a request that hangs.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection with a command unanswered this long is dropped and re-established:
/// a peer that vanished without closing (a dead host, a dropped NAT entry) would
/// otherwise hold the connection until TCP gives up, many minutes later.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(5);

/// Reconnection backoff bounds (milliseconds): quick at first, then at most one
/// attempt per `RECONNECT_MAX_MS` for as long as Redis is down.
const RECONNECT_MIN_MS: u32 = 100;
const RECONNECT_MAX_MS: u32 = 2_000;

/// A Redis-backed session store. One multiplexed connection: Redis answers each
/// command in microseconds, so a connection carries far more requests per second
/// than one mcpgate process serves.
pub struct RedisStore {
    client: fred::clients::Client,
    /// `STATE_*`, as the connection events last told.
    state: Arc<AtomicU8>,
    /// Every command is bounded by [`COMMAND_TIMEOUT`]. While the connection is
    /// being made (at start, or a reconnection not yet known to have failed), a
    /// command waits for it; once Redis is known to be unreachable, it fails at
    /// once rather than making every request wait out the timeout for a 503.
    waiting: Options,
    failing_fast: Options,
    idle_timeout: Duration,
}

impl RedisStore {
    /// Reads `session.store`. The error never repeats the URL: it may carry a password.
    pub fn parse_url(url: &Secret) -> Result<Config, String> {
        let mut config = Config::from_url(url.expose())
            .map_err(|error| format!("not a usable Redis URL: {}", error.details()))?;
        // Not connecting at start is not fatal: mcpgate serves (with 503 for what
        // needs sessions) and connects once Redis answers.
        config.fail_fast = false;
        Ok(config)
    }

    /// Starts connecting in the background and returns at once, so mcpgate starts
    /// (and answers what needs no session) while Redis is down. Reconnects for as
    /// long as it takes. Needs a Tokio runtime.
    pub fn connect(url: &Secret, idle_timeout: Duration) -> Result<Self, String> {
        let config = Self::parse_url(url)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the Redis session store needs a Tokio runtime".to_owned());
        }
        let performance = PerformanceConfig {
            default_command_timeout: COMMAND_TIMEOUT,
            ..PerformanceConfig::default()
        };
        let connection = ConnectionConfig {
            connection_timeout: COMMAND_TIMEOUT,
            internal_command_timeout: COMMAND_TIMEOUT,
            unresponsive: UnresponsiveConfig {
                max_timeout: Some(UNRESPONSIVE_AFTER),
                interval: Duration::from_secs(1),
            },
            ..ConnectionConfig::default()
        };
        // 0 attempts: unlimited.
        let policy = ReconnectPolicy::new_exponential(0, RECONNECT_MIN_MS, RECONNECT_MAX_MS, 2);
        let client =
            fred::clients::Client::new(config, Some(performance), Some(connection), Some(policy));
        let state = Arc::new(AtomicU8::new(STATE_UNKNOWN));
        track_connection(&client, &state);
        tokio::spawn(keep_connecting(client.clone()));
        let waiting = Options {
            timeout: Some(COMMAND_TIMEOUT),
            max_attempts: Some(1),
            ..Options::default()
        };
        let failing_fast = Options {
            fail_fast: true,
            ..waiting.clone()
        };
        Ok(Self {
            client,
            state,
            waiting,
            failing_fast,
            idle_timeout,
        })
    }

    /// The connection, for the other data replicas share.
    pub fn shared(&self) -> SharedRedis {
        SharedRedis::new(self.client.clone(), Arc::clone(&self.state))
    }

    fn options(&self) -> &Options {
        if self.state.load(Ordering::Relaxed) == STATE_DOWN {
            &self.failing_fast
        } else {
            &self.waiting
        }
    }

    /// Stores a new session with the idle timeout as its TTL.
    pub async fn insert(&self, id: &str, entry: &SessionEntry) -> Result<(), SessionError> {
        // No NX: the id is 128 fresh random bits, so it cannot name an existing key.
        self.client
            .with_options(self.options())
            .set::<(), _, _>(
                key(id),
                encode(entry),
                Some(Expiration::PX(self.ttl_ms())),
                None,
                false,
            )
            .await
            .map_err(unavailable)
    }

    /// The session's record, restarting its TTL: one round trip (GETEX, Redis 6.2
    /// or later). A record that cannot be read, or a key of another type, is an
    /// unknown session (the client starts a new one), not an error that would keep
    /// failing for as long as the key lives.
    pub async fn get(&self, id: &str) -> Result<Option<SessionEntry>, SessionError> {
        let getex = CustomCommand::new_static("GETEX", ClusterHash::FirstKey, false);
        let args = vec![
            Value::from(key(id)),
            Value::from("PX"),
            Value::from(self.ttl_ms()),
        ];
        let answer = self
            .client
            .with_options(self.options())
            .custom::<Value, Value>(getex, args)
            .await;
        let value = match answer {
            Ok(value) => value,
            Err(error) if error.details().starts_with("WRONGTYPE") => Value::Array(Vec::new()),
            Err(error) => return Err(unavailable(error)),
        };
        let bytes = match &value {
            Value::Null => return Ok(None),
            Value::String(text) => text.as_bytes(),
            Value::Bytes(bytes) => bytes.as_ref(),
            _ => &[],
        };
        let entry = decode(bytes);
        if entry.is_none() {
            tracing::warn!("malformed session record in Redis: treated as an unknown session");
        }
        Ok(entry)
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), SessionError> {
        self.client
            .with_options(self.options())
            .del::<(), _>(key(id))
            .await
            .map_err(unavailable)
    }

    /// A PING, for `/readyz`.
    pub async fn ping(&self) -> Result<(), SessionError> {
        self.client
            .with_options(self.options())
            .ping::<()>(None)
            .await
            .map_err(unavailable)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    fn ttl_ms(&self) -> i64 {
        // Validation refuses 0; a sub-millisecond timeout still gets a live key.
        i64::try_from(self.idle_timeout.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

fn key(id: &str) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// `1:<owner hex>` or `1:<owner hex>:<upstream id>`. The owner is fixed-length, so
/// the upstream id (visible ASCII, `:` included) needs no escaping.
fn encode(entry: &SessionEntry) -> String {
    let owner = entry.owner.to_hex();
    match &entry.upstream_id {
        None => format!("{FORMAT}:{owner}"),
        Some(upstream) => format!("{FORMAT}:{owner}:{upstream}"),
    }
}

/// The inverse of [`encode`]; `None` for anything it did not produce.
fn decode(stored: &[u8]) -> Option<SessionEntry> {
    let text = std::str::from_utf8(stored).ok()?;
    let rest = text.strip_prefix(FORMAT)?.strip_prefix(':')?;
    let owner = Owner::from_hex(rest.get(..OWNER_HEX_LEN)?)?;
    let upstream_id = match rest.get(OWNER_HEX_LEN..)? {
        "" => None,
        tail => Some(tail.strip_prefix(':')?.to_owned()),
    };
    Some(SessionEntry { owner, upstream_id })
}

/// The cause, for logs and `/readyz`. fred's messages name the failure (refused,
/// timed out, WRONGPASS) and never the URL, so no password can leak through them.
fn unavailable(error: Error) -> SessionError {
    let cause = match error.kind() {
        ErrorKind::Timeout => format!(
            "Redis did not answer within {}",
            humantime::format_duration(COMMAND_TIMEOUT)
        ),
        // What a fail-fast command gets while the client is reconnecting.
        ErrorKind::Canceled => "not connected to Redis (reconnecting)".to_owned(),
        _ => format!("Redis: {error}"),
    };
    SessionError::Unavailable(cause)
}

/// The connection task only ends on an error fred will not retry (a bad
/// configuration); restarting it after a pause keeps a broken store from staying
/// broken after Redis is fixed, and the 503s say why meanwhile.
async fn keep_connecting(client: fred::clients::Client) {
    loop {
        let ended = client.connect().await;
        let cause = match ended {
            Ok(Ok(())) => "connection closed".to_owned(),
            Ok(Err(error)) => error.to_string(),
            Err(join) => join.to_string(),
        };
        tracing::warn!("session store: Redis connection task ended ({cause}); restarting");
        tokio::time::sleep(Duration::from_millis(u64::from(RECONNECT_MAX_MS))).await;
    }
}

/// Follows the connection's state, and logs when Redis becomes unreachable and when
/// it answers again, once per change: the reconnection loop retries every couple of
/// seconds and must not flood the log.
fn track_connection(client: &fred::clients::Client, state: &Arc<AtomicU8>) {
    let down = Arc::clone(state);
    let state = Arc::clone(state);
    client.on_error(move |(error, _server)| {
        if down.swap(STATE_DOWN, Ordering::Relaxed) != STATE_DOWN {
            tracing::warn!(
                "session store: Redis unreachable ({error}); requests that need a session \
                 get 503 until it answers again"
            );
        }
        async { Ok(()) }
    });
    client.on_reconnect(move |server| {
        if state.swap(STATE_UP, Ordering::Relaxed) != STATE_UP {
            tracing::info!("session store: connected to Redis at {server}");
        }
        async { Ok(()) }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner::of(None)
    }

    #[test]
    fn records_round_trip_with_and_without_an_upstream_id() {
        for upstream_id in [None, Some(""), Some("abc"), Some("a:b:c"), Some("x y")] {
            let entry = SessionEntry {
                owner: owner(),
                upstream_id: upstream_id.map(str::to_owned),
            };
            let stored = encode(&entry);
            assert_eq!(decode(stored.as_bytes()), Some(entry), "{stored}");
        }
    }

    #[test]
    fn the_record_is_compact_and_names_no_user() {
        let entry = SessionEntry {
            owner: owner(),
            upstream_id: Some("up-1".into()),
        };
        assert_eq!(encode(&entry), format!("1:{}:up-1", owner().to_hex()));
        assert_eq!(key("0123"), "mcpgate:session:0123");
    }

    #[test]
    fn malformed_records_are_unknown_sessions() {
        let hex = owner().to_hex();
        let bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"1".to_vec(),
            b"1:".to_vec(),
            format!("2:{hex}").into_bytes(),
            format!("1{hex}").into_bytes(),
            format!("1:{}", &hex[..31]).into_bytes(),
            format!("1:{}", hex.to_uppercase().replace('A', "Z")).into_bytes(),
            format!("1:{hex}x").into_bytes(),
            format!("1:{hex};up").into_bytes(),
            format!("1:é{}", &hex[2..]).into_bytes(),
            vec![0xff, 0xfe, b':'],
            [b"1:".as_slice(), &[0xc3], hex.as_bytes()].concat(),
        ];
        for stored in bad {
            assert_eq!(
                decode(&stored),
                None,
                "{:?}",
                String::from_utf8_lossy(&stored)
            );
        }
    }

    #[test]
    fn a_url_error_does_not_repeat_the_url() {
        let url = Secret::new("redis://user:hunter2@/0");
        let error = RedisStore::parse_url(&url).unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(RedisStore::parse_url(&Secret::new("redis://:pw@127.0.0.1:6380/2")).is_ok());
    }

    #[test]
    fn without_a_runtime_the_store_refuses_rather_than_panics() {
        let url = Secret::new("redis://127.0.0.1:1");
        assert!(RedisStore::connect(&url, Duration::from_secs(1)).is_err());
    }
}
