//! HTTP answers as a Streamable HTTP server gives them: content negotiation, JSON
//! bodies, SSE streams fed by an exchange, and the error statuses of the transport.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::framing::sse_event;
use super::message::IdKey;
use super::router::Event;
use super::session::{End, ExchangeGuard, GetGuard};
use crate::mcp::session::SESSION_HEADER;
use crate::upstream::UpstreamError;

/// How a POST with requests is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// `text/event-stream`: everything the child says while the requests are
    /// pending, then their answers.
    Sse,
    /// `application/json`: just the answers.
    Json,
}

/// Picks the reply format from `Accept` (RFC 9110 §12.5.1): each type's weight is
/// that of its most specific matching range. SSE wins a tie when the client names it
/// (it carries progress and server requests); when only wildcards match both (or
/// there is no `Accept`), JSON does, which generic clients such as curl read more
/// easily. `None`: neither is acceptable (406).
pub(super) fn negotiate(headers: &HeaderMap) -> Option<Reply> {
    let sse = weight(headers, "text", "event-stream");
    let json = weight(headers, "application", "json");
    match (sse, json) {
        (None, None) => None,
        (Some((sse_q, _)), None) => (sse_q > 0.0).then_some(Reply::Sse),
        (None, Some((json_q, _))) => (json_q > 0.0).then_some(Reply::Json),
        (Some((sse_q, sse_exact)), Some((json_q, _))) => {
            if sse_q <= 0.0 && json_q <= 0.0 {
                None
            } else if sse_q > json_q || (sse_q == json_q && sse_exact) {
                Some(Reply::Sse)
            } else {
                Some(Reply::Json)
            }
        }
    }
}

/// A GET stream needs `text/event-stream` to be acceptable.
pub(super) fn accepts_sse(headers: &HeaderMap) -> bool {
    weight(headers, "text", "event-stream").is_some_and(|(q, _)| q > 0.0)
}

/// The weight `Accept` gives `kind/sub`, and whether it was named exactly; `None`
/// when no range matches. No `Accept` header means anything goes.
fn weight(headers: &HeaderMap, kind: &str, sub: &str) -> Option<(f32, bool)> {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return Some((1.0, false));
    }
    // (specificity, q): exact 2, kind/* 1, */* 0.
    let mut best: Option<(u8, f32)> = None;
    for value in values {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let Some((range_kind, range_sub)) = media.split_once('/') else {
                continue;
            };
            let (range_kind, range_sub) = (range_kind.trim(), range_sub.trim());
            let specificity =
                if range_kind.eq_ignore_ascii_case(kind) && range_sub.eq_ignore_ascii_case(sub) {
                    2
                } else if range_kind.eq_ignore_ascii_case(kind) && range_sub == "*" {
                    1
                } else if range_kind == "*" && range_sub == "*" {
                    0
                } else {
                    continue;
                };
            let q = parts
                .filter_map(|param| param.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            if best.is_none_or(|(current, _)| specificity > current) {
                best = Some((specificity, q));
            }
        }
    }
    best.map(|(specificity, q)| (q, specificity == 2))
}

pub(super) fn json_rpc_error(id: Option<&Value>, code: i64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {"code": code, "message": message},
    })
}

fn with_json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn json_value(status: StatusCode, body: &Value) -> Response<Body> {
    with_json(status, body.to_string().into_bytes())
}

/// A transport-level refusal as a JSON-RPC error with no id (the TypeScript SDK's
/// server answers the same way).
pub(super) fn refusal(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    json_value(status, &json_rpc_error(None, code, message))
}

/// 404: the session is unknown, or its child is gone. The client starts a new one.
pub(super) fn session_not_found() -> Response<Body> {
    refusal(StatusCode::NOT_FOUND, -32001, "Session not found")
}

pub(super) fn not_acceptable(what: &str) -> Response<Body> {
    refusal(
        StatusCode::NOT_ACCEPTABLE,
        -32000,
        &format!("Not Acceptable: Client must accept {what}"),
    )
}

/// The gateway's own errors (no JSON-RPC id to tie them to), as the rest of mcpgate
/// writes them.
pub(super) fn gateway_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    json_value(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

pub(super) fn accepted() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

pub(super) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// `session` empty: no session to name (a refused `initialize`).
fn set_session(response: &mut Response<Body>, session: &str) {
    if session.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(session) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
}

fn sse_response(body: Body, session: &str) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set_session(&mut response, session);
    response
}

/// What one exchange gathered before it was complete, timed out, or cut off.
pub(super) struct Gathered {
    /// Everything that arrived, answers included, in arrival order.
    pub messages: Vec<Bytes>,
    /// Answers only, in arrival order.
    pub answers: Vec<Bytes>,
    /// Requests left unanswered.
    pub missing: Vec<Value>,
    pub timed_out: bool,
}

