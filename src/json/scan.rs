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

/// Why the scan stopped, as the internal paths return it: small enough to travel in
/// registers, where a `ScanError` (it can hold a key) goes through memory on every
/// call. A duplicate key's text waits in [`Scanner::duplicate`].
#[derive(Debug, Clone, Copy)]
enum Stop {
    Syntax(usize),
    TooDeep,
    DuplicateKey,
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
    /// Keys of the objects being scanned, innermost last, as written; each object
    /// checks its own slice for duplicates.
    keys: Vec<RawKey<'a>>,
    /// The key of a [`Stop::DuplicateKey`], unescaped.
    duplicate: String,
}

/// A key as written in the text. Two keys without escapes are equal exactly when
/// their texts are, so only a key with an escape is ever decoded to be compared.
/// Held as bytes: a key is compared far more often than it is read as text.
#[derive(Clone, Copy)]
struct RawKey<'a> {
    bytes: &'a [u8],
    escaped: bool,
}

impl<'a> RawKey<'a> {
    /// The key unescaped. The bytes lie between two quotes of a `str`, so they are
    /// UTF-8; were they not, the key would not decode and the scan would stop.
    fn decoded(self) -> Option<Cow<'a, str>> {
        let text = std::str::from_utf8(self.bytes).ok()?;
        if self.escaped {
            unescape(text).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(text))
        }
    }
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            keys: Vec::new(),
            duplicate: String::new(),
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
        match self.skip(depth) {
            Ok(()) => Ok(start..self.pos),
            Err(stop) => Err(self.error(stop)),
        }
    }

    /// Skips the value at `pos` (whitespace already skipped).
    fn skip(&mut self, depth: usize) -> Result<(), Stop> {
        match self.byte() {
            Some(b'{') => self.skip_object(depth),
            Some(b'[') => self.skip_array(depth),
            Some(b'"') => self.raw_string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.stop()),
        }
    }

    /// [`Self::object`] for an object no member of which is wanted.
    fn skip_object(&mut self, depth: usize) -> Result<(), Stop> {
        let inner = Self::nested(depth)?;
        self.pos += 1;
        let first_key = self.keys.len();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let (key, _) = self.member_key()?;
            self.skip_member_value(inner)?;
            self.note_key(first_key, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return self.close_object(first_key);
                }
                _ => return Err(self.stop()),
            }
        }
    }

    /// Skips a member's or an element's value. Most are strings, read here without
    /// a call.
    #[inline(always)]
    fn skip_member_value(&mut self, depth: usize) -> Result<(), Stop> {
        self.skip_whitespace();
        if self.byte() == Some(b'"') {
            self.raw_string().map(|_| ())
        } else {
            self.skip(depth)
        }
    }

    /// [`Self::array`] for an array no element of which is wanted.
    fn skip_array(&mut self, depth: usize) -> Result<(), Stop> {
        let inner = Self::nested(depth)?;
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_member_value(inner)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.stop()),
            }
        }
    }

    /// A member's key and its colon.
    #[inline(always)]
    fn member_key(&mut self) -> Result<(RawKey<'a>, usize), Stop> {
        self.skip_whitespace();
        let (start, escaped) = self.raw_string()?;
        let end = self.pos.saturating_sub(1);
        let bytes = self.text.as_bytes().get(start..end).unwrap_or_default();
        self.expect(b':')?;
        Ok((RawKey { bytes, escaped }, start))
    }

    /// Records a key of the object whose keys start at `first_key`, once its value
    /// has been read. Small objects (nearly all) are checked as each key arrives; a
    /// large one is sorted once when it closes instead of compared pairwise.
    #[inline(always)]
    fn note_key(&mut self, first_key: usize, key: RawKey<'a>) -> Result<(), Stop> {
        let own = self.keys.get(first_key..).unwrap_or_default();
        if own.len() < LINEAR_KEY_CHECK {
            for seen in own {
                let same = if seen.escaped || key.escaped {
                    same_decoded(*seen, key)
                } else {
                    seen.bytes == key.bytes
                };
                if same {
                    self.keys.truncate(first_key);
                    self.duplicate = key.decoded().unwrap_or_default().into_owned();
                    return Err(Stop::DuplicateKey);
                }
            }
        }
        self.keys.push(key);
        Ok(())
    }

    /// Closes the object whose keys start at `first_key`.
    #[inline(always)]
    fn close_object(&mut self, first_key: usize) -> Result<(), Stop> {
        let own = self.keys.get(first_key..).unwrap_or_default();
        let duplicate = if own.len() > LINEAR_KEY_CHECK {
            large_object_duplicate(own)
        } else {
            None
        };
        self.keys.truncate(first_key);
        match duplicate {
            Some(key) => {
                self.duplicate = key;
                Err(Stop::DuplicateKey)
            }
            None => Ok(()),
        }
    }

    /// The public error for an internal stop.
    #[cold]
    fn error(&mut self, stop: Stop) -> ScanError {
        match stop {
            Stop::Syntax(at) => ScanError::Syntax(at),
            Stop::TooDeep => ScanError::TooDeep,
            Stop::DuplicateKey => ScanError::DuplicateKey(std::mem::take(&mut self.duplicate)),
        }
    }

    /// Scans an object, handing each member's key to `member` with the scanner
    /// positioned on its value and the depth that value is at.
    pub fn object<F>(&mut self, depth: usize, mut member: F) -> Result<(), ScanError>
    where
        F: FnMut(&mut Self, &str, usize) -> Result<Visit, ScanError>,
    {
        let inner = Self::nested(depth).map_err(|stop| self.error(stop))?;
        self.expect(b'{').map_err(|stop| self.error(stop))?;
        let first_key = self.keys.len();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let (raw, start) = self.member_key().map_err(|stop| self.error(stop))?;
            let text = self
                .text
                .get(start..start + raw.bytes.len())
                .ok_or(ScanError::Syntax(start))?;
            let key = if raw.escaped {
                Cow::Owned(unescape(text).ok_or(ScanError::Syntax(start))?)
            } else {
                Cow::Borrowed(text)
            };
            if member(self, &key, inner)? == Visit::Skip {
                self.skip_member_value(inner)
                    .map_err(|stop| self.error(stop))?;
            }
            self.note_key(first_key, raw)
                .map_err(|stop| self.error(stop))?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.syntax()),
            }
        }
        self.close_object(first_key)
            .map_err(|stop| self.error(stop))
    }

    /// Scans an array, handing each element to `element` with the depth it is at.
    pub fn array<F>(&mut self, depth: usize, mut element: F) -> Result<(), ScanError>
    where
        F: FnMut(&mut Self, usize) -> Result<Visit, ScanError>,
    {
        let inner = Self::nested(depth).map_err(|stop| self.error(stop))?;
        self.expect(b'[').map_err(|stop| self.error(stop))?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if element(self, inner)? == Visit::Skip {
                self.skip_member_value(inner)
                    .map_err(|stop| self.error(stop))?;
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
        self.skip_whitespace();
        let (start, escaped) = self.raw_string().map_err(|stop| self.error(stop))?;
        let end = self.pos.saturating_sub(1);
        let raw = self.text.get(start..end).ok_or(ScanError::Syntax(start))?;
        if escaped {
            unescape(raw).map(Cow::Owned).ok_or(self.syntax())
        } else {
            Ok(Cow::Borrowed(raw))
        }
    }

    /// Consumes a string that starts right here (whitespace already skipped); where
    /// its contents start (they end before the quote just consumed), and whether they
    /// hold an escape.
    #[inline(always)]
    fn raw_string(&mut self) -> Result<(usize, bool), Stop> {
        if self.byte() != Some(b'"') {
            return Err(self.stop());
        }
        let start = self.pos + 1;
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
                    pos = escape_end(bytes, pos + 1).ok_or(Stop::Syntax(pos))?;
                }
                // A control character, which must be escaped (RFC 8259 §7), or the
                // end of the text.
                _ => return Err(Stop::Syntax(pos)),
            }
        }
        self.pos = pos + 1;
        Ok((start, escaped))
    }

    fn number(&mut self) -> Result<(), Stop> {
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
            _ => return Err(Stop::Syntax(pos)),
        }
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            if !digits(&mut pos) {
                return Err(Stop::Syntax(pos));
            }
        }
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if !digits(&mut pos) {
                return Err(Stop::Syntax(pos));
            }
        }
        self.pos = pos;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
        let end = self.pos + word.len();
        if self.text.as_bytes().get(self.pos..end) != Some(word) {
            return Err(self.stop());
        }
        self.pos = end;
        Ok(())
    }

    fn expect(&mut self, byte: u8) -> Result<(), Stop> {
        if self.peek() != Some(byte) {
            return Err(self.stop());
        }
        self.pos += 1;
        Ok(())
    }

    fn nested(depth: usize) -> Result<usize, Stop> {
        if depth >= MAX_DEPTH {
            return Err(Stop::TooDeep);
        }
        Ok(depth + 1)
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        // Compact JSON has no whitespace: one comparison settles the common case.
        if bytes.get(self.pos).is_some_and(|byte| *byte > b' ') {
            return;
        }
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

    fn stop(&self) -> Stop {
        Stop::Syntax(self.pos)
    }
}

