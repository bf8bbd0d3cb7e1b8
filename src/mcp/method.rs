//! What a JSON-RPC request is about: its policy level and the tool, resource or
//! prompt it names. Methods are matched exactly, after JSON decoding, so
//! `Tools/Call`, `tools/call ` and `tools\u002fcall` spellings cannot pick a laxer
//! rule: anything unrecognised falls to the `default` level, never through.

use serde_json::{Map, Value};
use unicode_normalization::is_nfkc;

use crate::policy::{ItemKind, Level};

/// Longest name or URI accepted in `params` (MCP tool names are at most 128 bytes;
/// URIs get room, but not unbounded room).
const MAX_NAME_BYTES: usize = 4096;

/// Client notifications mcpgate passes on. Anything else a client might notify is
/// refused rather than handed to an upstream that might act on it.
pub const ACCEPTED_NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

/// A request's place in the policy, with the item's name copied out of `params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub level: Level,
    pub item: Option<(ItemKind, String)>,
}

/// Why `params` cannot be read the way the method needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(pub String);

pub fn classify(
    method: &str,
    params: Option<&Map<String, Value>>,
) -> Result<Classified, ParamsError> {
    let level = |level| Classified { level, item: None };
    let with_item = |level, kind, field: &str| -> Result<Classified, ParamsError> {
        let name = name_field(params, field)?;
        Ok(Classified {
            level,
            item: Some((kind, name)),
        })
    };
    match method {
        "initialize" | "ping" => Ok(level(Level::Connection)),
        "tools/list" => Ok(level(Level::ToolsList)),
        "tools/call" => with_item(Level::ToolsCall, ItemKind::Tool, "name"),
        "resources/list" => Ok(level(Level::ResourcesList)),
        "resources/templates/list" => Ok(level(Level::ResourcesTemplatesList)),
        "resources/read" => with_item(Level::ResourcesRead, ItemKind::Resource, "uri"),
        // Subscribing reveals updates of a resource: the resource's own rules apply.
        "resources/subscribe" | "resources/unsubscribe" => {
            with_item(Level::Default, ItemKind::Resource, "uri")
        }
        "prompts/list" => Ok(level(Level::PromptsList)),
        "prompts/get" => with_item(Level::PromptsGet, ItemKind::Prompt, "name"),
        "completion/complete" => completion(params),
        _ => Ok(level(Level::Default)),
    }
}

/// Completions reveal argument values of a prompt or a resource template, so the
/// referenced item's rules apply too.
fn completion(params: Option<&Map<String, Value>>) -> Result<Classified, ParamsError> {
    let reference = params
        .and_then(|params| params.get("ref"))
        .and_then(Value::as_object)
        .ok_or_else(|| ParamsError("params.ref must be an object".into()))?;
    let (kind, field) = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => (ItemKind::Prompt, "name"),
        Some("ref/resource") => (ItemKind::Resource, "uri"),
        _ => {
            return Err(ParamsError(
                "params.ref.type must be \"ref/prompt\" or \"ref/resource\"".into(),
            ));
        }
    };
    let name = checked_name(reference.get(field), &format!("params.ref.{field}"))?;
    Ok(Classified {
        level: Level::CompletionComplete,
        item: Some((kind, name)),
    })
}

fn name_field(params: Option<&Map<String, Value>>, field: &str) -> Result<String, ParamsError> {
    checked_name(
        params.and_then(|params| params.get(field)),
        &format!("params.{field}"),
    )
}

/// A name is matched byte for byte against the rules, so characters that render as
/// nothing or reorder text (zero-width, bidi controls) are refused: they would let
/// a name look like one rule's while matching another's.
fn checked_name(value: Option<&Value>, field: &str) -> Result<String, ParamsError> {
    let name = value
        .and_then(Value::as_str)
        .ok_or_else(|| ParamsError(format!("{field} must be a string")))?;
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(ParamsError(format!(
            "{field} must be 1 to {MAX_NAME_BYTES} bytes long"
        )));
    }
    if name.chars().any(is_hidden) {
        return Err(ParamsError(format!(
            "{field} must not contain control or invisible characters"
        )));
    }
    // A name an upstream might fold into another (fullwidth `ｇｅｔ-env` is NFKC
    // `get-env`) would be authorized as one and run as the other.
    if !is_nfkc(name) {
        return Err(ParamsError(format!(
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
            Classified {
                level: Level::ToolsCall,
                item: Some((ItemKind::Tool, "get-env".into()))
            }
        );
        let read = params(json!({"uri": "file:///etc/passwd"}));
        assert_eq!(
            classify("resources/subscribe", Some(&read)).unwrap().item,
            Some((ItemKind::Resource, "file:///etc/passwd".into()))
        );
        assert_eq!(classify("ping", None).unwrap().level, Level::Connection);
        assert_eq!(
            classify("tools/list", None).unwrap().level,
            Level::ToolsList
        );
    }

    #[test]
    fn look_alike_methods_get_the_default_level() {
        let call = params(json!({"name": "get-env"}));
        for method in [
            "Tools/Call",
            "tools/call ",
            "tools/call\u{0}",
            "tools//call",
            "tasks/get",
        ] {
            assert_eq!(
                classify(method, Some(&call)).unwrap(),
                Classified {
                    level: Level::Default,
                    item: None
                },
                "{method:?}"
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
            Classified {
                level: Level::CompletionComplete,
                item: Some((ItemKind::Prompt, "secret".into()))
            }
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
