//! Prometheus metrics, process-wide so that counters survive config reloads.
//!
//! Every label value is chosen from a fixed set, defined here or given by the module
//! that owns it ([`KnownLabels`]), or comes from the config (a JWKS provider's key):
//! raw client input never becomes a label, so whatever clients
//! send, the number of series stays bounded. Label sets are `&'static str`s, so
//! counting a request allocates nothing once its series exists.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::RequestFacts;

/// The `Content-Type` of [`Metrics::encode`]'s output (Prometheus text format 0.0.4,
/// which every Prometheus-compatible scraper reads).
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// HTTP methods that get a label value of their own (extension methods are `other`).
const KNOWN_HTTP_METHODS: &[&str] = &["POST", "GET", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH"];

/// Label values whose sets other modules own, given to the metrics by their owner
/// (the server, when it is built): telemetry imports none of the modules that define
/// them, and counts a value outside its set as `other`.
#[derive(Debug, Clone, Copy)]
pub struct KnownLabels {
    /// The methods MCP defines for a client to send (`requests{method}`).
    pub methods: &'static [&'static str],
    /// The authentication failure reasons (`auth_failures{reason}`).
    pub auth_reasons: &'static [&'static str],
    /// The ways an upstream fails to give a usable answer (`upstream_errors{kind}`).
    pub upstream_errors: &'static [&'static str],
    /// The authorization-server façade's audit events (`authorization_server_events{event}`).
    pub authorization_server_events: &'static [&'static str],
}

impl KnownLabels {
    /// Before the owner gives its sets, every such value is `other`.
    const NONE: Self = Self {
        methods: &[],
        auth_reasons: &[],
        upstream_errors: &[],
        authorization_server_events: &[],
    };
}

/// Gateway overhead: from 50 µs (a cached token, a small body) to seconds.
const OVERHEAD_BUCKETS: [f64; 15] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];
/// Upstream response head: from a millisecond to the default one-minute timeout.
const UPSTREAM_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Sessions are forgotten after this long without being seen, so sessions that end
/// without a DELETE (most do) cannot keep the gauge growing.
const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
const MAX_TRACKED_SESSIONS: u64 = 100_000;

/// Which token cache a lookup went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCache {
    /// Verified JWTs, keyed by the token's SHA-256.
    Verified,
    /// Introspection answers held by this process.
    Introspection,
    /// The introspection cache replicas share in Redis (a local miss looks there).
    IntrospectionShared,
    /// API keys whose argon2id check passed, keyed by SHA-256.
    ApiKey,
    /// Exchanged tokens replicas share in Redis (`upstream.identity.exchange`).
    ExchangeShared,
}

impl TokenCache {
    fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Introspection => "introspection",
            Self::IntrospectionShared => "introspection_shared",
            Self::ApiKey => "api_key",
            Self::ExchangeShared => "exchange_shared",
        }
    }
}

/// What the introspection endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionResult {
    /// The document says `active: true` (mcpgate may still refuse the token).
    Active,
    /// A document without `active: true`.
    Inactive,
    /// No usable answer: unreachable, timed out, an error status or not JSON.
    Error,
}

impl IntrospectionResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    http_method: &'static str,
    method: &'static str,
    decision: &'static str,
    status: u16,
}

/// A routed request (`routes:`): the route's name, shared with its configuration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteRequestLabels {
    route: Arc<str>,
    http_method: &'static str,
    method: &'static str,
    decision: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

