//! Request headers that must agree with the body. The body is what mcpgate
//! authorizes; a header that says something else (SEP-2243 `Mcp-Method` /
//! `Mcp-Name`, mirrored so intermediaries can route without parsing) could make a
//! component behind mcpgate act on a different tool than the one authorized.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::envelope::{Envelope, EnvelopeError, Kind, Message};
use super::version::{META_KEY, ProtocolVersion};
use serde_json::Value;

const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Why a body is not even looked at: HTTP 415.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaProblem {
    /// No `Content-Type`, more than one, or one other than `application/json` (UTF-8
    /// charset allowed).
    #[error("Content-Type must be application/json")]
    NotJson,
    /// A `Content-Encoding` other than `identity`; the value as sent (`?` if not text).
    #[error("Content-Encoding {0:?} is not accepted; send the body uncompressed")]
    Encoded(String),
}

/// The body must be plain JSON: an encoded body would have to be decoded to be
/// authorized, and then the upstream would get something other than what was checked.
pub fn check_media(headers: &HeaderMap) -> Result<(), MediaProblem> {
    for encoding in headers.get_all(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(MediaProblem::Encoded(encoding.to_owned()));
        }
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    match (types.next(), types.next()) {
        (Some(value), None) if is_json(value) => Ok(()),
        _ => Err(MediaProblem::NotJson),
    }
}

/// `application/json`, with at most a UTF-8 charset parameter (RFC 8259 §8.1).
fn is_json(value: &HeaderValue) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|param| {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let value = value.trim().trim_matches('"');
        !name.trim().eq_ignore_ascii_case("charset")
            || value.eq_ignore_ascii_case("utf-8")
            || value.eq_ignore_ascii_case("utf8")
    })
}

/// `Mcp-Method` and `Mcp-Name` must equal what the body says; from protocol
/// 2026-07-28 on, requests must carry them.
pub fn check_mirrored(
    headers: &HeaderMap,
    envelope: &Envelope,
    version: ProtocolVersion,
) -> Result<(), EnvelopeError> {
    let method_header = single(headers, MCP_METHOD)?;
    let name_header = single(headers, MCP_NAME)?;
    let message = match envelope.messages.as_slice() {
        [message] if !envelope.batch => message,
        _ if method_header.is_none() && name_header.is_none() => return Ok(()),
        _ => {
            return Err(mismatch(
                "Mcp-Method and Mcp-Name cannot describe a batch",
                None,
            ));
        }
    };
    let id = message.id().cloned();
    let required = message.kind == Kind::Request && version.is_stateless();
    match (method_header, message.method()) {
        (Some(header), Some(method)) if header == method => {}
        (Some(_), _) => {
            return Err(mismatch(
                "the Mcp-Method header does not match the body's method",
                id,
            ));
        }
        (None, _) if required => {
            return Err(mismatch(
                "the Mcp-Method header is required in this protocol version",
                id,
            ));
        }
        (None, _) => {}
    }
    let expected = mirrored_name(message);
    match (name_header, expected) {
        (Some(header), Some(Some(name))) if decode(&header).as_deref() == Some(name) => Ok(()),
        (Some(_), _) => Err(mismatch("the Mcp-Name header does not match the body", id)),
        (None, Some(_)) if required => Err(mismatch(
            "the Mcp-Name header is required for this method in this protocol version",
            id,
        )),
        (None, _) => Ok(()),
    }
}

/// For methods whose `Mcp-Name` mirrors a body field: `Some(field value)`, with an
/// inner `None` when the body lacks the field; `None` for other methods.
fn mirrored_name(message: &Message) -> Option<Option<&str>> {
    let field = match message.method()? {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    Some(
        message
            .params()
            .and_then(|params| crate::json::member(params, field))
            .and_then(|v| v.as_str()),
    )
}

/// At most one value; several copies of a mirrored header are a mismatch in themselves.
fn single(headers: &HeaderMap, name: HeaderName) -> Result<Option<String>, EnvelopeError> {
    let mut values = headers.get_all(&name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .map(|value| Some(value.trim().to_owned()))
            .map_err(|_| mismatch("a mirrored header is not visible ASCII", None)),
        (Some(_), Some(_)) => Err(mismatch(&format!("more than one {name} header"), None)),
    }
}

/// SEP-2243 carries values that are not plain ASCII as `=?base64?<utf-8 base64>?=`.
fn decode(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_owned()),
    }
}

