//! What a JSON-RPC request is about: its policy level and the tool, resource or
//! prompt it names. Methods are matched exactly, after JSON decoding. A method that
//! is not one MCP defines but that a lenient server could fold into one
//! (`Tools/Call`, `tools/call `, `tools\call`, `tools//call`, fullwidth letters) is
//! refused outright ([`ClassifyError::LookAlike`]): judged as an unknown method it
//! would escape the real method's rules, and run as the real one upstream.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};
use unicode_normalization::{UnicodeNormalization, is_nfkc};

use super::names::OTHER_METHODS;
pub use super::names::{ACCEPTED_NOTIFICATIONS, CLIENT_REQUESTS};
use crate::json::member;
use crate::policy::{ItemKind, Level};

/// Longest name or URI accepted in `params` (MCP tool names are at most 128 bytes;
/// URIs get room, but not unbounded room).
const MAX_NAME_BYTES: usize = 4096;

/// A request's place in the policy, with the names copied out of `params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub(crate) level: Level,
    pub(crate) item: Option<(ItemKind, String)>,
    /// Further requirements of the same message: what a `subscriptions/listen`
    /// opts into (list levels, and each subscribed resource).
    pub also: Vec<(Level, Option<(ItemKind, String)>)>,
    /// The method is one MCP defines for clients to send.
    pub known: bool,
}

impl Classified {
    fn level(level: Level) -> Self {
        Self {
            level,
            item: None,
            also: Vec::new(),
            known: true,
        }
    }

    fn with_item(level: Level, kind: ItemKind, name: String) -> Self {
        Self {
            item: Some((kind, name)),
            ..Self::level(level)
        }
    }
}

/// Why a request cannot be classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// Not a method MCP defines, but one a lenient server could read as `known`.
    #[error(
        "method {method:?} is not an MCP method; methods are matched exactly (did you mean {known:?}?)"
    )]
    LookAlike {
        /// The method as sent.
        method: String,
        /// The MCP method it resembles.
        known: &'static str,
    },
    /// `params` cannot be read the way the method needs.
    #[error("{0}")]
    Params(String),
}

/// The MCP method `method` could be mistaken for, when it is not exactly one.
pub fn look_alike(method: &str) -> Option<&'static str> {
    static SKELETONS: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
        CLIENT_REQUESTS
            .iter()
            .chain(OTHER_METHODS)
            .chain(ACCEPTED_NOTIFICATIONS)
            .map(|method| (skeleton(method), *method))
            .collect()
    });
    if is_defined(method) {
        return None;
    }
    SKELETONS.get(&skeleton(method)).copied()
}

fn is_defined(method: &str) -> bool {
    CLIENT_REQUESTS.contains(&method)
        || OTHER_METHODS.contains(&method)
        || ACCEPTED_NOTIFICATIONS.contains(&method)
}

/// What is left of a method once every difference a lenient reader might ignore is
/// gone: compatibility forms (NFKC), case, and everything but letters and digits
/// (whitespace, control and invisible characters, `/`, `\`, `_`, `.`, repeats).
fn skeleton(method: &str) -> String {
    method
        .nfkc()
        .flat_map(char::to_lowercase)
        .filter(|ch| ch.is_alphanumeric())
        .collect()
}

