//! `audit:` checked by its owner; each failure names the key.

use crate::config::{AuditConfig, ConfigError};

impl AuditConfig {
    /// One destination, a usable path, room for at least one record.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.stdout && self.path.is_some() {
            return Err(ConfigError::invalid(
                "audit",
                "set either audit.path or audit.stdout, not both",
            ));
        }
        if self
            .path
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid("audit.path", "must not be empty"));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::invalid(
                "audit.queue_capacity",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}
