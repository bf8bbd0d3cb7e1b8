//! What one request leaves behind: its audit record, its metrics and its trace span,
//! all built from the same facts so the three never disagree.

use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use super::AppState;
use super::stream::{Standing, tracked};
use crate::audit::{Action, BatchEntry, Record};
use crate::auth::{AuthError, Principal};
use crate::gateway::Retirement;
use crate::mcp::envelope::Envelope;
use crate::mcp::names::CLIENT_REQUESTS;
use crate::mcp::session::SESSION_HEADER;
use crate::policy::{Item, RuleDenial};
use crate::telemetry::metrics::{KnownLabels, metrics};
use crate::telemetry::traces::RequestSpan;
use crate::upstream::FailureKind;

/// Longest session id copied into a record: it comes from the client.
const MAX_SESSION_ID: usize = 256;
/// Longest item name copied into a record (names are already bounded by the envelope
/// check; this keeps a record small whatever that bound becomes).
const MAX_NAME: usize = 4096;
/// The header carrying mcpgate's request id, to the client and to the upstream.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The label values the metrics take from the modules that define them: the methods
/// MCP defines for clients, every authentication failure reason, every way the
/// upstream can fail. Given when the server is built, before any request is counted.
pub fn known_labels() -> KnownLabels {
    KnownLabels {
        methods: CLIENT_REQUESTS,
        auth_reasons: AuthError::reasons(),
        upstream_errors: &FailureKind::LABELS,
        authorization_server_events: crate::authorization_server::events::EVENTS,
    }
}

/// One request being observed, from arrival to its response head.
pub struct Observation {
    record: Record,
    span: RequestSpan,
    started: Instant,
    forwarded: bool,
    initialize: bool,
}

impl Observation {
    pub(crate) fn start(state: &AppState, method: &Method, headers: &HeaderMap) -> Self {
        let mut record = Record::new(crate::random_id(), method.as_str(), SystemTime::now());
        record.session_id = headers
            .get(SESSION_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(|id| truncate(id, MAX_SESSION_ID));
        Self {
            record,
            span: state.traces.start(headers),
            started: Instant::now(),
            forwarded: false,
            initialize: false,
        }
    }

    /// Headers the upstream request carries for this request: its id and the trace context.
    pub fn upstream_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&self.record.request_id) {
            headers.insert(REQUEST_ID_HEADER, value);
        }
        self.span.inject(&mut headers);
        headers
    }

    /// The route the request is for.
    pub(crate) fn route(&mut self, name: Option<&std::sync::Arc<str>>) {
        self.record.route = name.cloned();
    }

    /// The bearer token presented (by its SHA-256, computed once per request and
    /// shared with the token caches), whatever came of it.
    pub fn token(&mut self, digest: &[u8; 32]) {
        self.record.token_fingerprint = Some(Record::fingerprint(digest));
    }

    pub(crate) fn auth_disabled(&mut self) {
        "disabled".clone_into(&mut self.record.auth_result);
    }

    pub(crate) fn authenticated(&mut self, principal: &Principal) {
        let record = &mut self.record;
        record.auth_method = Some(principal.method.as_str());
        record.subject.clone_from(&principal.subject);
        record.issuer.clone_from(&principal.issuer);
        record.oauth_client_id.clone_from(&principal.client_id);
        record.api_key_id.clone_from(&principal.api_key_id);
        record.scopes = Some(principal.scopes.to_claim());
        record.mapped_scopes = Some(principal.scopes.mapped().to_vec());
    }

    /// The `rules:` entries that apply to the caller.
    pub fn rules_matched(&mut self, names: Vec<String>) {
        self.record.rules_matched = Some(names);
    }

    /// A rule refused the request.
    pub fn denied_by_rule(&mut self, denial: &RuleDenial) {
        self.record.denied_by_rule = Some(denial.rule.clone());
        self.record.reason = Some(denial.description.clone());
    }

    /// The credential was not checked: its address spent a limit in front of the
    /// checks (the reason code of the API-key lockout, which is the same thing).
    pub(crate) fn auth_limited(&mut self) {
        AuthError::TooManyAttempts
            .reason()
            .clone_into(&mut self.record.auth_result);
    }

    pub(crate) fn auth_failed(&mut self, error: &AuthError) {
        error.reason().clone_into(&mut self.record.auth_result);
        self.record.reason = Some(error.to_string());
    }

    /// What the body asked for.
    pub fn messages(&mut self, envelope: &Envelope) {
        let record = &mut self.record;
        self.initialize = envelope
            .messages
            .iter()
            .any(|message| message.method() == Some("initialize"));
        if envelope.batch {
            record.method = Some("batch".to_owned());
            record.batch = Some(
                envelope
                    .messages
                    .iter()
                    .map(|message| BatchEntry {
                        method: message.method().unwrap_or("response").to_owned(),
                        name: message.target().item.map(|item| name_of(item).to_owned()),
                    })
                    .collect(),
            );
            return;
        }
        let Some(message) = envelope.messages.first() else {
            return;
        };
        record.method = message.method().map(str::to_owned);
        match message.target().item {
            Some(Item::Tool(name)) => record.tool = Some(truncate(name, MAX_NAME)),
            Some(Item::Resource(uri)) => record.resource = Some(truncate(uri, MAX_NAME)),
            Some(Item::Prompt(name)) => record.prompt = Some(truncate(name, MAX_NAME)),
            None => {}
        }
    }

    /// Why mcpgate refused the request (the description the client was given).
    pub fn refused(&mut self, reason: impl Into<String>) {
        self.record.reason = Some(reason.into());
    }

    /// Names a mechanism that told the upstream who calls (`assertion`,
    /// `identity_headers`, `token_exchange`, `entra_obo`, `connection:<name>`),
    /// after any named before; never a token.
    pub fn upstream_identity(&mut self, mechanism: &str) {
        let named = self
            .record
            .upstream_identity
            .get_or_insert_with(String::new);
        if !named.is_empty() {
            named.push(' ');
        }
        named.push_str(mechanism);
    }

    /// The audience of the token the upstream got in the caller's name.
    pub fn upstream_audience(&mut self, audience: &str) {
        self.record.upstream_audience = Some(truncate(audience, MAX_NAME));
    }

    /// The request reached the upstream, which answered (or failed) after `waited`.
    pub fn forwarded(&mut self, waited: Duration) {
        self.forwarded = true;
        self.record.upstream_latency_ms = Some(Record::millis(waited));
    }

    /// Completes the record from the response, hands it to the audit log (waiting if
    /// the log is behind), metrics and the trace, and returns the response with its
    /// request id and, for a stream, the bookkeeping that ends it cleanly at shutdown.
    /// `retirement` is the route's, when the request reached one.
    pub async fn finish(
        self,
        state: &AppState,
        retirement: Option<&Retirement>,
        mut response: Response,
    ) -> Response {
        let Self {
            mut record,
            span,
            started,
            forwarded,
            initialize,
        } = self;
        record.latency_ms = Record::millis(started.elapsed());
        record.status = response.status().as_u16();
        record.action = if forwarded {
            Action::Allow
        } else {
            Action::Deny
        };
        if response.status().is_success() {
            track_session(&mut record, &response, initialize);
        }
        metrics().request(&record);
        span.end(&record);
        if let Ok(value) = HeaderValue::from_str(&record.request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        // The record is queued before the response leaves: a client that saw an
        // answer can count on its record being written (flushed at shutdown).
        // A GET stream only carries notifications and never ends by itself, so it
        // ends when shutdown begins, or when a reload retires its route; a POST
        // answered as a stream is an in-flight request and gets the grace period to
        // finish.
        let standing_stream = record.http_method == "GET";
        state.audit.record(record).await;
        if is_event_stream(&response) {
            let (parts, body) = response.into_parts();
            let standing = standing_stream.then(|| Standing {
                shutdown: state.shutdown.clone(),
                retired: retirement.map(Retirement::watch),
            });
            let body = tracked(body, standing);
            return Response::from_parts(parts, Body::from_stream(body));
        }
        response
    }
}