pub(crate) fn classify(
    method: &str,
    params: Option<&Map<String, Value>>,
) -> Result<Classified, ClassifyError> {
    let with_item = |level, kind, field: &str| -> Result<Classified, ClassifyError> {
        Ok(Classified::with_item(
            level,
            kind,
            name_field(params, field)?,
        ))
    };
    match method {
        "initialize" | "ping" | "server/discover" => Ok(Classified::level(Level::Connection)),
        "tools/list" => Ok(Classified::level(Level::ToolsList)),
        "tools/call" => with_item(Level::ToolsCall, ItemKind::Tool, "name"),
        "resources/list" => Ok(Classified::level(Level::ResourcesList)),
        "resources/templates/list" => Ok(Classified::level(Level::ResourcesTemplatesList)),
        "resources/read" => with_item(Level::ResourcesRead, ItemKind::Resource, "uri"),
        // Subscribing reveals updates of a resource: the resource's own rules apply.
        "resources/subscribe" | "resources/unsubscribe" => {
            with_item(Level::Default, ItemKind::Resource, "uri")
        }
        "prompts/list" => Ok(Classified::level(Level::PromptsList)),
        "prompts/get" => with_item(Level::PromptsGet, ItemKind::Prompt, "name"),
        "completion/complete" => completion(params),
        "subscriptions/listen" => listen(params),
        _ if CLIENT_REQUESTS.contains(&method) => Ok(Classified::level(Level::Default)),
        _ => match look_alike(method) {
            Some(known) => Err(ClassifyError::LookAlike {
                method: method.to_owned(),
                known,
            }),
            None => Ok(Classified {
                known: false,
                ..Classified::level(Level::Default)
            }),
        },
    }
}

/// `subscriptions/listen` (2026-07-28) opens a stream of the change notifications
/// it opts into: each list-changed kind needs that list's level, as listing it
/// would, and each subscribed resource what reading it needs (`resources_read` and
/// its own rules): an update tells what a read would. A member mcpgate does not
/// know could opt into something it cannot judge, so it is refused.
fn listen(params: Option<&Map<String, Value>>) -> Result<Classified, ClassifyError> {
    let mut classified = Classified::level(Level::Connection);
    let Some(filter) = params.and_then(|params| member(params, "notifications")) else {
        return Ok(classified);
    };
    let filter = filter
        .as_object()
        .ok_or_else(|| ClassifyError::Params("params.notifications must be an object".into()))?;
    for (member, value) in filter {
        let list = match member.as_str() {
            "toolsListChanged" => Level::ToolsList,
            "promptsListChanged" => Level::PromptsList,
            "resourcesListChanged" => Level::ResourcesList,
            "resourceSubscriptions" => {
                let uris = value.as_array().ok_or_else(|| {
                    ClassifyError::Params(
                        "params.notifications.resourceSubscriptions must be an array of URIs"
                            .into(),
                    )
                })?;
                for uri in uris {
                    let uri = checked_name(
                        Some(uri),
                        "params.notifications.resourceSubscriptions[]",
                        "",
                    )?;
                    classified
                        .also
                        .push((Level::ResourcesRead, Some((ItemKind::Resource, uri))));
                }
                continue;
            }
            other => {
                return Err(ClassifyError::Params(format!(
                    "params.notifications.{other} is not a notification filter mcpgate knows; \
                     it cannot be authorized"
                )));
            }
        };
        match value {
            Value::Bool(true) => classified.also.push((list, None)),
            Value::Bool(false) => {}
            _ => {
                return Err(ClassifyError::Params(format!(
                    "params.notifications.{member} must be a boolean"
                )));
            }
        }
    }
    Ok(classified)
}

/// Completions reveal argument values of a prompt or a resource template, so the
/// referenced item's rules apply too.
fn completion(params: Option<&Map<String, Value>>) -> Result<Classified, ClassifyError> {
    let reference = params
        .and_then(|params| member(params, "ref"))
        .and_then(Value::as_object)
        .ok_or_else(|| ClassifyError::Params("params.ref must be an object".into()))?;
    let (kind, field) = match member(reference, "type").and_then(Value::as_str) {
        Some("ref/prompt") => (ItemKind::Prompt, "name"),
        Some("ref/resource") => (ItemKind::Resource, "uri"),
        _ => {
            return Err(ClassifyError::Params(
                "params.ref.type must be \"ref/prompt\" or \"ref/resource\"".into(),
            ));
        }
    };
    let name = checked_name(member(reference, field), "params.ref.", field)?;
    Ok(Classified::with_item(Level::CompletionComplete, kind, name))
}

