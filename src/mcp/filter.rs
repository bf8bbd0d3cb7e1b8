//! List filtering: answers to `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` are cut to the items whose own rules the caller meets,
//! so a model is never offered what it may not use. Everything else in the answer,
//! `nextCursor` and `ttlMs` included, is left as the upstream wrote it, except
//! `cacheScope`: a list that can differ between callers, and a `resources/read`
//! result some caller could be refused, leave as `"private"` so that no shared cache
//! serves one caller's view to another. On a notification stream,
//! `notifications/resources/updated` for a resource the caller may not read is
//! dropped. Calls are still enforced on their own; filtering is about not
//! advertising.
//!
//! An answer that must be looked at and cannot be read strictly (not UTF-8, not
//! JSON, a byte-order mark, duplicate keys) is refused, never passed on: a client's
//! laxer reader could find in it the very entries the filter would have cut.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use serde_json::{Value, json};

use super::envelope::{Envelope, Kind, Message};
use super::sse::{Edit, EventEditor};
use crate::auth::Principal;
use crate::json::scan::{ScanError, Scanner, Visit};
use crate::policy::{Item, ItemKind, Level, Matched, Policy};
use crate::telemetry::metrics::metrics;

/// The 2026-07-28 method that opens a notification stream.
const LISTEN: &str = "subscriptions/listen";
/// The one notification that names an item.
const RESOURCE_UPDATED: &str = "notifications/resources/updated";
/// What `cacheScope` is set to.
const PRIVATE: &str = "\"private\"";

/// Which list an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools/list`: items are tools, by `name`.
    Tools,
    /// `prompts/list`: items are prompts, by `name`.
    Prompts,
    /// `resources/list`: items are resources, by `uri`.
    Resources,
    /// `resources/templates/list`: items are templates, by `uriTemplate`.
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

    pub(crate) fn item_kind(self) -> ItemKind {
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

/// What the filter made of one upstream document (a JSON body, or one SSE event's
/// data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It goes on as the upstream wrote it.
    Unchanged,
    /// It goes on rewritten.
    Edited(String),
    /// A notification the caller may not see: the event carrying it is dropped.
    Dropped,
    /// It cannot be read strictly, so it must not reach the client.
    Refused(Refusal),
}

/// Why an upstream answer was not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not UTF-8.
    NotUtf8,
    /// Not strict JSON (RFC 8259), a leading byte-order mark included.
    NotJson,
    /// An object names one key twice: which one the client would read is unknown.
    DuplicateKey,
    /// Nested deeper than mcpgate reads.
    TooDeep,
    /// A list answer declared as neither JSON nor an event stream.
    ContentType,
    /// A list answer with a `Content-Encoding` (mcpgate asks for none).
    Encoded,
    /// Over the size mcpgate holds in memory, or broken off.
    Incomplete,
    /// A JSON body that is a resource update the caller may not read: a whole
    /// body cannot be dropped like an event.
    Withheld,
    /// Spans the scanner reported did not fall on the text (never expected).
    Internal,
}

impl Refusal {
    /// What the client is told (the JSON-RPC error's message).
    pub fn message(self) -> &'static str {
        match self {
            Self::NotUtf8 => "mcpgate refused an upstream answer that is not UTF-8",
            Self::NotJson => "mcpgate refused an upstream answer that is not strict JSON",
            Self::DuplicateKey => "mcpgate refused an ambiguous upstream message (duplicate keys)",
            Self::TooDeep => "mcpgate refused an upstream message nested too deeply",
            Self::ContentType => {
                "mcpgate refused an upstream list answer that is neither JSON nor an event stream"
            }
            Self::Encoded => "mcpgate refused an upstream answer with a content encoding",
            Self::Incomplete => "the upstream's answer could not be read in full",
            Self::Withheld => "mcpgate withheld an upstream message the caller may not see",
            Self::Internal => "mcpgate could not filter an upstream list answer",
        }
    }

    /// The JSON-RPC error standing in for the refused answer.
    pub fn error(self, id: Option<&Value>) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id.cloned().unwrap_or(Value::Null),
            "error": {"code": -32603, "message": self.message()},
        })
    }
}

/// The answers to look at, and whose eyes they are for.
pub struct ListFilter {
    policy: Arc<Policy>,
    principal: Arc<Principal>,
    /// The `rules:` entries that apply to the principal: their denials are cut too.
    matched: Matched,
    treatment: Treatment,
    awaited: Awaited,
    /// The id of the POST's single request: a refusal answers it.
    reply_id: Option<Value>,
}

