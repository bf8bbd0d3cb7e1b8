//! `upstream.identity.connection`: each user's own account at a third-party
//! service (GitHub, Google, Atlassian: any OAuth 2 provider given by its
//! endpoints), kept by mcpgate and sent to the upstream as that user's token.
//! Plain data; `connections` builds it, `check` below is run by the upstream's check.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, ProviderConfig, Secret, check_http_url};

/// The whole section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The connection's name, in URLs (`/connect/<name>`) and audit records.
    pub name: String,
    /// The third-party service: mcpgate's OAuth client there, by endpoints.
    pub provider: ProviderConfig,
    /// Where the user proves who they are before connecting: an OpenID client at
    /// the identity provider that issues the callers' tokens. Unset: the
    /// authorization-server façade's provider (`authorization_server.provider`).
    pub sign_in: Option<ProviderConfig>,
    /// The request header carrying the user's token (`Bearer <token>`).
    #[serde(default = "default_header")]
    pub header: String,
    /// Tools that need the connection. Unset: every `tools/call`.
    pub tools: Option<Vec<String>>,
    /// A token is refreshed this long before it expires.
    #[serde(default = "default_refresh_before", with = "humantime_serde")]
    pub refresh_before: Duration,
    /// Where connections are kept.
    #[serde(default)]
    pub store: ConnectionStore,
    /// Encrypts the stored tokens (and signs nothing else): at least 32 bytes,
    /// base64. Unset: a random key per process (memory store only).
    pub secret_key: Option<Secret>,
    /// How long a connect link in an elicitation, and a connect flow once
    /// started, stay usable.
    #[serde(default = "default_link_ttl", with = "humantime_serde")]
    pub link_ttl: Duration,
    /// The service's token revocation endpoint (RFC 7009): a disconnect revokes
    /// the user's grant there too. Unset: the tokens are only forgotten.
    pub revocation_endpoint: Option<url::Url>,
    /// Most connections kept (users × this connection).
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
}

/// `upstream.identity.connection.store`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStore {
    /// In this process: lost on restart, not shared between replicas.
    #[default]
    Memory,
    /// In the session store's Redis (`sessions.store: redis`).
    Redis,
}

fn default_header() -> String {
    "Authorization".to_owned()
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

fn default_link_ttl() -> Duration {
    Duration::from_secs(600)
}

fn default_max_connections() -> u64 {
    100_000
}

const KEY: &str = "upstream.identity.connection";

impl ConnectionConfig {
    /// What can be checked without the rest of the configuration.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        // A path segment and an audit label: kept to what needs no escaping.
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::invalid(
                format!("{KEY}.name"),
                "must be 1 to 64 of a-z, 0-9, - and _",
            ));
        }
        if self.provider.authorization_endpoint.is_none() {
            return Err(ConfigError::invalid(
                format!("{KEY}.provider.authorization_endpoint"),
                "required: a connection's provider is given by its endpoints",
            ));
        }
        if self.provider.token_endpoint.is_none() {
            return Err(ConfigError::invalid(
                format!("{KEY}.provider.token_endpoint"),
                "required: a connection's provider is given by its endpoints",
            ));
        }
        for (key, url) in [
            (
                "provider.authorization_endpoint",
                &self.provider.authorization_endpoint,
            ),
            ("provider.token_endpoint", &self.provider.token_endpoint),
            ("revocation_endpoint", &self.revocation_endpoint),
        ] {
            if let Some(url) = url {
                check_http_url(&format!("{KEY}.{key}"), url)?;
            }
        }
        if self.provider.client_id.is_empty() {
            return Err(ConfigError::invalid(
                format!("{KEY}.provider.client_id"),
                "must not be empty",
            ));
        }
        if let Some(tools) = &self.tools
            && tools.is_empty()
        {
            return Err(ConfigError::invalid(
                format!("{KEY}.tools"),
                "an empty list would need the connection nowhere; leave it unset for every tools/call",
            ));
        }
        if self.link_ttl.is_zero() {
            return Err(ConfigError::invalid(
                format!("{KEY}.link_ttl"),
                "must be more than zero",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                format!("{KEY}.max_connections"),
                "must be more than zero",
            ));
        }
        if self.store == ConnectionStore::Redis && self.secret_key.is_none() {
            return Err(ConfigError::invalid(
                format!("{KEY}.secret_key"),
                "required with store: redis, so that every replica opens what another stored",
            ));
        }
        Ok(())
    }
}
