//! Which MCP protocol version a request speaks.
//!
//! Legacy versions (2025-11-25 and earlier) open with `initialize`; their requests
//! carry at most the `MCP-Protocol-Version` header, and its absence means
//! 2025-03-26. From 2026-07-28 on there is no handshake: every request names its
//! version in `params._meta` and in the header, and the two must agree. A server
//! that speaks both eras (as this one does) tells them apart per request.

use http::StatusCode;
use serde_json::{Value, json};

use super::rpc_error::RpcError;
use crate::mcp::version::{META_KEY as VERSION_KEY, ProtocolVersion};

/// The handshake versions, newest first: an `initialize` asking for one of them
/// gets it back, any other gets the first. The versions are `mcp::version`'s, so
/// the gateway and this server speak the same ones.
pub(crate) fn legacy() -> impl Iterator<Item = &'static str> {
    ProtocolVersion::SUPPORTED
        .into_iter()
        .filter(|version| !version.is_stateless())
        .map(ProtocolVersion::as_str)
}

/// Every version spoken, newest first, as `server/discover` and
/// `UnsupportedProtocolVersionError` list them.
pub(crate) fn supported() -> [&'static str; 5] {
    ProtocolVersion::SUPPORTED.map(ProtocolVersion::as_str)
}

/// `HeaderMismatch`: the header and the body disagree, or a required header is missing.
pub(crate) const HEADER_MISMATCH: i64 = -32020;
/// `UnsupportedProtocolVersionError`.
pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";

/// How a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// `initialize`, `ping`; results as the 2025 versions define them.
    Legacy,
    /// 2026-07-28: no handshake, `resultType` and server identity on every result.
    Modern,
}

/// A request refused before its method is looked at. On HTTP every one of them
/// is `400 Bad Request` (2026-07-28 transport, "Protocol Version Header").
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VersionRefusal(pub RpcError);

impl VersionRefusal {
    pub(crate) const STATUS: StatusCode = StatusCode::BAD_REQUEST;

    fn mismatch(message: String) -> Self {
        Self(RpcError::new(HEADER_MISMATCH, message))
    }

    fn unsupported(requested: &str) -> Self {
        Self(
            RpcError::new(
                UNSUPPORTED_PROTOCOL_VERSION,
                format!(
                    "unsupported protocol version {:?}; supported: {}",
                    crate::char_prefix(requested, 100),
                    supported().join(", ")
                ),
            )
            .with_data(json!({"supported": supported(), "requested": requested})),
        )
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self(RpcError::invalid_params(message))
    }
}

/// The era of one request. `header` is the `MCP-Protocol-Version` header (an
/// unreadable one is `Some("")`, which no version equals); `params` the request's.
pub(crate) fn era(header: Option<&str>, params: Option<&Value>) -> Result<Era, VersionRefusal> {
    let meta = params.and_then(|params| params.get("_meta"));
    let declared = match meta.and_then(|meta| meta.get(VERSION_KEY)) {
        None => None,
        Some(Value::String(version)) => Some(version.as_str()),
        Some(_) => {
            return Err(VersionRefusal::malformed(format!(
                "_meta {VERSION_KEY} must be a string"
            )));
        }
    };
    let version = match (header, declared) {
        (None, None) => return Ok(Era::Legacy),
        (Some(header), Some(declared)) if header != declared => {
            return Err(VersionRefusal::mismatch(format!(
                "the MCP-Protocol-Version header {:?} does not match _meta {VERSION_KEY} {:?}",
                crate::char_prefix(header, 100),
                crate::char_prefix(declared, 100)
            )));
        }
        (None, Some(declared)) => {
            return Err(VersionRefusal::mismatch(format!(
                "_meta {VERSION_KEY} {:?} needs the same MCP-Protocol-Version header",
                crate::char_prefix(declared, 100)
            )));
        }
        (_, Some(version)) | (Some(version), None) => version,
    };
    let Some(known) = ProtocolVersion::parse(version) else {
        return Err(VersionRefusal::unsupported(version));
    };
    if !known.is_stateless() {
        return Ok(Era::Legacy);
    }
    if declared.is_none() {
        return Err(VersionRefusal::malformed(format!(
            "protocol version {version} needs {VERSION_KEY} in params._meta"
        )));
    }
    if !meta
        .and_then(|meta| meta.get(CAPABILITIES_KEY))
        .is_some_and(Value::is_object)
    {
        return Err(VersionRefusal::malformed(format!(
            "protocol version {version} needs the object {CAPABILITIES_KEY} in params._meta"
        )));
    }
    Ok(Era::Modern)
}

