//! What a tool call that needs the connection gets when mcpgate cannot send it
//! with the user's token: the URL elicitation (the user has no connection yet),
//! or an error. Nothing of it reaches the upstream.

use http::StatusCode;
use serde_json::{Value, json};

use crate::mcp::version::ProtocolVersion;

/// 2025-11-25's `URLElicitationRequiredError`.
pub(crate) const URL_ELICITATION_REQUIRED: i64 = -32042;

/// 2026-07-28's `MissingRequiredClientCapabilityError`.
pub(crate) const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;

/// The key of mcpgate's request in an `input_required` result's `inputRequests`.
pub(crate) fn input_key(name: &str) -> String {
    format!("mcpgate_connect_{name}")
}

/// Why the call was not forwarded.
#[derive(Debug)]
pub enum ConnectionRefusal {
    /// The user has no connection (or lost it): go to `url`.
    NotConnected {
        /// The connection's name.
        name: String,
        /// The connect link.
        url: String,
        /// The elicitation's id (2025-11-25).
        elicitation_id: String,
        /// The request's revision decides the answer's form.
        version: ProtocolVersion,
        /// The request's id.
        id: Option<Value>,
    },
    /// A 2026-07-28 client without a connection that did not declare URL
    /// elicitation: the server must not send it one.
    MissingCapability {
        /// The connection's name.
        name: String,
        /// The request's id.
        id: Option<Value>,
    },
    /// The caller is no user who could connect (an API key, a token without
    /// issuer or subject, or authentication off).
    NoUser {
        /// The connection's name.
        name: String,
        /// The request's id.
        id: Option<Value>,
    },
    /// The connection's token expired and the service could not refresh it now.
    Unavailable {
        /// The connection's name.
        name: String,
        /// What failed, for the log.
        detail: String,
        /// The request's id.
        id: Option<Value>,
    },
}

impl ConnectionRefusal {
    /// The audit record's reason.
    pub fn reason(&self) -> String {
        match self {
            Self::NotConnected { name, .. } => {
                format!("no {name} connection for this user: URL elicitation sent")
            }
            Self::MissingCapability { name, .. } => format!(
                "no {name} connection for this user, and the client did not declare URL \
                 elicitation"
            ),
            Self::NoUser { name, .. } => format!(
                "the {name} connection needs a user signed in with OAuth; this caller is none"
            ),
            Self::Unavailable { name, .. } => {
                format!("the {name} connection's token could not be refreshed")
            }
        }
    }

    /// For the gateway's log.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Unavailable { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// Status and JSON body.
    pub fn answer(&self) -> (StatusCode, Value) {
        match self {
            Self::NotConnected {
                name,
                url,
                elicitation_id,
                version,
                id,
            } => {
                let message = format!(
                    "This tool acts with your own {name} account. Open the link to connect it, \
                     then retry."
                );
                let id = id.clone().unwrap_or(Value::Null);
                let body = if *version >= ProtocolVersion::V2026_07_28 {
                    let mut requests = serde_json::Map::new();
                    requests.insert(
                        input_key(name),
                        json!({
                            "method": "elicitation/create",
                            "params": {"mode": "url", "message": message, "url": url},
                        }),
                    );
                    json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "result": {"resultType": "input_required", "inputRequests": requests},
                    })
                } else {
                    json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": {
                            "code": URL_ELICITATION_REQUIRED,
                            "message": message,
                            "data": {"elicitations": [{
                                "mode": "url",
                                "elicitationId": elicitation_id,
                                "url": url,
                                "message": message,
                            }]},
                        },
                    })
                };
                (StatusCode::OK, body)
            }
            // 2026-07-28's MissingRequiredClientCapabilityError: 400, -32021.
            Self::MissingCapability { id, .. } => (
                StatusCode::BAD_REQUEST,
                json!({
                    "jsonrpc": "2.0",
                    "id": id.clone().unwrap_or(Value::Null),
                    "error": {
                        "code": MISSING_REQUIRED_CLIENT_CAPABILITY,
                        "message": self.reason(),
                        "data": {"requiredCapabilities": {"elicitation": {"url": {}}}},
                    },
                }),
            ),
            Self::NoUser { id, .. } => (
                StatusCode::FORBIDDEN,
                json!({
                    "jsonrpc": "2.0",
                    "id": id.clone().unwrap_or(Value::Null),
                    "error": {"code": -32600, "message": self.reason()},
                }),
            ),
            Self::Unavailable { id, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "jsonrpc": "2.0",
                    "id": id.clone().unwrap_or(Value::Null),
                    "error": {"code": -32000, "message": self.reason()},
                }),
            ),
        }
    }
}
