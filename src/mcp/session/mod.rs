//! MCP sessions bound to their owner. The upstream's session id never reaches the
//! client: mcpgate hands out its own (128 random bits) and keeps which principal
//! opened it and which upstream session it stands for. A request naming a session
//! that does not exist or belongs to someone else gets the same 404, so a session
//! id is useless to anyone but its owner, and probing learns nothing.

mod config;
mod memory;
mod owner;
mod redis;

use std::time::Duration;

pub use self::memory::MemoryStore;
pub use self::owner::Owner;
pub use self::redis::RedisStore;
use crate::config::{ConfigError, SessionConfig, SessionStoreConfig};
pub use crate::redis::SharedRedis;
use crate::telemetry::metrics::metrics;

/// `Mcp-Session-Id`, as sent and answered.
pub const SESSION_HEADER: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// Hex digits of a session id mcpgate issues: 128 random bits.
const ID_HEX_LEN: usize = 32;

/// What mcpgate keeps about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub(crate) owner: Owner,
    /// The upstream's own session id (`None` when mcpgate itself is the session's
    /// server, as for a stdio child).
    pub upstream_id: Option<String>,
}

/// Why a session could not be opened or looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `session.max_sessions` (the value) are open already: a new one gets 503.
    #[error("too many open sessions (session.max_sessions is {0})")]
    Full(u64),
    /// The shared store (Redis) did not answer usably; the cause, for logs.
    #[error("session store unavailable")]
    Unavailable(String),
}

impl SessionError {
    /// The full cause, for logs.
    pub fn detail(&self) -> String {
        match self {
            Self::Full(_) => self.to_string(),
            Self::Unavailable(cause) => format!("session store unavailable: {cause}"),
        }
    }
}

/// The session store chosen by `session.store`.
pub enum Sessions {
    /// `session.stateless`: no sessions at all. With `session.store: redis://…`
    /// the connection is still made, for what else replicas share (rate limits,
    /// the introspection cache, the authorization server's state).
    Stateless(Option<SharedRedis>),
    /// Sessions held by this process only (the default).
    Memory(MemoryStore),
    /// Shared by replicas. `session.max_sessions` does not apply: an exact count
    /// across replicas would cost a shared counter on every open and a sweep of
    /// expiries; Redis's own `maxmemory` is the bound there. Boxed: it is much
    /// larger than the other variants. Its calls' futures are boxed too: they are
    /// several KiB, and inline they would make every request's future that large,
    /// copied on every request, whichever store is configured.
    Redis(Box<RedisStore>),
}

impl Sessions {
    /// The store `config` names. A Redis store starts connecting in the background
    /// (inside a Tokio runtime): Redis being down at start is not an error.
    pub fn from_config(config: &SessionConfig) -> Result<Self, ConfigError> {
        if config.stateless {
            let shared = match &config.store {
                SessionStoreConfig::Memory => None,
                SessionStoreConfig::Redis(url) => Some(
                    RedisStore::connect(url, config.idle_timeout)
                        .map_err(|message| ConfigError::invalid("session.store", message))?
                        .shared(),
                ),
            };
            return Ok(Self::Stateless(shared));
        }
        Ok(match &config.store {
            SessionStoreConfig::Memory => {
                Self::Memory(MemoryStore::new(config.idle_timeout, config.max_sessions))
            }
            SessionStoreConfig::Redis(url) => Self::Redis(Box::new(
                RedisStore::connect(url, config.idle_timeout)
                    .map_err(|message| ConfigError::invalid("session.store", message))?,
            )),
        })
    }

    /// The Redis connection, when sessions are kept in Redis: the introspection cache
    /// shares it (and so is shared by replicas exactly when sessions are).
    pub fn shared_redis(&self) -> Option<SharedRedis> {
        match self {
            Self::Redis(store) => Some(store.shared()),
            Self::Stateless(shared) => shared.clone(),
            Self::Memory(_) => None,
        }
    }

    pub(crate) fn is_stateless(&self) -> bool {
        matches!(self, Self::Stateless(_))
    }

    /// Records a new session and returns the id to give the client.
    pub async fn open(&self, entry: SessionEntry) -> Result<String, SessionError> {
        let id = new_id();
        match self {
            Self::Stateless(_) => {}
            Self::Memory(store) => store.insert(&id, entry)?,
            Self::Redis(store) => Box::pin(store.insert(&id, &entry))
                .await
                .inspect_err(count)?,
        }
        Ok(id)
    }

    /// The session `id` if it exists and `owner` opened it; `None` otherwise (the
    /// two are not told apart). Counts as use: the idle timer restarts.
    pub async fn resolve(
        &self,
        id: &str,
        owner: &Owner,
    ) -> Result<Option<SessionEntry>, SessionError> {
        if !is_well_formed(id) {
            return Ok(None);
        }
        let entry = match self {
            Self::Stateless(_) => None,
            Self::Memory(store) => store.get(id),
            Self::Redis(store) => Box::pin(store.get(id)).await.inspect_err(count)?,
        };
        Ok(entry.filter(|entry| entry.owner == *owner))
    }

