//! Strict JSON: a document with a duplicated object key, at any depth, is refused.
//! serde_json keeps the last duplicate silently (serde-rs/json#762), which lets two
//! parsers read two meanings from one document; a JWT header or an MCP message must
//! have exactly one. Nesting is bounded so a hostile document cannot exhaust the stack.
//!
//! A message from a client is held to more: two keys of one object that differ only
//! in case are refused too ([`message_from_slice`]). Common upstream parsers bind
//! members to fields case-insensitively (Go's `encoding/json`, .NET's web defaults,
//! which the C# MCP SDK uses), some with Unicode folding (`\u212a`, the Kelvin sign,
//! matches `k`), so `{"name":"a","NAME":"b"}` would be judged as `a` and run as `b`.

pub mod scan;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// With serde_json's `arbitrary_precision`, a number reaches the visitor as a map
/// with this one key and the number's text as its value. That is what keeps
/// `123456789012345678901234567890` or `1.10` exactly as written on the way to the
/// upstream: an `f64` would round the first and rewrite the second.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Up to this many members, an object's keys are compared directly.
const LINEAR_KEY_CHECK: usize = 16;

/// Deepest nesting accepted (objects and arrays).
pub const MAX_DEPTH: usize = 64;

/// Why a document was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StrictJsonError(String);

/// Parses `bytes` as one JSON value, refusing duplicate keys and nesting deeper than
/// [`MAX_DEPTH`].
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    parse(bytes, false)
}

/// As [`from_slice`], and also refuses two keys of one object that are equal once
/// case is folded: what a client sends to be judged and forwarded.
pub fn message_from_slice(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    parse(bytes, true)
}

fn parse(bytes: &[u8], fold: bool) -> Result<Value, StrictJsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue { depth: 0, fold }
        .deserialize(&mut deserializer)
        .map_err(|error| StrictJsonError(error.to_string()))?;
    deserializer
        .end()
        .map_err(|error| StrictJsonError(error.to_string()))?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct StrictValue {
    depth: usize,
    /// Keys that are equal once case is folded count as duplicates.
    fold: bool,
}

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictValue {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nesting deeper than {MAX_DEPTH}")));
        }
        Ok(Self {
            depth: self.depth + 1,
            fold: self.fold,
        })
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Ok(match self.gather(map)? {
            Gathered::Number(number) => number,
            Gathered::Members(members) => Value::Object(members.into_iter().collect()),
        })
    }
}

/// An object's members in document order, or the number an object token spelled.
enum Gathered {
    Number(Value),
    Members(Vec<(String, Value)>),
}

impl StrictValue {
    fn gather<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Gathered, A::Error> {
        let inner = self.nested()?;
        // Members are gathered first and the map built once: a small object's keys
        // are compared directly, which is cheaper than hashing every key twice
        // (look-up, then insert) with the map's SipHash.
        // Each member with the form its key is compared in: `None` for the key
        // itself, or (with `fold`) its folded form where that differs.
        let mut members: Vec<(String, Option<String>, Value)> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.is_empty() && key == NUMBER_TOKEN {
                return number(map).map(Gathered::Number);
            }
            let form = if self.fold { folded(&key) } else { None };
            let compared = form.as_deref().unwrap_or(&key);
            let clash = if members.len() < LINEAR_KEY_CHECK {
                members
                    .iter()
                    .position(|(earlier, form, _)| form.as_deref().unwrap_or(earlier) == compared)
            } else {
                if seen.is_empty() {
                    for (index, (earlier, form, _)) in members.iter().enumerate() {
                        seen.insert(form.clone().unwrap_or_else(|| earlier.clone()), index);
                    }
                }
                seen.insert(compared.to_owned(), members.len())
            };
            if let Some((earlier, _, _)) = clash.and_then(|index| members.get(index)) {
                return Err(de::Error::custom(if *earlier == key {
                    format!("duplicate key {key:?}")
                } else {
                    format!("duplicate key {key:?}: it differs from {earlier:?} only in case")
                }));
            }
            let value = map.next_value_seed(inner)?;
            members.push((key, form, value));
        }
        Ok(Gathered::Members(
            members
                .into_iter()
                .map(|(key, _, value)| (key, value))
                .collect(),
        ))
    }
}

/// A client's message as [`message_members_from_slice`] reads it.
#[derive(Debug)]
pub enum Document {
    /// A top-level object: its members in document order, keys unique (also once
    /// case is folded). Kept as a list: a JSON-RPC message has at most six
    /// members, found faster by comparing keys than by hashing them into a map.
    Object(Vec<(String, Value)>),
    /// Any other top-level value (an array is a batch).
    Other(Value),
}

