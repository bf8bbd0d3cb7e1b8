//! The strict JSON-RPC envelope. A body is accepted only if it has exactly one
//! reading: no duplicate keys at any depth, `jsonrpc: "2.0"`, a request, a
//! notification or a response and nothing in between, `params` an object. What
//! goes upstream is this parse re-serialised, never the client's bytes, so no
//! parser difference between mcpgate and the upstream can smuggle a second meaning.
//! Own code because the checks are MCP's, and because the JSON-RPC crates accept
//! what a gateway must refuse (duplicate keys, `id: null`, ambiguous members).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

pub use super::error::EnvelopeError;
use super::method::{self, ACCEPTED_NOTIFICATIONS, Classified, ClassifyError};
use super::version::ProtocolVersion;
use crate::json::Document;
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
    /// The members in the order the client wrote them (at most the six JSON-RPC
    /// members, each once).
    members: Vec<(String, Value)>,
    /// Where the members read after the checks are in `members`.
    slots: Slots,
    pub(crate) kind: Kind,
    classified: Classified,
}

/// Positions in [`Message::members`].
#[derive(Debug, Clone, Copy, Default)]
struct Slots {
    id: Option<usize>,
    method: Option<usize>,
    params: Option<usize>,
}

/// A message's members serialised as the JSON object they came from.
struct Members<'a>(&'a [(String, Value)]);

