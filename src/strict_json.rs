//! JSON parsing that refuses duplicate member names at any depth (RFC 8259 §4: their meaning
//! is unpredictable; RFC 8725 §2.6). serde_json keeps the last of two equal names, another
//! parser may keep the first, so a document with duplicates is refused rather than read one way
//! here and another way upstream. Nesting is bounded by serde_json's recursion limit.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictJsonError {
    /// A member name appears twice in one object.
    DuplicateMember,
    /// Not JSON, or nested too deeply.
    Invalid,
}

const DUPLICATE_MEMBER: &str = "duplicate member";

/// Parses `bytes` as JSON with unique member names.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    serde_json::from_slice::<UniqueKeys>(bytes)
        .map(|v| v.0)
        .map_err(|err| {
            if err.to_string().starts_with(DUPLICATE_MEMBER) {
                StrictJsonError::DuplicateMember
            } else {
                StrictJsonError::Invalid
            }
        })
}

/// The refusal of a repeated member name, for a streaming reader of its own.
pub fn duplicate_member<E: de::Error>() -> E {
    E::custom(DUPLICATE_MEMBER)
}

/// One JSON value with unique member names, for streaming readers that take a document apart
/// piece by piece (a revocation list) rather than hold all of it.
pub struct UniqueKeys(pub Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(duplicate_member());
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Result<(), StrictJsonError>) {
        assert_eq!(parse(text.as_bytes()).map(drop), expected, "{text}");
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        check(r#"{"a":1,"b":[{"c":2}]}"#, Ok(()));
        check(r#"{"a":1,"a":2}"#, Err(StrictJsonError::DuplicateMember));
        check(
            r#"{"a":{"b":1,"b":1}}"#,
            Err(StrictJsonError::DuplicateMember),
        );
        check(
            r#"[{"x":1},{"x":1,"x":2}]"#,
            Err(StrictJsonError::DuplicateMember),
        );
        check("not json", Err(StrictJsonError::Invalid));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        check(&deep, Err(StrictJsonError::Invalid));
    }
}
