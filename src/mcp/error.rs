//! Why a POST body was refused: a JSON-RPC error, always with HTTP 400. Its own
//! module so that the parser, the header checks and the version check can all
//! return it without importing one another.

use serde_json::Value;

/// Why a body was refused: always HTTP 400 with a JSON-RPC error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EnvelopeError {
    pub(crate) code: i64,
    pub(crate) message: String,
    /// The offending message's id, when it had a usable one.
    pub id: Option<Value>,
    /// The error's `data`, where the specification defines one (boxed: it is rare,
    /// and the error travels in every `Result` of the parser).
    pub data: Option<Box<Value>>,
}

impl EnvelopeError {
    pub(crate) const PARSE_ERROR: i64 = -32700;
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
    pub(crate) const INVALID_PARAMS: i64 = -32602;
    /// SEP-2243's `HeaderMismatch`.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28's `UnsupportedProtocolVersion`.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

    pub(super) fn invalid(message: impl Into<String>, id: Option<Value>) -> Self {
        Self {
            code: Self::INVALID_REQUEST,
            message: message.into(),
            id,
            data: None,
        }
    }

    /// The JSON-RPC error response for this refusal.
    pub fn to_response(&self) -> Value {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let (Some(data), Some(error)) = (&self.data, error.as_object_mut()) {
            error.insert("data".to_owned(), Value::clone(data));
        }
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": self.id.clone().unwrap_or(Value::Null),
            "error": error,
        })
    }
}
