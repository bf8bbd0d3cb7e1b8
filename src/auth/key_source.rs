//! `auth.oauth.jwks[]` resolved into the one key source each entry names: a remote
//! JWKS or a symmetric secret. The YAML keeps both sets of keys side by side
//! (`config::JwksProviderConfig`, for precise unknown-field errors); this is what a
//! provider is built from, so no code has to handle an entry with neither or both.

use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use url::Url;

use super::keys::ASYMMETRIC_ALGORITHMS;
use crate::config::{ConfigError, JwksProviderConfig, Secret, check_http_url, require_nonzero};

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash output size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// Keys fetched from a JWKS endpoint and refreshed in the background.
    Remote(RemoteKeys),
    /// A symmetric HMAC secret from the configuration.
    Secret(SecretKey),
}

/// A JWKS document fetched and refreshed over HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteKeys {
    pub(crate) url: Url,
    /// The algorithms its keys may verify: the configured ones, else every
    /// asymmetric one.
    pub algorithms: Vec<Algorithm>,
    pub(crate) refresh_interval: Duration,
    pub(crate) min_refetch_interval: Duration,
    pub(crate) max_stale: Duration,
    /// Start even if the first fetch fails.
    pub start_not_ready: bool,
}

/// One fixed HMAC key.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretKey {
    pub(crate) secret: Secret,
    pub(crate) algorithm: Algorithm,
    /// The `kid` tokens signed with it carry.
    pub header_key_id: Option<String>,
}

impl JwksProviderConfig {
    /// The key source this entry names, checked; `key` is the entry's own
    /// (`auth.oauth.jwks[0]`), which every error extends.
    pub fn key_source(&self, key: &str) -> Result<KeySource, ConfigError> {
        match (&self.url, &self.secret) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                key,
                "set either url or secret, not both",
            )),
            (None, None) => Err(ConfigError::invalid(
                key,
                "needs a url (remote JWKS) or a secret (symmetric key)",
            )),
            (Some(url), None) => self.remote(key, url).map(KeySource::Remote),
            (None, Some(secret)) => self.symmetric(key, secret).map(KeySource::Secret),
        }
    }

    fn remote(&self, key: &str, url: &Url) -> Result<RemoteKeys, ConfigError> {
        check_http_url(&format!("{key}.url"), url)?;
        if self.symmetric_algorithm.is_some() || self.header_key_id.is_some() {
            return Err(ConfigError::invalid(
                key,
                "symmetric_algorithm and header_key_id apply only to a secret",
            ));
        }
        if let Some(alg) = self
            .algorithms
            .iter()
            .find(|alg| alg.family() == AlgorithmFamily::Hmac)
        {
            return Err(ConfigError::invalid(
                format!("{key}.algorithms"),
                format!("{alg:?} is symmetric; a remote JWKS only carries public keys"),
            ));
        }
        require_nonzero(
            key,
            &[
                ("refresh_interval", self.refresh_interval),
                ("min_refetch_interval", self.min_refetch_interval),
                ("max_stale", self.max_stale),
            ],
        )?;
        if self.max_stale < self.refresh_interval {
            return Err(ConfigError::invalid(
                format!("{key}.max_stale"),
                "must be at least refresh_interval, or keys would expire between two refreshes",
            ));
        }
        let algorithms = if self.algorithms.is_empty() {
            ASYMMETRIC_ALGORITHMS.to_vec()
        } else {
            self.algorithms.clone()
        };
        Ok(RemoteKeys {
            url: url.clone(),
            algorithms,
            refresh_interval: self.refresh_interval,
            min_refetch_interval: self.min_refetch_interval,
            max_stale: self.max_stale,
            start_not_ready: self.start_not_ready,
        })
    }

    fn symmetric(&self, key: &str, secret: &Secret) -> Result<SecretKey, ConfigError> {
        let len = secret.expose().len();
        if len < MIN_HMAC_SECRET_BYTES {
            return Err(ConfigError::invalid(
                format!("{key}.secret"),
                format!(
                    "HMAC secret is {len} bytes; at least {MIN_HMAC_SECRET_BYTES} are required"
                ),
            ));
        }
        let algorithm = self.symmetric_algorithm.unwrap_or(Algorithm::HS256);
        if algorithm.family() != AlgorithmFamily::Hmac {
            return Err(ConfigError::invalid(
                format!("{key}.symmetric_algorithm"),
                "must be HS256, HS384 or HS512; use a remote JWKS url for other algorithms",
            ));
        }
        if !self.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.algorithms"),
                "applies only to a remote JWKS; use symmetric_algorithm with a secret",
            ));
        }
        if self.start_not_ready {
            return Err(ConfigError::invalid(
                format!("{key}.start_not_ready"),
                "applies only to a remote JWKS",
            ));
        }
        Ok(SecretKey {
            secret: secret.clone(),
            algorithm,
            header_key_id: self.header_key_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: serde_json::Value) -> JwksProviderConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn an_entry_resolves_into_the_one_source_it_names() {
        let remote =
            entry(serde_json::json!({"url": "https://idp.test/jwks", "start_not_ready": true}));
        match remote.key_source("auth.oauth.jwks[0]").unwrap() {
            KeySource::Remote(keys) => {
                assert_eq!(keys.url.as_str(), "https://idp.test/jwks");
                // No list given: every asymmetric algorithm, never an HMAC one.
                assert_eq!(keys.algorithms, ASYMMETRIC_ALGORITHMS);
                assert!(keys.start_not_ready);
            }
            other => panic!("{other:?}"),
        }
        let secret = entry(serde_json::json!({
            "secret": "0123456789abcdef0123456789abcdef",
            "symmetric_algorithm": "HS384",
            "header_key_id": "k1",
        }));
        match secret.key_source("auth.oauth.jwks[1]").unwrap() {
            KeySource::Secret(key) => {
                assert_eq!(key.algorithm, Algorithm::HS384);
                assert_eq!(key.header_key_id.as_deref(), Some("k1"));
            }
            other => panic!("{other:?}"),
        }
        let plain = entry(serde_json::json!({"secret": "0123456789abcdef0123456789abcdef"}));
        assert!(matches!(
            plain.key_source("k"),
            Ok(KeySource::Secret(SecretKey {
                algorithm: Algorithm::HS256,
                ..
            }))
        ));
    }

    #[test]
    fn neither_or_both_sources_is_refused_naming_the_entry() {
        let both = entry(serde_json::json!({
            "url": "https://idp.test/jwks",
            "secret": "0123456789abcdef0123456789abcdef",
        }));
        for (config, needle) in [
            (both, "not both"),
            (JwksProviderConfig::default(), "needs a url"),
        ] {
            match config.key_source("auth.oauth.jwks[2]") {
                Err(ConfigError::Invalid { key, message }) => {
                    assert_eq!(key, "auth.oauth.jwks[2]");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
