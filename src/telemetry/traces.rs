//! OpenTelemetry traces over OTLP. Off by default, and then free: no span is built.
//! (Stub: the exporter is filled in separately.)

use http::HeaderMap;

use crate::audit::Record;
use crate::config::{ConfigError, TracesConfig};

/// The tracer, or nothing when traces are off.
#[derive(Clone, Default)]
pub struct Traces {}

impl Traces {
    /// Builds the OTLP exporter (it sends in the background). Errors name the key.
    pub fn init(_config: &TracesConfig) -> Result<Self, ConfigError> {
        Ok(Self {})
    }

    pub fn is_enabled(&self) -> bool {
        false
    }

    /// A server span for one request, child of the caller's `traceparent` if any.
    pub fn start(&self, _incoming: &HeaderMap) -> RequestSpan {
        RequestSpan {}
    }

    /// Exports what is pending; called once at shutdown.
    pub fn shutdown(&self) {}
}

/// The span of one request; it ends with the request's audit record.
pub struct RequestSpan {}

impl RequestSpan {
    /// Adds `traceparent` (and `tracestate`) for the upstream request.
    pub fn inject(&self, _headers: &mut HeaderMap) {}

    /// Sets the attributes from the record and ends the span.
    pub fn end(self, _record: &Record) {}
}
