//! Clients known by a Client ID Metadata Document (CIMD): the `client_id` is an
//! `https` URL, and the JSON document served there describes the client. The
//! host that serves it is the one thing about the client mcpgate verifies, so
//! the fetch is guarded (`fetch`, `address`), the operator decides which hosts
//! count (`hosts`), the document is checked (`document`) and remembered
//! (`cache`).

pub(crate) mod address;
pub(crate) mod cache;
pub(crate) mod client_id;
pub(crate) mod document;
pub(crate) mod fetch;
pub(crate) mod hosts;

use std::collections::BTreeMap;
use std::time::Duration;

use self::cache::{DocumentCache, Entry, FAILURE_TTL};
use self::client_id::ClientIdUrlError;
use self::document::DocumentError;
use self::fetch::{FetchError, Fetcher, Limits};
use self::hosts::HostRules;
use super::clients::Client;
use crate::config::{ClientMetadataDocumentsConfig, ConfigError};

const KEY: &str = "authorization_server.client_metadata_documents";
/// Largest `max_bytes` accepted: client documents are a few hundred bytes.
const MAX_MAX_BYTES: usize = 1024 * 1024;

/// The outcomes the façade remembers across requests (and reloads, until cleared).
pub(crate) type Documents = DocumentCache<Result<Client, CimdError>>;

/// The clients whose documents were fetched and usable, while remembered.
pub(crate) fn usable_clients(documents: &Documents) -> Vec<Client> {
    documents
        .outcomes()
        .iter()
        .filter_map(|entry| entry.outcome.as_ref().ok().cloned())
        .collect()
}

/// Why a metadata document client cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CimdError {
    #[error("{0}")]
    ClientId(#[from] ClientIdUrlError),
    #[error("{0} is not allowed to publish clients here")]
    HostNotAllowed(String),
    #[error("its metadata document: {0}")]
    Fetch(#[from] FetchError),
    #[error("its metadata document: {0}")]
    Document(#[from] DocumentError),
}

/// `client_metadata_documents`, checked at load.
#[derive(Debug, Clone)]
pub(crate) struct DocumentRules {
    enabled: bool,
    hosts: HostRules,
    pinned: BTreeMap<String, Client>,
    limits: Limits,
    min_ttl: Duration,
    max_ttl: Duration,
    custom_schemes: Vec<String>,
}

impl DocumentRules {
    /// `custom_schemes` are `allowed_redirect_schemes`.
    pub(crate) fn from_config(
        config: &ClientMetadataDocumentsConfig,
        custom_schemes: &[String],
    ) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("{KEY}.{key}"),
            message,
        };
        if config.max_bytes == 0 || config.max_bytes > MAX_MAX_BYTES {
            return Err(invalid(
                "max_bytes",
                format!("must be 1 to {MAX_MAX_BYTES}"),
            ));
        }
        if config.timeout.is_zero() {
            return Err(invalid("timeout", "must be more than 0".into()));
        }
        if config.min_cache_ttl > config.max_cache_ttl {
            return Err(invalid(
                "min_cache_ttl",
                "must not be longer than max_cache_ttl".into(),
            ));
        }
        let hosts = HostRules::from_config(&config.allowed_hosts, &config.denied_hosts, KEY)?;
        let mut pinned = BTreeMap::new();
        for (url, document) in &config.pinned {
            let key = format!("pinned.\"{url}\"");
            client_id::check(url, config.allow_private_addresses)
                .map_err(|error| invalid(&key, error.to_string()))?;
            let client = document::check(url, document, custom_schemes)
                .map_err(|error| invalid(&key, error.to_string()))?;
            pinned.insert(url.clone(), client);
        }
        Ok(Self {
            enabled: config.enabled,
            hosts,
            pinned,
            limits: Limits {
                max_bytes: config.max_bytes,
                timeout: config.timeout,
                allow_private: config.allow_private_addresses,
            },
            min_ttl: config.min_cache_ttl,
            max_ttl: config.max_cache_ttl,
            custom_schemes: custom_schemes.to_vec(),
        })
    }

    /// The client a URL `client_id` stands for. `None` when `client_id` is not a
    /// URL, or is one but documents are off and it is not pinned: an unknown client.
    pub(crate) async fn find(
        &self,
        documents: &Documents,
        fetcher: &Fetcher,
        client_id: &str,
    ) -> Option<Result<Client, CimdError>> {
        if !client_id::is_url(client_id) {
            return None;
        }
        // Pinned documents are the operator's word: no fetch, no host rules.
        if let Some(client) = self.pinned.get(client_id) {
            return Some(Ok(client.clone()));
        }
        if !self.enabled {
            return None;
        }
        Some(self.fetched(documents, fetcher, client_id).await)
    }

    async fn fetched(
        &self,
        documents: &Documents,
        fetcher: &Fetcher,
        client_id: &str,
    ) -> Result<Client, CimdError> {
        let url = client_id::check(client_id, self.limits.allow_private)?;
        let host = url.host_str().unwrap_or_default();
        if !self.hosts.permits(host) {
            return Err(CimdError::HostNotAllowed(host.to_owned()));
        }
        let entry = documents
            .get_or_fetch(client_id, async {
                match fetcher.fetch(&url, self.limits).await {
                    Ok(fetched) => {
                        let outcome =
                            document::parse(client_id, &fetched.body, &self.custom_schemes)
                                .map_err(CimdError::from);
                        let ttl = match &outcome {
                            Ok(_) => cache::ttl(
                                fetched.cache_control.as_deref(),
                                self.min_ttl,
                                self.max_ttl,
                            ),
                            Err(_) => FAILURE_TTL,
                        };
                        log(client_id, &outcome);
                        Entry { outcome, ttl }
                    }
                    Err(error) => {
                        let outcome = Err(CimdError::from(error));
                        log(client_id, &outcome);
                        Entry {
                            outcome,
                            ttl: FAILURE_TTL,
                        }
                    }
                }
            })
            .await;
        entry.outcome.clone()
    }
}

