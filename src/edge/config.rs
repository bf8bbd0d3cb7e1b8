//! `server:` checked by its owner; each failure names the key. Whether OAuth needs
//! `public_url` spans sections and stays in `gateway::validate`.

use crate::config::{ConfigError, ServerConfig, check_http_url};

impl ServerConfig {
    /// The public URL, the metadata path, body and connection limits.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            check_http_url("server.public_url", url)?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err(ConfigError::invalid(
                    "server.public_url",
                    "must not carry a query or fragment (RFC 8707 resource URI)",
                ));
            }
        }
        if let Some(path) = &self.metadata_path {
            if !path.starts_with('/') || path.contains(['?', '#']) {
                return Err(ConfigError::invalid(
                    "server.metadata_path",
                    "must be an absolute path such as /.well-known/oauth-protected-resource/mcp",
                ));
            }
            if *path == self.public_url().path() {
                return Err(ConfigError::invalid(
                    "server.metadata_path",
                    "must differ from the MCP endpoint path",
                ));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "server.max_body_bytes",
                "must be greater than 0",
            ));
        }
        for (key, timeout) in [
            ("server.header_read_timeout", self.header_read_timeout),
            ("server.body_read_timeout", self.body_read_timeout),
            ("server.idle_timeout", self.idle_timeout),
        ] {
            // Zero would close every connection at once; there is no "off" (a slow
            // client must not be able to hold a connection forever).
            if timeout.is_zero() {
                return Err(ConfigError::invalid(
                    key,
                    "must be greater than 0 (e.g. 10s)",
                ));
            }
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError::invalid(
                "server.max_connections",
                "must be greater than 0 (or left unset to derive it from the open-file limit)",
            ));
        }
        super::client_ip::check(self)
    }

    /// The admin listener is a second socket, never the MCP one.
    pub(crate) fn check_admin_listen(&self) -> Result<(), ConfigError> {
        match self.admin_listen {
            Some(admin) if admin == self.listen => Err(ConfigError::invalid(
                "server.admin_listen",
                "must differ from server.listen",
            )),
            _ => Ok(()),
        }
    }

    /// Every allowed origin is one a browser could send.
    pub(crate) fn check_allowed_origins(&self) -> Result<(), ConfigError> {
        for (index, origin) in self.allowed_origins.iter().enumerate() {
            if super::origin::normalize(origin).is_none() {
                return Err(ConfigError::invalid(
                    format!("server.allowed_origins[{index}]"),
                    "must be an origin: scheme://host[:port], without a path (e.g. https://app.example.com)",
                ));
            }
        }
        Ok(())
    }
}
