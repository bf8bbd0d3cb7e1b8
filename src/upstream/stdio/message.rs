//! What the stdio layer needs to know about a JSON-RPC message: its kind, its id,
//! and the lines it becomes on the child's stdin. mcpgate's envelope has checked the
//! body already; this is checked again because the child's stdin is a framing of its
//! own (one message per line) that nothing upstream of here knows about.

use bytes::Bytes;
use serde_json::{Map, Value};

/// A JSON-RPC id (or progress token) as a map key. The child may echo `1.0` as `1`
/// (JavaScript numbers), so integral numbers compare equal whatever their spelling;
/// a string never equals a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum IdKey {
    Str(String),
    Num(String),
}

impl IdKey {
    pub(super) fn of(value: &Value) -> Option<Self> {
        match value {
            Value::String(text) => Some(Self::Str(text.clone())),
            Value::Number(number) => {
                if let Some(int) = number.as_i64() {
                    return Some(Self::Num(int.to_string()));
                }
                if let Some(int) = number.as_u64() {
                    return Some(Self::Num(int.to_string()));
                }
                let float = number.as_f64()?;
                // i64 range check in f64: exact at these magnitudes.
                if float.fract() == 0.0 && float.abs() < 9.2e18 {
                    Some(Self::Num((float as i64).to_string()))
                } else {
                    Some(Self::Num(number.to_string()))
                }
            }
            _ => None,
        }
    }
}

/// One message of a POST body.
#[derive(Debug, Clone)]
pub(super) enum Inbound {
    Request {
        id: Value,
        key: IdKey,
        method: String,
        progress_token: Option<IdKey>,
    },
    Notification {
        /// For `notifications/cancelled`: the request it cancels.
        cancels: Option<IdKey>,
    },
    Response,
}

/// A POST body, split into messages, with the line each one becomes.
#[derive(Debug)]
pub(super) struct Body {
    pub messages: Vec<Inbound>,
    /// One line per message, each ending in `\n`.
    pub lines: Vec<Bytes>,
    /// The body was a JSON array: the answer to it is one too (JSON-RPC batch).
    pub batch: bool,
}

impl Body {
    pub(super) fn requests(&self) -> impl Iterator<Item = (&Value, &IdKey)> {
        self.messages.iter().filter_map(|message| match message {
            Inbound::Request { id, key, .. } => Some((id, key)),
            _ => None,
        })
    }

    pub(super) fn has_requests(&self) -> bool {
        self.requests().next().is_some()
    }

    /// The body is exactly one `initialize` request.
    pub(super) fn is_initialize(&self) -> bool {
        matches!(self.messages.as_slice(), [Inbound::Request { method, .. }] if method == "initialize")
    }

    pub(super) fn mentions_initialize(&self) -> bool {
        self.messages.iter().any(
            |message| matches!(message, Inbound::Request { method, .. } if method == "initialize"),
        )
    }
}

/// Why a body cannot go to the child: HTTP 400 with a JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(super) struct BodyError {
    pub code: i64,
    pub message: String,
}

impl BodyError {
    const PARSE_ERROR: i64 = -32700;
    const INVALID_REQUEST: i64 = -32600;

    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: Self::INVALID_REQUEST,
            message: message.into(),
        }
    }
}

