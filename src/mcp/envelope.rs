//! The strict JSON-RPC envelope. A body is accepted only if it has exactly one
//! reading: no duplicate keys at any depth, `jsonrpc: "2.0"`, a request, a
//! notification or a response and nothing in between, `params` an object. What
//! goes upstream is this parse re-serialised, never the client's bytes, so no
//! parser difference between mcpgate and the upstream can smuggle a second meaning.
//! Own code because the checks are MCP's, and because the JSON-RPC crates accept
//! what a gateway must refuse (duplicate keys, `id: null`, ambiguous members).

use serde_json::{Map, Value};

pub use super::error::EnvelopeError;
use super::method::{self, ACCEPTED_NOTIFICATIONS, Classified, ClassifyError};
use super::version::ProtocolVersion;
use crate::policy::{Item, ItemKind, Level, Target};

/// Most messages accepted in one batch.
pub const MAX_BATCH: usize = 64;

/// A parsed POST body.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub(crate) messages: Vec<Message>,
    /// The body was a JSON array (2025-03-26 only).
    pub batch: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Notification,
    /// A client's answer to a server-initiated request (sampling, elicitation, roots).
    Response,
}

/// One checked message.
#[derive(Debug, Clone)]
pub struct Message {
    object: Map<String, Value>,
    pub(crate) kind: Kind,
    classified: Classified,
}

/// Parses a POST body sent under `version` (from the `MCP-Protocol-Version` header).
pub fn parse(body: &[u8], version: ProtocolVersion) -> Result<Envelope, EnvelopeError> {
    let value = crate::json::message_from_slice(body).map_err(|error| EnvelopeError {
        code: EnvelopeError::PARSE_ERROR,
        message: format!("invalid JSON: {error}"),
        id: None,
        data: None,
    })?;
    match value {
        Value::Object(object) => Ok(Envelope {
            messages: vec![Message::new(object)?],
            batch: false,
        }),
        Value::Array(items) => {
            if !version.allows_batches() {
                return Err(EnvelopeError::invalid(
                    format!(
                        "JSON-RPC batches are not part of MCP protocol version {}",
                        version.as_str()
                    ),
                    None,
                ));
            }
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(EnvelopeError::invalid(
                    format!("a batch must hold 1 to {MAX_BATCH} messages"),
                    None,
                ));
            }
            let mut messages = Vec::with_capacity(items.len());
            for item in items {
                let Value::Object(object) = item else {
                    return Err(EnvelopeError::invalid(
                        "every batch element must be an object",
                        None,
                    ));
                };
                let message = Message::new(object)?;
                if message.method() == Some("initialize") {
                    return Err(EnvelopeError::invalid(
                        "initialize must not be part of a batch",
                        message.id().cloned(),
                    ));
                }
                messages.push(message);
            }
            Ok(Envelope {
                messages,
                batch: true,
            })
        }
        _ => Err(EnvelopeError::invalid(
            "a JSON-RPC message must be an object",
            None,
        )),
    }
}

impl Envelope {
    /// What each message asks for, in order.
    pub fn targets(&self) -> Vec<Target<'_>> {
        self.messages.iter().flat_map(Message::targets).collect()
    }

    /// The first request whose method MCP does not define, if any.
    pub fn unknown_method(&self) -> Option<&str> {
        self.messages
            .iter()
            .find(|message| message.kind == Kind::Request && !message.classified.known)
            .and_then(Message::method)
    }

    /// The body to send upstream: this parse, re-serialised compactly.
    pub fn to_bytes(&self) -> Vec<u8> {
        let result = if self.batch {
            let objects: Vec<&Map<String, Value>> =
                self.messages.iter().map(|m| &m.object).collect();
            serde_json::to_vec(&objects)
        } else {
            match self.messages.first() {
                Some(message) => serde_json::to_vec(&message.object),
                None => Ok(b"[]".to_vec()),
            }
        };
        // Serialising a `Value` tree cannot fail (no non-string keys, no I/O).
        result.unwrap_or_default()
    }

    /// Removes `key` from every request's `params.inputResponses` (2026-07-28
    /// multi round-trip), and the member itself once empty: the answer to an
    /// input request mcpgate made, which the upstream never asked for.
    pub(crate) fn remove_input_response(&mut self, key: &str) {
        for message in &mut self.messages {
            let Some(params) = message
                .object
                .get_mut("params")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let emptied = match params
                .get_mut("inputResponses")
                .and_then(Value::as_object_mut)
            {
                Some(responses) => {
                    responses.remove(key);
                    responses.is_empty()
                }
                None => false,
            };
            if emptied {
                params.remove("inputResponses");
            }
        }
    }

    /// The id to answer a gateway-side failure with: the single request's id.
    pub fn reply_id(&self) -> Option<&Value> {
        match self.messages.as_slice() {
            [message] => message.id(),
            _ => None,
        }
    }
}

const MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];

