//! The registered clients. In memory for now (one replica; a restart forgets
//! them and their users register again); the type keeps the rest of the façade
//! unaware of where they live, so a shared store can take its place.

use std::sync::Arc;

use super::super::clients::Client;
use crate::config::RegistrationConfig;

/// Registered clients by id, forgotten when unused for `unused_client_ttl` and,
/// past `max_clients`, least recently used first.
pub(crate) struct RegisteredClients {
    clients: moka::sync::Cache<String, Arc<Client>>,
}

impl RegisteredClients {
    pub(crate) fn new(config: &RegistrationConfig) -> Self {
        Self {
            clients: moka::sync::Cache::builder()
                .max_capacity(config.max_clients)
                .time_to_idle(config.unused_client_ttl)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .build(),
        }
    }

    pub(crate) fn insert(&self, client: Client) {
        self.clients
            .insert(client.client_id.clone(), Arc::new(client));
    }

    /// Every registered client (the admin listing; a listing is not use).
    pub(crate) fn list(&self) -> Vec<Client> {
        self.clients
            .iter()
            .map(|(_, client)| (*client).clone())
            .collect()
    }

    /// A lookup counts as use.
    pub(crate) fn get(&self, client_id: &str) -> Option<Client> {
        self.clients.get(client_id).map(|client| (*client).clone())
    }
}

impl std::fmt::Debug for RegisteredClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredClients")
            .field("count", &self.clients.entry_count())
            .finish()
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

    #[test]
    fn unused_clients_are_forgotten() {
        let store = RegisteredClients::new(&RegistrationConfig {
            unused_client_ttl: Duration::from_millis(200),
            ..RegistrationConfig::default()
        });
        store.insert(client("a"));
        store.insert(client("b"));
        std::thread::sleep(Duration::from_millis(120));
        assert!(store.get("a").is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert!(store.get("a").is_some(), "used 120 ms ago");
        assert!(store.get("b").is_none(), "unused for 240 ms");
        assert!(store.get("c").is_none());
    }
}
