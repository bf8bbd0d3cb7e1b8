//! Names under prefixes, and the pages of a merged list.

use serde_json::{Value, json};

use super::Member;
use crate::upstream::local::rpc_error::RpcError;

/// What a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Tool,
    Prompt,
}

impl Kind {
    pub(super) fn list_method(self) -> &'static str {
        match self {
            Self::Tool => "tools/list",
            Self::Prompt => "prompts/list",
        }
    }

    /// The method that uses one item: a call, or a get.
    pub(super) fn one_method(self) -> &'static str {
        match self {
            Self::Tool => "tools/call",
            Self::Prompt => "prompts/get",
        }
    }

    /// The list's key in a result.
    pub(super) fn key(self) -> &'static str {
        match self {
            Self::Tool => "tools",
            Self::Prompt => "prompts",
        }
    }

    pub(super) fn item(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
        }
    }
}

/// `item` with its `name` under `prefix`; `None` for an item without a string
/// name (no client could ask for it by name).
pub(super) fn prefixed(mut item: Value, prefix: &str) -> Option<Value> {
    let name = item.get("name")?.as_str()?;
    let name = format!("{prefix}{name}");
    item.as_object_mut()?
        .insert("name".to_owned(), Value::from(name));
    Some(item)
}

/// The member a name belongs to, and the name it has there. Prefixes never begin
/// alike (a configuration error), so at most one member matches.
pub(super) fn owner<'m, 'n>(members: &'m [Member], name: &'n str) -> Option<(&'m Member, &'n str)> {
    members.iter().find_map(|member| {
        let own = name.strip_prefix(&*member.prefix)?;
        (!own.is_empty()).then_some((member, own))
    })
}

/// Where a page of a merged list starts, and how long it is.
pub(super) struct Page {
    start: usize,
    size: usize,
}

impl Page {
    /// The page `params.cursor` names (the first without one). A cursor is the
    /// offset this server wrote; anything else is invalid params.
    pub(super) fn from_params(params: Option<&Value>, size: usize) -> Result<Self, RpcError> {
        let start = match params.and_then(|params| params.get("cursor")) {
            None | Some(Value::Null) => 0,
            Some(Value::String(cursor)) => cursor
                .parse::<usize>()
                .map_err(|_| RpcError::invalid_params("invalid cursor"))?,
            Some(_) => return Err(RpcError::invalid_params("invalid cursor")),
        };
        Ok(Self { start, size })
    }

    /// The result holding this page of `items` under `key`, with `nextCursor`
    /// when more follow. A cursor past the end is an empty last page.
    pub(super) fn of(&self, key: &str, items: Vec<Value>) -> Value {
        let total = items.len();
        let end = self.start.saturating_add(self.size).min(total);
        let page: Vec<Value> = items
            .into_iter()
            .skip(self.start)
            .take(end.saturating_sub(self.start))
            .collect();
        let mut result = json!({ key: page });
        if end < total
            && let Some(object) = result.as_object_mut()
        {
            object.insert("nextCursor".to_owned(), Value::from(end.to_string()));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn member(prefix: &str) -> Member {
        Member::for_tests(prefix)
    }

    #[test]
    fn a_name_belongs_to_the_member_whose_prefix_it_carries() {
        let members = [member("gh_"), member("jira_")];
        let (found, own) = owner(&members, "jira_create").unwrap();
        assert_eq!((&*found.prefix, own), ("jira_", "create"));
        // The prefix alone, another prefix, no prefix: nobody's.
        for name in ["gh_", "gl_create", "create", ""] {
            assert!(owner(&members, name).is_none(), "{name}");
        }
        assert_eq!(Arc::strong_count(&members[0].name), 1);
    }

    #[test]
    fn items_are_renamed_and_nameless_ones_dropped() {
        let item = json!({"name": "echo", "description": "d"});
        assert_eq!(
            prefixed(item, "gh_").unwrap(),
            json!({"name": "gh_echo", "description": "d"})
        );
        assert!(prefixed(json!({"description": "d"}), "gh_").is_none());
        assert!(prefixed(json!({"name": 3}), "gh_").is_none());
    }

    #[test]
    fn pages_follow_the_cursor_to_the_end() {
        let items: Vec<Value> = (0..5).map(|i| json!({"name": i.to_string()})).collect();
        let first = Page::from_params(None, 2)
            .unwrap()
            .of("tools", items.clone());
        assert_eq!(first["tools"].as_array().unwrap().len(), 2);
        assert_eq!(first["nextCursor"], "2");
        let params = json!({"cursor": "4"});
        let last = Page::from_params(Some(&params), 2)
            .unwrap()
            .of("tools", items.clone());
        assert_eq!(last["tools"], json!([{"name": "4"}]));
        assert!(last.get("nextCursor").is_none());
        let past = json!({"cursor": "99"});
        let past = Page::from_params(Some(&past), 2)
            .unwrap()
            .of("tools", items);
        assert_eq!(past["tools"], json!([]));
        for bad in [
            json!({"cursor": "x"}),
            json!({"cursor": 1}),
            json!({"cursor": "-1"}),
        ] {
            assert!(Page::from_params(Some(&bad), 2).is_err(), "{bad}");
        }
    }
}