/// What is done to which part of an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Treatment {
    /// By [`ListKind::index`]: entries are checked, as the caller may lose some.
    cut: [bool; 4],
    /// By [`ListKind::index`]: `cacheScope` becomes private, as another caller may
    /// see another list.
    private: [bool; 4],
    /// `notifications/resources/updated` is checked against the resource rules.
    updates: bool,
}

impl Treatment {
    fn for_caller(policy: &Policy, principal: &Principal, matched: &Matched) -> Self {
        let mut treatment = Self {
            updates: cuts(policy, principal, matched, ItemKind::Resource),
            ..Self::default()
        };
        for kind in ListKind::ALL {
            let item_kind = kind.item_kind();
            if let Some(cut) = treatment.cut.get_mut(kind.index()) {
                *cut = cuts(policy, principal, matched, item_kind);
            }
            if let Some(private) = treatment.private.get_mut(kind.index()) {
                *private = policy.could_filter(item_kind);
            }
        }
        treatment
    }

    fn cuts(&self, kind: ListKind) -> bool {
        self.cut.get(kind.index()).copied().unwrap_or(false)
    }

    fn privatizes(&self, kind: ListKind) -> bool {
        self.private.get(kind.index()).copied().unwrap_or(false)
    }

    /// An answer to a list request of this kind needs looking at.
    fn looks_at(&self, kind: ListKind) -> bool {
        self.cuts(kind) || self.privatizes(kind)
    }
}

enum Awaited {
    /// A POST's answers: the requests it made, by id.
    Ids {
        /// Answers to look at.
        pending: Vec<(Value, Answer)>,
        /// Requests whose answers are left alone (a `tools/call` in a batch).
        others: Vec<Value>,
    },
    /// A stream that never ends by itself: a GET stream (which can replay a POST's
    /// answers on resumption with `Last-Event-ID`, whose requests this filter never
    /// saw) or a `subscriptions/listen` stream. Every answer shaped like a list is cut.
    Stream,
}

/// What an awaited answer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    List(ListKind),
    /// A `resources/read` some other caller could be refused.
    Read,
}

/// What a message turned out to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    Awaited(Answer),
    /// A request of the POST this filter leaves alone.
    Other,
    /// Nothing this filter knows of: a stream's, or an id that is not exactly one
    /// the POST sent (`"1"` for `1`, `1.0`), which some clients still match to it.
    Unknown,
}

/// The list a request asks for, if it is one (for filtering the answer).
fn list_asked(message: &Message) -> Option<ListKind> {
    if message.kind != Kind::Request {
        return None;
    }
    match message.target().level {
        Level::ToolsList => Some(ListKind::Tools),
        Level::PromptsList => Some(ListKind::Prompts),
        Level::ResourcesList => Some(ListKind::Resources),
        Level::ResourcesTemplatesList => Some(ListKind::ResourceTemplates),
        _ => None,
    }
}

impl ListFilter {
    /// `None` when no answer to this request needs looking at: no list request of a
    /// kind that any rule can filter, no `resources/read` any rule can refuse, no
    /// `subscriptions/listen` stream that may carry updates of resources the caller
    /// may not read.
    pub fn for_request(
        policy: &Arc<Policy>,
        principal: &Arc<Principal>,
        matched: &Matched,
        envelope: &Envelope,
    ) -> Option<Self> {
        // Most POSTs (a `tools/call`) need nothing: found without weighing any rule.
        let concerned = envelope.messages.iter().any(|message| {
            list_asked(message).is_some()
                || message.target().level == Level::ResourcesRead
                || message.method() == Some(LISTEN)
        });
        if !concerned {
            return None;
        }
        let treatment = Treatment::for_caller(policy, principal, matched);
        let mut pending = Vec::new();
        let mut others = Vec::new();
        let mut listens = false;
        for message in &envelope.messages {
            let Some(id) = message.id().filter(|_| message.method().is_some()) else {
                continue;
            };
            listens |= message.method() == Some(LISTEN);
            let target = message.target();
            let answer = match (list_asked(message), target.level, target.item) {
                (Some(kind), _, _) => treatment.looks_at(kind).then_some(Answer::List(kind)),
                (None, Level::ResourcesRead, Some(Item::Resource(uri))) => {
                    policy.read_could_be_refused(uri).then_some(Answer::Read)
                }
                _ => None,
            };
            match answer {
                Some(answer) => pending.push((id.clone(), answer)),
                None => others.push(id.clone()),
            }
        }
        let awaited = if listens && treatment.updates {
            Awaited::Stream
        } else if !pending.is_empty() {
            Awaited::Ids { pending, others }
        } else {
            return None;
        };
        Some(Self {
            policy: Arc::clone(policy),
            principal: Arc::clone(principal),
            matched: matched.clone(),
            treatment,
            awaited,
            reply_id: envelope.reply_id().cloned(),
        })
    }