/// Splits a POST body into stdin lines.
///
/// A raw CR or LF can only be formatting whitespace in compact JSON (inside strings
/// they must be escaped), and either one would end a line early for some reader of
/// stdin (Python's text mode treats a lone CR as a line end): one message would
/// arrive as two. Such a body is refused rather than repaired.
///
/// A batch becomes one line per element. The 2025-03-26 stdio transport allowed a
/// batch on one line, but the SDK servers (TypeScript and Python) parse each line as
/// a single message and reject an array; JSON-RPC gives batch members no ordering or
/// atomicity that separate lines would lose.
pub(super) fn parse(body: &[u8]) -> Result<Body, BodyError> {
    if body.iter().any(|&byte| byte == b'\n' || byte == b'\r') {
        return Err(BodyError::invalid(
            "the message contains a raw line break and cannot be framed for stdio",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| BodyError {
        code: BodyError::PARSE_ERROR,
        message: format!("invalid JSON: {error}"),
    })?;
    match value {
        Value::Object(object) => {
            let message = classify(&object)?;
            let mut line = Vec::with_capacity(body.len() + 1);
            line.extend_from_slice(body);
            line.push(b'\n');
            Ok(Body {
                messages: vec![message],
                lines: vec![Bytes::from(line)],
                batch: false,
            })
        }
        Value::Array(items) if !items.is_empty() => {
            let mut messages = Vec::with_capacity(items.len());
            let mut lines = Vec::with_capacity(items.len());
            for item in items {
                let Value::Object(object) = item else {
                    return Err(BodyError::invalid("every batch element must be an object"));
                };
                messages.push(classify(&object)?);
                lines.push(to_line(&Value::Object(object)));
            }
            Ok(Body {
                messages,
                lines,
                batch: true,
            })
        }
        Value::Array(_) => Err(BodyError::invalid("an empty batch")),
        _ => Err(BodyError::invalid("a JSON-RPC message must be an object")),
    }
}

fn classify(object: &Map<String, Value>) -> Result<Inbound, BodyError> {
    let id = object.get("id").filter(|id| !id.is_null());
    match (object.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            let key = IdKey::of(id)
                .ok_or_else(|| BodyError::invalid("\"id\" must be a string or a number"))?;
            let progress_token = object
                .get("params")
                .and_then(|params| params.get("_meta"))
                .and_then(|meta| meta.get("progressToken"))
                .and_then(IdKey::of);
            Ok(Inbound::Request {
                id: id.clone(),
                key,
                method: method.clone(),
                progress_token,
            })
        }
        (Some(Value::String(method)), None) => {
            let cancels = (method == "notifications/cancelled")
                .then(|| {
                    object
                        .get("params")
                        .and_then(|params| params.get("requestId"))
                        .and_then(IdKey::of)
                })
                .flatten();
            Ok(Inbound::Notification { cancels })
        }
        (Some(_), _) => Err(BodyError::invalid("\"method\" must be a string")),
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            Ok(Inbound::Response)
        }
        (None, _) => Err(BodyError::invalid(
            "a message needs a method, or an id with a result or error",
        )),
    }
}

/// A compact serialisation ends in the line's only newline: serde_json escapes
/// control characters inside strings and writes no whitespace between tokens.
pub(super) fn to_line(value: &Value) -> Bytes {
    // Serialising a `Value` cannot fail (string keys only, no I/O).
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// What the child sent, as the gateway will route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outbound {
    /// An answer to one of the client's requests.
    Response(IdKey),
    /// A request to the client (sampling, elicitation, roots, ping).
    Request { id: Value, method: String },
    Notification {
        method: String,
        progress_token: Option<IdKey>,
    },
    /// Not a JSON-RPC message: logged and dropped.
    Invalid,
}