/// A config key (`auth.oauth.jwks[0]`): bounded by the config, not by clients.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderResultLabels {
    provider: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Every metric mcpgate exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    route_requests: Family<RouteRequestLabels, Counter>,
    auth_failures: Family<ReasonLabel, Counter>,
    request_overhead: Histogram,
    upstream_duration: Histogram,
    upstream_errors: Family<KindLabel, Counter>,
    jwks_fetches: Family<ProviderResultLabels, Counter>,
    jwks: Arc<JwksCollector>,
    token_cache: Family<CacheLabels, Counter>,
    introspection_requests: Family<ResultLabel, Counter>,
    open_streams: Gauge,
    stdio_processes: Gauge,
    open_sessions: Gauge,
    sessions: moka::sync::Cache<String, ()>,
    config_reloads: Family<ResultLabel, Counter>,
    last_reload_success: Gauge<f64, AtomicU64>,
    audit_records: Counter,
    audit_write_errors: Counter,
    session_store_errors: Counter,
    authorization_server_events: Family<EventLabel, Counter>,
    rate_limited: Family<RuleLabel, Counter>,
    rate_limit_fallbacks: Counter,
    token_exchanges: Family<OutcomeLabel, Counter>,
    known: OnceLock<KnownLabels>,
}

/// A limit's name: from the configuration (`limits.rules[].name`, the built-ins,
/// `concurrency`), so the series stay as many as the rules ever configured.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("mcpgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests to the MCP endpoint by HTTP method, MCP method, decision and status",
            requests.clone(),
        );
        let route_requests = Family::<RouteRequestLabels, Counter>::default();
        registry.register(
            "route_requests",
            "Requests to a route's MCP endpoint (with routes: only) by route, HTTP method, MCP \
             method, decision and status",
            route_requests.clone(),
        );
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests whose authentication failed, by reason code",
            auth_failures.clone(),
        );
        let request_overhead = Histogram::new(OVERHEAD_BUCKETS);
        registry.register(
            "request_overhead_seconds",
            "Time mcpgate itself spent on a request up to the response head (latency minus upstream wait)",
            request_overhead.clone(),
        );
        let upstream_duration = Histogram::new(UPSTREAM_BUCKETS);
        registry.register(
            "upstream_duration_seconds",
            "Wait for the upstream's response head",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream requests that got no answer, by kind",
            upstream_errors.clone(),
        );
        let jwks_fetches = Family::<ProviderResultLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "JWKS fetches by provider and result",
            jwks_fetches.clone(),
        );
        let jwks = Arc::new(JwksCollector::default());
        registry.register_collector(Box::new(Arc::clone(&jwks)));
        let token_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "token_cache",
            "Token cache lookups by cache and result",
            token_cache.clone(),
        );
        let introspection_requests = Family::<ResultLabel, Counter>::default();
        registry.register(
            "introspection_requests",
            "Token introspection requests by answer",
            introspection_requests.clone(),
        );
        let open_streams = Gauge::default();
        registry.register(
            "open_streams",
            "SSE streams to clients currently open",
            open_streams.clone(),
        );
        let stdio_processes = Gauge::default();
        registry.register(
            "stdio_processes",
            "stdio MCP server processes running (one per session)",
            stdio_processes.clone(),
        );
        let open_sessions = Gauge::default();
        registry.register(
            "open_sessions",
            "MCP sessions opened and neither closed nor idle for 30 minutes",
            open_sessions.clone(),
        );
        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            config_reloads.clone(),
        );
        // Both results exist from the start, so `increase()` sees the first failure.
        for result in ["ok", "error"] {
            let _ = config_reloads.get_or_create(&ResultLabel { result });
        }
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load",
            last_reload_success.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "audit_records",
            "Audit records written",
            audit_records.clone(),
        );
        let audit_write_errors = Counter::default();
        registry.register(
            "audit_write_errors",
            "Failures to write audit records",
            audit_write_errors.clone(),
        );
        let session_store_errors = Counter::default();
        registry.register(
            "session_store_errors",
            "Session store operations (open, look-up, close) that failed: the store did not answer",
            session_store_errors.clone(),
        );
        let authorization_server_events = Family::<EventLabel, Counter>::default();
        registry.register(
            "authorization_server_events",
            "Steps and refusals of the authorization-server facade, one per audit record",
            authorization_server_events.clone(),
        );
        let rate_limited = Family::<RuleLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429 by a limit, by the limit's name",
            rate_limited.clone(),
        );
        let rate_limit_fallbacks = Counter::default();
        registry.register(
            "rate_limit_fallbacks",
            "Limit checks made with this process's own counters because the shared Redis \
             counters did not answer",
            rate_limit_fallbacks.clone(),
        );
        let token_exchanges = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "token_exchanges",
            "Token exchanges for the upstream (upstream.identity.exchange) by outcome; cache \
             hits are not counted",
            token_exchanges.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "mcpgate's version (always 1)", build_info);
        Self {
            registry,
            requests,
            route_requests,
            auth_failures,
            request_overhead,
            upstream_duration,
            upstream_errors,
            jwks_fetches,
            jwks,
            token_cache,
            introspection_requests,
            open_streams,
            stdio_processes,
            open_sessions,
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_SESSIONS)
                .time_to_idle(SESSION_IDLE)
                .build(),
            config_reloads,
            last_reload_success,
            audit_records,
            audit_write_errors,
            session_store_errors,
            authorization_server_events,
            rate_limited,
            rate_limit_fallbacks,
            token_exchanges,
            known: OnceLock::new(),
        }
    }

    /// The label sets owned elsewhere. The first sets given stay: they are constants
    /// of the program, the same on every call.
    pub fn know(&self, labels: KnownLabels) {
        let _ = self.known.set(labels);
    }

    fn known(&self) -> &KnownLabels {
        self.known.get().unwrap_or(&KnownLabels::NONE)
    }

    /// A limit check made with this process's counters: Redis did not answer.
    pub fn rate_limit_fallback(&self) {
        self.rate_limit_fallbacks.inc();
    }

    /// One call to the token endpoint for `upstream.identity.exchange`, or a caller
    /// refused before one (`no_subject_token`).
    pub fn token_exchange(&self, outcome: &'static str) {
        self.token_exchanges
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A session store operation that failed (each one a 503, or a session left behind).
    pub fn session_store_error(&self) {
        self.session_store_errors.inc();
    }

    /// One decided request (every audit record passes through here).
    pub fn request<'a>(&self, facts: impl Into<RequestFacts<'a>>) {
        let facts = facts.into();
        let known = self.known();
        let labels = RequestLabels {
            http_method: http_method_label(facts.http_method),
            method: method_label(facts.method, known.methods),
            decision: facts.decision,
            status: facts.status,
        };
        if let Some(route) = facts.route {
            let routed = RouteRequestLabels {
                route: Arc::clone(route),
                http_method: labels.http_method,
                method: labels.method,
                decision: labels.decision,
                status: labels.status,
            };
            self.route_requests.get_or_create(&routed).inc();
        }
        self.requests.get_or_create(&labels).inc();
        // "disabled" (no credential source) refused nobody's credentials.
        if !matches!(facts.auth_result, "ok" | "disabled") {
            let reason = label_in(facts.auth_result, known.auth_reasons);
            self.auth_failures
                .get_or_create(&ReasonLabel { reason })
                .inc();
        }
        let upstream_ms = facts
            .upstream_latency_ms
            .filter(|ms| ms.is_finite() && *ms >= 0.0);
        if let Some(ms) = upstream_ms {
            self.upstream_duration.observe(ms / 1000.0);
        }
        let overhead_ms = facts.latency_ms - upstream_ms.unwrap_or(0.0);
        if overhead_ms.is_finite() {
            self.request_overhead.observe(overhead_ms.max(0.0) / 1000.0);
        }
    }

    /// The upstream failed to give a usable answer (`unreachable`, `timeout`, …: one
    /// of the known upstream failure kinds).
    pub fn upstream_error(&self, kind: &str) {
        let kind = label_in(kind, self.known().upstream_errors);
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// A limit refused a request (429).
    pub fn rate_limited(&self, rule: &str) {
        self.rate_limited
            .get_or_create(&RuleLabel {
                rule: rule.to_owned(),
            })
            .inc();
    }

    /// A config reload was tried.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
        if ok {
            self.config_loaded();
        }
    }

    /// The configuration at start was loaded: sets the last-success timestamp without
    /// counting a reload, so "seconds since the config was loaded" works from the start.
    pub fn config_loaded(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        self.last_reload_success.set(now);
    }

    /// One step or refusal of the authorization-server façade.
    pub fn authorization_server_event(&self, event: &str) {
        let event = label_in(event, self.known().authorization_server_events);
        self.authorization_server_events
            .get_or_create(&EventLabel { event })
            .inc();
    }

    /// Audit records written, and failures to write them.
    pub fn audit_written(&self, records: u64) {
        self.audit_records.inc_by(records);
    }
    pub(crate) fn audit_write_error(&self) {
        self.audit_write_errors.inc();
    }

    /// An SSE stream to a client opened; it counts as open until the guard drops.
    pub fn stream_opened(&self) -> GaugeGuard {
        GaugeGuard::count(&self.open_streams)
    }

    /// A stdio server process started; it counts until the guard drops (after the
    /// process has been reaped).
    pub fn stdio_process_started(&self) -> GaugeGuard {
        GaugeGuard::count(&self.stdio_processes)
    }

    /// A session was created by `initialize` (its id from the upstream's answer) or
    /// ended by DELETE.
    pub fn session_opened(&self, session_id: &str) {
        // Inserting an id already present replaces it: it still counts once.
        self.sessions.insert(session_id.to_owned(), ());
    }
    pub(crate) fn session_closed(&self, session_id: &str) {
        self.sessions.invalidate(session_id);
    }

    /// A request within a known session: keeps it from being forgotten as idle. An
    /// unknown id is ignored (clients cannot add sessions by inventing ids).
    pub fn session_seen(&self, session_id: &str) {
        // The lookup itself is what refreshes the idle timer.
        let _ = self.sessions.get(session_id);
    }

    /// A JWKS fetch by `provider` (its config key) succeeded or failed.
    pub fn jwks_fetch(&self, provider: &str, ok: bool) {
        let labels = ProviderResultLabels {
            provider: provider.to_owned(),
            result: if ok { "ok" } else { "error" },
        };
        self.jwks_fetches.get_or_create(&labels).inc();
    }

    /// Exports a remote JWKS provider's key count and key age while it is alive. Only
    /// a weak reference is kept: a provider dropped by a reload disappears from the
    /// metrics, and one replaced by a provider with the same key is shadowed by it.
    pub fn track_jwks<P: KeySetGauge + 'static>(&self, provider: &Arc<P>) {
        let weak: Weak<P> = Arc::downgrade(provider);
        self.jwks.track(weak);
    }

    /// A lookup in one of the token caches.
    pub fn token_cache(&self, cache: TokenCache, hit: bool) {
        let labels = CacheLabels {
            cache: cache.as_str(),
            result: if hit { "hit" } else { "miss" },
        };
        self.token_cache.get_or_create(&labels).inc();
    }

    /// A lookup in, or a write to, a shared cache that failed (Redis down or slow).
    pub fn token_cache_error(&self, cache: TokenCache) {
        let labels = CacheLabels {
            cache: cache.as_str(),
            result: "error",
        };
        self.token_cache.get_or_create(&labels).inc();
    }

    /// An answer (or the lack of one) from the introspection endpoint.
    pub fn introspection_request(&self, result: IntrospectionResult) {
        let labels = ResultLabel {
            result: result.as_str(),
        };
        self.introspection_requests.get_or_create(&labels).inc();
    }

    /// The Prometheus text exposition (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        // moka applies expirations and removals lazily; settle them before counting.
        self.sessions.run_pending_tasks();
        let sessions = i64::try_from(self.sessions.entry_count()).unwrap_or(i64::MAX);
        self.open_sessions.set(sessions);
        let mut text = String::new();
        // Writing to a String cannot fail, nor can any metric here; log rather than panic.
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }
}