    /// For a GET stream: `None` when nothing on it could need looking at.
    pub fn for_stream(
        policy: &Arc<Policy>,
        principal: &Arc<Principal>,
        matched: &Matched,
    ) -> Option<Self> {
        let treatment = Treatment::for_caller(policy, principal, matched);
        let any = treatment.updates || ListKind::ALL.iter().any(|kind| treatment.looks_at(*kind));
        any.then(|| Self {
            policy: Arc::clone(policy),
            principal: Arc::clone(principal),
            matched: matched.clone(),
            treatment,
            awaited: Awaited::Stream,
            reply_id: None,
        })
    }

    /// Every awaited answer has been seen (never, on a stream).
    pub fn is_done(&self) -> bool {
        match &self.awaited {
            Awaited::Ids { pending, .. } => pending.is_empty(),
            Awaited::Stream => false,
        }
    }

    /// The id a refusal answers: the POST's single request's.
    pub fn reply_id(&self) -> Option<&Value> {
        self.reply_id.as_ref()
    }

    /// Looks at one JSON document (a message or a batch of messages).
    pub fn filter_document(&mut self, document: &[u8]) -> Outcome {
        // A client that decodes leniently (U+FFFD) would read a JSON document here,
        // possibly the list itself.
        match std::str::from_utf8(document) {
            Ok(text) => self.filter_text(text),
            Err(_) => Outcome::Refused(Refusal::NotUtf8),
        }
    }

    /// As [`Self::filter_document`], for text.
    pub fn filter_text(&mut self, text: &str) -> Outcome {
        let policy = &self.policy;
        let granted = policy.grant(&self.principal.scopes);
        let rules = policy.principal_rules();
        let matched = &self.matched;
        decide(text, &mut self.awaited, &self.treatment, |kind, name| {
            let item = kind.item(name);
            policy.may_use(&granted, item) && rules.permits(matched, item)
        })
    }
}

/// Whether lists of `kind` may lose entries for this caller: scope rules (unless the
/// caller holds every scope) or a matched `rules:` entry about that kind.
fn cuts(policy: &Policy, principal: &Principal, matched: &Matched, kind: ItemKind) -> bool {
    (policy.filters(kind) && !principal.scopes.is_all())
        || policy.principal_rules().restricts(matched, kind)
}

/// Decides what becomes of `text`: refused entries are cut out of the lists and
/// `cacheScope` set where the treatment says, without building a tree (the document
/// is scanned once and the original text spliced, so what is kept reaches the
/// client byte for byte as the upstream wrote it).
fn decide(
    text: &str,
    awaited: &mut Awaited,
    treatment: &Treatment,
    allowed: impl Fn(ListKind, &str) -> bool,
) -> Outcome {
    let messages = match scan_messages(text, &treatment.cut) {
        Ok(messages) => messages,
        // Each could read one way here and another way in the client.
        Err(ScanError::DuplicateKey(_)) => return Outcome::Refused(Refusal::DuplicateKey),
        Err(ScanError::TooDeep) => return Outcome::Refused(Refusal::TooDeep),
        Err(ScanError::Syntax(_)) => return Outcome::Refused(Refusal::NotJson),
    };
    let mut splices = Vec::new();
    let alone = messages.len() == 1;
    for message in messages {
        if treatment.updates
            && message.method.as_deref() == Some(RESOURCE_UPDATED)
            && !message
                .uri
                .as_deref()
                .is_some_and(|uri| allowed(ListKind::Resources, uri))
        {
            // Dropping a batch would drop the answers in it too: the client would
            // wait for them forever.
            return if alone {
                Outcome::Dropped
            } else {
                Outcome::Refused(Refusal::Withheld)
            };
        }
        let answers = answers(text, awaited, &message);
        if let Some(result) = message.result {
            edit_result(result, answers, treatment, &allowed, text, &mut splices);
        }
    }
    if splices.is_empty() {
        return Outcome::Unchanged;
    }
    splices.sort_by_key(|splice| splice.range.start);
    match splice(text, &splices) {
        Some(edited) => Outcome::Edited(edited),
        None => Outcome::Refused(Refusal::Internal),
    }
}