/// The session a successful `initialize` opened, a DELETE closed, or a request used.
/// The gauge is keyed by the same truncated id the record carries, so an open and
/// its close always match.
fn track_session(record: &mut Record, response: &Response, initialize: bool) {
    if initialize {
        if let Some(id) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|value| value.to_str().ok())
        {
            let id = truncate(id, MAX_SESSION_ID);
            metrics().session_opened(&id);
            record.session_id = Some(id);
        }
    } else if let Some(id) = &record.session_id {
        if record.http_method == "DELETE" {
            metrics().session_closed(id);
        } else {
            metrics().session_seen(id);
        }
    }
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

fn name_of(item: Item<'_>) -> &str {
    match item {
        Item::Tool(name) | Item::Resource(name) | Item::Prompt(name) => name,
    }
}

/// At most `max` bytes, cut on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    crate::char_prefix(text, max).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::telemetry::RequestFacts;
    use crate::telemetry::metrics::Metrics;

    /// The value of one exact series (`name{labels}`) in an exposition.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.parse().ok()
        })
    }

    #[test]
    fn every_reason_kind_and_method_is_a_label_of_its_own() {
        let metrics = Metrics::new();
        metrics.know(known_labels());
        for error in AuthError::every_kind() {
            metrics.request(RequestFacts {
                http_method: "POST",
                auth_result: error.reason(),
                decision: "deny",
                status: 401,
                ..RequestFacts::default()
            });
        }
        for kind in FailureKind::ALL {
            metrics.upstream_error(kind.label());
        }
        for method in CLIENT_REQUESTS {
            metrics.request(RequestFacts {
                http_method: "POST",
                method: Some(method),
                auth_result: "ok",
                decision: "allow",
                status: 200,
                ..RequestFacts::default()
            });
        }
        let text = metrics.encode();
        for error in AuthError::every_kind() {
            let series = format!(
                r#"mcpgate_auth_failures_total{{reason="{}"}}"#,
                error.reason()
            );
            assert_eq!(value(&text, &series), Some(1.0), "{error:?} in\n{text}");
        }
        for kind in FailureKind::ALL {
            let series = format!(
                r#"mcpgate_upstream_errors_total{{kind="{}"}}"#,
                kind.label()
            );
            assert_eq!(value(&text, &series), Some(1.0), "{kind:?} in\n{text}");
        }
        // The tasks extension's methods share one label.
        let tasks = CLIENT_REQUESTS
            .iter()
            .filter(|method| method.starts_with("tasks/"))
            .count();
        for method in CLIENT_REQUESTS {
            let (label, count) = if method.starts_with("tasks/") {
                ("tasks/*", tasks)
            } else {
                (*method, 1)
            };
            let series = format!(
                r#"mcpgate_requests_total{{http_method="POST",method="{label}",decision="allow",status="200"}}"#
            );
            assert_eq!(
                value(&text, &series),
                Some(count as f64),
                "{method} in\n{text}"
            );
        }
        assert!(!text.contains(r#""other""#), "{text}");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn request_ids_are_128_bit_hex_and_distinct() {
        let a = crate::random_id();
        let b = crate::random_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
