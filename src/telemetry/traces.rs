//! OpenTelemetry traces over OTLP. Off by default, and then free: no span is built, no
//! clock is read.
//!
//! The provider lives here rather than in the OpenTelemetry globals: nothing else in
//! mcpgate creates spans, and a global would outlive a reload and survive into tests.

mod config;
mod headers;
mod provider;
mod span;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::config::{ConfigError, TracesConfig};

pub use span::RequestSpan;

/// How long shutdown may take: the exporter's own timeouts are longer, and a collector
/// that does not answer must not keep the process from exiting.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// The tracer, or nothing when traces are off.
#[derive(Clone, Default)]
pub struct Traces {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    shut_down: AtomicBool,
}

impl Traces {
    /// Builds the OTLP exporter (it sends in the background). Errors name the key.
    ///
    /// Must run inside the tokio runtime: the batch exporter is a task on it.
    pub fn init(config: &TracesConfig) -> Result<Self, ConfigError> {
        if !config.enabled || sdk_disabled() {
            return Ok(Self::default());
        }
        let (provider, tracer) = provider::build(config)?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                provider,
                tracer,
                propagator: TraceContextPropagator::new(),
                shut_down: AtomicBool::new(false),
            })),
        })
    }

    /// Whether spans are exported: `telemetry.traces.enabled`, unless
    /// `OTEL_SDK_DISABLED=true`.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// A server span for one request, child of the caller's `traceparent` if any.
    pub fn start(&self, incoming: &HeaderMap) -> RequestSpan {
        let Some(inner) = &self.inner else {
            return RequestSpan::disabled();
        };
        let parent = inner
            .propagator
            .extract(&headers::HeaderExtractor::new(incoming));
        // The name is provisional: what the request is becomes known only at `end`.
        let span = SpanBuilder::from_name(span::PROVISIONAL_NAME)
            .with_kind(SpanKind::Server)
            .start_with_context(&inner.tracer, &parent);
        RequestSpan::new(span)
    }

    /// Exports what is pending; called once at shutdown. Waits at most a few seconds.
    ///
    /// Blocks the calling thread. On a current-thread runtime the exporter task cannot
    /// run meanwhile, so await [`Traces::shutdown_async`] there instead.
    pub fn shutdown(&self) {
        let Some(done) = self.begin_shutdown() else {
            return;
        };
        let wait = move || done.recv_timeout(SHUTDOWN_LIMIT);
        // A worker blocked in place hands its queued tasks (the exporter may be one)
        // to another worker; block_in_place panics on a current-thread runtime.
        let outcome = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        report(outcome);
    }

    /// [`Traces::shutdown`] without blocking the runtime.
    pub async fn shutdown_async(&self) {
        let Some(done) = self.begin_shutdown() else {
            return;
        };
        match tokio::task::spawn_blocking(move || done.recv_timeout(SHUTDOWN_LIMIT)).await {
            Ok(outcome) => report(outcome),
            Err(error) => tracing::warn!(%error, "traces: shutdown did not complete"),
        }
    }

    /// Starts flush and shutdown on their own thread: the SDK's shutdown waits without
    /// a limit for the exporter task. `None` when off or already shut down.
    fn begin_shutdown(&self) -> Option<mpsc::Receiver<OTelSdkResult>> {
        let inner = self.inner.as_ref()?;
        if inner.shut_down.swap(true, Ordering::SeqCst) {
            return None;
        }
        let provider = inner.provider.clone();
        let (sender, receiver) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".to_owned())
            .spawn(move || {
                let flushed = provider.force_flush();
                let shut = provider.shutdown_with_timeout(SHUTDOWN_LIMIT);
                let _ = sender.send(flushed.and(shut));
            });
        match spawned {
            Ok(_) => Some(receiver),
            Err(error) => {
                tracing::warn!(%error, "traces: cannot start the shutdown thread");
                None
            }
        }
    }
}

impl fmt::Debug for Traces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traces")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl Drop for Inner {
    /// The SDK shuts a provider down when its last handle drops, waiting for the
    /// exporter task: on a runtime thread that can wait forever. A provider nobody
    /// shut down is handed to a thread of its own instead.
    fn drop(&mut self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let provider = self.provider.clone();
        let _ = std::thread::Builder::new()
            .name("otel-shutdown".to_owned())
            .spawn(move || {
                let _ = provider.shutdown_with_timeout(SHUTDOWN_LIMIT);
            });
    }
}

/// `OTEL_SDK_DISABLED=true` turns every signal off, whatever the configuration says.
fn sdk_disabled() -> bool {
    std::env::var("OTEL_SDK_DISABLED").is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

fn report(outcome: Result<OTelSdkResult, mpsc::RecvTimeoutError>) {
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "traces: the last spans were not exported"),
        Err(mpsc::RecvTimeoutError::Timeout) => tracing::warn!(
            limit = ?SHUTDOWN_LIMIT,
            "traces: the exporter did not finish in time; pending spans are lost"
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            tracing::warn!("traces: the shutdown thread stopped without an answer")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_traces_build_nothing() {
        let traces = Traces::init(&TracesConfig::default()).unwrap();
        assert!(!traces.is_enabled());
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let span = traces.start(&incoming);
        assert!(!span.is_active());
        let mut outgoing = HeaderMap::new();
        span.inject(&mut outgoing);
        assert!(outgoing.is_empty());
        traces.shutdown();
    }

    #[test]
    fn enabled_traces_need_the_runtime() {
        let config = TracesConfig {
            enabled: true,
            ..TracesConfig::default()
        };
        let error = Traces::init(&config).err().unwrap();
        assert!(error.to_string().starts_with("telemetry.traces"), "{error}");
    }
}