/// What `message` answers; an awaited answer is no longer awaited.
fn answers(text: &str, awaited: &mut Awaited, message: &ScannedMessage<'_>) -> Answers {
    let Awaited::Ids { pending, others } = awaited else {
        return Answers::Unknown;
    };
    // A request from the server is not an answer, whatever it carries.
    if message.method.is_some() {
        return Answers::Unknown;
    }
    let Some(id) = message
        .id
        .as_ref()
        .and_then(|span| text.get(span.clone()))
        .and_then(|id| serde_json::from_str::<Value>(id).ok())
    else {
        return Answers::Unknown;
    };
    if let Some(position) = pending.iter().position(|(awaited, _)| *awaited == id) {
        return Answers::Awaited(pending.swap_remove(position).1);
    }
    if others.contains(&id) {
        return Answers::Other;
    }
    Answers::Unknown
}

/// The splices one `result` needs.
fn edit_result(
    result: ScannedResult<'_>,
    answers: Answers,
    treatment: &Treatment,
    allowed: &impl Fn(ListKind, &str) -> bool,
    text: &str,
    splices: &mut Vec<Splice>,
) {
    let private = match answers {
        Answers::Other => return,
        Answers::Awaited(Answer::List(kind)) => treatment.privatizes(kind),
        Answers::Awaited(Answer::Read) | Answers::Unknown => true,
    };
    // Whatever the answer claims to be, a list the caller could lose entries of is
    // cut: what a client takes for a list answer is its own parser's business.
    for (kind, list) in ListKind::ALL.into_iter().zip(result.lists) {
        let Some(array) = list.array else {
            continue;
        };
        if !treatment.cuts(kind) {
            continue;
        }
        let total = list.entries.len();
        // An entry without a readable name cannot be matched against the rules, so
        // it is not shown.
        let kept: Vec<Range<usize>> = list
            .entries
            .into_iter()
            .filter(|entry| {
                entry
                    .name
                    .as_deref()
                    .is_some_and(|name| allowed(kind, name))
            })
            .map(|entry| entry.span)
            .collect();
        if kept.len() != total {
            splices.push(Splice {
                range: array,
                with: Replacement::Entries(kept),
            });
        }
    }
    // An interim multi-round-trip result carries no caching hints.
    if !private || result.input_required {
        return;
    }
    match result.cache_scope {
        Some(span) if text.get(span.clone()) != Some(PRIVATE) => {
            splices.push(Splice {
                range: span,
                with: Replacement::Text(PRIVATE),
            });
        }
        // A 2026-07-28 server must send it; one that did not is given the safe
        // value. An older answer (no `resultType`, no `ttlMs`) has no caching hints
        // to correct, and an unknown message is not given members it never had.
        None if result.speaks_caching && matches!(answers, Answers::Awaited(_)) => {
            let at = result.open + 1;
            splices.push(Splice {
                range: at..at,
                with: Replacement::Text(if result.empty {
                    "\"cacheScope\":\"private\""
                } else {
                    "\"cacheScope\":\"private\","
                }),
            });
        }
        _ => {}
    }
}

/// One span of the text to replace.
struct Splice {
    range: Range<usize>,
    with: Replacement,
}

enum Replacement {
    /// A list array, keeping only these entries (spans of the text).
    Entries(Vec<Range<usize>>),
    Text(&'static str),
}

/// What the scan saw of one message.
#[derive(Default)]
struct ScannedMessage<'a> {
    /// The method, when it is a string (a request or a notification).
    method: Option<Cow<'a, str>>,
    id: Option<Range<usize>>,
    /// `params.uri`, when it is a string.
    uri: Option<Cow<'a, str>>,
    /// `result`, when it is an object.
    result: Option<ScannedResult<'a>>,
}

/// What the scan saw of a `result` object.
#[derive(Default)]
struct ScannedResult<'a> {
    /// Offset of its `{`.
    open: usize,
    /// It has no member.
    empty: bool,
    /// The span of the value of `cacheScope`.
    cache_scope: Option<Range<usize>>,
    /// `resultType` is `"input_required"`.
    input_required: bool,
    /// It carries `resultType` or `ttlMs` (a 2026-07-28 answer).
    speaks_caching: bool,
    /// By [`ListKind::index`].
    lists: [ScannedList<'a>; 4],
}

/// `result.<array>` of one list kind.
#[derive(Default)]
struct ScannedList<'a> {
    /// Its span, when it is an array.
    array: Option<Range<usize>>,
    entries: Vec<ScannedEntry<'a>>,
}

struct ScannedEntry<'a> {
    span: Range<usize>,
    /// The member rules match (`name`, `uri`, `uriTemplate`), when it is a string.
    name: Option<Cow<'a, str>>,
}