/// The requests of one exchange still owed an answer.
struct Owed(Vec<(IdKey, Value)>);

impl Owed {
    fn new(requests: Vec<(IdKey, Value)>) -> Self {
        Self(requests)
    }

    fn settle(&mut self, key: &IdKey) {
        self.0.retain(|(owed, _)| owed != key);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self) -> Vec<Value> {
        self.0.drain(..).map(|(_, id)| id).collect()
    }
}

/// Reads an exchange until every request is answered, the channel closes (the
/// session ended), or `deadline` passes. Used for JSON replies and `initialize`.
pub(super) async fn gather(
    rx: &mut mpsc::Receiver<Event>,
    requests: Vec<(IdKey, Value)>,
    deadline: Instant,
) -> Gathered {
    let mut owed = Owed::new(requests);
    let mut gathered = Gathered {
        messages: Vec::new(),
        answers: Vec::new(),
        missing: Vec::new(),
        timed_out: false,
    };
    while !owed.is_empty() {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Err(_) => {
                gathered.timed_out = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(Event::Cancelled(key))) => owed.settle(&key),
            Ok(Some(Event::Message { json, answers })) => {
                if let Some(key) = answers {
                    owed.settle(&key);
                    gathered.answers.push(json.clone());
                }
                gathered.messages.push(json);
            }
        }
    }
    gathered.missing = owed.take();
    gathered
}

/// The body of a JSON reply: one object, or an array for a batch (JSON-RPC §6).
pub(super) fn json_reply(answers: &[Bytes], batch: bool, session: &str) -> Response<Body> {
    let body = if let (false, [single]) = (batch, answers) {
        single.to_vec()
    } else {
        let mut body = Vec::with_capacity(answers.iter().map(Bytes::len).sum::<usize>() + 2);
        body.push(b'[');
        for (index, answer) in answers.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend_from_slice(answer);
        }
        body.push(b']');
        body
    };
    let mut response = with_json(StatusCode::OK, body);
    set_session(&mut response, session);
    response
}

/// An already complete exchange (`initialize`) as SSE.
pub(super) fn sse_reply(messages: &[Bytes], session: &str) -> Response<Body> {
    let frames: Vec<Result<Bytes, Infallible>> =
        messages.iter().map(|json| Ok(sse_event(json))).collect();
    sse_response(
        Body::from_stream(futures_util::stream::iter(frames)),
        session,
    )
}

/// The error answer a request gets when the session ends before the child answers.
pub(super) fn ended_answer(id: &Value, end: &End) -> Bytes {
    Bytes::from(json_rpc_error(Some(id), -32000, &end.message()).to_string())
}

pub(super) fn timeout_answer(id: &Value, timeout: Duration) -> Bytes {
    let message = UpstreamError::Timeout(timeout).to_string();
    Bytes::from(json_rpc_error(Some(id), -32000, &message).to_string())
}

/// A POST's SSE stream: events as they come, ending once every request has its
/// answer. On the deadline each unanswered request gets a timeout error (and the
/// child a `notifications/cancelled`); when the session ends, each gets the reason.
pub(super) fn sse_stream(
    guard: ExchangeGuard,
    rx: mpsc::Receiver<Event>,
    requests: Vec<(IdKey, Value)>,
    deadline: Instant,
) -> Response<Body> {
    let session = guard.session.id.clone();
    let state = StreamState {
        guard: Some(guard),
        rx,
        owed: Owed::new(requests),
        deadline,
        tail: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let frame = state.next().await?;
        Some((Ok::<_, Infallible>(frame), state))
    });
    sse_response(Body::from_stream(stream), &session)
}

struct StreamState {
    /// `None` once finished: the registration is dropped as soon as the stream is
    /// complete, not when hyper gets round to dropping the body.
    guard: Option<ExchangeGuard>,
    rx: mpsc::Receiver<Event>,
    owed: Owed,
    deadline: Instant,
    /// Error answers still to send after the stream stopped listening.
    tail: VecDeque<Bytes>,
}

