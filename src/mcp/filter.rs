//! List filtering: answers to `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` are cut to the items whose own rules the caller meets,
//! so a model is never offered what it may not use. Everything else in the answer,
//! `nextCursor` included, is left as the upstream wrote it. Calls are still
//! enforced on their own; filtering is about not advertising.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;

use super::envelope::Envelope;
use super::sse::EventEditor;
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::json::scan::{ScanError, Scanner, Visit};
use crate::policy::{Item, ItemKind, Matched};

/// Which list an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    const ALL: [Self; 4] = [
        Self::Tools,
        Self::Prompts,
        Self::Resources,
        Self::ResourceTemplates,
    ];

    /// Position in [`Self::ALL`] (and in a scanned message's lists).
    fn index(self) -> usize {
        self as usize
    }

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
    /// The `rules:` entries that apply to the principal: their denials are cut too.
    matched: Matched,
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
    /// `None` when no answer to this request needs cutting: no list request, or
    /// neither a scope rule (for a caller without every scope) nor a matched
    /// `rules:` entry says anything about its kind.
    pub fn for_request(
        gateway: &Arc<Gateway>,
        principal: &Arc<Principal>,
        matched: &Matched,
        envelope: &Envelope,
    ) -> Option<Self> {
        let pending: Vec<(Value, ListKind)> = envelope
            .messages
            .iter()
            .filter_map(|message| {
                let kind = message.lists()?;
                let id = message.id()?;
                cuts(gateway, principal, matched, kind.item_kind()).then(|| (id.clone(), kind))
            })
            .collect();
        (!pending.is_empty()).then(|| Self {
            gateway: Arc::clone(gateway),
            principal: Arc::clone(principal),
            matched: matched.clone(),
            awaited: Awaited::Ids(pending),
        })
    }

    /// For a GET stream: `None` when no list could need cutting.
    pub fn for_stream(
        gateway: &Arc<Gateway>,
        principal: &Arc<Principal>,
        matched: &Matched,
    ) -> Option<Self> {
        let any = [ItemKind::Tool, ItemKind::Prompt, ItemKind::Resource]
            .into_iter()
            .any(|kind| cuts(gateway, principal, matched, kind));
        any.then(|| Self {
            gateway: Arc::clone(gateway),
            principal: Arc::clone(principal),
            matched: matched.clone(),
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
        // Not UTF-8, so not JSON: the client cannot read anything into it either.
        let text = std::str::from_utf8(document).ok()?;
        self.filter_text(text).map(String::into_bytes)
    }

    /// As [`Self::filter_document`], for text.
    pub fn filter_text(&mut self, text: &str) -> Option<String> {
        let policy = &self.gateway.policy;
        let granted = policy.grant(&self.principal.scopes);
        let rules = policy.principal_rules();
        let matched = &self.matched;
        cut_lists(text, &mut self.awaited, |kind, name| {
            let item = kind.item(name);
            policy.may_use(&granted, item) && rules.permits(matched, item)
        })
    }
}

/// Whether lists of `kind` may lose entries for this caller: scope rules (unless the
/// caller holds every scope) or a matched `rules:` entry about that kind.
fn cuts(gateway: &Gateway, principal: &Principal, matched: &Matched, kind: ItemKind) -> bool {
    let policy = &gateway.policy;
    (policy.filters(kind) && !principal.scopes.is_all())
        || policy.principal_rules().restricts(matched, kind)
}

/// Cuts the awaited list answers in `text` to the entries `allowed` accepts; `None`
/// when nothing changes. The document is scanned once, without building a tree;
/// refused entries are cut out of the original text, so what is kept reaches the
/// client byte for byte as the upstream wrote it.
fn cut_lists(
    text: &str,
    awaited: &mut Awaited,
    allowed: impl Fn(ListKind, &str) -> bool,
) -> Option<String> {
    let messages = match scan_messages(text) {
        Ok(messages) => messages,
        Err(ScanError::DuplicateKey(_)) => return Some(AMBIGUOUS.to_owned()),
        // Deeper than any real answer: refused like a duplicate, not passed on
        // unread.
        Err(ScanError::TooDeep) => return Some(TOO_DEEP.to_owned()),
        // Not JSON: the client cannot read anything into it either.
        Err(ScanError::Syntax(_)) => return None,
    };
    let cuts: Vec<Cut> = messages
        .into_iter()
        .filter_map(|message| cut(text, awaited, message, &allowed))
        .collect();
    if cuts.is_empty() {
        return None;
    }
    Some(splice(text, &cuts).unwrap_or_else(|| INTERNAL.to_owned()))
}

/// The entries of one answer the caller may not see, if it is an awaited list.
fn cut(
    text: &str,
    awaited: &mut Awaited,
    message: ScannedMessage<'_>,
    allowed: &impl Fn(ListKind, &str) -> bool,
) -> Option<Cut> {
    if message.has_method {
        return None;
    }
    let id_text = text.get(message.id?)?;
    let kind = match awaited {
        Awaited::Ids(pending) => {
            let id: Value = serde_json::from_str(id_text).ok()?;
            let position = pending.iter().position(|(awaited, _)| *awaited == id)?;
            pending.swap_remove(position).1
        }
        Awaited::AnyList => *ListKind::ALL.iter().find(|kind| {
            message
                .lists
                .get(kind.index())
                .is_some_and(|list| list.present)
        })?,
    };
    let ScannedList {
        array: Some(array),
        entries,
        ..
    } = message.lists.into_iter().nth(kind.index())?
    else {
        return None;
    };
    let total = entries.len();
    // An entry without a readable name cannot be matched against the rules, so it
    // is not shown.
    let kept: Vec<Range<usize>> = entries
        .into_iter()
        .filter(|entry| {
            entry
                .name
                .as_deref()
                .is_some_and(|name| allowed(kind, name))
        })
        .map(|entry| entry.span)
        .collect();
    (kept.len() != total).then_some(Cut { array, kept })
}

const AMBIGUOUS: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"mcpgate refused an ambiguous upstream message (duplicate keys)"}}"#;
const TOO_DEEP: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"mcpgate refused an upstream message nested too deeply"}}"#;
const INTERNAL: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"mcpgate could not filter an upstream list answer"}}"#;