/// Scans a message or a batch, validating all of it. The entries of the lists
/// `cut` says nothing about are only validated.
fn scan_messages<'a>(text: &'a str, cut: &[bool; 4]) -> Result<Vec<ScannedMessage<'a>>, ScanError> {
    let mut scanner = Scanner::new(text);
    let mut messages = Vec::new();
    if scanner.peek() == Some(b'[') {
        scanner.array(0, |scanner, depth| {
            messages.push(scan_message(scanner, depth, cut)?);
            Ok(Visit::Read)
        })?;
    } else {
        messages.push(scan_message(&mut scanner, 0, cut)?);
    }
    scanner.finish()?;
    Ok(messages)
}

fn scan_message<'a>(
    scanner: &mut Scanner<'a>,
    depth: usize,
    cut: &[bool; 4],
) -> Result<ScannedMessage<'a>, ScanError> {
    let mut message = ScannedMessage::default();
    if scanner.peek() != Some(b'{') {
        scanner.skip_value(depth)?;
        return Ok(message);
    }
    scanner.object(depth, |scanner, key, depth| match key {
        "method" if scanner.peek() == Some(b'"') => {
            message.method = Some(scanner.string()?);
            Ok(Visit::Read)
        }
        "id" => {
            message.id = Some(scanner.skip_value(depth)?);
            Ok(Visit::Read)
        }
        "params" if scanner.peek() == Some(b'{') => {
            scanner.object(depth, |scanner, key, _| {
                if key == "uri" && scanner.peek() == Some(b'"') {
                    message.uri = Some(scanner.string()?);
                    return Ok(Visit::Read);
                }
                Ok(Visit::Skip)
            })?;
            Ok(Visit::Read)
        }
        "result" if scanner.peek() == Some(b'{') => {
            message.result = Some(scan_result(scanner, depth, cut)?);
            Ok(Visit::Read)
        }
        _ => Ok(Visit::Skip),
    })?;
    Ok(message)
}

fn scan_result<'a>(
    scanner: &mut Scanner<'a>,
    depth: usize,
    cut: &[bool; 4],
) -> Result<ScannedResult<'a>, ScanError> {
    let mut result = ScannedResult {
        open: scanner.position(),
        empty: true,
        ..ScannedResult::default()
    };
    scanner.object(depth, |scanner, key, depth| {
        result.empty = false;
        match key {
            "cacheScope" => {
                result.cache_scope = Some(scanner.skip_value(depth)?);
                return Ok(Visit::Read);
            }
            "ttlMs" => {
                result.speaks_caching = true;
                return Ok(Visit::Skip);
            }
            "resultType" => {
                result.speaks_caching = true;
                if scanner.peek() == Some(b'"') {
                    result.input_required = scanner.string()? == "input_required";
                    return Ok(Visit::Read);
                }
                return Ok(Visit::Skip);
            }
            _ => {}
        }
        let Some(kind) = ListKind::ALL
            .into_iter()
            .find(|kind| kind.fields().0 == key)
        else {
            return Ok(Visit::Skip);
        };
        let wanted = cut.get(kind.index()).copied().unwrap_or(false);
        let Some(list) = result.lists.get_mut(kind.index()) else {
            return Ok(Visit::Skip);
        };
        if !wanted || scanner.peek() != Some(b'[') {
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
    })?;
    Ok(result)
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

/// The document with each splice applied, in document order. `None` if a span
/// does not fall on the text (never, for spans the scanner reported).
fn splice(text: &str, splices: &[Splice]) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut copied = 0;
    for splice in splices {
        out.push_str(text.get(copied..splice.range.start)?);
        match &splice.with {
            Replacement::Entries(kept) => {
                out.push('[');
                for (index, entry) in kept.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(text.get(entry.clone())?);
                }
                out.push(']');
            }
            Replacement::Text(replacement) => out.push_str(replacement),
        }
        copied = splice.range.end;
    }
    out.push_str(text.get(copied..)?);
    Some(out)
}

/// In an SSE answer each event carries one JSON-RPC message (or a batch); only the
/// awaited answers are looked at, and once they have passed the stream flows
/// untouched. An event that cannot be read is replaced by a JSON-RPC error.
impl EventEditor for ListFilter {
    fn edit(&mut self, data: &[u8]) -> Edit {
        // A client dispatches no event with empty data (the priming event of a
        // resumable stream is one).
        if data.is_empty() {
            return Edit::Keep;
        }
        match self.filter_document(data) {
            Outcome::Unchanged => Edit::Keep,
            Outcome::Edited(edited) => Edit::Replace(edited),
            Outcome::Dropped => Edit::Drop,
            Outcome::Refused(refusal) => {
                tracing::warn!(
                    "upstream event refused while filtering: {}",
                    refusal.message()
                );
                metrics().upstream_error("unreadable");
                Edit::Replace(refusal.error(self.reply_id()).to_string())
            }
        }
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
        Awaited::Ids {
            pending: ids
                .iter()
                .map(|(id, kind)| (id.clone(), Answer::List(*kind)))
                .collect(),
            others: Vec::new(),
        }
    }