fn mismatch(message: &str, id: Option<serde_json::Value>) -> EnvelopeError {
    EnvelopeError {
        code: EnvelopeError::HEADER_MISMATCH,
        message: message.to_owned(),
        id,
        data: None,
    }
}

/// Every message's `_meta` version must be the header's: a body that names
/// another revision could be read by the upstream under rules mcpgate did not
/// apply. From 2026-07-28 on a request must carry it; an older request may omit
/// it, and one sent without the header cannot claim it.
pub fn check_meta_version(
    version: ProtocolVersion,
    header_sent: bool,
    envelope: &Envelope,
) -> Result<(), EnvelopeError> {
    for message in &envelope.messages {
        let stated = message
            .params()
            .and_then(|params| crate::json::member(params, "_meta"))
            .and_then(Value::as_object)
            .and_then(|meta| crate::json::member(meta, META_KEY));
        let mismatch = |message: String, id: Option<&Value>| EnvelopeError {
            code: EnvelopeError::HEADER_MISMATCH,
            message,
            id: id.cloned(),
            data: None,
        };
        match stated {
            Some(Value::String(stated)) if header_sent && stated == version.as_str() => {}
            Some(Value::String(stated)) => {
                let header = if header_sent {
                    format!("MCP-Protocol-Version header value '{}'", version.as_str())
                } else {
                    "the absent MCP-Protocol-Version header".to_owned()
                };
                return Err(mismatch(
                    format!("Header mismatch: {header} does not match body value '{stated}'"),
                    message.id(),
                ));
            }
            Some(_) => {
                return Err(mismatch(
                    format!("Header mismatch: _meta[\"{META_KEY}\"] must be a string"),
                    message.id(),
                ));
            }
            None if version.is_stateless() && message.kind == Kind::Request => {
                return Err(mismatch(
                    format!(
                        "Header mismatch: a {} request must state its version in _meta[\"{META_KEY}\"]",
                        version.as_str()
                    ),
                    message.id(),
                ));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_plain_json_bodies_are_read() {
        assert_eq!(
            check_media(&headers(&[("content-type", "application/json")])),
            Ok(())
        );
        assert_eq!(
            check_media(&headers(&[(
                "content-type",
                "Application/JSON; charset=\"UTF-8\""
            )])),
            Ok(())
        );
        for content_type in [
            "text/plain",
            "application/jsonx",
            "application/json; charset=utf-16",
        ] {
            assert_eq!(
                check_media(&headers(&[("content-type", content_type)])),
                Err(MediaProblem::NotJson),
                "{content_type}"
            );
        }
        assert_eq!(check_media(&headers(&[])), Err(MediaProblem::NotJson));
        assert_eq!(
            check_media(&headers(&[
                ("content-type", "application/json"),
                ("content-type", "text/plain")
            ])),
            Err(MediaProblem::NotJson)
        );
        assert_eq!(
            check_media(&headers(&[
                ("content-type", "application/json"),
                ("content-encoding", "identity"),
                ("content-encoding", "gzip")
            ])),
            Err(MediaProblem::Encoded("gzip".into()))
        );
    }

    #[test]
    fn base64_sentinels_decode_and_bad_ones_never_match() {
        assert_eq!(
            decode("=?base64?Z2V0LWVudg==?=").as_deref(),
            Some("get-env")
        );
        assert_eq!(decode("get-env").as_deref(), Some("get-env"));
        assert_eq!(decode("=?base64?!!!?="), None);
        assert_eq!(decode("=?base64?/w==?="), None);
    }

    #[test]
    fn the_body_states_the_headers_version() {
        let v = ProtocolVersion::V2026_07_28;
        let parse = |body: &str| crate::mcp::envelope::parse(body.as_bytes(), v).unwrap();
        let stated = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(check_meta_version(v, true, &stated), Ok(()));
        // The header says something else, or is absent.
        let error = check_meta_version(ProtocolVersion::V2025_11_25, true, &stated).unwrap_err();
        assert_eq!(
            (error.code, error.id),
            (EnvelopeError::HEADER_MISMATCH, Some(json!(1)))
        );
        assert!(check_meta_version(ProtocolVersion::V2025_03_26, false, &stated).is_err());
        // A 2026-07-28 request must state it; a notification need not.
        let silent = parse(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
        assert!(check_meta_version(v, true, &silent).is_err());
        assert_eq!(
            check_meta_version(ProtocolVersion::V2025_06_18, true, &silent),
            Ok(())
        );
        let odd = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}"#,
        );
        assert!(check_meta_version(v, true, &odd).is_err());
    }
}
