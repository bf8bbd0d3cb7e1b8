//! Sign-ins in progress: from a checked authorization request, through the
//! consent page and the identity provider, to the callback. Each is kept for
//! `pending_ttl` under an unguessable id and bound to the browser that started it.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use super::authorize::AuthorizationRequest;
use super::clients::Client;
use super::shared::{SharedState, Unavailable, key};

/// Most sign-ins in progress at once; past it the oldest are dropped (each is a few
/// hundred bytes, so this bounds memory near 100 MiB under a flood).
const MAX_PENDING: u64 = 200_000;

/// One sign-in in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub(crate) request: AuthorizationRequest,
    /// The client as it was when the request was checked (shown on the page).
    pub(crate) client: Client,
    /// The browser it belongs to (the `mcpgate_browser` cookie's value).
    pub(crate) browser: String,
    /// When the consent page was skipped because this browser remembered an
    /// approval: the digest of the user it was given by, who must be the one who
    /// signs in.
    pub(crate) remembered_for: Option<String>,
    pub(crate) stage: Stage,
}

/// Where a sign-in is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Stage {
    /// Waiting for the user's decision on the consent page.
    AwaitingConsent,
    /// Sent to the identity provider; its callback must bring back `state`.
    AtProvider {
        /// The `state` sent to the provider (also the key of the provider leg).
        state: String,
        /// The OpenID `nonce` the ID token must carry.
        nonce: String,
        /// mcpgate's own PKCE verifier for the provider's code.
        code_verifier: String,
    },
}

/// The store of sign-ins in progress: this process's memory, or Redis for replicas.
#[derive(Clone)]
pub(crate) enum PendingStore {
    Memory(Memory),
    /// `pending:<id>` holds the sealed sign-in, `provider-state:<state>` its id.
    Redis {
        state: SharedState,
        ttl: Duration,
    },
}

impl PendingStore {
    pub(crate) fn new(ttl: Duration, shared: Option<SharedState>) -> Self {
        match shared {
            Some(state) => Self::Redis { state, ttl },
            None => Self::Memory(Memory::new(ttl)),
        }
    }

    pub(crate) async fn insert(&self, id: &str, pending: Pending) -> Result<(), Unavailable> {
        let (state, ttl) = match self {
            Self::Memory(memory) => {
                memory.insert(id, pending);
                return Ok(());
            }
            Self::Redis { state, ttl } => (state, *ttl),
        };
        if let Stage::AtProvider {
            state: provider_state,
            ..
        } = &pending.stage
        {
            state
                .put_plain(&key("provider-state", provider_state), id, ttl)
                .await?;
        }
        state.put(&key("pending", id), &pending, ttl).await
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<Arc<Pending>>, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.get(id)),
            Self::Redis { state, .. } => {
                let pending = state.get::<Pending>(&key("pending", id)).await?;
                Ok(pending.map(Arc::new))
            }
        }
    }

    /// Removes and returns a sign-in: a decision or a callback is used once, on
    /// whichever replica comes first.
    pub(crate) async fn take(&self, id: &str) -> Result<Option<Arc<Pending>>, Unavailable> {
        let state = match self {
            Self::Memory(memory) => return Ok(memory.take(id)),
            Self::Redis { state, .. } => state,
        };
        let redis_key = key("pending", id);
        let Some(sealed) = state.take_plain(&redis_key).await? else {
            return Ok(None);
        };
        let Some(pending) = state.open::<Pending>(&redis_key, &sealed) else {
            return Ok(None);
        };
        if let Stage::AtProvider {
            state: provider_state,
            ..
        } = &pending.stage
        {
            state.delete(&key("provider-state", provider_state)).await?;
        }
        Ok(Some(Arc::new(pending)))
    }

    /// Removes and returns the sign-in the provider's `state` belongs to.
    pub(crate) async fn take_by_provider_state(
        &self,
        provider_state: &str,
    ) -> Result<Option<(String, Arc<Pending>)>, Unavailable> {
        let state = match self {
            Self::Memory(memory) => return Ok(memory.take_by_provider_state(provider_state)),
            Self::Redis { state, .. } => state,
        };
        let Some(id) = state
            .take_plain(&key("provider-state", provider_state))
            .await?
        else {
            return Ok(None);
        };
        Ok(self.take(&id).await?.map(|pending| (id, pending)))
    }
}

/// Sign-ins in progress in this process's memory.
#[derive(Clone)]
pub(crate) struct Memory {
    by_id: Cache<String, Arc<Pending>>,
    /// Provider `state` → pending id, for the callback.
    by_provider_state: Cache<String, String>,
}

impl Memory {
    fn new(ttl: Duration) -> Self {
        Self {
            by_id: Cache::builder()
                .max_capacity(MAX_PENDING)
                .time_to_live(ttl)
                .build(),
            by_provider_state: Cache::builder()
                .max_capacity(MAX_PENDING)
                .time_to_live(ttl)
                .build(),
        }
    }

    fn insert(&self, id: &str, pending: Pending) {
        if let Stage::AtProvider { state, .. } = &pending.stage {
            self.by_provider_state.insert(state.clone(), id.to_owned());
        }
        self.by_id.insert(id.to_owned(), Arc::new(pending));
    }

    fn get(&self, id: &str) -> Option<Arc<Pending>> {
        self.by_id.get(id)
    }

    fn take(&self, id: &str) -> Option<Arc<Pending>> {
        let pending = self.by_id.remove(id)?;
        if let Stage::AtProvider { state, .. } = &pending.stage {
            self.by_provider_state.invalidate(state);
        }
        Some(pending)
    }

    fn take_by_provider_state(&self, state: &str) -> Option<(String, Arc<Pending>)> {
        let id = self.by_provider_state.remove(state)?;
        let pending = self.take(&id)?;
        Some((id, pending))
    }
}

#[cfg(test)]
mod tests {
    use super::super::clients::ClientKind;
    use super::*;

    fn pending(stage: Stage) -> Pending {
        Pending {
            request: AuthorizationRequest {
                client_id: "c".into(),
                redirect_uri: "https://c.example/cb".into(),
                state: None,
                code_challenge: "x".into(),
                scopes: vec![],
                resource: "https://r.example/mcp".into(),
            },
            client: Client {
                client_id: "c".into(),
                client_name: None,
                redirect_uris: vec![],
                kind: ClientKind::Configured,
                secret_hash: None,
            },
            browser: "b".into(),
            remembered_for: None,
            stage,
        }
    }

    #[tokio::test]
    async fn taken_once_by_id_or_by_provider_state() {
        let store = PendingStore::new(Duration::from_secs(60), None);
        store
            .insert("one", pending(Stage::AwaitingConsent))
            .await
            .unwrap();
        assert!(store.get("one").await.unwrap().is_some());
        assert!(
            store.get("one").await.unwrap().is_some(),
            "reading does not consume"
        );
        assert!(store.take("one").await.unwrap().is_some());
        assert!(store.take("one").await.unwrap().is_none());

        let at_provider = Stage::AtProvider {
            state: "s".into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
        };
        store.insert("two", pending(at_provider)).await.unwrap();
        let (id, _) = store.take_by_provider_state("s").await.unwrap().unwrap();
        assert_eq!(id, "two");
        assert!(store.take_by_provider_state("s").await.unwrap().is_none());
        assert!(store.get("two").await.unwrap().is_none());
    }
}
