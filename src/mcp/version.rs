//! Which MCP revision a request speaks. The transport's rules differ by revision
//! (sessions and batches in the older ones; the version in every request's `_meta`
//! and mirrored headers in 2026-07-28), so mcpgate reads the version first and
//! refuses one it does not know rather than guess which rules apply.

use http::HeaderMap;
use serde_json::{Value, json};

use super::error::EnvelopeError;

pub(crate) const HEADER: http::HeaderName = http::HeaderName::from_static("mcp-protocol-version");

/// Where 2026-07-28 requests carry their version in `params._meta`.
pub const META_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The revisions mcpgate understands, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// `2024-11-05`: the HTTP+SSE transport's revision, sessions included.
    V2024_11_05,
    /// `2025-03-26`: Streamable HTTP, and the only one with JSON-RPC batches.
    V2025_03_26,
    /// `2025-06-18`: adds the `MCP-Protocol-Version` header.
    V2025_06_18,
    /// `2025-11-25`: the last revision with protocol-level sessions.
    V2025_11_25,
    /// `2026-07-28`: stateless; the version in `_meta`, method and name mirrored in
    /// headers.
    V2026_07_28,
}

impl ProtocolVersion {
    /// Newest first, as an `UnsupportedProtocolVersion` error lists them.
    pub const SUPPORTED: [Self; 5] = [
        Self::V2026_07_28,
        Self::V2025_11_25,
        Self::V2025_06_18,
        Self::V2025_03_26,
        Self::V2024_11_05,
    ];

    /// A request without the header: the 2025-06-18 transport lets a server read
    /// it as 2025-03-26, the revision before the header existed.
    pub const WITHOUT_HEADER: Self = Self::V2025_03_26;

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::SUPPORTED
            .into_iter()
            .find(|version| version.as_str() == text)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// Protocol-level sessions (`Mcp-Session-Id`) exist up to 2025-11-25.
    pub fn has_sessions(self) -> bool {
        self < Self::V2026_07_28
    }

    /// JSON-RPC batches are part of 2025-03-26 only.
    pub fn allows_batches(self) -> bool {
        self == Self::V2025_03_26
    }

    /// From 2026-07-28 on, requests carry their version in `_meta` and mirror
    /// their method and name in headers.
    pub fn is_stateless(self) -> bool {
        self >= Self::V2026_07_28
    }
}

/// Why the request's version cannot be used: HTTP 400 with a JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// A version mcpgate does not know.
    #[error("Unsupported protocol version")]
    Unsupported {
        /// What the client sent, cut to 64 bytes.
        requested: String,
    },
    /// Two `MCP-Protocol-Version` headers; which one applies would be a guess.
    #[error("Header mismatch: more than one MCP-Protocol-Version header")]
    Repeated,
}

impl VersionError {
    /// The JSON-RPC error for this refusal, answering `id`.
    pub fn to_error(&self, id: Option<Value>) -> EnvelopeError {
        match self {
            Self::Unsupported { requested } => EnvelopeError {
                code: EnvelopeError::UNSUPPORTED_PROTOCOL_VERSION,
                message: self.to_string(),
                id,
                data: Some(Box::new(json!({
                    "supported": ProtocolVersion::SUPPORTED.map(ProtocolVersion::as_str),
                    "requested": requested,
                }))),
            },
            Self::Repeated => EnvelopeError {
                code: EnvelopeError::HEADER_MISMATCH,
                message: self.to_string(),
                id,
                data: None,
            },
        }
    }
}

/// The version the request's `MCP-Protocol-Version` header names.
pub fn from_headers(headers: &HeaderMap) -> Result<ProtocolVersion, VersionError> {
    let mut values = headers.get_all(HEADER).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(ProtocolVersion::WITHOUT_HEADER),
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Err(VersionError::Repeated),
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    // The answer quotes what was asked, but not a whole header's worth of it.
    ProtocolVersion::parse(text.trim()).ok_or_else(|| VersionError::Unsupported {
        requested: crate::char_prefix(&text, 64).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(HEADER, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn reads_the_header_and_refuses_unknown_versions() {
        assert_eq!(
            from_headers(&headers(&[])),
            Ok(ProtocolVersion::V2025_03_26)
        );
        assert_eq!(
            from_headers(&headers(&["2026-07-28"])),
            Ok(ProtocolVersion::V2026_07_28)
        );
        assert_eq!(
            from_headers(&headers(&["2025-06-18"])),
            Ok(ProtocolVersion::V2025_06_18)
        );
        assert_eq!(
            from_headers(&headers(&["1900-01-01"])),
            Err(VersionError::Unsupported {
                requested: "1900-01-01".into()
            })
        );
        assert_eq!(
            from_headers(&headers(&["2026-07-28", "2026-07-28"])),
            Err(VersionError::Repeated)
        );
        let error = VersionError::Unsupported {
            requested: "2099-01-01".into(),
        }
        .to_error(Some(json!(3)))
        .to_response();
        assert_eq!(
            error,
            json!({"jsonrpc": "2.0", "id": 3, "error": {
                "code": -32022,
                "message": "Unsupported protocol version",
                "data": {
                    "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"],
                    "requested": "2099-01-01"
                }
            }})
        );
    }
}