fn name_field(params: Option<&Map<String, Value>>, field: &str) -> Result<String, ClassifyError> {
    checked_name(
        params.and_then(|params| member(params, field)),
        "params.",
        field,
    )
}

/// A name is matched byte for byte against the rules, so characters that render as
/// nothing or reorder text (zero-width, bidi controls) are refused: they would let
/// a name look like one rule's while matching another's. The member's path
/// (`path` then `field`) is spelled out only in a refusal.
fn checked_name(value: Option<&Value>, path: &str, field: &str) -> Result<String, ClassifyError> {
    let field = format_args!("{path}{field}");
    let name = value
        .and_then(Value::as_str)
        .ok_or_else(|| ClassifyError::Params(format!("{field} must be a string")))?;
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ClassifyError::Params(format!(
            "{field} must be 1 to {MAX_NAME_BYTES} bytes long"
        )));
    }
    if name.chars().any(is_hidden) {
        return Err(ClassifyError::Params(format!(
            "{field} must not contain control or invisible characters"
        )));
    }
    // A name an upstream might fold into another (fullwidth `ｇｅｔ-env` is NFKC
    // `get-env`) would be authorized as one and run as the other.
    if !is_nfkc(name) {
        return Err(ClassifyError::Params(format!(
            "{field} must be in Unicode normal form NFKC (no compatibility characters such as fullwidth letters)"
        )));
    }
    Ok(name.to_owned())
}

