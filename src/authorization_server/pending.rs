//! Sign-ins in progress: from a checked authorization request, through the
//! consent page and the identity provider, to the callback. Each is kept for
//! `pending_ttl` under an unguessable id and bound to the browser that started it.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::authorize::AuthorizationRequest;
use super::clients::Client;

/// Most sign-ins in progress at once; past it the oldest are dropped (each is a few
/// hundred bytes, so this bounds memory near 100 MiB under a flood).
const MAX_PENDING: u64 = 200_000;

/// One sign-in in progress.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The store of sign-ins in progress (this process's memory).
#[derive(Clone)]
pub(crate) struct PendingStore {
    by_id: Cache<String, Arc<Pending>>,
    /// Provider `state` → pending id, for the callback.
    by_provider_state: Cache<String, String>,
}

impl PendingStore {
    pub(crate) fn new(ttl: Duration) -> Self {
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

    pub(crate) fn insert(&self, id: &str, pending: Pending) {
        if let Stage::AtProvider { state, .. } = &pending.stage {
            self.by_provider_state.insert(state.clone(), id.to_owned());
        }
        self.by_id.insert(id.to_owned(), Arc::new(pending));
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Pending>> {
        self.by_id.get(id)
    }

    /// Removes and returns a sign-in: a decision or a callback is used once.
    pub(crate) fn take(&self, id: &str) -> Option<Arc<Pending>> {
        let pending = self.by_id.remove(id)?;
        if let Stage::AtProvider { state, .. } = &pending.stage {
            self.by_provider_state.invalidate(state);
        }
        Some(pending)
    }

    /// Removes and returns the sign-in the provider's `state` belongs to.
    pub(crate) fn take_by_provider_state(&self, state: &str) -> Option<(String, Arc<Pending>)> {
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

    #[test]
    fn taken_once_by_id_or_by_provider_state() {
        let store = PendingStore::new(Duration::from_secs(60));
        store.insert("one", pending(Stage::AwaitingConsent));
        assert!(store.get("one").is_some());
        assert!(store.get("one").is_some(), "reading does not consume");
        assert!(store.take("one").is_some());
        assert!(store.take("one").is_none());

        let at_provider = Stage::AtProvider {
            state: "s".into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
        };
        store.insert("two", pending(at_provider));
        let (id, _) = store.take_by_provider_state("s").unwrap();
        assert_eq!(id, "two");
        assert!(store.take_by_provider_state("s").is_none());
        assert!(store.get("two").is_none());
    }
}