impl Serialize for Members<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Parses a POST body sent under `version` (from the `MCP-Protocol-Version` header).
pub fn parse(body: &[u8], version: ProtocolVersion) -> Result<Envelope, EnvelopeError> {
    let document =
        crate::json::message_members_from_slice(body).map_err(|error| EnvelopeError {
            code: EnvelopeError::PARSE_ERROR,
            message: format!("invalid JSON: {error}"),
            id: None,
            data: None,
        })?;
    let value = match document {
        Document::Object(members) => {
            return Ok(Envelope {
                messages: vec![Message::new(members)?],
                batch: false,
            });
        }
        Document::Other(value) => value,
    };
    match value {
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
                let message = Message::new(object.into_iter().collect())?;
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
            let objects: Vec<Members<'_>> =
                self.messages.iter().map(|m| Members(&m.members)).collect();
            serde_json::to_vec(&objects)
        } else {
            match self.messages.first() {
                Some(message) => serde_json::to_vec(&Members(&message.members)),
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
                .slots
                .params
                .and_then(|slot| message.members.get_mut(slot))
                .and_then(|(_, params)| params.as_object_mut())
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

impl Message {
    fn new(members: Vec<(String, Value)>) -> Result<Self, EnvelopeError> {
        // Each member found once, by comparing keys; the strict parse has already
        // refused a key written twice (also in another case or spelling).
        let mut slots = Slots::default();
        let (mut jsonrpc, mut result, mut error) = (None, None, None);
        let mut unknown = None;
        for (index, (key, value)) in members.iter().enumerate() {
            match key.as_str() {
                "jsonrpc" => jsonrpc = Some(value),
                "id" => slots.id = Some(index),
                "method" => slots.method = Some(index),
                "params" => slots.params = Some(index),
                "result" => result = Some(value),
                "error" => error = Some(value),
                _ => {
                    unknown.get_or_insert(key);
                }
            }
        }
        let member = |slot: Option<usize>| slot.and_then(|i| members.get(i)).map(|(_, v)| v);
        let id_value = member(slots.id);
        // The id to answer with, copied only when a refusal needs it.
        let id = || valid_id(id_value);
        let invalid = |message: String| EnvelopeError::invalid(message, id());
        if let Some(unknown) = unknown {
            return Err(invalid(format!(
                "unexpected member {unknown:?} in a JSON-RPC message"
            )));
        }
        if jsonrpc.and_then(Value::as_str) != Some("2.0") {
            return Err(invalid("\"jsonrpc\" must be \"2.0\"".into()));
        }
        let has_id = match id_value {
            None => false,
            Some(value) if is_valid_id(value) => true,
            Some(_) => return Err(invalid("\"id\" must be a string or an integer".into())),
        };
        let has_outcome = result.is_some() || error.is_some();
        let Some(method) = member(slots.method) else {
            response(has_id, slots.params.is_some(), result, error)
                .map_err(|message| invalid(message.into()))?;
            return Ok(Self {
                members,
                slots,
                kind: Kind::Response,
                classified: connection(),
            });
        };
        let Some(method) = method.as_str() else {
            return Err(invalid("\"method\" must be a string".into()));
        };
        if has_outcome {
            return Err(invalid(
                "a message cannot carry both a method and a result or error".into(),
            ));
        }
        let params = match member(slots.params) {
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
                id: id(),
                data: None,
            });
        }
        if !has_id {
            if !ACCEPTED_NOTIFICATIONS.contains(&method) {
                return Err(invalid(format!("notification {method:?} is not accepted")));
            }
            return Ok(Self {
                members,
                slots,
                kind: Kind::Notification,
                classified: connection(),
            });
        }
        let classified = method::classify(method, params).map_err(|error| EnvelopeError {
            code: match error {
                ClassifyError::LookAlike { .. } => EnvelopeError::METHOD_NOT_FOUND,
                ClassifyError::Params(_) => EnvelopeError::INVALID_PARAMS,
            },
            message: error.to_string(),
            id: id(),
            data: None,
        })?;
        Ok(Self {
            members,
            slots,
            kind: Kind::Request,
            classified,
        })
    }

    fn member(&self, slot: Option<usize>) -> Option<&Value> {
        slot.and_then(|slot| self.members.get(slot))
            .map(|(_, value)| value)
    }

    pub(crate) fn method(&self) -> Option<&str> {
        match self.kind {
            Kind::Response => None,
            Kind::Request | Kind::Notification => {
                self.member(self.slots.method).and_then(Value::as_str)
            }
        }
    }

    pub(crate) fn id(&self) -> Option<&Value> {
        self.member(self.slots.id)
    }

    pub(crate) fn params(&self) -> Option<&Map<String, Value>> {
        self.member(self.slots.params).and_then(Value::as_object)
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

/// Why a message without a method is not a response, if it is not.
fn response(
    has_id: bool,
    has_params: bool,
    result: Option<&Value>,
    error: Option<&Value>,
) -> Result<(), &'static str> {
    if !has_id {
        return Err("a message needs a method, or an id with a result or error");
    }
    if has_params {
        return Err("a response cannot carry params");
    }
    match (result, error) {
        (Some(_), None) => Ok(()),
        (None, Some(Value::Object(error)))
            if error.get("code").is_some_and(|code| code.is_i64())
                && error.get("message").is_some_and(Value::is_string) =>
        {
            Ok(())
        }
        (None, Some(_)) => Err("an error needs an integer code and a message"),
        _ => Err("a response carries exactly one of result and error"),
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
fn valid_id(id: Option<&Value>) -> Option<Value> {
    id.filter(|id| is_valid_id(id)).cloned()
}

fn is_valid_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(number) => number.is_i64() || number.is_u64(),
        _ => false,
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

    /// What the parser decided before members were held as a list: the strict
    /// tree parse, then every member looked up in the object by name.
    fn decided_by_map(
        body: &[u8],
    ) -> Result<(Map<String, Value>, Kind, Classified), EnvelopeError> {
        let value = crate::json::message_from_slice(body).map_err(|error| EnvelopeError {
            code: EnvelopeError::PARSE_ERROR,
            message: format!("invalid JSON: {error}"),
            id: None,
            data: None,
        })?;
        let Value::Object(object) = value else {
            return Err(EnvelopeError::invalid(
                "a JSON-RPC message must be an object",
                None,
            ));
        };
        let id = object.get("id").filter(|id| is_valid_id(id)).cloned();
        let invalid = |message: String| EnvelopeError::invalid(message, id.clone());
        let known = ["jsonrpc", "id", "method", "params", "result", "error"];
        if let Some(unknown) = object.keys().find(|key| !known.contains(&key.as_str())) {
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
            if id.is_none() {
                return Err(invalid(
                    "a message needs a method, or an id with a result or error".into(),
                ));
            }
            if object.contains_key("params") {
                return Err(invalid("a response cannot carry params".into()));
            }
            match (object.get("result"), object.get("error")) {
                (Some(_), None) => {}
                (None, Some(Value::Object(error)))
                    if error.get("code").is_some_and(|code| code.is_i64())
                        && error.get("message").is_some_and(Value::is_string) => {}
                (None, Some(_)) => {
                    return Err(invalid(
                        "an error needs an integer code and a message".into(),
                    ));
                }
                _ => {
                    return Err(invalid(
                        "a response carries exactly one of result and error".into(),
                    ));
                }
            }
            return Ok((object, Kind::Response, connection()));
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
            return Ok((object, Kind::Notification, connection()));
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
        Ok((object, Kind::Request, classified))
    }

    /// Candidate members: the JSON-RPC ones with good and bad values, and keys
    /// that are not JSON-RPC members or differ from one only in case.
    const CANDIDATES: &[(&str, &[&str])] = &[
        ("jsonrpc", &[r#""2.0""#, r#""1.0""#, "2", "null"]),
        (
            "id",
            &[
                "1",
                r#""a-1""#,
                "null",
                "1.5",
                "-3",
                "18446744073709551615",
                "{}",
            ],
        ),
        (
            "method",
            &[
                r#""tools/call""#,
                r#""ping""#,
                r#""notifications/initialized""#,
                r#""notifications/progress""#,
                r#""tools/Call""#,
                r#""resources/read""#,
                r#""completion/complete""#,
                r#""x/unknown""#,
                "5",
            ],
        ),
        (
            "params",
            &[
                r#"{"name":"echo"}"#,
                r#"{"name":"echo","_meta":{"k":1}}"#,
                r#"{"uri":"file:///a","name":""}"#,
                r#"{"ref":{"type":"ref/prompt","name":"p"}}"#,
                r#"{"name":5}"#,
                "[]",
                "{}",
            ],
        ),
        ("result", &["{}", "null", "[1]"]),
        (
            "error",
            &[
                r#"{"code":-1,"message":"m"}"#,
                r#"{"code":"x","message":"m"}"#,
                r#"{"code":1}"#,
                "3",
            ],
        ),
        ("extra", &["1"]),
        ("ID", &["2"]),
        ("Method", &[r#""ping""#]),
    ];

    /// `key` written with its first `escaped` characters as `\u` escapes.
    fn spelled(key: &str, escaped: usize) -> String {
        key.chars()
            .enumerate()
            .map(|(i, ch)| {
                if i < escaped {
                    format!("\\u{:04x}", u32::from(ch))
                } else {
                    ch.to_string()
                }
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn members_found_by_comparing_keys_decide_as_map_look_ups_did(
            shape in 0usize..3,
            flipped in proptest::collection::vec(proptest::bool::weighted(0.08), 9),
            values in proptest::collection::vec((proptest::bool::weighted(0.8), 0usize..16), 9),
            escaped in proptest::collection::vec(proptest::bool::weighted(0.2), 9),
            again in proptest::option::weighted(0.05, 0..CANDIDATES.len()),
            order in proptest::collection::vec(proptest::prelude::any::<u32>(), 10),
        ) {
            // A request, a notification or a response (members by CANDIDATES
            // index), each member then dropped or added at random.
            let outcome = if values[4].1 % 2 == 0 { 4 } else { 5 };
            let shaped: &[usize] = match shape {
                0 => &[0, 1, 2, 3],
                1 => &[0, 2, 3],
                _ => &[0, 1, outcome],
            };
            let mut members: Vec<String> = (0..CANDIDATES.len())
                .filter(|member| shaped.contains(member) != flipped[*member])
                .chain(again)
                .map(|member| {
                    let (key, choices) = CANDIDATES[member];
                    let (good, value) = values[member];
                    // Well-formed values: the first listed, or for a method one
                    // that fits the shape.
                    let value = match (good, member, shape) {
                        (true, 2, 1) => 2 + value % 2,
                        (true, 2, _) => [0, 1, 5, 6, 7][value % 5],
                        (true, 3, _) => value % 4,
                        (true, _, _) => 0,
                        (false, _, _) => value % choices.len(),
                    };
                    let escaped = if escaped[member] { 1 + value % key.len() } else { 0 };
                    format!("\"{}\":{}", spelled(key, escaped), choices[value])
                })
                .collect();
            // A random order (a member picked twice stays a duplicate).
            let mut keyed: Vec<(u32, String)> = order.iter().copied().zip(members.drain(..)).collect();
            keyed.sort_by_key(|(rank, _)| *rank);
            let body = format!(
                "{{{}}}",
                keyed.into_iter().map(|(_, member)| member).collect::<Vec<_>>().join(",")
            );
            let now = parse(body.as_bytes(), ProtocolVersion::V2025_03_26);
            let before = decided_by_map(body.as_bytes());
            match (now, before) {
                (Ok(envelope), Ok((object, kind, classified))) => {
                    let message = &envelope.messages[0];
                    proptest::prop_assert_eq!(envelope.to_bytes(), serde_json::to_vec(&object).unwrap());
                    proptest::prop_assert_eq!(message.kind, kind);
                    proptest::prop_assert_eq!(&message.classified, &classified);
                    proptest::prop_assert_eq!(message.id(), object.get("id"));
                    proptest::prop_assert_eq!(message.params(), object.get("params").and_then(Value::as_object));
                    let method = object.get("method").and_then(Value::as_str).filter(|_| kind != Kind::Response);
                    proptest::prop_assert_eq!(message.method(), method);
                    // In a batch, the same message decides the same way.
                    let batch = format!("[{body},{body}]");
                    let envelope = parse(batch.as_bytes(), ProtocolVersion::V2025_03_26);
                    if method != Some("initialize") {
                        let envelope = envelope.unwrap();
                        proptest::prop_assert_eq!(
                            envelope.to_bytes(),
                            serde_json::to_vec(&[&object, &object]).unwrap()
                        );
                    }
                }
                (Err(now), Err(before)) => proptest::prop_assert_eq!(now, before, "{}", body),
                (now, before) => proptest::prop_assert!(false, "{body}: {now:?} against {before:?}"),
            }
        }
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
