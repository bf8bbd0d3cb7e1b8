//! The tracer provider: OTLP over HTTP/protobuf, batched on the tokio runtime.

use std::collections::HashMap;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{InstrumentationScope, Key, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{ResourceDetector, SdkProvidedResourceDetector};
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::config::{ConfigError, TracesConfig};

const KEY: &str = "telemetry.traces";
const NAME: &str = "mcpgate";
const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) fn build(config: &TracesConfig) -> Result<(SdkTracerProvider, SdkTracer), ConfigError> {
    // The batch processor spawns its task as it is built; outside a runtime tokio
    // would panic rather than fail.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConfigError::invalid(
            KEY,
            "traces can only be started inside the async runtime",
        ));
    }
    let processor = BatchSpanProcessor::builder(exporter(config)?, runtime::Tokio).build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource(config))
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder(NAME)
            .with_version(VERSION)
            .build(),
    );
    Ok((provider, tracer))
}

/// Without an endpoint in the config the exporter reads
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), then `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (`/v1/traces` appended), then defaults to `http://localhost:4318/v1/traces`.
fn exporter(config: &TracesConfig) -> Result<SpanExporter, ConfigError> {
    let mut builder = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint.as_str());
    }
    if !config.headers.is_empty() {
        let headers: HashMap<String, String> = config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), escape_percent(value.expose())))
            .collect();
        builder = builder.with_headers(headers);
    }
    builder.build().map_err(|error| {
        ConfigError::invalid(
            KEY,
            format!(
                "cannot build the OTLP exporter: {}",
                crate::error_chain(&error)
            ),
        )
    })
}

/// The exporter percent-decodes header values (the `OTEL_EXPORTER_OTLP_HEADERS`
/// format); a configured value is meant literally, so its `%` must survive that.
fn escape_percent(value: &str) -> String {
    value.replace('%', "%25")
}

fn resource(config: &TracesConfig) -> Resource {
    let name = config
        .service_name
        .clone()
        .filter(|name| !name.is_empty())
        .or_else(detected_service_name)
        .unwrap_or_else(|| NAME.to_owned());
    Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", VERSION))
        .build()
}

/// `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`. The SDK's
/// own fallback, `unknown_service:<exe>`, is no name: mcpgate uses its own instead.
fn detected_service_name() -> Option<String> {
    let detected = SdkProvidedResourceDetector
        .detect()
        .get(&Key::from_static_str("service.name"))?
        .to_string();
    (!detected.starts_with("unknown_service")).then_some(detected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_taken_literally() {
        assert_eq!(escape_percent("a%2Fb"), "a%252Fb");
        assert_eq!(escape_percent("plain"), "plain");
    }

    #[test]
    fn the_configured_service_name_wins() {
        let config = TracesConfig {
            service_name: Some("edge-gateway".to_owned()),
            ..TracesConfig::default()
        };
        let resource = resource(&config);
        let get = |key: &'static str| {
            resource
                .get(&Key::from_static_str(key))
                .map(|value| value.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("edge-gateway"));
        assert_eq!(get("service.version").as_deref(), Some(VERSION));
    }
}