/// Whether two keys, one of them with an escape, read the same once unescaped.
#[cold]
fn same_decoded(one: RawKey<'_>, other: RawKey<'_>) -> bool {
    match (one.decoded(), other.decoded()) {
        (Some(one), Some(other)) => one == other,
        // Never: the scanner checked every escape. Refusing is the safe side.
        _ => true,
    }
}

/// A key that a large object's `keys` hold twice, once unescaped: they are sorted
/// once rather than compared pairwise.
#[cold]
fn large_object_duplicate(keys: &[RawKey<'_>]) -> Option<String> {
    let mut decoded = Vec::with_capacity(keys.len());
    for key in keys {
        match key.decoded() {
            Some(text) => decoded.push(text),
            // Never: the scanner checked every escape. Refusing is the safe side.
            None => return Some(String::from_utf8_lossy(key.bytes).into_owned()),
        }
    }
    decoded.sort_unstable();
    decoded
        .windows(2)
        .find(|pair| pair.first() == pair.last())
        .and_then(|pair| pair.first())
        .map(|key| key.to_string())
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

/// The first offset from `pos` that is not plain string content, sixteen bytes at
/// a time (most keys and names fit in one step), then eight, then one at a time at
/// the end of the text. A word's bytes are flagged when they are `"`, `\` or below
/// 0x20; a subtraction's borrow can flag bytes above a flagged one, never one below
/// it, so the lowest flag is exact.
fn skip_plain_string_bytes(bytes: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    const TWOS: u64 = ONES * 0x02;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let special_in = |word: u64| {
        ((word ^ TWOS).wrapping_sub(ONES * 0x21) | (word ^ BACKSLASHES).wrapping_sub(ONES))
            & !word
            & HIGHS
    };
    while let Some(pair) = bytes.get(pos..).and_then(<[u8]>::first_chunk::<16>) {
        let (low, high) = pair.split_at(8);
        let (Ok(low), Ok(high)) = (<[u8; 8]>::try_from(low), <[u8; 8]>::try_from(high)) else {
            break;
        };
        let low = special_in(u64::from_le_bytes(low));
        let high = special_in(u64::from_le_bytes(high));
        if low | high != 0 {
            let offset = if low != 0 {
                low.trailing_zeros()
            } else {
                64 + high.trailing_zeros()
            };
            return pos + (offset / 8) as usize;
        }
        pos += 16;
    }
    while let Some(word) = bytes.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*word);
        // Flipping bit 1 sends `"` (0x22) to 0x20 and keeps 0x00..=0x1f below 0x20
        // while 0x20, 0x21 and 0x23 go to 0x22, 0x23 and 0x21: a byte is a control
        // or a quote exactly when, flipped, it is below 0x21. Both flips leave the
        // high bit alone, so one `!word` serves both tests.
        let special = ((word ^ TWOS).wrapping_sub(ONES * 0x21)
            | (word ^ BACKSLASHES).wrapping_sub(ONES))
            & !word
            & HIGHS;
        if special != 0 {
            return pos + (special.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    // A byte always finds its entry in a 256-entry table; were it not found, the byte
    // would count as special, which costs time, never correctness.
    let is_special = |byte: &u8| !PLAIN.get(usize::from(*byte)).copied().unwrap_or(false);
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

    /// Every byte value, at every offset of the first five words and at every
    /// alignment of the string's start, in plain ASCII and in two-byte UTF-8 (whose
    /// characters then straddle the word boundaries).
    #[test]
    fn finds_the_first_special_byte_at_every_offset_and_alignment() {
        for filler in ["x", "\u{e9}"] {
            let plain = filler.repeat(48);
            for start in 0..8 {
                for at in 0..40 {
                    for byte in 0..=u8::MAX {
                        let mut text = plain.as_bytes().to_vec();
                        if let Some(slot) = text.get_mut(start + at) {
                            *slot = byte;
                        }
                        let special = byte < 0x20 || byte == b'"' || byte == b'\\';
                        let expected = if special { start + at } else { text.len() };
                        assert_eq!(
                            skip_plain_string_bytes(&text, start),
                            expected,
                            "{byte:#x} at {at} from {start} in {filler}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_duplicates_however_either_key_is_escaped() {
        for (doc, key) in [
            (r#"{"\u0061":1,"a":2}"#, "a"),
            (r#"{"\u0061":1,"\u0061":2}"#, "a"),
            (r#"{"a\/b":1,"a/b":2}"#, "a/b"),
            (r#"{"\ud83d\ude00":1,"😀":2}"#, "\u{1F600}"),
            (r#"{"\u00e9":1,"\u00E9":2}"#, "\u{e9}"),
            // In values the caller skips, at depth.
            (r#"[{"x":{"y":[{"\u0062":1,"b":2}]}}]"#, "b"),
            // Lone surrogates decode alike: refused, on the side of caution.
            (r#"{"\ud800":1,"\udbff":2}"#, "\u{FFFD}"),
        ] {
            assert_eq!(
                validate(doc),
                Err(ScanError::DuplicateKey(key.into())),
                "{doc}"
            );
        }
        for doc in [
            r#"{"\u0061":1,"b":2}"#,
            r#"{"\u0061b":1,"a":2,"ab\n":3}"#,
            r#"{"a\"":1,"a\\":2,"a":3}"#,
        ] {
            assert_eq!(validate(doc), Ok(()), "{doc}");
        }
        // A large object, its keys compared when it closes.
        let mut members: Vec<String> = (0..30).map(|i| format!("\"k{i}\":{i}")).collect();
        members.push(r#""\u006b7":0"#.into());
        let doc = format!("[{{\"x\":{{{}}}}}]", members.join(","));
        assert_eq!(validate(&doc), Err(ScanError::DuplicateKey("k7".into())));
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

    /// Whether the escapes of string literal `text` (as written) spell a surrogate
    /// that is not half of a high-low pair.
    fn has_lone_surrogate(text: &str) -> bool {
        let bytes = text.as_bytes();
        let unit = |at: usize| {
            bytes
                .get(at..at + 6)
                .filter(|escape| escape.starts_with(b"\\u"))
                .and_then(|escape| std::str::from_utf8(escape.get(2..)?).ok())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
        };
        let mut at = 0;
        while at < bytes.len() {
            if bytes.get(at) != Some(&b'\\') {
                at += 1;
                continue;
            }
            match unit(at) {
                Some(0xd800..=0xdbff) => {
                    if !matches!(unit(at + 6), Some(0xdc00..=0xdfff)) {
                        return true;
                    }
                    at += 12;
                }
                Some(0xdc00..=0xdfff) => return true,
                Some(_) => at += 6,
                // Any other escape is two bytes (`\\` included).
                None => at += 2,
            }
        }
        false
    }

    /// A piece of a string literal as written: plain text, a character that is
    /// several bytes in UTF-8, an escape, or something a string may not hold.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z0-9 ]{1,9}",
            2 => prop::sample::select(vec!["\u{e9}", "\u{4e2d}", "\u{1F600}", "\u{7f}"]).prop_map(String::from),
            2 => prop::sample::select(vec![
                r"\n", r"\t", r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\r", r"\u00e9",
                r"\u0041", r"\ud83d\ude00", r"\uD83D\uDE00", r"\u0000", r"\u001f",
            ])
            .prop_map(String::from),
            1 => prop::sample::select(vec![
                "\u{0}", "\u{1f}", "\n", "\t", r"\x", r"\u12", r"\u12g4", r"\", "\"",
                r"\ud800", r"\udc00x", r"\U0041",
            ])
            .prop_map(String::from),
        ]
    }

    proptest! {
        /// Strings with escapes, multi-byte characters and forbidden bytes at every
        /// position relative to the scanner's eight-byte words (a pad before them
        /// shifts their alignment), as keys and as values: the scanner accepts
        /// exactly what the strict tree parser accepts, and reads a key as it does.
        #[test]
        fn strings_agree_with_the_strict_tree_parser(
            pad in 0usize..8,
            key in prop::collection::vec(piece(), 0..6),
            value in prop::collection::vec(piece(), 0..6),
        ) {
            let key = key.concat();
            let value = value.concat();
            let text = format!(
                r#"{{"{}":0,"{key}":"{value}","v":["{value}"]}}"#,
                "p".repeat(pad)
            );
            let strict = crate::json::from_slice(text.as_bytes());
            // serde_json refuses lone surrogates, which JSON allows; pieces can make
            // one that no single piece spells (`\\` then `ud83d\ude00` leaves a
            // lone `\ude00`).
            if strict.is_err() && (has_lone_surrogate(&key) || has_lone_surrogate(&value)) {
                return Ok(());
            }
            let mut keys = Vec::new();
            let mut scanner = Scanner::new(&text);
            let scanned = scanner
                .object(0, |_, key, _| {
                    keys.push(key.to_owned());
                    Ok(Visit::Skip)
                })
                .and_then(|()| scanner.finish());
            prop_assert_eq!(strict.is_ok(), scanned.is_ok(), "{:?}: {:?}", text, scanned);
            if let Ok(tree) = strict {
                let expected: Vec<String> = tree.as_object().unwrap().keys().cloned().collect();
                prop_assert_eq!(keys, expected);
            }
        }

        /// Keys over a small alphabet, each character written plainly or escaped,
        /// in objects on both sides of the size where pairwise comparison gives way to
        /// sorting, at the top and inside a skipped value: refused exactly when two
        /// keys decode alike.
        #[test]
        fn duplicate_keys_are_found_however_they_are_written(
            keys in prop::collection::vec(
                prop::collection::vec((prop::sample::select(vec!['a', 'b', '\u{e9}']), any::<bool>()), 1..3),
                0..24,
            ),
            nested in any::<bool>(),
        ) {
            let mut decoded = std::collections::BTreeSet::new();
            let mut unique = true;
            let members: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(index, key)| {
                    let plain: String = key.iter().map(|(c, _)| *c).collect();
                    unique &= decoded.insert(plain);
                    let written: String = key
                        .iter()
                        .map(|(c, escaped)| if *escaped { format!("\\u{:04x}", u32::from(*c)) } else { c.to_string() })
                        .collect();
                    format!(r#""{written}":{index}"#)
                })
                .collect();
            let object = format!("{{{}}}", members.join(","));
            let text = if nested { format!(r#"[1,{{"x":{object}}}]"#) } else { object };
            let mut scanner = Scanner::new(&text);
            let scanned = scanner.skip_value(0).map(|_| ());
            prop_assert_eq!(scanned.is_ok(), unique, "{}: {:?}", text, scanned);
            if !unique {
                prop_assert!(matches!(scanned, Err(ScanError::DuplicateKey(_))));
            }
            prop_assert_eq!(crate::json::from_slice(text.as_bytes()).is_ok(), unique);
        }

        /// The word-at-a-time search stops where a byte-at-a-time one does.
        #[test]
        fn the_word_search_agrees_with_a_byte_loop(
            bytes in prop::collection::vec(any::<u8>(), 0..80),
            from in any::<prop::sample::Index>(),
        ) {
            let from = from.index(bytes.len() + 1);
            let expected = bytes
                .iter()
                .skip(from)
                .position(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
                .map_or(bytes.len(), |at| from + at);
            prop_assert_eq!(skip_plain_string_bytes(&bytes, from), expected);
        }

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