/// As [`message_from_slice`], with the top-level object's members as a list.
pub fn message_members_from_slice(bytes: &[u8]) -> Result<Document, StrictJsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let document = StrictTop(StrictValue {
        depth: 0,
        fold: true,
    })
    .deserialize(&mut deserializer)
    .map_err(|error| StrictJsonError(error.to_string()))?;
    deserializer
        .end()
        .map_err(|error| StrictJsonError(error.to_string()))?;
    Ok(document)
}

/// The top level of a message: [`StrictValue`], except that an object stays a list.
struct StrictTop(StrictValue);

impl<'de> DeserializeSeed<'de> for StrictTop {
    type Value = Document;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Document, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictTop {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Document, E> {
        Ok(Document::Other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Document, E> {
        Ok(Document::Other(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Document, E> {
        Ok(Document::Other(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Document, E> {
        self.0.visit_f64(v).map(Document::Other)
    }

    fn visit_str<E>(self, v: &str) -> Result<Document, E> {
        Ok(Document::Other(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Document, E> {
        Ok(Document::Other(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Document, E> {
        Ok(Document::Other(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Document, E> {
        Ok(Document::Other(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Document, A::Error> {
        self.0.visit_seq(seq).map(Document::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Document, A::Error> {
        Ok(match self.0.gather(map)? {
            Gathered::Number(number) => Document::Other(number),
            Gathered::Members(members) => Document::Object(members),
        })
    }
}

/// The member `key` of a JSON object. Keys are unique, so a small object is
/// searched by comparing keys, which costs less than the map's SipHash look-up.
pub fn member<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if object.len() <= LINEAR_KEY_CHECK {
        object
            .iter()
            .find_map(|(name, value)| (name == key).then_some(value))
    } else {
        object.get(key)
    }
}

/// `key` with its case folded (each character upper-cased, then lower-cased, so
/// that the Kelvin sign and `K` both become `k`, and `ſ` becomes `s`); `None`
/// when that is `key` itself, as it is for nearly every key a message has.
fn folded(key: &str) -> Option<String> {
    if key.is_ascii() {
        return key
            .bytes()
            .any(|byte| byte.is_ascii_uppercase())
            .then(|| key.to_ascii_lowercase());
    }
    let fold: String = key
        .chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    (fold != key).then_some(fold)
}

/// The number whose text follows [`NUMBER_TOKEN`]. A document could also spell an
/// object with that key; it is then read as the number it names, and what goes
/// upstream is that number: mcpgate still forwards exactly what it judged.
fn number<'de, A: MapAccess<'de>>(mut map: A) -> Result<Value, A::Error> {
    let text: String = map.next_value()?;
    if map.next_key::<String>()?.is_some() {
        return Err(de::Error::custom("a number cannot carry other members"));
    }
    text.parse::<serde_json::Number>()
        .map(Value::Number)
        .map_err(|_| de::Error::custom(format!("{text:?} is not a JSON number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ordinary_documents_in_order() {
        let value = from_slice(br#"{"b":1,"a":[true,null,"x",1.5,{"c":-2}]}"#).unwrap();
        assert_eq!(
            value.to_string(),
            r#"{"b":1,"a":[true,null,"x",1.5,{"c":-2}]}"#
        );
    }

    #[test]
    fn numbers_keep_their_text() {
        for doc in [
            r#"{"n":123456789012345678901234567890}"#,
            r#"{"n":1.10,"m":-0,"e":1e+400,"f":2.5e-3,"g":18446744073709551616}"#,
            r#"[0.1,100,1e+2]"#,
        ] {
            assert_eq!(from_slice(doc.as_bytes()).unwrap().to_string(), doc);
        }
        // The digits stay; only an exponent's spelling is made canonical.
        assert_eq!(
            from_slice(b"[1E400,1e2]").unwrap().to_string(),
            "[1e+400,1e+2]"
        );
        let value = from_slice(br#"{"id":7,"big":99999999999999999999}"#).unwrap();
        assert_eq!(value["id"].as_i64(), Some(7));
        assert_eq!(value["big"].as_u64(), None);
        assert!(from_slice(br#"{"n":01}"#).is_err());
        assert!(from_slice(br#"{"n":1.}"#).is_err());
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        for doc in [
            r#"{"method":"ping","method":"tools/call"}"#,
            r#"{"params":{"name":"a","name":"b"}}"#,
            r#"[{"x":1},{"y":{"z":1,"z":2}}]"#,
            // Same key after JSON unescaping.
            r#"{"alg":"RS256","\u0061lg":"none"}"#,
        ] {
            let error = from_slice(doc.as_bytes()).unwrap_err();
            assert!(
                error.to_string().contains("duplicate key"),
                "{doc}: {error}"
            );
        }
    }

    #[test]
    fn refuses_a_duplicate_in_a_large_object_and_keeps_member_order() {
        let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let ordered = format!("{{{}}}", members.join(","));
        assert_eq!(from_slice(ordered.as_bytes()).unwrap().to_string(), ordered);
        for late in [3, 20] {
            members.push(format!("\"k{late}\":0"));
            let doc = format!("{{{}}}", members.join(","));
            let error = from_slice(doc.as_bytes()).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains(&format!("duplicate key \"k{late}\""))
            );
            members.pop();
        }
    }

    #[test]
    fn a_message_refuses_keys_that_differ_only_in_case_at_any_depth() {
        for doc in [
            r#"{"params":{"name":"allowed","NAME":"secret"}}"#,
            r#"{"params":{"Name":"secret","name":"allowed"}}"#,
            r#"{"a":[{"uri":"x","Uri":"y"}]}"#,
            // The Kelvin sign folds to `k`, the long s to `s`.
            "{\"params\":{\"tas\u{212a}\":1,\"task\":2}}",
            "{\"params\":{\"name\":1,\"\u{17f}\":2,\"s\":3}}",
            r#"{"ÉTÉ":1,"été":2}"#,
            // Escaped spellings fold the same.
            r#"{"params":{"name":"a","\u004eame":"b"}}"#,
        ] {
            let error = message_from_slice(doc.as_bytes()).unwrap_err();
            assert!(error.to_string().contains("only in case"), "{doc}: {error}");
            // A document that is not a message keeps plain duplicate semantics.
            assert!(from_slice(doc.as_bytes()).is_ok(), "{doc}");
        }
        let mut members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        members.push("\"K20\":0".to_owned());
        let large = format!("{{{}}}", members.join(","));
        assert!(
            message_from_slice(large.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("duplicate key")
        );
        assert!(from_slice(large.as_bytes()).is_ok());
        // Distinct keys, in any case, are fine.
        let value =
            message_from_slice(r#"{"Name":"a","name2":"b","ÉTÉ":1,"été2":2}"#.as_bytes()).unwrap();
        assert_eq!(value["Name"], "a");
    }

    #[test]
    fn a_member_is_found_as_the_map_finds_it_in_small_and_large_objects() {
        for size in [0, 3, LINEAR_KEY_CHECK, LINEAR_KEY_CHECK + 1, 40] {
            let members: Vec<String> = (0..size).map(|i| format!("\"k{i}\":{i}")).collect();
            let doc = format!("{{{}}}", members.join(","));
            let Value::Object(object) = from_slice(doc.as_bytes()).unwrap() else {
                panic!("{doc} is an object");
            };
            for key in (0..=size)
                .map(|i| format!("k{i}"))
                .chain(["K1".to_owned(), String::new()])
            {
                assert_eq!(member(&object, &key), object.get(&key), "{key} in {size}");
            }
        }
    }

    #[test]
    fn a_message_keeps_its_top_level_members_in_order_and_other_values_whole() {
        let Document::Object(members) =
            message_members_from_slice(br#"{"b":1,"a":{"c":[2]},"\u0064":"x"}"#).unwrap()
        else {
            panic!("an object");
        };
        let keys: Vec<&str> = members.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["b", "a", "d"]);
        assert_eq!(members[1].1.to_string(), r#"{"c":[2]}"#);
        for doc in [r#"[{"a":1}]"#, "7", r#""s""#, "null", "true", "1.5"] {
            let Document::Other(value) = message_members_from_slice(doc.as_bytes()).unwrap() else {
                panic!("{doc} is not an object");
            };
            assert_eq!(value.to_string(), doc);
        }
        // The object that spells a number is that number, as in the tree parse.
        assert!(matches!(
            message_members_from_slice(br#"{"$serde_json::private::Number":"12"}"#).unwrap(),
            Document::Other(Value::Number(_))
        ));
        // The top level is held to the same rules as every other object.
        for doc in [r#"{"id":1,"id":2}"#, r#"{"Id":1,"id":2}"#, r#"{"a":1} 2"#] {
            assert!(message_members_from_slice(doc.as_bytes()).is_err(), "{doc}");
        }
    }

    #[test]
    fn refuses_trailing_values_and_deep_nesting() {
        assert!(from_slice(br#"{"a":1} {"a":2}"#).is_err());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(from_slice(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(from_slice(ok.as_bytes()).is_ok());
    }
}