/// One list array to rewrite: its span and the spans of the entries kept.
struct Cut {
    array: Range<usize>,
    kept: Vec<Range<usize>>,
}

/// What the scan saw of one message.
#[derive(Default)]
struct ScannedMessage<'a> {
    has_method: bool,
    id: Option<Range<usize>>,
    /// By [`ListKind::index`].
    lists: [ScannedList<'a>; 4],
}

/// `result.<array>` of one list kind.
#[derive(Default)]
struct ScannedList<'a> {
    /// The member is there (whatever its value).
    present: bool,
    /// Its span, when it is an array.
    array: Option<Range<usize>>,
    entries: Vec<ScannedEntry<'a>>,
}

struct ScannedEntry<'a> {
    span: Range<usize>,
    /// The member rules match (`name`, `uri`, `uriTemplate`), when it is a string.
    name: Option<Cow<'a, str>>,
}

/// Scans a message or a batch, validating all of it.
fn scan_messages(text: &str) -> Result<Vec<ScannedMessage<'_>>, ScanError> {
    let mut scanner = Scanner::new(text);
    let mut messages = Vec::new();
    if scanner.peek() == Some(b'[') {
        scanner.array(0, |scanner, depth| {
            messages.push(scan_message(scanner, depth)?);
            Ok(Visit::Read)
        })?;
    } else {
        messages.push(scan_message(&mut scanner, 0)?);
    }
    scanner.finish()?;
    Ok(messages)
}

fn scan_message<'a>(
    scanner: &mut Scanner<'a>,
    depth: usize,
) -> Result<ScannedMessage<'a>, ScanError> {
    let mut message = ScannedMessage::default();
    if scanner.peek() != Some(b'{') {
        scanner.skip_value(depth)?;
        return Ok(message);
    }
    scanner.object(depth, |scanner, key, depth| match key {
        "method" => {
            message.has_method = true;
            Ok(Visit::Skip)
        }
        "id" => {
            message.id = Some(scanner.skip_value(depth)?);
            Ok(Visit::Read)
        }
        "result" if scanner.peek() == Some(b'{') => {
            scan_result(scanner, depth, &mut message.lists)?;
            Ok(Visit::Read)
        }
        _ => Ok(Visit::Skip),
    })?;
    Ok(message)
}