    /// Forgets the session (DELETE, or the upstream no longer knows it).
    pub async fn close(&self, id: &str) -> Result<(), SessionError> {
        match self {
            Self::Stateless(_) => {}
            Self::Memory(store) => store.remove(id),
            Self::Redis(store) => Box::pin(store.remove(id)).await.inspect_err(count)?,
        }
        Ok(())
    }

    /// How long an unused session is kept.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self {
            Self::Stateless(_) => None,
            Self::Memory(store) => Some(store.idle_timeout()),
            Self::Redis(store) => Some(store.idle_timeout()),
        }
    }

    /// For `/readyz`: whether the store answers (a PING for Redis). Not counted in
    /// `mcpgate_session_store_errors_total`, which counts failed requests only, so
    /// that probes do not inflate it.
    pub async fn readiness(&self) -> Result<(), String> {
        match self {
            Self::Stateless(_) | Self::Memory(_) => Ok(()),
            Self::Redis(store) => store.ping().await.map_err(|error| error.detail()),
        }
    }
}

/// Every store failure a request meets is counted, for alerting on a sick Redis.
fn count(error: &SessionError) {
    if matches!(error, SessionError::Unavailable(_)) {
        metrics().session_store_error();
    }
}

/// 128 random bits as lowercase hex (visible ASCII, as the Streamable HTTP
/// transport requires of session ids): `ID_HEX_LEN` digits.
fn new_id() -> String {
    crate::random_id()
}

/// Only ids mcpgate could have issued are looked up: anything else is unknown
/// without touching the store.
fn is_well_formed(id: &str) -> bool {
    id.len() == ID_HEX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Principal, Scopes};

    fn principal(subject: &str) -> Principal {
        let mut principal = Principal::for_tests(subject, Scopes::default());
        principal.issuer = Some("https://as.example".into());
        principal.client_id = Some("client".into());
        principal
    }

    fn sessions() -> Sessions {
        Sessions::from_config(&SessionConfig::default()).unwrap()
    }

    fn entry(owner: &Owner) -> SessionEntry {
        SessionEntry {
            owner: owner.clone(),
            upstream_id: Some("upstream-1".into()),
        }
    }

    #[tokio::test]
    async fn ids_are_128_random_bits_in_hex() {
        let sessions = sessions();
        let owner = Owner::of(Some(&principal("alice")));
        let a = sessions.open(entry(&owner)).await.unwrap();
        let b = sessions.open(entry(&owner)).await.unwrap();
        assert_eq!(a.len(), 32);
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn only_the_owner_resolves_a_session() {
        let sessions = sessions();
        let alice = Owner::of(Some(&principal("alice")));
        let bob = Owner::of(Some(&principal("bob")));
        let id = sessions.open(entry(&alice)).await.unwrap();
        assert_eq!(
            sessions.resolve(&id, &alice).await.unwrap(),
            Some(entry(&alice))
        );
        assert_eq!(sessions.resolve(&id, &bob).await.unwrap(), None);
        // A renewed token of the same principal is the same owner.
        let renewed = Owner::of(Some(&principal("alice")));
        assert!(sessions.resolve(&id, &renewed).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_session_opened_on_one_route_is_unknown_on_another() {
        let sessions = sessions();
        let alice = Owner::of(Some(&principal("alice")));
        let on_github = alice.clone().on_route(Some("github"));
        let id = sessions.open(entry(&on_github)).await.unwrap();
        assert!(sessions.resolve(&id, &on_github).await.unwrap().is_some());
        for other in [
            alice.clone().on_route(Some("jira")),
            alice.clone().on_route(None),
        ] {
            assert_eq!(sessions.resolve(&id, &other).await.unwrap(), None);
        }
        // A file without routes keeps the digest sessions were stored under.
        assert_eq!(alice.clone().on_route(None), alice);
    }

    #[tokio::test]
    async fn closed_unknown_and_malformed_ids_resolve_to_nothing() {
        let sessions = sessions();
        let alice = Owner::of(Some(&principal("alice")));
        let id = sessions.open(entry(&alice)).await.unwrap();
        sessions.close(&id).await.unwrap();
        assert_eq!(sessions.resolve(&id, &alice).await.unwrap(), None);
        for id in ["", "upstream-1", &"A".repeat(32), &"0".repeat(33)] {
            assert_eq!(sessions.resolve(id, &alice).await.unwrap(), None, "{id}");
        }
    }

    #[tokio::test]
    async fn stateless_keeps_nothing() {
        let sessions = Sessions::from_config(&SessionConfig {
            stateless: true,
            ..SessionConfig::default()
        })
        .unwrap();
        let alice = Owner::of(Some(&principal("alice")));
        let id = sessions.open(entry(&alice)).await.unwrap();
        assert_eq!(sessions.resolve(&id, &alice).await.unwrap(), None);
    }
}