/// Keeps an SSE stream counted as open.
/// One unit of a gauge, held for as long as the thing counted lives.
pub struct GaugeGuard {
    open: Gauge,
}

impl GaugeGuard {
    fn count(gauge: &Gauge) -> Self {
        gauge.inc();
        Self {
            open: gauge.clone(),
        }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The `method` label: one of `known` (the methods MCP defines for a client to send),
/// `batch`, `notifications/*`, `tasks/*`, `none` when there was no method, else
/// `other` (so a crafted method cannot mint series).
fn method_label(method: Option<&str>, known: &'static [&'static str]) -> &'static str {
    let Some(method) = method else {
        return "none";
    };
    if method == "batch" {
        return "batch";
    }
    if method.starts_with("notifications/") {
        "notifications/*"
    } else if method.starts_with("tasks/") {
        "tasks/*"
    } else {
        label_in(method, known)
    }
}

fn http_method_label(method: &str) -> &'static str {
    label_in(method, KNOWN_HTTP_METHODS)
}

/// `value` as the member of `known` it equals, else `other`.
fn label_in(value: &str, known: &'static [&'static str]) -> &'static str {
    known
        .iter()
        .find(|label| **label == value)
        .copied()
        .unwrap_or("other")
}

/// What the metrics read from a JWKS provider at scrape time. The auth layer
/// implements it, so that telemetry imports nothing of the request path.
pub trait KeySetGauge: Send + Sync {
    /// The configuration key naming the provider (`auth.oauth.jwks[0]`).
    fn label(&self) -> &str;
    /// Usable signing keys now (0 before the first fetch and once stale).
    fn key_count(&self) -> usize;
    /// Time since the last successful fetch, if any.
    fn key_age(&self) -> Option<std::time::Duration>;
}

