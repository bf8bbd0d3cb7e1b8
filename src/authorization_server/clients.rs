//! The clients the façade knows, whichever way they became known: fixed in the
//! configuration, described by a Client ID Metadata Document at their `client_id`
//! URL (CIMD), or registered dynamically (RFC 7591). The consent page tells the
//! user which of the three a client is, because only the first two say anything
//! about who runs it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::redirect_uri;
use crate::config::{ConfigError, ConfiguredClientConfig};

/// How a client became known, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientKind {
    /// Listed by the operator.
    Configured,
    /// Its `client_id` is an `https` URL serving its metadata: the host vouches for it.
    MetadataDocument,
    /// Registered by anyone who could reach the registration endpoint: unverified.
    Registered,
}

/// A client as the authorization endpoint needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Client {
    pub(crate) client_id: String,
    /// The name the client gives itself (unverified except for configured clients).
    pub(crate) client_name: Option<String>,
    pub(crate) redirect_uris: Vec<String>,
    pub(crate) kind: ClientKind,
    /// An argon2id hash of its secret; `None` for a public client.
    pub(crate) secret_hash: Option<String>,
}

impl Client {
    /// The host of a CIMD client's `client_id` URL: the one thing about a client the
    /// façade has verified (the document was served from it).
    pub(crate) fn verified_host(&self) -> Option<String> {
        match self.kind {
            ClientKind::MetadataDocument => redirect_uri::host_of(&self.client_id),
            ClientKind::Configured | ClientKind::Registered => None,
        }
    }
}

/// The clients from the configuration, by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfiguredClients {
    by_id: BTreeMap<String, Client>,
}

impl ConfiguredClients {
    /// Checks and indexes `authorization_server.clients`.
    pub(crate) fn new(
        clients: &[ConfiguredClientConfig],
        custom_schemes: &[String],
    ) -> Result<Self, ConfigError> {
        let mut by_id = BTreeMap::new();
        for (index, client) in clients.iter().enumerate() {
            let key = format!("authorization_server.clients[{index}]");
            let invalid = |field: &str, message: String| ConfigError::Invalid {
                key: format!("{key}.{field}"),
                message,
            };
            if client.client_id.is_empty() || client.client_id.len() > 255 {
                return Err(invalid("client_id", "must be 1 to 255 bytes".into()));
            }
            if client.client_id.starts_with("https://") || client.client_id.starts_with("http://") {
                return Err(invalid(
                    "client_id",
                    "must not be a URL (URL client ids are metadata documents; pin one under client_metadata_documents.pinned)".into(),
                ));
            }
            if client.redirect_uris.is_empty() {
                return Err(invalid("redirect_uris", "at least one is required".into()));
            }
            for (position, uri) in client.redirect_uris.iter().enumerate() {
                redirect_uri::check_registrable(uri, custom_schemes).map_err(|error| {
                    invalid(&format!("redirect_uris[{position}]"), error.to_string())
                })?;
            }
            if let Some(hash) = &client.client_secret_hash {
                crate::auth::api_keys::parse_hash(hash.expose()).map_err(|message| {
                    invalid(
                        "client_secret_hash",
                        format!("{message} (make one with `mcpgate hash-key`)"),
                    )
                })?;
            }
            let entry = Client {
                client_id: client.client_id.clone(),
                client_name: client.client_name.clone(),
                redirect_uris: client.redirect_uris.clone(),
                kind: ClientKind::Configured,
                secret_hash: client
                    .client_secret_hash
                    .as_ref()
                    .map(|hash| hash.expose().to_owned()),
            };
            if by_id.insert(client.client_id.clone(), entry).is_some() {
                return Err(invalid("client_id", "appears twice".into()));
            }
        }
        Ok(Self { by_id })
    }

    pub(crate) fn get(&self, client_id: &str) -> Option<&Client> {
        self.by_id.get(client_id)
    }

    /// Every configured client (the admin listing).
    pub(crate) fn list(&self) -> Vec<Client> {
        self.by_id.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, uris: &[&str]) -> ConfiguredClientConfig {
        ConfiguredClientConfig {
            client_id: id.into(),
            client_name: Some("Tool".into()),
            redirect_uris: uris.iter().map(|uri| (*uri).to_owned()).collect(),
            client_secret_hash: None,
        }
    }

    #[test]
    fn configured_clients_are_checked_and_found() {
        let clients =
            ConfiguredClients::new(&[config("tool", &["http://127.0.0.1/cb"])], &[]).unwrap();
        let client = clients.get("tool").unwrap();
        assert_eq!(client.kind, ClientKind::Configured);
        assert_eq!(client.verified_host(), None);
        assert!(clients.get("other").is_none());
    }

    #[test]
    fn configured_clients_name_the_bad_key() {
        let error = ConfiguredClients::new(&[config("tool", &["http://evil.example/cb"])], &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("authorization_server.clients[0].redirect_uris[0]:"),
            "{error}"
        );
        let error = ConfiguredClients::new(
            &[
                config("a", &["https://a.example/cb"]),
                config("a", &["https://a.example/cb"]),
            ],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("clients[1].client_id: appears twice"),
            "{error}"
        );
        let error = ConfiguredClients::new(
            &[config("https://a.example/c", &["https://a.example/cb"])],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("must not be a URL"), "{error}");
        let mut with_bad_hash = config("tool", &["https://a.example/cb"]);
        with_bad_hash.client_secret_hash = Some(crate::config::Secret::new("garbage"));
        let error = ConfiguredClients::new(&[with_bad_hash], &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("authorization_server.clients[0].client_secret_hash:"),
            "{error}"
        );
    }
}