impl Message {
    fn new(object: Map<String, Value>) -> Result<Self, EnvelopeError> {
        let id = valid_id(&object);
        let invalid = |message: String| EnvelopeError::invalid(message, id.clone());
        if let Some(unknown) = object.keys().find(|key| !MEMBERS.contains(&key.as_str())) {
            return Err(invalid(format!(
                "unexpected member {unknown:?} in a JSON-RPC message"
            )));
        }
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("\"jsonrpc\" must be \"2.0\"".into()));
        }
        if object.get("id").is_some() && id.is_none() {
            return Err(invalid("\"id\" must be a string or an integer".into()));
        }
        let has_outcome = object.contains_key("result") || object.contains_key("error");
        let Some(method) = object.get("method") else {
            return Self::response(object, id);
        };
        let Some(method) = method.as_str() else {
            return Err(invalid("\"method\" must be a string".into()));
        };
        if has_outcome {
            return Err(invalid(
                "a message cannot carry both a method and a result or error".into(),
            ));
        }
        let params = match object.get("params") {
            None => None,
            Some(Value::Object(params)) => Some(params),
            Some(_) => return Err(invalid("\"params\" must be an object".into())),
        };
        if let Some(known) = method::look_alike(method) {
            return Err(EnvelopeError {
                code: EnvelopeError::METHOD_NOT_FOUND,
                message: ClassifyError::LookAlike {
                    method: method.to_owned(),
                    known,
                }
                .to_string(),
                id,
                data: None,
            });
        }
        if id.is_none() {
            if !ACCEPTED_NOTIFICATIONS.contains(&method) {
                return Err(invalid(format!("notification {method:?} is not accepted")));
            }
            return Ok(Self {
                kind: Kind::Notification,
                classified: connection(),
                object,
            });
        }
        let classified = method::classify(method, params).map_err(|error| EnvelopeError {
            code: match error {
                ClassifyError::LookAlike { .. } => EnvelopeError::METHOD_NOT_FOUND,
                ClassifyError::Params(_) => EnvelopeError::INVALID_PARAMS,
            },
            message: error.to_string(),
            id: id.clone(),
            data: None,
        })?;
        Ok(Self {
            object,
            kind: Kind::Request,
            classified,
        })
    }

    fn response(object: Map<String, Value>, id: Option<Value>) -> Result<Self, EnvelopeError> {
        let invalid = |message: &str| EnvelopeError::invalid(message, id.clone());
        if id.is_none() {
            return Err(invalid(
                "a message needs a method, or an id with a result or error",
            ));
        }
        if object.contains_key("params") {
            return Err(invalid("a response cannot carry params"));
        }
        match (object.get("result"), object.get("error")) {
            (Some(_), None) => {}
            (None, Some(Value::Object(error)))
                if error.get("code").is_some_and(|code| code.is_i64())
                    && error.get("message").is_some_and(Value::is_string) => {}
            (None, Some(_)) => return Err(invalid("an error needs an integer code and a message")),
            _ => {
                return Err(invalid(
                    "a response carries exactly one of result and error",
                ));
            }
        }
        Ok(Self {
            object,
            kind: Kind::Response,
            classified: connection(),
        })
    }

    pub(crate) fn method(&self) -> Option<&str> {
        match self.kind {
            Kind::Response => None,
            Kind::Request | Kind::Notification => self.object.get("method").and_then(Value::as_str),
        }
    }

    pub(crate) fn id(&self) -> Option<&Value> {
        self.object.get("id")
    }

    pub(crate) fn params(&self) -> Option<&Map<String, Value>> {
        self.object.get("params").and_then(Value::as_object)
    }

    /// What the message is mainly about: its method's level and the item it names
    /// (what the audit record reports).
    pub fn target(&self) -> Target<'_> {
        target(self.classified.level, self.classified.item.as_ref())
    }

    /// Everything the message needs: its main target, then what a
    /// `subscriptions/listen` opts into.
    pub fn targets(&self) -> impl Iterator<Item = Target<'_>> {
        std::iter::once(self.target()).chain(
            self.classified
                .also
                .iter()
                .map(|(level, item)| target(*level, item.as_ref())),
        )
    }
}

fn target(level: Level, item: Option<&(ItemKind, String)>) -> Target<'_> {
    Target {
        level,
        item: item.map(|(kind, name)| match kind {
            ItemKind::Tool => Item::Tool(name),
            ItemKind::Resource => Item::Resource(name),
            ItemKind::Prompt => Item::Prompt(name),
        }),
    }
}

fn connection() -> Classified {
    Classified {
        level: Level::Connection,
        item: None,
        also: Vec::new(),
        known: true,
    }
}

/// The message's id when it is one JSON-RPC allows for MCP: a string or an integer.
fn valid_id(object: &Map<String, Value>) -> Option<Value> {
    match object.get("id")? {
        id @ Value::String(_) => Some(id.clone()),
        Value::Number(number) if number.is_i64() || number.is_u64() => {
            Some(Value::Number(number.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(input_responses: Value) -> Envelope {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "echo",
            "inputResponses": input_responses,
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"},
        }});
        parse(body.to_string().as_bytes(), ProtocolVersion::V2026_07_28).unwrap()
    }

    fn forwarded(envelope: &Envelope) -> Value {
        serde_json::from_slice(&envelope.to_bytes()).unwrap()
    }

    #[test]
    fn only_the_named_input_response_is_removed_and_an_emptied_member_with_it() {
        let mut both = call(json!({"mine": {"action": "accept"}, "theirs": {"action": "decline"}}));
        both.remove_input_response("mine");
        assert_eq!(
            forwarded(&both)["params"]["inputResponses"],
            json!({"theirs": {"action": "decline"}})
        );
        let mut only = call(json!({"mine": {"action": "accept"}}));
        only.remove_input_response("mine");
        assert!(forwarded(&only)["params"].get("inputResponses").is_none());
        assert_eq!(forwarded(&only)["params"]["name"], "echo");
    }
}