/// Key count and key age of the live JWKS providers, computed at scrape time (the age
/// grows between fetches; the count drops to 0 once the keys are stale).
#[derive(Default)]
struct JwksCollector {
    providers: Mutex<Vec<Weak<dyn KeySetGauge>>>,
}

impl std::fmt::Debug for JwksCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwksCollector")
    }
}

impl JwksCollector {
    fn track(&self, provider: Weak<dyn KeySetGauge>) {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        providers.retain(|tracked| tracked.strong_count() > 0);
        providers.push(provider);
    }

    /// The live providers, one per label, the most recently tracked first (during a
    /// reload the old gateway's provider may still be alive beside its successor).
    fn live(&self) -> Vec<Arc<dyn KeySetGauge>> {
        let providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut live: Vec<Arc<dyn KeySetGauge>> = Vec::new();
        for provider in providers.iter().rev().filter_map(Weak::upgrade) {
            if !live.iter().any(|seen| seen.label() == provider.label()) {
                live.push(provider);
            }
        }
        live
    }
}

impl Collector for JwksCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = self.live();
        if live.is_empty() {
            return Ok(());
        }
        {
            let mut family = encoder.encode_descriptor(
                "jwks_keys",
                "Usable signing keys per remote JWKS provider (0 before the first fetch and once stale beyond max_stale)",
                None,
                MetricType::Gauge,
            )?;
            for provider in &live {
                let labels = [("provider", provider.label())];
                let keys = i64::try_from(provider.key_count()).unwrap_or(i64::MAX);
                ConstGauge::new(keys).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "jwks_key_age_seconds",
            "Seconds since the provider's last successful JWKS fetch (absent before the first)",
            None,
            MetricType::Gauge,
        )?;
        for provider in &live {
            if let Some(age) = provider.key_age() {
                let labels = [("provider", provider.label())];
                ConstGauge::new(age.as_secs_f64()).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets as their owners would give them (the real ones are tested where they live).
    const KNOWN: KnownLabels = KnownLabels {
        methods: &["tools/call", "server/discover", "subscriptions/listen"],
        auth_reasons: &["expired", "missing"],
        upstream_errors: &["timeout", "unreachable"],
        authorization_server_events: &["token_issued", "grant_revoked"],
    };

    fn known_metrics() -> Metrics {
        let metrics = Metrics::new();
        metrics.know(KNOWN);
        metrics
    }

    /// The value of one exact series (`name{labels}`) in an exposition.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.parse().ok()
        })
    }

    fn record<'a>(
        method: Option<&'a str>,
        decision: &'static str,
        auth: &'a str,
        status: u16,
    ) -> RequestFacts<'a> {
        RequestFacts {
            request_id: "r-1",
            http_method: "POST",
            method,
            decision,
            auth_result: auth,
            status,
            latency_ms: 12.5,
            ..RequestFacts::default()
        }
    }

    #[test]
    fn requests_move_counters_and_histograms() {
        let metrics = known_metrics();
        let mut allowed = record(Some("tools/call"), "allow", "ok", 200);
        allowed.upstream_latency_ms = Some(10.0);
        metrics.request(allowed);
        metrics.request(allowed);
        metrics.request(record(None, "deny", "expired", 401));
        let text = metrics.encode();
        let allow = r#"mcpgate_requests_total{http_method="POST",method="tools/call",decision="allow",status="200"}"#;
        let deny = r#"mcpgate_requests_total{http_method="POST",method="none",decision="deny",status="401"}"#;
        assert_eq!(value(&text, allow), Some(2.0), "{text}");
        assert_eq!(value(&text, deny), Some(1.0));
        assert_eq!(
            value(&text, r#"mcpgate_auth_failures_total{reason="expired"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "mcpgate_request_overhead_seconds_count"),
            Some(3.0)
        );
        // 12.5 ms in total, 10 of them upstream: 2.5 ms each for the allowed two.
        let sum = value(&text, "mcpgate_request_overhead_seconds_sum").unwrap();
        assert!((sum - (0.0025 * 2.0 + 0.0125)).abs() < 1e-9, "{sum}");
        assert_eq!(
            value(&text, "mcpgate_upstream_duration_seconds_count"),
            Some(2.0)
        );
        let build = format!(
            r#"mcpgate_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&text, &build), Some(1.0));
    }

    #[test]
    fn other_counters_move() {
        let metrics = known_metrics();
        metrics.upstream_error("timeout");
        metrics.reload(true);
        metrics.reload(false);
        metrics.reload(false);
        metrics.audit_written(3);
        metrics.audit_write_error();
        metrics.token_cache(TokenCache::ApiKey, true);
        metrics.token_cache(TokenCache::Verified, false);
        metrics.introspection_request(IntrospectionResult::Inactive);
        metrics.jwks_fetch("auth.oauth.jwks[0]", true);
        metrics.session_store_error();
        metrics.authorization_server_event("token_issued");
        metrics.authorization_server_event("token_issued");
        metrics.authorization_server_event("not-an-event");
        let text = metrics.encode();
        for (series, expected) in [
            (r#"mcpgate_upstream_errors_total{kind="timeout"}"#, 1.0),
            (r#"mcpgate_config_reloads_total{result="ok"}"#, 1.0),
            (r#"mcpgate_config_reloads_total{result="error"}"#, 2.0),
            ("mcpgate_audit_records_total", 3.0),
            ("mcpgate_audit_write_errors_total", 1.0),
            ("mcpgate_session_store_errors_total", 1.0),
            (
                r#"mcpgate_authorization_server_events_total{event="token_issued"}"#,
                2.0,
            ),
            (
                r#"mcpgate_authorization_server_events_total{event="other"}"#,
                1.0,
            ),
            (
                r#"mcpgate_token_cache_total{cache="api_key",result="hit"}"#,
                1.0,
            ),
            (
                r#"mcpgate_token_cache_total{cache="verified",result="miss"}"#,
                1.0,
            ),
            (
                r#"mcpgate_introspection_requests_total{result="inactive"}"#,
                1.0,
            ),
            (
                r#"mcpgate_jwks_fetches_total{provider="auth.oauth.jwks[0]",result="ok"}"#,
                1.0,
            ),
        ] {
            assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
        }
        let reloaded = value(
            &text,
            "mcpgate_config_last_reload_success_timestamp_seconds",
        );
        assert!(reloaded.is_some_and(|at| at > 1.7e9), "{text}");
    }

    #[test]
    fn crafted_methods_and_reasons_map_to_bounded_labels() {
        let long = "x".repeat(1000);
        for crafted in [
            "tools/call\n",
            "Tools/Call",
            "tools/call ",
            long.as_str(),
            "",
        ] {
            assert_eq!(
                method_label(Some(crafted), KNOWN.methods),
                "other",
                "{crafted:?}"
            );
        }
        assert_eq!(method_label(None, KNOWN.methods), "none");
        assert_eq!(
            method_label(Some("tools/call"), KNOWN.methods),
            "tools/call"
        );
        assert_eq!(
            method_label(Some("server/discover"), KNOWN.methods),
            "server/discover"
        );
        assert_eq!(
            method_label(Some("subscriptions/listen"), KNOWN.methods),
            "subscriptions/listen"
        );
        assert_eq!(method_label(Some("batch"), KNOWN.methods), "batch");
        assert_eq!(
            method_label(Some("notifications/initialized"), KNOWN.methods),
            "notifications/*"
        );
        assert_eq!(method_label(Some("tasks/get"), KNOWN.methods), "tasks/*");
        assert_eq!(http_method_label("BREW"), "other");
        assert_eq!(label_in("expired", KNOWN.auth_reasons), "expired");
        // Without a credential source nothing is refused, so nothing is counted.
        let unauthenticated = known_metrics();
        unauthenticated.request(record(Some("tools/call"), "allow", "disabled", 200));
        assert!(
            value(
                &unauthenticated.encode(),
                r#"mcpgate_auth_failures_total{reason="other"}"#
            )
            .is_none()
        );
        assert_eq!(label_in("evil\"} 1\n", KNOWN.auth_reasons), "other");

        let metrics = known_metrics();
        let mut crafted = record(Some(&long), "deny", &long, 400);
        crafted.http_method = &long;
        metrics.request(crafted);
        let text = metrics.encode();
        assert!(!text.contains(&long));
        let series = r#"mcpgate_requests_total{http_method="other",method="other",decision="deny",status="400"}"#;
        assert_eq!(value(&text, series), Some(1.0), "{text}");
        assert_eq!(
            value(&text, r#"mcpgate_auth_failures_total{reason="other"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn sessions_count_distinct_ids_until_closed() {
        let metrics = Metrics::new();
        let open = |metrics: &Metrics| value(&metrics.encode(), "mcpgate_open_sessions");
        assert_eq!(open(&metrics), Some(0.0));
        metrics.session_opened("a");
        metrics.session_opened("a");
        metrics.session_opened("b");
        metrics.session_seen("never-opened");
        assert_eq!(open(&metrics), Some(2.0));
        metrics.session_closed("a");
        metrics.session_closed("unknown");
        assert_eq!(open(&metrics), Some(1.0));
        metrics.session_closed("b");
        assert_eq!(open(&metrics), Some(0.0));
    }

    #[test]
    fn streams_count_until_their_guard_drops() {
        let metrics = Metrics::new();
        let first = metrics.stream_opened();
        let second = metrics.stream_opened();
        assert_eq!(value(&metrics.encode(), "mcpgate_open_streams"), Some(2.0));
        drop(first);
        assert_eq!(value(&metrics.encode(), "mcpgate_open_streams"), Some(1.0));
        drop(second);
        assert_eq!(value(&metrics.encode(), "mcpgate_open_streams"), Some(0.0));
    }
}