impl StreamState {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.tail.pop_front() {
                return Some(frame);
            }
            let guard = self.guard.as_ref()?;
            if self.owed.is_empty() {
                self.guard = None;
                return None;
            }
            match tokio::time::timeout_at(self.deadline.into(), self.rx.recv()).await {
                Ok(Some(Event::Message { json, answers })) => {
                    if let Some(key) = answers {
                        self.owed.settle(&key);
                    }
                    return Some(sse_event(&json));
                }
                Ok(Some(Event::Cancelled(key))) => self.owed.settle(&key),
                Ok(None) => {
                    let end = guard.session.end_reason().unwrap_or(End::Exited);
                    for id in self.owed.take() {
                        self.tail.push_back(sse_event(&ended_answer(&id, &end)));
                    }
                    self.guard = None;
                }
                Err(_) => {
                    let timeout = guard.session.limits.request_timeout;
                    for id in self.owed.take() {
                        guard.session.send_cancelled(&id, "request timed out");
                        self.tail
                            .push_back(sse_event(&timeout_answer(&id, timeout)));
                    }
                    self.guard = None;
                }
            }
        }
    }
}

/// The standalone GET stream: open until the session ends or the client leaves.
pub(super) fn get_stream(guard: GetGuard, rx: mpsc::Receiver<Event>) -> Response<Body> {
    let session = guard.session.id.clone();
    let stream = futures_util::stream::unfold((guard, rx), |(guard, mut rx)| async move {
        loop {
            match rx.recv().await? {
                Event::Message { json, .. } => {
                    return Some((Ok::<_, Infallible>(sse_event(&json)), (guard, rx)));
                }
                Event::Cancelled(_) => {}
            }
        }
    });
    sse_response(Body::from_stream(stream), &session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn sse_when_the_client_names_it() {
        for value in [
            "application/json, text/event-stream",
            "text/event-stream, application/json",
            "text/event-stream",
            "TEXT/Event-Stream;q=0.9, application/json;q=0.9",
            "application/json;q=0.5, text/*",
        ] {
            assert_eq!(negotiate(&accept(Some(value))), Some(Reply::Sse), "{value}");
        }
    }

    #[test]
    fn json_when_only_json_or_only_wildcards() {
        for value in [
            "application/json",
            "application/json, text/event-stream;q=0",
            "*/*",
            "application/*",
            "application/json, text/event-stream;q=0.5",
        ] {
            assert_eq!(
                negotiate(&accept(Some(value))),
                Some(Reply::Json),
                "{value}"
            );
        }
        assert_eq!(negotiate(&accept(None)), Some(Reply::Json));
    }

    #[test]
    fn neither_is_not_acceptable() {
        for value in [
            "text/html",
            "application/json;q=0, text/event-stream;q=0",
            "text/*;q=0, application/xml",
        ] {
            assert_eq!(negotiate(&accept(Some(value))), None, "{value}");
        }
    }

    #[test]
    fn get_streams_need_sse() {
        assert!(accepts_sse(&accept(Some("text/event-stream"))));
        assert!(accepts_sse(&accept(Some("*/*"))));
        assert!(accepts_sse(&accept(None)));
        assert!(!accepts_sse(&accept(Some("application/json"))));
        assert!(!accepts_sse(&accept(Some("text/event-stream;q=0"))));
    }

    #[test]
    fn several_accept_headers_are_one_list() {
        let mut headers = HeaderMap::new();
        headers.append(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        assert_eq!(negotiate(&headers), Some(Reply::Sse));
    }

    #[test]
    fn a_batch_is_answered_with_an_array() {
        let answers = [
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":2,"result":{}}"#),
        ];
        let response = json_reply(&answers, true, "s");
        assert_eq!(response.headers()[SESSION_HEADER], "s");
        let single = json_reply(&answers[..1], false, "s");
        assert_eq!(single.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[tokio::test]
    async fn gather_stops_at_the_last_answer_and_reports_the_missing() {
        let (tx, mut rx) = mpsc::channel(8);
        let one = IdKey::Num("1".into());
        let two = IdKey::Num("2".into());
        tx.send(Event::Message {
            json: Bytes::from_static(b"{\"progress\":1}"),
            answers: None,
        })
        .await
        .unwrap();
        tx.send(Event::Message {
            json: Bytes::from_static(b"{\"id\":1}"),
            answers: Some(one.clone()),
        })
        .await
        .unwrap();
        drop(tx);
        let gathered = gather(
            &mut rx,
            vec![(one, json!(1)), (two, json!(2))],
            Instant::now() + Duration::from_secs(5),
        )
        .await;
        assert_eq!(gathered.messages.len(), 2);
        assert_eq!(gathered.answers.len(), 1);
        assert_eq!(gathered.missing, vec![json!(2)]);
        assert!(!gathered.timed_out);
    }

    #[tokio::test]
    async fn gather_times_out() {
        let (_tx, mut rx) = mpsc::channel::<Event>(8);
        let gathered = gather(
            &mut rx,
            vec![(IdKey::Str("a".into()), json!("a"))],
            Instant::now() + Duration::from_millis(20),
        )
        .await;
        assert!(gathered.timed_out);
        assert_eq!(gathered.missing, vec![json!("a")]);
    }
}