pub(super) fn classify_outbound(value: &Value) -> Outbound {
    let Some(object) = value.as_object() else {
        return Outbound::Invalid;
    };
    let id = object.get("id").filter(|id| !id.is_null());
    match (object.get("method").and_then(Value::as_str), id) {
        (Some(method), Some(id)) if IdKey::of(id).is_some() => Outbound::Request {
            id: id.clone(),
            method: method.to_owned(),
        },
        (Some(method), None) => Outbound::Notification {
            method: method.to_owned(),
            progress_token: (method == "notifications/progress")
                .then(|| {
                    object
                        .get("params")
                        .and_then(|params| params.get("progressToken"))
                        .and_then(IdKey::of)
                })
                .flatten(),
        },
        (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => {
            IdKey::of(id).map_or(Outbound::Invalid, Outbound::Response)
        }
        _ => Outbound::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_single_message_is_one_line_of_its_own_bytes() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let parsed = parse(body).unwrap();
        assert!(!parsed.batch);
        assert_eq!(parsed.lines.len(), 1);
        assert_eq!(&parsed.lines[0][..body.len()], &body[..]);
        assert_eq!(parsed.lines[0].last(), Some(&b'\n'));
        assert!(parsed.has_requests());
        assert!(!parsed.is_initialize());
    }

    #[test]
    fn raw_line_breaks_are_refused() {
        for body in [
            &b"{\"jsonrpc\":\"2.0\",\n\"id\":1,\"method\":\"ping\"}"[..],
            &b"{\"jsonrpc\":\"2.0\",\r\"id\":1,\"method\":\"ping\"}"[..],
            &b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"[..],
        ] {
            let error = parse(body).unwrap_err();
            assert_eq!(error.code, -32600);
            assert!(error.message.contains("line break"));
        }
        // An escaped newline inside a string is fine: it is two characters, `\` `n`.
        let parsed = parse(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"a\nb"}}"#,
        )
        .unwrap();
        assert_eq!(parsed.lines[0].iter().filter(|&&b| b == b'\n').count(), 1);
    }

    #[test]
    fn a_batch_becomes_one_compact_line_per_element() {
        let body = json!([
            {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"text": "x\ny"}},
            {"jsonrpc": "2.0", "id": 7, "result": {}}
        ]);
        let parsed = parse(body.to_string().as_bytes()).unwrap();
        assert!(parsed.batch);
        assert_eq!(parsed.lines.len(), 3);
        for line in &parsed.lines {
            let newlines = line.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(newlines, 1);
            assert_eq!(line.last(), Some(&b'\n'));
            let _: Value = serde_json::from_slice(line).unwrap();
        }
        assert!(matches!(parsed.messages[0], Inbound::Request { .. }));
        assert!(matches!(parsed.messages[1], Inbound::Notification { .. }));
        assert!(matches!(parsed.messages[2], Inbound::Response));
        assert_eq!(parsed.requests().count(), 1);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert_eq!(parse(b"{").unwrap_err().code, -32700);
        assert_eq!(parse(b"[]").unwrap_err().code, -32600);
        assert_eq!(parse(b"[1]").unwrap_err().code, -32600);
        assert_eq!(parse(b"\"x\"").unwrap_err().code, -32600);
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#)
                .unwrap_err()
                .code,
            -32600
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":1}"#).unwrap_err().code,
            -32600
        );
    }

    #[test]
    fn ids_compare_by_value_not_spelling() {
        assert_eq!(IdKey::of(&json!(1)), IdKey::of(&json!(1.0)));
        assert_ne!(IdKey::of(&json!(1)), IdKey::of(&json!("1")));
        assert_ne!(IdKey::of(&json!(1.5)), IdKey::of(&json!(1)));
        assert_eq!(
            IdKey::of(&json!(u64::MAX)),
            Some(IdKey::Num(u64::MAX.to_string()))
        );
        assert_eq!(IdKey::of(&json!(null)), None);
    }

    #[test]
    fn progress_tokens_and_cancellations_are_read() {
        let parsed = parse(
            br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"p"}}}"#,
        )
        .unwrap();
        let Inbound::Request { progress_token, .. } = &parsed.messages[0] else {
            panic!("not a request");
        };
        assert_eq!(progress_token, &Some(IdKey::Str("p".into())));
        let parsed = parse(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#,
        )
        .unwrap();
        let Inbound::Notification { cancels, .. } = &parsed.messages[0] else {
            panic!("not a notification");
        };
        assert_eq!(cancels, &Some(IdKey::Num("3".into())));
    }

    #[test]
    fn child_messages_are_classified() {
        assert_eq!(
            classify_outbound(&json!({"jsonrpc":"2.0","id":1,"result":{}})),
            Outbound::Response(IdKey::Num("1".into()))
        );
        assert_eq!(
            classify_outbound(&json!({"jsonrpc":"2.0","id":"s","method":"sampling/createMessage"})),
            Outbound::Request {
                id: json!("s"),
                method: "sampling/createMessage".into()
            }
        );
        assert_eq!(
            classify_outbound(
                &json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":5}})
            ),
            Outbound::Notification {
                method: "notifications/progress".into(),
                progress_token: Some(IdKey::Num("5".into()))
            }
        );
        assert_eq!(classify_outbound(&json!([1])), Outbound::Invalid);
        assert_eq!(classify_outbound(&json!({"id":1})), Outbound::Invalid);
    }
}
