//! `telemetry.traces` checked by its owner; each failure names the key.

use crate::config::{ConfigError, TracesConfig};

impl TracesConfig {
    /// A sampling ratio, an OTLP endpoint over HTTP, headers that are valid HTTP.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::invalid(
                "telemetry.traces.sample_ratio",
                "must be between 0 and 1",
            ));
        }
        if let Some(endpoint) = &self.endpoint
            && !matches!(endpoint.scheme(), "http" | "https")
        {
            return Err(ConfigError::invalid(
                "telemetry.traces.endpoint",
                "must be an http or https URL",
            ));
        }
        for (name, value) in &self.headers {
            let key = format!("telemetry.traces.headers.{name}");
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::invalid(&key, "not a valid HTTP header name"))?;
            http::HeaderValue::from_str(value.expose())
                .map_err(|_| ConfigError::invalid(&key, "not a valid HTTP header value"))?;
        }
        Ok(())
    }
}
