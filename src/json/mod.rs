//! Strict JSON: a document with a duplicated object key, at any depth, is refused.
//! serde_json keeps the last duplicate silently (serde-rs/json#762), which lets two
//! parsers read two meanings from one document; a JWT header or an MCP message must
//! have exactly one. Nesting is bounded so a hostile document cannot exhaust the stack.

pub mod scan;

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

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
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue { depth: 0 }
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

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        // Members are gathered first and the map built once: a small object's keys
        // are compared directly, which is cheaper than hashing every key twice
        // (look-up, then insert) with the map's SipHash.
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let duplicate = if members.len() < LINEAR_KEY_CHECK {
                members.iter().any(|(earlier, _)| *earlier == key)
            } else {
                if seen.is_empty() {
                    seen.extend(members.iter().map(|(earlier, _)| earlier.clone()));
                }
                !seen.insert(key.clone())
            };
            if duplicate {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(inner)?;
            members.push((key, value));
        }
        Ok(Value::Object(members.into_iter().collect::<Map<_, _>>()))
    }
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
    fn refuses_trailing_values_and_deep_nesting() {
        assert!(from_slice(br#"{"a":1} {"a":2}"#).is_err());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(from_slice(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(from_slice(ok.as_bytes()).is_ok());
    }
}
