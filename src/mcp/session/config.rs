//! `session:` checked by its owner; each failure names the key.

use super::RedisStore;
use crate::config::{ConfigError, SessionConfig, SessionStoreConfig};

impl SessionConfig {
    /// Sessions that can expire, room for at least one, a Redis URL that parses.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "session.idle_timeout",
                "must be greater than 0",
            ));
        }
        if self.max_sessions == 0 {
            return Err(ConfigError::invalid(
                "session.max_sessions",
                "must be greater than 0",
            ));
        }
        if let SessionStoreConfig::Redis(url) = &self.store {
            RedisStore::parse_url(url)
                .map_err(|message| ConfigError::invalid("session.store", message))?;
        }
        Ok(())
    }
}