/// Whether a body of several messages may be answered under this header: only
/// 2025-03-26 (or no header, which means it) has batches.
pub(crate) fn allows_batch(header: Option<&str>) -> bool {
    header.is_none_or(|version| {
        ProtocolVersion::parse(version).is_some_and(ProtocolVersion::allows_batches)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODERN: &str = "2026-07-28";

    fn modern_params() -> Value {
        json!({"_meta": {
            VERSION_KEY: MODERN,
            CAPABILITIES_KEY: {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        }})
    }

    fn code(result: Result<Era, VersionRefusal>) -> i64 {
        result.unwrap_err().0.code
    }

    #[test]
    fn no_header_and_no_meta_is_legacy() {
        assert_eq!(era(None, None), Ok(Era::Legacy));
        assert_eq!(era(None, Some(&json!({"name": "x"}))), Ok(Era::Legacy));
    }

    #[test]
    fn a_legacy_header_is_legacy_whatever_else_the_params_hold() {
        for version in legacy() {
            assert_eq!(era(Some(version), None), Ok(Era::Legacy), "{version}");
            assert_eq!(
                era(Some(version), Some(&json!({"_meta": {"progressToken": 1}}))),
                Ok(Era::Legacy)
            );
        }
    }

    #[test]
    fn the_modern_version_in_both_places_is_modern() {
        assert_eq!(era(Some(MODERN), Some(&modern_params())), Ok(Era::Modern));
    }

    #[test]
    fn header_and_meta_must_agree() {
        let params = modern_params();
        assert_eq!(
            code(era(Some("2025-11-25"), Some(&params))),
            HEADER_MISMATCH
        );
        assert_eq!(code(era(None, Some(&params))), HEADER_MISMATCH);
        let legacy_meta = json!({"_meta": {VERSION_KEY: "2025-06-18"}});
        assert_eq!(code(era(Some(MODERN), Some(&legacy_meta))), HEADER_MISMATCH);
        // Agreeing on a legacy version is a legacy request.
        assert_eq!(era(Some("2025-06-18"), Some(&legacy_meta)), Ok(Era::Legacy));
    }

    #[test]
    fn a_modern_request_without_its_meta_fields_is_invalid_params() {
        assert_eq!(code(era(Some(MODERN), None)), -32602);
        assert_eq!(code(era(Some(MODERN), Some(&json!({})))), -32602);
        let no_capabilities = json!({"_meta": {VERSION_KEY: MODERN}});
        assert_eq!(code(era(Some(MODERN), Some(&no_capabilities))), -32602);
        let bad_capabilities = json!({"_meta": {VERSION_KEY: MODERN, CAPABILITIES_KEY: []}});
        assert_eq!(code(era(Some(MODERN), Some(&bad_capabilities))), -32602);
        let not_a_string = json!({"_meta": {VERSION_KEY: 20260728}});
        assert_eq!(code(era(Some(MODERN), Some(&not_a_string))), -32602);
    }

    #[test]
    fn an_unknown_version_lists_the_supported_ones() {
        let refusal = era(Some("1900-01-01"), None).unwrap_err();
        assert_eq!(refusal.0.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(
            refusal.0.data,
            Some(json!({
                "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"],
                "requested": "1900-01-01",
            }))
        );
        let params = json!({"_meta": {VERSION_KEY: "2099-01-01", CAPABILITIES_KEY: {}}});
        let refusal = era(Some("2099-01-01"), Some(&params)).unwrap_err();
        assert_eq!(refusal.0.code, UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(refusal.0.data.unwrap()["requested"], "2099-01-01");
        // An unreadable header is no version at all.
        assert_eq!(code(era(Some(""), None)), UNSUPPORTED_PROTOCOL_VERSION);
    }

    #[test]
    fn batches_only_without_a_header_or_with_2025_03_26() {
        assert!(allows_batch(None));
        assert!(allows_batch(Some("2025-03-26")));
        for version in ["2025-06-18", "2025-11-25", MODERN, "x"] {
            assert!(!allows_batch(Some(version)), "{version}");
        }
    }
}
