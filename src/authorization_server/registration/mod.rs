//! Dynamic client registration (RFC 7591): anyone who can reach the endpoint (and
//! holds the initial access token, when one is configured) may register a client.
//! Such a client is unverified, and the consent page says so. `metadata` checks
//! what a client asks for, `store` keeps what was registered, `limit` bounds how
//! fast one address may register. The HTTP side is `registration_endpoint`.

pub(crate) mod limit;
pub(crate) mod metadata;
pub(crate) mod store;

use crate::config::{ConfigError, RegistrationConfig};

/// Checks `authorization_server.registration` at load.
pub(crate) fn check_config(config: &RegistrationConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: &str| ConfigError::Invalid {
        key: format!("authorization_server.registration.{key}"),
        message: message.into(),
    };
    if config.per_ip_per_minute == 0 {
        return Err(invalid(
            "per_ip_per_minute",
            "must be at least 1 (turn registration off with enabled: false)",
        ));
    }
    if config.max_clients == 0 {
        return Err(invalid("max_clients", "must be at least 1"));
    }
    if config.unused_client_ttl.is_zero() {
        return Err(invalid("unused_client_ttl", "must be more than 0"));
    }
    if let Some(token) = &config.initial_access_token
        && token.expose().len() < 16
    {
        return Err(invalid(
            "initial_access_token",
            "must be at least 16 characters",
        ));
    }
    Ok(())
}
