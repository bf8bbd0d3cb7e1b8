//! OpenTelemetry traces: what mcpgate exports over OTLP/HTTP, checked by decoding the
//! protobuf at an in-test collector; the W3C trace context it passes upstream; the
//! standard `OTEL_*` environment (each case in a child process, since the environment
//! is process-wide); and the real binary end to end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode};
use mcpgate::audit::{Action, Record};
use mcpgate::config::{Secret, TracesConfig};
use mcpgate::telemetry::traces::Traces;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;

const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

// === an OTLP/HTTP collector in the test process ===

#[derive(Clone, Default)]
struct Received {
    requests: Arc<Mutex<Vec<(HeaderMap, ExportTraceServiceRequest)>>>,
}

struct Collector {
    addr: SocketAddr,
    /// The traces endpoint, `/v1/traces` included.
    endpoint: String,
    received: Received,
}

impl Collector {
    async fn start() -> Self {
        let received = Received::default();
        let router = Router::new()
            .route("/v1/traces", post(collect))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            addr,
            endpoint: format!("http://{addr}/v1/traces"),
            received,
        }
    }

    fn requests(&self) -> Vec<(HeaderMap, ExportTraceServiceRequest)> {
        self.received.requests.lock().unwrap().clone()
    }

    /// Every span received, with its resource's attributes.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let mut spans = Vec::new();
        for (_, request) in self.requests() {
            for resource_spans in request.resource_spans {
                let resource = resource_spans
                    .resource
                    .map(|resource| resource.attributes)
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        spans.push((resource.clone(), span));
                    }
                }
            }
        }
        spans
    }

    /// Waits up to `limit` for `count` spans.
    async fn wait_for(&self, count: usize, limit: Duration) -> Vec<(Vec<KeyValue>, Span)> {
        let deadline = Instant::now() + limit;
        loop {
            let spans = self.spans();
            if spans.len() >= count || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn collect(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            received.requests.lock().unwrap().push((headers, request));
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn keys(attributes: &[KeyValue]) -> Vec<&str> {
    attributes.iter().map(|kv| kv.key.as_str()).collect()
}

// === helpers ===

fn config(endpoint: &str) -> TracesConfig {
    TracesConfig {
        enabled: true,
        endpoint: Some(endpoint.parse().unwrap()),
        ..TracesConfig::default()
    }
}

fn incoming(traceparent: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_str(traceparent).unwrap());
    headers
}

/// `(trace id, span id, flags)` of a `traceparent` value.
fn traceparent(headers: &HeaderMap) -> (String, String, String) {
    let value = headers["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

fn allowed_call() -> Record {
    let mut record = Record::new("req-7".to_owned(), "POST", SystemTime::now());
    record.method = Some("tools/call".to_owned());
    record.tool = Some("get-env".to_owned());
    record.session_id = Some("session-42".to_owned());
    record.oauth_client_id = Some("test-client".to_owned());
    record.scopes = Some("mcp:connect mcp:tools".to_owned());
    record.auth_result = "ok".to_owned();
    record.auth_method = Some("jwt");
    record.subject = Some("alice".to_owned());
    record.action = Action::Allow;
    record.status = 200;
    record
}

// === the library ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_span_continues_the_client_trace_and_carries_the_record() {
    let collector = Collector::start().await;
    let traces = Traces::init(&config(&collector.endpoint)).unwrap();
    assert!(traces.is_enabled());

    let mut client = incoming(&format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"));
    client.insert("tracestate", HeaderValue::from_static("vendor=abc"));
    let span = traces.start(&client);
    let mut upstream = HeaderMap::new();
    span.inject(&mut upstream);
    span.end(&allowed_call());
    traces.shutdown();

    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (resource, span) = &spans[0];
    assert_eq!(hex::encode(&span.trace_id), CLIENT_TRACE_ID);
    assert_eq!(hex::encode(&span.parent_span_id), CLIENT_SPAN_ID);
    assert_eq!(span.kind, span::SpanKind::Server as i32);
    assert_eq!(span.name, "tools/call get-env");
    assert_ne!(span.start_time_unix_nano, 0);
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert_eq!(span.trace_state, "vendor=abc");
    let expected = [
        ("mcp.method.name", "tools/call"),
        ("mcp.tool.name", "get-env"),
        ("mcp.session.id", "session-42"),
        ("mcp.auth.oauth_client_id", "test-client"),
        ("mcp.auth.scopes", "mcp:connect mcp:tools"),
        ("mcp.auth.result", "ok"),
        ("mcp.auth.method", "jwt"),
        ("enduser.id", "alice"),
        ("mcpgate.decision", "allow"),
        ("http.request.method", "POST"),
        ("http.response.status_code", "200"),
        ("mcpgate.request_id", "req-7"),
    ];
    for (key, value) in expected {
        assert_eq!(
            attribute(&span.attributes, key).as_deref(),
            Some(value),
            "{key}"
        );
    }
    // Unknown values are left out, not sent empty.
    assert_eq!(attribute(&span.attributes, "mcp.resource.uri"), None);
    assert_eq!(attribute(&span.attributes, "mcp.prompt.name"), None);
    assert_eq!(
        span.attributes.len(),
        expected.len(),
        "{:?}",
        keys(&span.attributes)
    );
    let status = span.status.clone().unwrap_or_default();
    assert_ne!(status.code, status::StatusCode::Error as i32);

    assert_eq!(
        attribute(resource, "service.name").as_deref(),
        Some("mcpgate")
    );
    assert_eq!(
        attribute(resource, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );

    // The upstream sees the gateway's span as its parent, in the client's trace.
    let (trace_id, span_id, flags) = traceparent(&upstream);
    assert_eq!(trace_id, CLIENT_TRACE_ID);
    assert_eq!(span_id, hex::encode(&span.span_id));
    assert_ne!(span_id, CLIENT_SPAN_ID);
    assert_eq!(flags, "01");
    assert_eq!(upstream["tracestate"], "vendor=abc");
}

#[tokio::test]
async fn without_a_traceparent_the_span_starts_a_trace() {
    let collector = Collector::start().await;
    let traces = Traces::init(&config(&collector.endpoint)).unwrap();
    let span = traces.start(&HeaderMap::new());
    let mut upstream = HeaderMap::new();
    // A client's tracestate would belong to a trace that is not ours.
    upstream.insert("tracestate", HeaderValue::from_static("stale=1"));
    span.inject(&mut upstream);
    let mut list = Record::new("req-8".to_owned(), "POST", SystemTime::now());
    list.method = Some("tools/list".to_owned());
    list.status = 200;
    span.end(&list);
    // A current-thread runtime: the exporter task runs only while this awaits.
    traces.shutdown_async().await;

    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0].1;
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.name, "tools/list");
    let (trace_id, span_id, flags) = traceparent(&upstream);
    assert_eq!(trace_id, hex::encode(&span.trace_id));
    assert_eq!(span_id, hex::encode(&span.span_id));
    assert_eq!(flags, "01");
    assert!(upstream.get("tracestate").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_error_spans_and_abandoned_requests_still_end_their_span() {
    let collector = Collector::start().await;
    let traces = Traces::init(&config(&collector.endpoint)).unwrap();

    let failed = traces.start(&HeaderMap::new());
    let mut record = Record::new("req-9".to_owned(), "GET", SystemTime::now());
    record.status = 502;
    record.reason = Some("upstream unreachable".to_owned());
    failed.end(&record);

    // The client went away: the span is dropped without its record.
    drop(traces.start(&HeaderMap::new()));
    traces.shutdown();

    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let failed = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| span.name == "GET");
    let failed = failed.expect("the failed request's span");
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(status.code, status::StatusCode::Error as i32);
    assert_eq!(status.message, "upstream unreachable");
    assert_eq!(
        attribute(&failed.attributes, "http.response.status_code").as_deref(),
        Some("502")
    );
    let abandoned = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| span.name != "GET")
        .unwrap();
    assert_eq!(abandoned.kind, span::SpanKind::Server as i32);
    assert!(abandoned.end_time_unix_nano >= abandoned.start_time_unix_nano);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_ratio_applies_to_new_traces_and_a_sampled_parent_is_followed() {
    let collector = Collector::start().await;
    let traces = Traces::init(&TracesConfig {
        sample_ratio: 0.0,
        ..config(&collector.endpoint)
    })
    .unwrap();

    let unsampled = traces.start(&HeaderMap::new());
    let mut upstream = HeaderMap::new();
    unsampled.inject(&mut upstream);
    // The decision travels upstream with the trace.
    assert_eq!(traceparent(&upstream).2, "00");
    unsampled.end(&allowed_call());

    let followed = traces.start(&incoming(&format!(
        "00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"
    )));
    followed.end(&allowed_call());
    traces.shutdown();

    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(hex::encode(&spans[0].1.trace_id), CLIENT_TRACE_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_headers_and_service_name_come_from_the_config() {
    let collector = Collector::start().await;
    let traces = Traces::init(&TracesConfig {
        service_name: Some("edge-gateway".to_owned()),
        headers: BTreeMap::from([(
            "x-collector-key".to_owned(),
            Secret::new("key%2Fwith-percent"),
        )]),
        ..config(&collector.endpoint)
    })
    .unwrap();
    traces.start(&HeaderMap::new()).end(&allowed_call());
    traces.shutdown();

    let requests = collector.requests();
    assert_eq!(requests.len(), 1);
    let (headers, _) = &requests[0];
    // Taken literally: the exporter's own percent-decoding does not apply.
    assert_eq!(headers["x-collector-key"], "key%2Fwith-percent");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    let spans = collector.spans();
    assert_eq!(
        attribute(&spans[0].0, "service.name").as_deref(),
        Some("edge-gateway")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_collector_that_never_answers() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let traces = Traces::init(&config(&format!("http://{addr}/v1/traces"))).unwrap();
    traces.start(&HeaderMap::new()).end(&allowed_call());
    let started = Instant::now();
    traces.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
}

// === the OTEL_* environment, one child process per case ===

/// Set in the child process: which case it runs.
const CHILD: &str = "MCPGATE_TRACES_TEST_CHILD";

/// Runs `child_exports_one_span` in a child process with `env` (and no other OTEL_*
/// variable); its stdout.
async fn run_child(env: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        // The test's path in the one integration binary (tests/integration.rs).
        concat!(module_path!(), "::child_exports_one_span")
            .split_once("::")
            .map_or("child_exports_one_span", |(_, path)| path),
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command.env(CHILD, "1").envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
#[ignore = "run in a child process by the environment tests"]
fn child_exports_one_span() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let traces = match Traces::init(&TracesConfig {
            enabled: true,
            ..TracesConfig::default()
        }) {
            Ok(traces) => traces,
            Err(error) => {
                println!("traces-error: {error}");
                return;
            }
        };
        println!("traces-enabled: {}", traces.is_enabled());
        traces.start(&HeaderMap::new()).end(&allowed_call());
        traces.shutdown_async().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traces_endpoint_and_service_name_come_from_the_environment() {
    let collector = Collector::start().await;
    let stdout = run_child(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &collector.endpoint),
        ("OTEL_SERVICE_NAME", "from-env"),
    ])
    .await;
    assert!(stdout.contains("traces-enabled: true"), "{stdout}");
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].1.name, "tools/call get-env");
    assert_eq!(
        attribute(&spans[0].0, "service.name").as_deref(),
        Some("from-env")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_endpoint_from_the_environment_gets_the_traces_path() {
    let collector = Collector::start().await;
    let base = format!("http://{}", collector.addr);
    run_child(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &base)]).await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(
        attribute(&spans[0].0, "service.name").as_deref(),
        Some("mcpgate")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_disabled_turns_traces_off() {
    let collector = Collector::start().await;
    let stdout = run_child(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &collector.endpoint),
        ("OTEL_SDK_DISABLED", "true"),
    ])
    .await;
    assert!(stdout.contains("traces-enabled: false"), "{stdout}");
    assert!(collector.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_endpoint_from_the_environment_is_a_config_error() {
    let stdout = run_child(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url")]).await;
    let error = stdout
        .lines()
        .find_map(|line| Some(line.split_once("traces-error: ")?.1))
        .unwrap_or_else(|| panic!("init did not fail:\n{stdout}"));
    assert!(error.starts_with("telemetry.traces: "), "{error}");
    assert!(
        error.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        "{error}"
    );
}

// === the real binary ===

/// Needs traces wired into the request path and `Traces::shutdown` at exit.
#[tokio::test]
async fn the_gateway_exports_its_span_and_the_upstream_sees_it_as_parent() {
    let collector = Collector::start().await;
    let upstream = Upstream::start().await;
    let config = TestConfig::oauth(&upstream.url)
        .scopes("initialize: [mcp:connect]")
        .yaml(&format!(
            "telemetry:\n  traces:\n    enabled: true\n    endpoint: {}",
            collector.endpoint
        ));
    let mut gateway = Gateway::start(&config.build()).await;
    let token = hs256(&claims(&gateway.mcp, "mcp:connect"), Some("dev"));
    let session = open_session(&gateway, &token).await;
    let response = Request::post(&gateway)
        .bearer(&token)
        .header("mcp-session-id", &session)
        .header(
            "traceparent",
            &format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"),
        )
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await;
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].headers.contains_key("traceparent"),
        "the upstream saw no traceparent"
    );
    let (trace_id, upstream_parent, _) = traceparent(&seen[1].headers);
    assert_eq!(trace_id, CLIENT_TRACE_ID);
    assert_ne!(
        upstream_parent, CLIENT_SPAN_ID,
        "the client's traceparent was passed through instead of the gateway's span"
    );

    // Exported by the batch processor's schedule or, at the latest, at exit.
    gateway.terminate();
    assert_eq!(gateway.wait_exit(Duration::from_secs(15)).await, Some(0));
    let spans = collector.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(spans.len(), 2, "{spans:?}\n{}", gateway.stderr());
    let span = &spans
        .iter()
        .find(|(_, span)| span.name == "tools/list")
        .expect("a tools/list span")
        .1;
    assert_eq!(hex::encode(&span.trace_id), CLIENT_TRACE_ID);
    assert_eq!(hex::encode(&span.parent_span_id), CLIENT_SPAN_ID);
    assert_eq!(hex::encode(&span.span_id), upstream_parent);
    assert_eq!(span.kind, span::SpanKind::Server as i32);
    assert_eq!(span.name, "tools/list");
    for (key, value) in [
        ("mcp.method.name", "tools/list"),
        ("mcp.session.id", session.as_str()),
        ("mcp.auth.oauth_client_id", "test-client"),
        ("mcp.auth.scopes", "mcp:connect"),
        ("mcp.auth.result", "ok"),
        ("mcp.auth.method", "jwt"),
        ("enduser.id", "alice"),
        ("mcpgate.decision", "allow"),
        ("http.request.method", "POST"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(
            attribute(&span.attributes, key).as_deref(),
            Some(value),
            "{key}"
        );
    }
    assert!(attribute(&span.attributes, "mcpgate.request_id").is_some());
}
