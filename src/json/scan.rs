//! A strict JSON scanner that borrows from the document and builds nothing: it
//! validates the grammar (RFC 8259), refuses duplicate keys and deep nesting like
//! [`super::from_slice`], and lets a caller pick out the few members it needs with
//! their byte spans. Written here because serde_json has no span-reporting reader
//! and building a `Value` tree for a 1,000-tool list only to cut some entries out
//! costs several times the scan itself (docs/BENCHMARKS.md): the caller can splice
//! the original text instead of serialising a tree.

use std::borrow::Cow;
use std::ops::Range;

use super::MAX_DEPTH;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// An object names this key twice (the unescaped key).
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// Objects and arrays nested past [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Not RFC 8259 JSON; the byte offset where reading stopped.
    #[error("invalid JSON at byte {0}")]
    Syntax(usize),
}

/// Up to this many keys, an object's keys are compared as they arrive.
const LINEAR_KEY_CHECK: usize = 16;

/// What a member or element callback did with the value in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// The callback read the value itself.
    Read,
    /// The scanner should skip (and validate) it.
    Skip,
}

/// A cursor over one document.
pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    /// Keys of the objects being scanned, innermost last; each object checks its own
    /// slice for duplicates when it closes.
    keys: Vec<Cow<'a, str>>,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            keys: Vec::new(),
        }
    }

    /// The text of a span this scanner reported.
    pub fn slice(&self, span: &Range<usize>) -> Result<&'a str, ScanError> {
        self.text
            .get(span.clone())
            .ok_or(ScanError::Syntax(span.start))
    }

    /// The next significant byte, after whitespace, without consuming it.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.byte()
    }

    /// The offset of the next significant byte.
    pub fn position(&mut self) -> usize {
        self.skip_whitespace();
        self.pos
    }

    /// The offset just past the last value scanned.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Only whitespace may follow the value just scanned.
    pub fn finish(mut self) -> Result<(), ScanError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.syntax()),
        }
    }

    /// Skips one value of any kind, validating it; its span.
    pub fn skip_value(&mut self, depth: usize) -> Result<Range<usize>, ScanError> {
        let start = self.position();
        match self.byte() {
            Some(b'{') => self.object(depth, |_, _, _| Ok(Visit::Skip))?,
            Some(b'[') => self.array(depth, |_, _| Ok(Visit::Skip))?,
            Some(b'"') => {
                self.raw_string()?;
            }
            Some(b't') => self.literal(b"true")?,
            Some(b'f') => self.literal(b"false")?,
            Some(b'n') => self.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.syntax()),
        }
        Ok(start..self.pos)
    }

    /// Scans an object, handing each member's key to `member` with the scanner
    /// positioned on its value and the depth that value is at.
    pub fn object<F>(&mut self, depth: usize, mut member: F) -> Result<(), ScanError>
    where
        F: FnMut(&mut Self, &str, usize) -> Result<Visit, ScanError>,
    {
        let inner = Self::nested(depth)?;
        self.expect(b'{')?;
        let first_key = self.keys.len();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.syntax());
            }
            let key = self.string()?;
            self.expect(b':')?;
            if member(self, &key, inner)? == Visit::Skip {
                self.skip_value(inner)?;
            }
            // Small objects (nearly all) are checked as each key arrives; a large
            // one is sorted once at its end instead of compared pairwise.
            let own = self.keys.get(first_key..).unwrap_or_default();
            if own.len() < LINEAR_KEY_CHECK && own.contains(&key) {
                self.keys.truncate(first_key);
                return Err(ScanError::DuplicateKey(key.into_owned()));
            }
            self.keys.push(key);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.syntax()),
            }
        }
        let own = self.keys.get_mut(first_key..).unwrap_or_default();
        let mut duplicate = None;
        if own.len() > LINEAR_KEY_CHECK {
            own.sort_unstable();
            duplicate = own
                .windows(2)
                .find(|pair| pair.first() == pair.last())
                .and_then(|pair| pair.first())
                .map(|key| key.to_string());
        }
        self.keys.truncate(first_key);
        match duplicate {
            Some(key) => Err(ScanError::DuplicateKey(key)),
            None => Ok(()),
        }
    }

    /// Scans an array, handing each element to `element` with the depth it is at.
    pub fn array<F>(&mut self, depth: usize, mut element: F) -> Result<(), ScanError>
    where
        F: FnMut(&mut Self, usize) -> Result<Visit, ScanError>,
    {
        let inner = Self::nested(depth)?;
        self.expect(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if element(self, inner)? == Visit::Skip {
                self.skip_value(inner)?;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// Reads a string, unescaped; borrowed when it holds no escape.
    pub fn string(&mut self) -> Result<Cow<'a, str>, ScanError> {
        let (raw, escaped) = self.raw_string()?;
        if escaped {
            unescape(raw).map(Cow::Owned).ok_or(self.syntax())
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    /// Consumes a string; its contents as written, and whether they hold an escape.
    fn raw_string(&mut self) -> Result<(&'a str, bool), ScanError> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        // A local cursor: the loop is the scanner's hottest, and `self.pos` would be
        // stored on every byte.
        let mut pos = start;
        let mut escaped = false;
        loop {
            pos = skip_plain_string_bytes(bytes, pos);
            match bytes.get(pos) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    pos = escape_end(bytes, pos + 1).ok_or(ScanError::Syntax(pos))?;
                }
                // A control character, which must be escaped (RFC 8259 §7), or the
                // end of the text.
                _ => return Err(ScanError::Syntax(pos)),
            }
        }
        let raw = self.slice(&(start..pos))?;
        self.pos = pos + 1;
        Ok((raw, escaped))
    }

    fn number(&mut self) -> Result<(), ScanError> {
        let bytes = self.text.as_bytes();
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos > from
        };
        let mut pos = self.pos;
        if bytes.get(pos) == Some(&b'-') {
            pos += 1;
        }
        match bytes.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                digits(&mut pos);
            }
            _ => return Err(ScanError::Syntax(pos)),
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if !digits(&mut pos) {
                return Err(ScanError::Syntax(pos));
            }
        }
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if !digits(&mut pos) {
                return Err(ScanError::Syntax(pos));
            }
        }
        self.pos = pos;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        let end = self.pos + word.len();
        if self.text.as_bytes().get(self.pos..end) != Some(word) {
            return Err(self.syntax());
        }
        self.pos = end;
        Ok(())
    }

    fn expect(&mut self, byte: u8) -> Result<(), ScanError> {
        if self.peek() != Some(byte) {
            return Err(self.syntax());
        }
        self.pos += 1;
        Ok(())
    }

    fn nested(depth: usize) -> Result<usize, ScanError> {
        if depth >= MAX_DEPTH {
            return Err(ScanError::TooDeep);
        }
        Ok(depth + 1)
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        while matches!(bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn syntax(&self) -> ScanError {
        ScanError::Syntax(self.pos)
    }
}

/// Bytes that may stand unescaped in a string: all but `"`, `\` and controls.
// Built at compile time: an index out of range would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
static PLAIN: [bool; 256] = {
    let mut plain = [true; 256];
    let mut byte = 0;
    while byte < 0x20 {
        plain[byte] = false;
        byte += 1;
    }
    plain[b'"' as usize] = false;
    plain[b'\\' as usize] = false;
    plain
};

/// The first offset from `pos` that is not plain string content. Most strings in
/// a list answer are short keys and names, for which a table look-up per byte is
/// cheapest; a long run (descriptions, schemas) goes on eight bytes at a time. A
/// word is skipped only when none of its bytes is `"`, `\` or a control character;
/// a word that may hold one is left to the byte loop, so a false alarm costs time,
/// never correctness.
fn skip_plain_string_bytes(bytes: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    const SHORT: usize = 16;
    // Bytes of `word` below `limit` (≤ 0x80) get their high bit set.
    let below = |word: u64, limit: u64| word.wrapping_sub(ONES * limit) & !word & HIGHS;
    // A byte always finds its entry in a 256-entry table; were it not found, the byte
    // would count as special, which costs time, never correctness.
    let is_special = |byte: &u8| !PLAIN.get(usize::from(*byte)).copied().unwrap_or(false);
    let head_end = bytes.len().min(pos.saturating_add(SHORT));
    // Indexing a 256-entry table by a byte cannot go out of bounds.
    match bytes.get(pos..head_end) {
        Some(head) => match head.iter().position(is_special) {
            Some(offset) => return pos + offset,
            None => pos = head_end,
        },
        None => return pos,
    }
    while let Some(chunk) = bytes.get(pos..pos.saturating_add(8)) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        let special = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if special != 0 {
            break;
        }
        pos += 8;
    }
    let tail = bytes.get(pos..).unwrap_or_default();
    pos + tail.iter().position(is_special).unwrap_or(tail.len())
}

