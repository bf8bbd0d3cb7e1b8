//! The registered clients: in this process's memory for one replica (a restart
//! forgets them and their users register again), in Redis for replicas, so a
//! client registered at one is known at all.

use std::sync::Arc;
use std::time::Duration;

use super::super::clients::Client;
use super::super::shared::{SharedState, Unavailable, key};
use crate::config::RegistrationConfig;

/// Registered clients by id, forgotten when unused for `unused_client_ttl`. In
/// memory, past `max_clients`, least recently used first; in Redis each is one
/// sealed record `client:<id>` whose TTL a lookup restarts (Redis's own memory
/// limit bounds them; `per_ip_per_minute` bounds how fast they come).
pub(crate) enum RegisteredClients {
    Memory(moka::sync::Cache<String, Arc<Client>>),
    Redis {
        state: SharedState,
        unused_ttl: Duration,
    },
}

impl RegisteredClients {
    pub(crate) fn new(config: &RegistrationConfig, shared: Option<SharedState>) -> Self {
        match shared {
            Some(state) => Self::Redis {
                state,
                unused_ttl: config.unused_client_ttl,
            },
            None => Self::Memory(
                moka::sync::Cache::builder()
                    .max_capacity(config.max_clients)
                    .time_to_idle(config.unused_client_ttl)
                    .eviction_policy(moka::policy::EvictionPolicy::lru())
                    .build(),
            ),
        }
    }

    pub(crate) async fn insert(&self, client: Client) -> Result<(), Unavailable> {
        match self {
            Self::Memory(clients) => {
                clients.insert(client.client_id.clone(), Arc::new(client));
                Ok(())
            }
            Self::Redis { state, unused_ttl } => {
                state
                    .put(&key("client", &client.client_id), &client, *unused_ttl)
                    .await
            }
        }
    }

    /// Every registered client (the admin listing; a listing is not use). `None`
    /// with Redis: its clients are not enumerated (that would be a key scan).
    pub(crate) fn list(&self) -> Option<Vec<Client>> {
        match self {
            Self::Memory(clients) => Some(
                clients
                    .iter()
                    .map(|(_, client)| (*client).clone())
                    .collect(),
            ),
            Self::Redis { .. } => None,
        }
    }

    /// A lookup counts as use.
    pub(crate) async fn get(&self, client_id: &str) -> Result<Option<Client>, Unavailable> {
        match self {
            Self::Memory(clients) => Ok(clients.get(client_id).map(|client| (*client).clone())),
            Self::Redis { state, unused_ttl } => {
                let client = state
                    .get_touch::<Client>(&key("client", client_id), *unused_ttl)
                    .await?;
                // A record under another id's key is not that client.
                Ok(client.filter(|client| client.client_id == client_id))
            }
        }
    }
}

impl std::fmt::Debug for RegisteredClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(clients) => f
                .debug_struct("RegisteredClients")
                .field("count", &clients.entry_count())
                .finish(),
            Self::Redis { .. } => f.write_str("RegisteredClients(redis)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::super::clients::ClientKind;
    use super::*;

    fn client(id: &str) -> Client {
        Client {
            client_id: id.into(),
            client_name: None,
            redirect_uris: vec!["https://app.example/cb".into()],
            kind: ClientKind::Registered,
            secret_hash: None,
        }
    }

    #[tokio::test]
    async fn unused_clients_are_forgotten() {
        let store = RegisteredClients::new(
            &RegistrationConfig {
                unused_client_ttl: Duration::from_millis(200),
                ..RegistrationConfig::default()
            },
            None,
        );
        store.insert(client("a")).await.unwrap();
        store.insert(client("b")).await.unwrap();
        std::thread::sleep(Duration::from_millis(120));
        assert!(store.get("a").await.unwrap().is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(store.get("a").await.unwrap().is_some(), "used 120 ms ago");
        assert!(store.get("b").await.unwrap().is_none(), "unused for 240 ms");
        assert!(store.get("c").await.unwrap().is_none());
    }
}