fn is_hidden(ch: char) -> bool {
    ch.is_control()
        || matches!(ch,
            '\u{00AD}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn methods_map_to_levels_and_items() {
        let call = params(json!({"name": "get-env", "arguments": {}}));
        assert_eq!(
            classify("tools/call", Some(&call)).unwrap(),
            Classified::with_item(Level::ToolsCall, ItemKind::Tool, "get-env".into())
        );
        let read = params(json!({"uri": "file:///etc/passwd"}));
        assert_eq!(
            classify("resources/subscribe", Some(&read)).unwrap().item,
            Some((ItemKind::Resource, "file:///etc/passwd".into()))
        );
        assert_eq!(classify("ping", None).unwrap().level, Level::Connection);
        assert_eq!(
            classify("server/discover", None).unwrap(),
            Classified::level(Level::Connection)
        );
        assert_eq!(
            classify("tools/list", None).unwrap().level,
            Level::ToolsList
        );
        let task = classify("tasks/get", None).unwrap();
        assert_eq!((task.level, task.known), (Level::Default, true));
    }

    #[test]
    fn unknown_methods_get_the_default_level() {
        for method in [
            "x-vendor/export",
            "tools/callx",
            "toolz/call",
            "rpc.discover",
        ] {
            assert_eq!(
                classify(method, None).unwrap(),
                Classified {
                    known: false,
                    ..Classified::level(Level::Default)
                },
                "{method:?}"
            );
        }
    }

    #[test]
    fn look_alike_methods_are_refused() {
        let call = params(json!({"name": "get-env"}));
        for (method, known) in [
            ("Tools/Call", "tools/call"),
            ("TOOLS/CALL", "tools/call"),
            ("tools/call ", "tools/call"),
            (" tools/call", "tools/call"),
            ("tools/call\t", "tools/call"),
            ("tools/call\u{0}", "tools/call"),
            ("tools\\call", "tools/call"),
            ("tools//call", "tools/call"),
            ("/tools/call/", "tools/call"),
            ("tools_call", "tools/call"),
            ("tools.call", "tools/call"),
            ("tools/\u{200B}call", "tools/call"),
            ("ｔｏｏｌｓ/ｃａｌｌ", "tools/call"),
            ("Resources/Read", "resources/read"),
            ("server/Discover", "server/discover"),
            ("subscriptions/listen\n", "subscriptions/listen"),
            ("Notifications/Initialized", "notifications/initialized"),
            ("Sampling/CreateMessage", "sampling/createMessage"),
        ] {
            assert_eq!(
                classify(method, Some(&call)),
                Err(ClassifyError::LookAlike {
                    method: method.into(),
                    known
                }),
                "{method:?}"
            );
            assert_eq!(look_alike(method), Some(known), "{method:?}");
        }
        assert_eq!(look_alike("tools/call"), None);
        assert_eq!(look_alike("notifications/progress"), None);
    }

    #[test]
    fn listen_needs_what_it_opts_into() {
        let listen = params(json!({
            "notifications": {
                "toolsListChanged": true,
                "promptsListChanged": false,
                "resourcesListChanged": true,
                "resourceSubscriptions": ["mem://a", "mem://b"]
            },
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
        }));
        let classified = classify("subscriptions/listen", Some(&listen)).unwrap();
        assert_eq!(classified.level, Level::Connection);
        assert_eq!(
            classified.also,
            vec![
                (Level::ToolsList, None),
                (Level::ResourcesList, None),
                (
                    Level::ResourcesRead,
                    Some((ItemKind::Resource, "mem://a".into()))
                ),
                (
                    Level::ResourcesRead,
                    Some((ItemKind::Resource, "mem://b".into()))
                ),
            ]
        );
        assert_eq!(
            classify("subscriptions/listen", None).unwrap(),
            Classified::level(Level::Connection)
        );
        for bad in [
            json!({"notifications": []}),
            json!({"notifications": {"toolsListChanged": "yes"}}),
            json!({"notifications": {"resourceSubscriptions": "mem://a"}}),
            json!({"notifications": {"resourceSubscriptions": [7]}}),
            json!({"notifications": {"resourceSubscriptions": ["mem://a\u{202E}"]}}),
            json!({"notifications": {"tasksChanged": true}}),
        ] {
            assert!(
                matches!(
                    classify("subscriptions/listen", Some(&params(bad.clone()))),
                    Err(ClassifyError::Params(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_must_be_plain_strings() {
        for bad in [
            json!({}),
            json!({"name": 7}),
            json!({"name": ["get-env"]}),
            json!({"name": ""}),
            json!({"name": "get-env\u{0}"}),
            json!({"name": "get\u{200B}-env"}),
            json!({"name": "get-env\u{202E}"}),
            json!({"name": "a".repeat(MAX_NAME_BYTES + 1)}),
        ] {
            assert!(
                classify("tools/call", Some(&params(bad.clone()))).is_err(),
                "{bad}"
            );
        }
        assert!(classify("tools/call", None).is_err());
        // Compatibility characters could fold into another name upstream.
        for folded in ["ｇｅｔ-env", "ﬁle", "x\u{2126}"] {
            assert!(
                classify("tools/call", Some(&params(json!({"name": folded})))).is_err(),
                "{folded}"
            );
        }
        // Other scripts in normal form are names like any other.
        assert!(classify("tools/call", Some(&params(json!({"name": "überprüfen"})))).is_ok());
    }

    #[test]
    fn completions_take_the_referenced_item() {
        let prompt =
            params(json!({"ref": {"type": "ref/prompt", "name": "secret"}, "argument": {}}));
        assert_eq!(
            classify("completion/complete", Some(&prompt)).unwrap(),
            Classified::with_item(Level::CompletionComplete, ItemKind::Prompt, "secret".into())
        );
        let resource = params(json!({"ref": {"type": "ref/resource", "uri": "db://{table}"}}));
        assert_eq!(
            classify("completion/complete", Some(&resource))
                .unwrap()
                .item,
            Some((ItemKind::Resource, "db://{table}".into()))
        );
        let bad = params(json!({"ref": {"type": "ref/other", "name": "x"}}));
        assert!(classify("completion/complete", Some(&bad)).is_err());
    }
}