/// Where the escape whose letter is at `pos` ends; `None` if it is not one of
/// JSON's escapes.
fn escape_end(bytes: &[u8], pos: usize) -> Option<usize> {
    match bytes.get(pos)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(pos + 1),
        b'u' => {
            let hex = bytes.get(pos + 1..pos + 5)?;
            hex.iter().all(u8::is_ascii_hexdigit).then_some(pos + 5)
        }
        _ => None,
    }
}

/// Decodes a string's escapes (already checked by the scanner). A lone surrogate
/// becomes U+FFFD, as a lenient reader would show it; two keys that decode alike are
/// then duplicates, which errs on the side of refusing.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let decoded = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&unit) {
                    let rest = chars.as_str();
                    match rest.strip_prefix("\\u").and_then(|tail| {
                        let mut tail_chars = tail.chars();
                        hex4(&mut tail_chars).map(|low| (low, tail_chars))
                    }) {
                        Some((low, after)) if (0xDC00..0xE000).contains(&low) => {
                            chars = after;
                            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => '\u{FFFD}',
                    }
                } else {
                    char::from_u32(unit).unwrap_or('\u{FFFD}')
                }
            }
            _ => return None,
        };
        out.push(decoded);
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut unit = 0;
    for _ in 0..4 {
        unit = unit * 16 + chars.next()?.to_digit(16)?;
    }
    Some(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<(), ScanError> {
        let mut scanner = Scanner::new(text);
        scanner.skip_value(0)?;
        scanner.finish()
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for doc in [
            r#"{"b":1,"a":[true,null,"x",1.5,{"c":-2}]}"#,
            " [ ] ",
            "{}",
            r#""\u00e9\ud83d\ude00\n\"""#,
            "-0.5e+10",
            "0",
            r#"{"a":{"a":{"a":1}}}"#,
            r#"[{"x":1},{"x":1}]"#,
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(doc).is_ok(),
                "{doc}"
            );
            assert_eq!(validate(doc), Ok(()), "{doc}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for doc in [
            "",
            "{",
            "[1,]",
            r#"{"a":1,}"#,
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "nul",
            r#""unterminated"#,
            "\"tab\there\"",
            r#""\x""#,
            r#""\u12g4""#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "[1 2]",
            "{} {}",
            "'single'",
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(doc).is_err(),
                "{doc}"
            );
            assert!(
                matches!(validate(doc), Err(ScanError::Syntax(_))),
                "{doc}: {:?}",
                validate(doc)
            );
        }
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth_after_unescaping() {
        for (doc, key) in [
            (r#"{"method":"ping","method":"tools/call"}"#, "method"),
            (r#"{"params":{"name":"a","name":"b"}}"#, "name"),
            (r#"[{"x":1},{"y":{"z":1,"z":2}}]"#, "z"),
            (r#"{"alg":"RS256","\u0061lg":"none"}"#, "alg"),
        ] {
            assert_eq!(
                validate(doc),
                Err(ScanError::DuplicateKey(key.into())),
                "{doc}"
            );
        }
    }

    #[test]
    fn bounds_nesting_like_the_tree_parser() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(validate(&ok), Ok(()));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(validate(&deep), Err(ScanError::TooDeep));
        // A hostile depth never reaches the stack's limit.
        let hostile = "[".repeat(1_000_000);
        assert_eq!(validate(&hostile), Err(ScanError::TooDeep));
    }

    #[test]
    fn reports_members_with_spans_and_unescaped_names() {
        let text = r#"{ "tools" : [ {"name":"a\u002Fb","x":[1]} , 7 ] , "z": null }"#;
        let mut scanner = Scanner::new(text);
        let mut names = Vec::new();
        let mut spans = Vec::new();
        scanner
            .object(0, |scanner, key, depth| {
                if key != "tools" {
                    return Ok(Visit::Skip);
                }
                scanner.array(depth, |scanner, depth| {
                    let start = scanner.position();
                    if scanner.peek() == Some(b'{') {
                        scanner.object(depth, |scanner, key, _| {
                            if key == "name" {
                                names.push(scanner.string()?.into_owned());
                                return Ok(Visit::Read);
                            }
                            Ok(Visit::Skip)
                        })?;
                    } else {
                        scanner.skip_value(depth)?;
                    }
                    spans.push(start..scanner.offset());
                    Ok(Visit::Read)
                })?;
                Ok(Visit::Read)
            })
            .unwrap();
        scanner.finish().unwrap();
        assert_eq!(names, ["a/b"]);
        let texts: Vec<&str> = spans.iter().map(|span| &text[span.clone()]).collect();
        assert_eq!(texts, [r#"{"name":"a\u002Fb","x":[1]}"#, "7"]);
    }

    #[test]
    fn skips_plain_string_content_exactly_to_the_first_special_byte() {
        let plain = "abcdefgh\u{e9}\u{1F600}ijklmnopqrstuvwxyz0123456789";
        assert_eq!(skip_plain_string_bytes(plain.as_bytes(), 0), plain.len());
        assert_eq!(skip_plain_string_bytes(plain.as_bytes(), 3), plain.len());
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..48 {
                let mut text = vec![b'x'; 48];
                if let Some(slot) = text.get_mut(at) {
                    *slot = special;
                }
                assert_eq!(
                    skip_plain_string_bytes(&text, 0),
                    at,
                    "{special:#x} at {at}"
                );
            }
        }
        // Bytes 0x20 and above, UTF-8 included, are plain.
        let high: Vec<u8> = (0x20..=0xff)
            .filter(|b| *b != b'"' && *b != b'\\')
            .collect();
        assert_eq!(skip_plain_string_bytes(&high, 0), high.len());
    }

    #[test]
    fn finds_a_duplicate_in_a_large_object_too() {
        let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        members.push("\"k3\":0".into());
        let doc = format!("{{{}}}", members.join(","));
        assert_eq!(validate(&doc), Err(ScanError::DuplicateKey("k3".into())));
        members.pop();
        assert_eq!(validate(&format!("{{{}}}", members.join(","))), Ok(()));
    }

    #[test]
    fn decodes_surrogate_pairs_and_replaces_lone_ones() {
        assert_eq!(unescape(r"\ud83d\ude00").as_deref(), Some("😀"));
        assert_eq!(unescape(r"\ud83dx").as_deref(), Some("\u{FFFD}x"));
        assert_eq!(unescape(r"\udc00").as_deref(), Some("\u{FFFD}"));
        assert_eq!(unescape(r#"a\"b\\c\/\t"#).as_deref(), Some("a\"b\\c/\t"));
    }
}

#[cfg(test)]
mod agreement {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "[a-z\"\\\\/\u{0}-\u{1f}\u{e9}\u{1F600}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\u{e9}]{0,3}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever serde_json writes, the scanner accepts; and on a corrupted
        /// document it agrees with the strict tree parser, except where serde_json
        /// refuses what JSON allows (numbers beyond f64, lone surrogates).
        #[test]
        fn agrees_with_the_strict_tree_parser(
            value in json_value(),
            cut in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[]\",:\\0-e.tn \x01u".to_vec()),
        ) {
            let text = value.to_string();
            let mut scanner = Scanner::new(&text);
            prop_assert!(scanner.skip_value(0).is_ok());
            prop_assert!(scanner.finish().is_ok());

            let mut corrupted = text.into_bytes();
            let at = cut.index(corrupted.len().max(1)).min(corrupted.len().saturating_sub(1));
            if let Some(slot) = corrupted.get_mut(at) {
                *slot = byte;
            }
            let Ok(corrupted) = String::from_utf8(corrupted) else {
                return Ok(());
            };
            let strict = crate::json::from_slice(corrupted.as_bytes());
            let mut scanner = Scanner::new(&corrupted);
            let scanned = scanner.skip_value(0).and_then(|_| scanner.finish());
            if let Err(error) = &strict {
                let message = error.to_string();
                if message.contains("out of range") || message.contains("surrogate") {
                    return Ok(());
                }
            }
            prop_assert_eq!(strict.is_ok(), scanned.is_ok(), "{:?}: {:?}", corrupted, scanned);
        }
    }
}
