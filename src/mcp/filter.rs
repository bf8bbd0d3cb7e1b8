//! List filtering: answers to `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` are cut to the items whose own rules the caller meets,
//! so a model is never offered what it may not use. Everything else in the answer,
//! `nextCursor` included, is left as the upstream wrote it. Calls are still
//! enforced on their own; filtering is about not advertising.

use std::sync::Arc;

use serde_json::{Value, json};

use super::envelope::Envelope;
use super::sse::EventEditor;
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::policy::{Item, ItemKind};

/// Which list an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    /// The array in `result`, and the member of each entry that rules match.
    fn fields(self) -> (&'static str, &'static str) {
        match self {
            Self::Tools => ("tools", "name"),
            Self::Prompts => ("prompts", "name"),
            Self::Resources => ("resources", "uri"),
            // Templates are matched by their template string (`file:///{path}`).
            Self::ResourceTemplates => ("resourceTemplates", "uriTemplate"),
        }
    }

    pub fn item_kind(self) -> ItemKind {
        match self {
            Self::Tools => ItemKind::Tool,
            Self::Prompts => ItemKind::Prompt,
            Self::Resources | Self::ResourceTemplates => ItemKind::Resource,
        }
    }

    fn item(self, name: &str) -> Item<'_> {
        match self.item_kind() {
            ItemKind::Tool => Item::Tool(name),
            ItemKind::Prompt => Item::Prompt(name),
            ItemKind::Resource => Item::Resource(name),
        }
    }
}

/// The list answers to cut, and whose eyes they are for.
pub struct ListFilter {
    gateway: Arc<Gateway>,
    principal: Arc<Principal>,
    awaited: Awaited,
}

enum Awaited {
    /// A POST's answers: the list requests it made, by id.
    Ids(Vec<(Value, ListKind)>),
    /// A GET stream: it can replay a POST's answers (resumption with
    /// `Last-Event-ID`), whose requests this filter never saw, so every answer
    /// shaped like a list is cut.
    AnyList,
}

impl ListFilter {
    /// `None` when no answer to this request needs cutting (no list request, no
    /// rule for its kind, or a caller holding every scope).
    pub fn for_request(
        gateway: &Arc<Gateway>,
        principal: &Arc<Principal>,
        envelope: &Envelope,
    ) -> Option<Self> {
        if principal.scopes.is_all() {
            return None;
        }
        let pending: Vec<(Value, ListKind)> = envelope
            .messages
            .iter()
            .filter_map(|message| {
                let kind = message.lists()?;
                let id = message.id()?;
                gateway
                    .policy
                    .filters(kind.item_kind())
                    .then(|| (id.clone(), kind))
            })
            .collect();
        (!pending.is_empty()).then(|| Self {
            gateway: Arc::clone(gateway),
            principal: Arc::clone(principal),
            awaited: Awaited::Ids(pending),
        })
    }

    /// For a GET stream: `None` when no list could need cutting.
    pub fn for_stream(gateway: &Arc<Gateway>, principal: &Arc<Principal>) -> Option<Self> {
        let any_rules = [ItemKind::Tool, ItemKind::Prompt, ItemKind::Resource]
            .into_iter()
            .any(|kind| gateway.policy.filters(kind));
        (any_rules && !principal.scopes.is_all()).then(|| Self {
            gateway: Arc::clone(gateway),
            principal: Arc::clone(principal),
            awaited: Awaited::AnyList,
        })
    }

    /// Every awaited answer has been seen (never, on a GET stream).
    pub fn is_done(&self) -> bool {
        match &self.awaited {
            Awaited::Ids(pending) => pending.is_empty(),
            Awaited::AnyList => false,
        }
    }

    /// Filters one JSON document (a message or a batch of messages). `None` leaves
    /// it as it was. A document with duplicate keys is replaced by an error: it
    /// could read one way here and another way in the client.
    pub fn filter_document(&mut self, document: &[u8]) -> Option<Vec<u8>> {
        let mut value = match crate::json::from_slice(document) {
            Ok(value) => value,
            Err(_) if serde_json::from_slice::<Value>(document).is_ok() => {
                let error = json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": {"code": -32603, "message": "mcpgate refused an ambiguous upstream message (duplicate keys)"},
                });
                return Some(error.to_string().into_bytes());
            }
            // Not JSON at all: the client cannot read anything into it either.
            Err(_) => return None,
        };
        self.filter_value(&mut value)
            .then(|| value.to_string().into_bytes())
    }

    /// Filters in place; true when something was removed.
    pub fn filter_value(&mut self, value: &mut Value) -> bool {
        match value {
            Value::Array(messages) => {
                let mut changed = false;
                for message in messages {
                    changed |= self.filter_message(message);
                }
                changed
            }
            message => self.filter_message(message),
        }
    }

    fn filter_message(&mut self, message: &mut Value) -> bool {
        let Some(object) = message.as_object_mut() else {
            return false;
        };
        if object.contains_key("method") {
            return false;
        }
        let Some(id) = object.get("id") else {
            return false;
        };
        let kind = match &mut self.awaited {
            Awaited::Ids(pending) => {
                let Some(position) = pending.iter().position(|(awaited, _)| awaited == id) else {
                    return false;
                };
                pending.swap_remove(position).1
            }
            Awaited::AnyList => {
                let result = object.get("result").and_then(Value::as_object);
                let Some(kind) = [
                    ListKind::Tools,
                    ListKind::Prompts,
                    ListKind::Resources,
                    ListKind::ResourceTemplates,
                ]
                .into_iter()
                .find(|kind| result.is_some_and(|result| result.contains_key(kind.fields().0))) else {
                    return false;
                };
                kind
            }
        };
        let (array_key, name_key) = kind.fields();
        let Some(items) = object
            .get_mut("result")
            .and_then(Value::as_object_mut)
            .and_then(|result| result.get_mut(array_key))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let policy = &self.gateway.policy;
        let granted = policy.grant(&self.principal.scopes);
        let before = items.len();
        // An entry without a readable name cannot be matched against the rules, so
        // it is not shown.
        items.retain(|item| {
            item.get(name_key)
                .and_then(Value::as_str)
                .is_some_and(|name| policy.may_use(&granted, kind.item(name)))
        });
        items.len() != before
    }
}

/// In an SSE answer each event carries one JSON-RPC message; only the awaited list
/// answers are rewritten, and once they have passed the stream flows untouched.
impl EventEditor for ListFilter {
    fn edit(&mut self, data: &str) -> Option<String> {
        self.filter_document(data.as_bytes())
            .map(|edited| String::from_utf8_lossy(&edited).into_owned())
    }

    fn done(&self) -> bool {
        self.is_done()
    }
}