fn log(client_id: &str, outcome: &Result<Client, CimdError>) {
    match outcome {
        Ok(_) => tracing::info!(client_id, "client metadata document fetched"),
        Err(error) => tracing::warn!(client_id, "client metadata document refused: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> ClientMetadataDocumentsConfig {
        ClientMetadataDocumentsConfig::default()
    }

    #[test]
    fn pinned_documents_are_checked_at_load_and_name_their_key() {
        let mut bad = config();
        bad.pinned.insert(
            "https://app.example/c.json".into(),
            json!({"client_id": "https://app.example/other.json", "redirect_uris": ["https://app.example/cb"]}),
        );
        let error = DocumentRules::from_config(&bad, &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "authorization_server.client_metadata_documents.pinned.\"https://app.example/c.json\":"
            ),
            "{error}"
        );
        let mut bad_url = config();
        bad_url
            .pinned
            .insert("http://app.example/c".into(), json!({}));
        assert!(DocumentRules::from_config(&bad_url, &[]).is_err());
        let mut bounds = config();
        bounds.min_cache_ttl = Duration::from_secs(7200);
        bounds.max_cache_ttl = Duration::from_secs(60);
        let error = DocumentRules::from_config(&bounds, &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("min_cache_ttl"), "{error}");
    }

    #[tokio::test]
    async fn pinned_documents_are_used_without_fetching_even_when_fetching_is_off() {
        let mut with_pin = config();
        with_pin.enabled = false;
        with_pin.pinned.insert(
            "https://app.example/c.json".into(),
            json!({"client_id": "https://app.example/c.json", "redirect_uris": ["https://app.example/cb"]}),
        );
        let rules = DocumentRules::from_config(&with_pin, &[]).unwrap();
        let documents = Documents::default();
        let client = rules
            .find(
                &documents,
                &Fetcher::new(false),
                "https://app.example/c.json",
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(client.redirect_uris, ["https://app.example/cb"]);
        assert!(
            rules
                .find(
                    &documents,
                    &Fetcher::new(false),
                    "https://app.example/other.json"
                )
                .await
                .is_none()
        );
        assert!(
            rules
                .find(&documents, &Fetcher::new(false), "tool")
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn urls_and_hosts_are_checked_before_any_fetch() {
        let mut denied = config();
        denied.denied_hosts = vec!["*.evil.example".into()];
        let rules = DocumentRules::from_config(&denied, &[]).unwrap();
        let documents = Documents::default();
        assert_eq!(
            rules
                .find(&documents, &Fetcher::new(false), "https://x.evil.example/c")
                .await,
            Some(Err(CimdError::HostNotAllowed("x.evil.example".into())))
        );
        assert_eq!(
            rules
                .find(&documents, &Fetcher::new(false), "http://app.example/c")
                .await,
            Some(Err(CimdError::ClientId(ClientIdUrlError::NotHttps)))
        );
        // A refused fetch (a private address) is remembered as such.
        let outcome = rules
            .find(&documents, &Fetcher::new(false), "https://127.0.0.1/c")
            .await;
        assert!(
            matches!(
                outcome,
                Some(Err(CimdError::Fetch(FetchError::PrivateAddress(_))))
            ),
            "{outcome:?}"
        );
    }
}
