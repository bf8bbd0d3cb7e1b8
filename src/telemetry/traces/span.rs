//! One request's span: named and described from the request's facts (its audit
//! record's) when it ends.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Span;

use super::headers::HeaderInjector;
use crate::telemetry::RequestFacts;

/// The name of a span that ended without its record (dropped mid-request).
pub(super) const PROVISIONAL_NAME: &str = "mcpgate request";

/// The span of one request; it ends with the request's audit record.
///
/// Boxed: an SDK span is a few hundred bytes, and this one rides in every request's
/// future even when traces are off.
pub struct RequestSpan {
    span: Option<Box<Span>>,
}

impl RequestSpan {
    pub(super) fn disabled() -> Self {
        Self { span: None }
    }

    pub(super) fn new(span: Span) -> Self {
        Self {
            span: Some(Box::new(span)),
        }
    }

    /// Whether a span is behind this (traces on), sampled or not.
    pub fn is_active(&self) -> bool {
        self.span.is_some()
    }

    /// Adds `traceparent` (and `tracestate`) for the upstream request.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        let Some(span) = &self.span else {
            return;
        };
        // Propagated even when not sampled: the upstream then follows that decision.
        let context = Context::new().with_remote_span_context(span.span_context().clone());
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }

    /// Sets the attributes from the request's facts and ends the span.
    pub fn end<'a>(mut self, facts: impl Into<RequestFacts<'a>>) {
        let Some(mut span) = self.span.take() else {
            return;
        };
        let facts = facts.into();
        if span.is_recording() {
            span.update_name(span_name(&facts));
            span.set_attributes(attributes(&facts));
            if facts.status >= 500 {
                let description = facts
                    .reason
                    .map_or_else(|| format!("HTTP {}", facts.status), str::to_owned);
                span.set_status(Status::error(description));
            }
        }
        span.end();
    }
}

impl std::fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSpan")
            .field("active", &self.is_active())
            .finish()
    }
}

impl Drop for RequestSpan {
    /// A request abandoned before its record (the client went away) still ends its
    /// span, under the provisional name.
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.end();
        }
    }
}

/// `tools/call get-env`: the JSON-RPC method and what it names; the method alone; or,
/// when no JSON-RPC method was read, the HTTP method.
pub(crate) fn span_name(facts: &RequestFacts<'_>) -> String {
    let target = [facts.tool, facts.prompt, facts.resource]
        .into_iter()
        .find_map(present);
    match (present(facts.method), target) {
        (Some(method), Some(target)) => format!("{method} {target}"),
        (Some(method), None) => method.to_owned(),
        (None, _) => facts.http_method.to_owned(),
    }
}

/// The facts as span attributes; an unknown value is left out, not set empty.
pub(crate) fn attributes(facts: &RequestFacts<'_>) -> Vec<KeyValue> {
    let texts = [
        ("mcp.method.name", facts.method),
        ("mcp.tool.name", facts.tool),
        ("mcp.resource.uri", facts.resource),
        ("mcp.prompt.name", facts.prompt),
        ("mcp.session.id", facts.session_id),
        ("mcpgate.route", facts.route.map(|route| &**route)),
        ("mcp.auth.oauth_client_id", facts.oauth_client_id),
        ("mcp.auth.scopes", facts.scopes),
        ("mcp.auth.result", Some(facts.auth_result)),
        ("mcp.auth.method", facts.auth_method),
        ("enduser.id", facts.subject),
        ("mcpgate.decision", Some(facts.decision)),
        ("http.request.method", Some(facts.http_method)),
        ("mcpgate.request_id", Some(facts.request_id)),
    ];
    let mut attributes: Vec<KeyValue> = texts
        .into_iter()
        .filter_map(|(key, value)| Some(KeyValue::new(key, present(value)?.to_owned())))
        .collect();
    // 0 is the facts' "no response yet".
    if facts.status != 0 {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(facts.status),
        ));
    }
    attributes
}

fn present(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a new audit record gives: its identity, `ok` and `deny`.
    fn record(http_method: &str) -> RequestFacts<'_> {
        RequestFacts {
            request_id: "req-1",
            http_method,
            auth_result: "ok",
            decision: "deny",
            ..RequestFacts::default()
        }
    }

    #[test]
    fn a_named_call_is_method_and_name() {
        let mut call = record("POST");
        call.method = Some("tools/call");
        call.tool = Some("get-env");
        assert_eq!(span_name(&call), "tools/call get-env");

        let mut prompt = record("POST");
        prompt.method = Some("prompts/get");
        prompt.prompt = Some("greeting");
        assert_eq!(span_name(&prompt), "prompts/get greeting");

        let mut read = record("POST");
        read.method = Some("resources/read");
        read.resource = Some("file:///public/readme.md");
        assert_eq!(span_name(&read), "resources/read file:///public/readme.md");
    }

    #[test]
    fn a_method_alone_names_itself() {
        let mut list = record("POST");
        list.method = Some("tools/list");
        assert_eq!(span_name(&list), "tools/list");
        list.tool = Some("");
        assert_eq!(span_name(&list), "tools/list");
    }

    #[test]
    fn without_a_json_rpc_method_the_http_method_names_it() {
        assert_eq!(span_name(&record("GET")), "GET");
        assert_eq!(span_name(&record("DELETE")), "DELETE");
        let mut unread = record("POST");
        unread.tool = Some("get-env");
        assert_eq!(span_name(&unread), "POST");
    }

    #[test]
    fn absent_values_are_not_attributes() {
        let mut denied = record("POST");
        denied.auth_result = "expired";
        denied.session_id = Some("");
        denied.status = 401;
        let keys: Vec<String> = attributes(&denied)
            .iter()
            .map(|kv| kv.key.to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "mcp.auth.result",
                "mcpgate.decision",
                "http.request.method",
                "mcpgate.request_id",
                "http.response.status_code",
            ]
        );
    }

    #[test]
    fn every_known_value_is_an_attribute() {
        let mut call = record("POST");
        call.method = Some("tools/call");
        call.tool = Some("get-env");
        call.session_id = Some("s-1");
        call.oauth_client_id = Some("client-1");
        call.scopes = Some("mcp:tools");
        call.auth_method = Some("jwt");
        call.subject = Some("alice");
        call.decision = "allow";
        call.status = 200;
        let attributes = attributes(&call);
        let get = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("mcp.method.name").as_deref(), Some("tools/call"));
        assert_eq!(get("mcp.tool.name").as_deref(), Some("get-env"));
        assert_eq!(get("mcp.session.id").as_deref(), Some("s-1"));
        assert_eq!(get("mcp.auth.oauth_client_id").as_deref(), Some("client-1"));
        assert_eq!(get("mcp.auth.scopes").as_deref(), Some("mcp:tools"));
        assert_eq!(get("mcp.auth.result").as_deref(), Some("ok"));
        assert_eq!(get("mcp.auth.method").as_deref(), Some("jwt"));
        assert_eq!(get("enduser.id").as_deref(), Some("alice"));
        assert_eq!(get("mcpgate.decision").as_deref(), Some("allow"));
        assert_eq!(get("http.request.method").as_deref(), Some("POST"));
        assert_eq!(get("http.response.status_code").as_deref(), Some("200"));
        assert_eq!(get("mcpgate.request_id").as_deref(), Some("req-1"));
        assert_eq!(get("mcp.resource.uri"), None);
    }
}