fn scan_result<'a>(
    scanner: &mut Scanner<'a>,
    depth: usize,
    lists: &mut [ScannedList<'a>; 4],
) -> Result<(), ScanError> {
    scanner.object(depth, |scanner, key, depth| {
        let Some(kind) = ListKind::ALL
            .into_iter()
            .find(|kind| kind.fields().0 == key)
        else {
            return Ok(Visit::Skip);
        };
        let Some(list) = lists.get_mut(kind.index()) else {
            return Ok(Visit::Skip);
        };
        list.present = true;
        if scanner.peek() != Some(b'[') {
            return Ok(Visit::Skip);
        }
        let name_key = kind.fields().1;
        let start = scanner.position();
        let mut entries = Vec::new();
        scanner.array(depth, |scanner, depth| {
            entries.push(scan_entry(scanner, depth, name_key)?);
            Ok(Visit::Read)
        })?;
        list.array = Some(start..scanner.offset());
        list.entries = entries;
        Ok(Visit::Read)
    })
}

fn scan_entry<'a>(
    scanner: &mut Scanner<'a>,
    depth: usize,
    name_key: &str,
) -> Result<ScannedEntry<'a>, ScanError> {
    let start = scanner.position();
    let mut name = None;
    if scanner.peek() == Some(b'{') {
        scanner.object(depth, |scanner, key, _| {
            if key == name_key && scanner.peek() == Some(b'"') {
                name = Some(scanner.string()?);
                return Ok(Visit::Read);
            }
            Ok(Visit::Skip)
        })?;
    } else {
        scanner.skip_value(depth)?;
    }
    Ok(ScannedEntry {
        span: start..scanner.offset(),
        name,
    })
}

/// The document with each cut array rewritten to hold only its kept entries, in
/// document order. `None` if a span does not fall on the text (never, for spans
/// the scanner reported).
fn splice(text: &str, cuts: &[Cut]) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for cut in cuts {
        out.push_str(text.get(copied..cut.array.start)?);
        out.push('[');
        for (index, entry) in cut.kept.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(text.get(entry.clone())?);
        }
        out.push(']');
        copied = cut.array.end;
    }
    out.push_str(text.get(copied..)?);
    Some(out)
}

/// In an SSE answer each event carries one JSON-RPC message; only the awaited list
/// answers are rewritten, and once they have passed the stream flows untouched.
impl EventEditor for ListFilter {
    fn edit(&mut self, data: &str) -> Option<String> {
        self.filter_text(data)
    }

