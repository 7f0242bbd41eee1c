//! Strict reading of JSON documents from the network: a key given twice in
//! one object is refused, at any depth.
//!
//! serde_json keeps the last of duplicate keys when it builds a `Value`, and
//! a derived struct refuses them only among its own fields, so without this
//! check two readers of the same bytes could disagree on what they say (a
//! proxy or a signer reading the first `customer`, the server acting on the
//! second). Pure: it reads bytes, nothing else.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON document of any shape, read only to check that no object in it
/// has a key twice. Deserialize it (with `serde_path_to_error` to learn
/// where a duplicate is) before parsing the same bytes into what they mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E: de::Error>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_none<E: de::Error>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<UniqueKeys, D::Error> {
        UniqueKeys::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        // A set rather than a scan of the keys so far: an object with many
        // keys must not cost the square of their number.
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                // Consume the value so the error points at this key.
                map.next_value::<IgnoredAny>()?;
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            map.next_value::<UniqueKeys>()?;
            seen.insert(key);
        }
        Ok(UniqueKeys)
    }
}

/// Checks that `bytes` are one well-formed JSON document in which no object
/// has a key twice. A syntax error and a duplicate are both errors; tell
/// them apart with [`serde_json::Error::classify`] (a duplicate is `Data`).
pub fn check_unique_keys(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<UniqueKeys>(bytes).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::error::Category;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        for doc in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"b": 1, "c": 2, "b": 3}}"#,
            r#"[1, {"x": [{"y": null, "y": null}]}]"#,
            r#"{"a\u0062": 1, "ab": 2}"#,
        ] {
            let error = check_unique_keys(doc.as_bytes()).expect_err(doc);
            assert_eq!(error.classify(), Category::Data, "{doc}");
            assert!(error.to_string().contains("duplicate key"), "{error}");
        }
    }

    #[test]
    fn documents_without_duplicates_pass_and_bad_syntax_is_syntax() {
        for doc in [
            r#"{"a": 1, "b": {"a": 1}, "c": [{"a": 1}, {"a": 2}]}"#,
            "[]",
            "null",
            r#""text""#,
            "-1.5e3",
        ] {
            check_unique_keys(doc.as_bytes()).expect(doc);
        }
        for doc in [r#"{"a": 1"#, r#"{"a": 1} x"#, ""] {
            let error = check_unique_keys(doc.as_bytes()).expect_err(doc);
            assert_ne!(error.classify(), Category::Data, "{doc}");
        }
    }
}