    /// Everything cut, every cacheScope private, every update checked.
    const EVERYTHING: Treatment = Treatment {
        cut: [true; 4],
        private: [true; 4],
        updates: true,
    };

    /// `decide` for the tests that only cut: `None` when unchanged.
    fn cut_lists(
        text: &str,
        awaited: &mut Awaited,
        allowed: impl Fn(ListKind, &str) -> bool,
    ) -> Option<String> {
        match decide(text, awaited, &EVERYTHING, allowed) {
            Outcome::Unchanged => None,
            Outcome::Edited(edited) => Some(edited),
            other => panic!("{text}: {other:?}"),
        }
    }

    fn pending(awaited: &Awaited) -> usize {
        match awaited {
            Awaited::Ids { pending, .. } => pending.len(),
            Awaited::Stream => usize::MAX,
        }
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
        assert_eq!(pending(&awaited), 0);
    }

    #[test]
    fn cuts_each_awaited_answer_of_a_batch_and_nothing_else() {
        let text = r#"[{"jsonrpc":"2.0","id":"a","result":{"prompts":[{"name":"secret-p"},{"name":"p"}]}},{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"secret"}]}},{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///x"},{"uri":"secret:///y"}]}}]"#;
        let Awaited::Ids { pending, .. } = awaiting(&[
            (json!("a"), ListKind::Prompts),
            (json!(2), ListKind::Resources),
        ]) else {
            unreachable!()
        };
        // The batch's `tools/call` is 9: its answer is not a list answer.
        let mut awaited = Awaited::Ids {
            pending,
            others: vec![json!(9)],
        };
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
    fn every_list_shaped_result_is_cut_whatever_it_claims_to_answer() {
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
        for (text, expected) in [
            // A request from the server, shaped like an answer.
            (
                r#"{"id":1,"method":"x","result":{"tools":[{"name":"secret"}]}}"#,
                r#"{"id":1,"method":"x","result":{"tools":[]}}"#,
            ),
            // Ids that are not exactly the one awaited, which some clients match to it.
            (
                r#"{"id":"1","result":{"tools":[{"name":"secret"},{"name":"a"}]}}"#,
                r#"{"id":"1","result":{"tools":[{"name":"a"}]}}"#,
            ),
            (
                r#"{"id":1.0,"result":{"prompts":[{"name":"secret"}]}}"#,
                r#"{"id":1.0,"result":{"prompts":[]}}"#,
            ),
            // No id at all; and two lists in one result.
            (
                r#"{"result":{"resources":[{"uri":"secret:a"}],"tools":[{"name":"secret"}]}}"#,
                r#"{"result":{"resources":[],"tools":[]}}"#,
            ),
        ] {
            assert_eq!(
                cut_lists(text, &mut awaited, not_secret).as_deref(),
                Some(expected)
            );
        }
        assert_eq!(pending(&awaited), 1, "none of them was the answer");
        let fine = r#"{"id":1,"result":{"tools":[{"name":"echo"}]}}"#;
        assert_eq!(cut_lists(fine, &mut awaited, not_secret), None);
        assert_eq!(pending(&awaited), 0);
    }

    #[test]
    fn the_answer_to_another_request_of_the_post_is_left_alone() {
        let mut awaited = Awaited::Ids {
            pending: vec![(json!(1), Answer::List(ListKind::Tools))],
            others: vec![json!(9)],
        };
        let text = r#"{"id":9,"result":{"tools":[{"name":"secret"}],"cacheScope":"public"}}"#;
        assert_eq!(cut_lists(text, &mut awaited, not_secret), None);
        // Not an answer, so the list answer is still awaited.
        assert_eq!(pending(&awaited), 1);
    }

    #[test]
    fn what_cannot_be_read_strictly_is_refused() {
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
        let hidden = r#"{"id":1,"result":{"tools":[{"name":"secret"}]}}"#;
        for (text, refusal) in [
            (format!("\u{feff}{hidden}"), Refusal::NotJson),
            (hidden.trim_end_matches('}').to_owned(), Refusal::NotJson),
            (format!("{hidden} x"), Refusal::NotJson),
            (hidden.replace('1', "NaN"), Refusal::NotJson),
            ("\u{1}".to_owned(), Refusal::NotJson),
            (String::new(), Refusal::NotJson),
        ] {
            assert_eq!(
                decide(&text, &mut awaited, &EVERYTHING, not_secret),
                Outcome::Refused(refusal),
                "{text}"
            );
        }
        assert_eq!(pending(&awaited), 1, "a refusal answers nothing");
    }

    /// A control character anywhere in a list answer (in a name, a description, a
    /// key, between tokens), wherever it falls relative to the scanner's eight-byte
    /// words: refused, as the strict tree parser refuses it.
    #[test]
    fn a_control_character_anywhere_is_refused() {
        let text = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","description":"Ech\u00f6 é😀 a longer description"},{"name":"secret_x","inputSchema":{"type":"object"}}]}}"#;
        for at in 0..text.len() {
            for byte in [0x00, 0x0b, 0x1f] {
                let mut bytes = text.as_bytes().to_vec();
                bytes[at] = byte;
                // Replacing part of a multi-byte character is a UTF-8 error, which
                // `filter_document` refuses before any scan.
                let Ok(corrupted) = String::from_utf8(bytes) else {
                    continue;
                };
                let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
                assert_eq!(
                    decide(&corrupted, &mut awaited, &EVERYTHING, not_secret),
                    Outcome::Refused(Refusal::NotJson),
                    "{byte:#x} at {at}"
                );
                assert!(crate::json::from_slice(corrupted.as_bytes()).is_err());
            }
        }
    }

    #[test]
    fn an_ambiguous_or_over_deep_answer_is_refused() {
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools)]);
        let duplicate = r#"{"id":1,"result":{"tools":[{"name":"echo","name":"secret"}]}}"#;
        assert_eq!(
            decide(duplicate, &mut awaited, &EVERYTHING, not_secret),
            Outcome::Refused(Refusal::DuplicateKey)
        );
        let deep = format!(
            r#"{{"id":1,"result":{{"tools":[{{"name":"echo","x":{}{}}}]}}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        assert_eq!(
            decide(&deep, &mut awaited, &EVERYTHING, not_secret),
            Outcome::Refused(Refusal::TooDeep)
        );
        let error = Refusal::DuplicateKey.error(Some(&json!("a")));
        assert_eq!(
            error,
            json!({"jsonrpc": "2.0", "id": "a", "error": {"code": -32603, "message": "mcpgate refused an ambiguous upstream message (duplicate keys)"}})
        );
        assert_eq!(Refusal::NotUtf8.error(None)["id"], Value::Null);
    }

    #[test]
    fn cache_scope_becomes_private_and_ttl_stays() {
        let mut awaited = awaiting(&[(json!(1), ListKind::Tools), (json!(2), ListKind::Prompts)]);
        // Nothing to cut for this caller; the scope still changes.
        let text = r#"{"id":1,"result":{"tools":[{"name":"echo"}],"ttlMs":60000,"cacheScope" : "public","resultType":"complete"}}"#;
        assert_eq!(
            cut_lists(text, &mut awaited, not_secret).as_deref(),
            Some(
                r#"{"id":1,"result":{"tools":[{"name":"echo"}],"ttlMs":60000,"cacheScope" : "private","resultType":"complete"}}"#
            )
        );
        // Already private: left as written.
        let private = r#"{"id":2,"result":{"prompts":[],"ttlMs":0,"cacheScope":"private"}}"#;
        assert_eq!(cut_lists(private, &mut awaited, not_secret), None);
    }

    #[test]
    fn a_missing_cache_scope_is_added_only_to_a_2026_answer() {
        let mut awaited = awaiting(&[
            (json!(1), ListKind::Tools),
            (json!(2), ListKind::Tools),
            (json!(3), ListKind::Tools),
        ]);
        let new =
            r#"{"id":1,"result":{"resultType":"complete","ttlMs":5,"tools":[{"name":"secret"}]}}"#;
        assert_eq!(
            cut_lists(new, &mut awaited, not_secret).as_deref(),
            Some(
                r#"{"id":1,"result":{"cacheScope":"private","resultType":"complete","ttlMs":5,"tools":[]}}"#
            )
        );
        // An older server's answer has no caching hints to correct.
        let old = r#"{"id":2,"result":{"tools":[]}}"#;
        assert_eq!(cut_lists(old, &mut awaited, not_secret), None);
        // An interim multi-round-trip result carries none either.
        let interim = r#"{"id":3,"result":{"resultType":"input_required","cacheScope":"public","inputRequests":{}}}"#;
        assert_eq!(cut_lists(interim, &mut awaited, not_secret), None);
        // An unknown message's cacheScope is made private, but none is added.
        let mut stream = Awaited::Stream;
        assert_eq!(
            cut_lists(
                r#"{"id":8,"result":{"resultType":"complete","contents":[]}}"#,
                &mut stream,
                not_secret
            ),
            None
        );
        assert_eq!(
            cut_lists(
                r#"{"id":8,"result":{"contents":[],"cacheScope":"public"}}"#,
                &mut stream,
                not_secret
            )
            .as_deref(),
            Some(r#"{"id":8,"result":{"contents":[],"cacheScope":"private"}}"#)
        );
    }

    #[test]
    fn only_the_kinds_the_treatment_names_are_touched() {
        // A caller who holds every scope, of a policy with tool rules only.
        let treatment = Treatment {
            cut: [false; 4],
            private: [true, false, false, false],
            updates: false,
        };
        let mut awaited = Awaited::Ids {
            pending: vec![
                (json!(1), Answer::List(ListKind::Tools)),
                (json!(2), Answer::List(ListKind::Prompts)),
            ],
            others: Vec::new(),
        };
        let tools = r#"{"id":1,"result":{"tools":[{"name":"secret"}],"cacheScope":"public"}}"#;
        assert_eq!(
            decide(tools, &mut awaited, &treatment, not_secret),
            Outcome::Edited(
                r#"{"id":1,"result":{"tools":[{"name":"secret"}],"cacheScope":"private"}}"#.into()
            )
        );
        let prompts = r#"{"id":2,"result":{"prompts":[{"name":"secret"}],"cacheScope":"public"}}"#;
        assert_eq!(
            decide(prompts, &mut awaited, &treatment, not_secret),
            Outcome::Unchanged
        );
    }

    #[test]
    fn a_read_result_becomes_private() {
        let mut awaited = Awaited::Ids {
            pending: vec![(json!(4), Answer::Read)],
            others: Vec::new(),
        };
        let text = r#"{"jsonrpc":"2.0","id":4,"result":{"contents":[{"uri":"secret:x","text":"t"}],"ttlMs":10,"cacheScope":"public"}}"#;
        assert_eq!(
            cut_lists(text, &mut awaited, not_secret).as_deref(),
            Some(
                r#"{"jsonrpc":"2.0","id":4,"result":{"contents":[{"uri":"secret:x","text":"t"}],"ttlMs":10,"cacheScope":"private"}}"#
            )
        );
        assert_eq!(pending(&awaited), 0);
    }

    #[test]
    fn updates_of_resources_the_caller_may_not_read_are_dropped() {
        let mut stream = Awaited::Stream;
        let update = |uri: &str| {
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": 1}, "uri": uri}}).to_string()
        };
        assert_eq!(
            decide(&update("secret:x"), &mut stream, &EVERYTHING, not_secret),
            Outcome::Dropped
        );
        assert_eq!(
            decide(&update("file:///a"), &mut stream, &EVERYTHING, not_secret),
            Outcome::Unchanged
        );
        // Escaped, the URI is still read as the client reads it.
        let escaped = update("secret:x").replace("secret", "\\u0073ecret");
        assert_eq!(
            decide(&escaped, &mut stream, &EVERYTHING, not_secret),
            Outcome::Dropped
        );
        // In a batch, the answers beside it would be lost with it: refused instead.
        let batch = format!(
            r#"[{},{{"jsonrpc":"2.0","id":1,"result":{{}}}}]"#,
            update("secret:x")
        );
        assert_eq!(
            decide(&batch, &mut stream, &EVERYTHING, not_secret),
            Outcome::Refused(Refusal::Withheld)
        );
        // Without a readable URI it cannot be checked.
        let no_uri =
            r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":7}}"#;
        assert_eq!(
            decide(no_uri, &mut stream, &EVERYTHING, not_secret),
            Outcome::Dropped
        );
        // List-changed notifications name no item.
        let changed = r#"{"jsonrpc":"2.0","method":"notifications/resources/list_changed"}"#;
        assert_eq!(
            decide(changed, &mut stream, &EVERYTHING, not_secret),
            Outcome::Unchanged
        );
        // Without `updates`, nothing is dropped.
        let lists_only = Treatment {
            updates: false,
            ..EVERYTHING
        };
        assert_eq!(
            decide(&update("secret:x"), &mut stream, &lists_only, not_secret),
            Outcome::Unchanged
        );
    }

    #[test]
    fn a_stream_cuts_whichever_list_an_answer_carries() {
        let mut awaited = Awaited::Stream;
        let text = r#"{"id":"replayed","result":{"resourceTemplates":[{"uriTemplate":"secret/{x}"},{"uriTemplate":"a/{x}"}]}}"#;
        assert_eq!(
            cut_lists(text, &mut awaited, not_secret).unwrap(),
            r#"{"id":"replayed","result":{"resourceTemplates":[{"uriTemplate":"a/{x}"}]}}"#
        );
        // Still awaiting anything: a stream can replay more.
        assert!(matches!(awaited, Awaited::Stream));
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