    fn done(&self) -> bool {
        self.is_done()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn awaiting(ids: &[(Value, ListKind)]) -> Awaited {
        Awaited::Ids(ids.to_vec())
    }

    /// Allows names that do not start with `secret`.
    fn not_secret(_: ListKind, name: &str) -> bool {
        !name.starts_with("secret")
    }

    #[test]
    fn cuts_refused_entries_and_keeps_the_rest_as_written() {
        let text = "{ \"jsonrpc\": \"2.0\", \"id\": 1,\n  \"result\": {\n    \"tools\": [\n      { \"name\" : \"echo\", \"inputSchema\": {\"type\": \"object\"} },\n      {\"name\":\"secret\\u005fenv\"},\n      {\"name\": \"ad\\\"min\", \"x\": [1, 2.5e3]}\n    ],\n    \"nextCursor\": \"p2\"\n  }\n}";
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
        let cut = cut_lists(text, &mut awaited, not_secret).unwrap();
        assert_eq!(
            cut,
            "{ \"jsonrpc\": \"2.0\", \"id\": 1,\n  \"result\": {\n    \"tools\": [{ \"name\" : \"echo\", \"inputSchema\": {\"type\": \"object\"} },{\"name\": \"ad\\\"min\", \"x\": [1, 2.5e3]}],\n    \"nextCursor\": \"p2\"\n  }\n}"
        );
        let Awaited::Ids(pending) = awaited else {
            unreachable!()
        };
        assert!(pending.is_empty());
    }

    #[test]
    fn cuts_each_awaited_answer_of_a_batch_and_nothing_else() {
        let text = r#"[{"jsonrpc":"2.0","id":"a","result":{"prompts":[{"name":"secret-p"},{"name":"p"}]}},{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"secret"}]}},{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///x"},{"uri":"secret:///y"}]}}]"#;
        let mut awaited = awaiting(&[
            (json!("a"), ListKind::Prompts),
            (json!(2), ListKind::Resources),
        ]);
        let cut = cut_lists(text, &mut awaited, not_secret).unwrap();
        assert_eq!(
            cut,
            r#"[{"jsonrpc":"2.0","id":"a","result":{"prompts":[{"name":"p"}]}},{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"secret"}]}},{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///x"}]}}]"#
        );
    }

    #[test]
    fn entries_without_a_readable_name_are_not_shown() {
        let text = r#"{"id":1,"result":{"tools":[{"name":7},"echo",{"title":"x"},{"name":"ok"},{"name":"ok2","name2":1}]}}"#;
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
        assert_eq!(
            cut_lists(text, &mut awaited, not_secret).unwrap(),
            r#"{"id":1,"result":{"tools":[{"name":"ok"},{"name":"ok2","name2":1}]}}"#
        );
    }

    #[test]
    fn leaves_alone_what_it_does_not_await() {
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
        for text in [
            // A request from the server, shaped like an answer.
            r#"{"id":1,"method":"x","result":{"tools":[{"name":"secret"}]}}"#,
            // Another id.
            r#"{"id":2,"result":{"tools":[{"name":"secret"}]}}"#,
            // Not JSON.
            r#"{"id":1,"result":{"tools":[{"name":"secret"}]}"#,
            "\u{1}",
        ] {
            assert_eq!(cut_lists(text, &mut awaited, not_secret), None, "{text}");
        }
        // Awaited, but nothing to cut.
        let fine = r#"{"id":1,"result":{"tools":[{"name":"echo"}]}}"#;
        assert_eq!(cut_lists(fine, &mut awaited, not_secret), None);
    }

    #[test]
    fn an_ambiguous_or_over_deep_answer_is_replaced_by_an_error() {
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
        let duplicate = r#"{"id":1,"result":{"tools":[{"name":"echo","name":"secret"}]}}"#;
        assert_eq!(
            cut_lists(duplicate, &mut awaited, not_secret).as_deref(),
            Some(AMBIGUOUS)
        );
        let deep = format!(
            r#"{{"id":1,"result":{{"tools":[{{"name":"echo","x":{}{}}}]}}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        assert_eq!(
            cut_lists(&deep, &mut awaited, not_secret).as_deref(),
            Some(TOO_DEEP)
        );
        for error in [AMBIGUOUS, TOO_DEEP, INTERNAL] {
            let parsed: Value = serde_json::from_str(error).unwrap();
            assert_eq!(parsed["error"]["code"], -32603);
        }
    }

    #[test]
    fn a_stream_cuts_whichever_list_an_answer_carries() {
        let mut awaited = Awaited::AnyList;
        let text = r#"{"id":"replayed","result":{"resourceTemplates":[{"uriTemplate":"secret/{x}"},{"uriTemplate":"a/{x}"}]}}"#;
        assert_eq!(
            cut_lists(text, &mut awaited, not_secret).unwrap(),
            r#"{"id":"replayed","result":{"resourceTemplates":[{"uriTemplate":"a/{x}"}]}}"#
        );
        // Still awaiting anything: a stream can replay more.
        assert!(matches!(awaited, Awaited::AnyList));
    }

    proptest! {
        /// The cut text reads as the tree filter would have left it: same entries,
        /// same order, every other member unchanged.
        #[test]
        fn matches_filtering_the_parsed_tree(
            names in prop::collection::vec("[a-z\"\\\\\u{e9}\u{1F600}\n]{0,6}", 0..12),
            pretty in any::<bool>(),
        ) {
            let tools: Vec<Value> = names
                .iter()
                .map(|name| json!({"name": format!("{name}x"), "inputSchema": {"type": "object"}}))
                .collect();
            let mut document = json!({"jsonrpc": "2.0", "id": 5, "result": {"tools": tools, "nextCursor": "n"}});
            let text = if pretty {
                serde_json::to_string_pretty(&document).unwrap()
            } else {
                document.to_string()
            };
            let allowed = |_: ListKind, name: &str| name.len().is_multiple_of(2);
            let mut awaited = awaiting(&[(json!(5), ListKind::Tools)]);
            let cut = cut_lists(&text, &mut awaited, allowed);
            let before = document["result"]["tools"].as_array().unwrap().len();
            document["result"]["tools"]
                .as_array_mut()
                .unwrap()
                .retain(|tool| allowed(ListKind::Tools, tool["name"].as_str().unwrap()));
            let after = document["result"]["tools"].as_array().unwrap().len();
            match cut {
                None => prop_assert_eq!(before, after),
                Some(cut) => {
                    prop_assert!(after < before);
                    let parsed: Value = serde_json::from_str(&cut).unwrap();
                    prop_assert_eq!(parsed, document);
                }
            }
        }
    }
}
