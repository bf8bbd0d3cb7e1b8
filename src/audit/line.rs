//! A JSON object written member by member into one buffer, byte for byte as
//! `serde_json` writes it. Every request writes a record, and serde's derived
//! serialiser escapes each of the record's 27 constant keys and goes through a
//! formatter per field: about 8k instructions a record, most of the audit's cost.
//! Here the keys are written as they are and a string without a byte to escape
//! (nearly every one) is copied whole. A test checks the output against
//! `serde_json` on random records.

use serde::Serialize;

/// The bytes JSON needs escaped in a string: `"`, `\` and the control characters.
const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One JSON object under construction.
pub(super) struct Object {
    buffer: Vec<u8>,
    empty: bool,
}

impl Object {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        let mut buffer = Vec::with_capacity(capacity);
        buffer.push(b'{');
        Self {
            buffer,
            empty: true,
        }
    }

    /// `key` is written unescaped: every caller passes a constant plain name.
    fn key(&mut self, key: &'static str) {
        debug_assert!(!key.bytes().any(needs_escape));
        if !self.empty {
            self.buffer.push(b',');
        }
        self.empty = false;
        self.buffer.push(b'"');
        self.buffer.extend_from_slice(key.as_bytes());
        self.buffer.extend_from_slice(b"\":");
    }

    pub(super) fn string(&mut self, key: &'static str, value: &str) {
        self.key(key);
        escaped(&mut self.buffer, value);
    }

    pub(super) fn optional_string(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(value) => self.string(key, value),
            None => self.null(key),
        }
    }

    pub(super) fn unsigned(&mut self, key: &'static str, value: u16) {
        self.key(key);
        self.buffer
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// Left to `serde_json`, whose float text (shortest round trip, `e+` exponents,
    /// `null` for what JSON cannot hold) is the record's documented form.
    pub(super) fn float(&mut self, key: &'static str, value: f64) {
        self.serialized(key, &value);
    }

    pub(super) fn optional_float(&mut self, key: &'static str, value: Option<f64>) {
        match value {
            Some(value) => self.float(key, value),
            None => self.null(key),
        }
    }

    /// A member whose value is rare or nested enough to leave to `serde_json`.
    pub(super) fn serialized<T: Serialize>(&mut self, key: &'static str, value: &T) {
        self.key(key);
        let before = self.buffer.len();
        if serde_json::to_writer(&mut self.buffer, value).is_err() {
            // Not reachable for the record's own types (strings, numbers, lists);
            // should it happen, the member is null rather than half written.
            self.buffer.truncate(before);
            self.buffer.extend_from_slice(b"null");
        }
    }

    pub(super) fn null(&mut self, key: &'static str) {
        self.key(key);
        self.buffer.extend_from_slice(b"null");
    }

    pub(super) fn finish(mut self) -> String {
        self.buffer.push(b'}');
        // Only UTF-8 went in: `&str` values, ASCII keys and escapes, serde's output.
        String::from_utf8(self.buffer).unwrap_or_default()
    }
}

/// Writes `value` as a JSON string, escaped exactly as `serde_json` does.
fn escaped(buffer: &mut Vec<u8>, value: &str) {
    buffer.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        buffer.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        match byte {
            b'"' => buffer.extend_from_slice(b"\\\""),
            b'\\' => buffer.extend_from_slice(b"\\\\"),
            0x08 => buffer.extend_from_slice(b"\\b"),
            0x0c => buffer.extend_from_slice(b"\\f"),
            b'\n' => buffer.extend_from_slice(b"\\n"),
            b'\r' => buffer.extend_from_slice(b"\\r"),
            b'\t' => buffer.extend_from_slice(b"\\t"),
            _ => {
                let hex = |nibble: u8| HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                buffer.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    hex(byte >> 4),
                    hex(byte & 0xf),
                ]);
            }
        }
        start = at + 1;
    }
    buffer.extend_from_slice(bytes.get(start..).unwrap_or_default());
    buffer.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn written(value: &str) -> String {
        let mut object = Object::with_capacity(8);
        object.string("k", value);
        object.finish()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for value in [
            "",
            "plain",
            "a\"b",
            "back\\slash",
            "\u{0}\u{1f}\u{7f}",
            "tab\t\r\n\u{8}\u{c}",
            "é ☃ 😀",
        ] {
            let expected = format!("{{\"k\":{}}}", serde_json::to_string(value).unwrap());
            assert_eq!(written(value), expected);
        }
    }

    #[test]
    fn floats_are_written_as_serde_json_writes_them() {
        for value in [
            0.0,
            1.0,
            0.001,
            12.345,
            1e21,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            -0.0,
        ] {
            let mut object = Object::with_capacity(8);
            object.float("f", value);
            let expected = format!("{{\"f\":{}}}", serde_json::to_string(&value).unwrap());
            assert_eq!(object.finish(), expected, "{value}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(value in any::<String>()) {
            let expected = format!("{{\"k\":{}}}", serde_json::to_string(&value).unwrap());
            prop_assert_eq!(written(&value), expected);
        }

        #[test]
        fn any_float_is_written_as_serde_json_writes_it(value in any::<f64>()) {
            let mut object = Object::with_capacity(8);
            object.float("f", value);
            let expected = format!("{{\"f\":{}}}", serde_json::to_string(&value).unwrap());
            prop_assert_eq!(object.finish(), expected);
        }
    }
}
