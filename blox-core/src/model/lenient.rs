//! Serde helpers for the loose typing of ECS JSON: numbers that arrive as
//! strings (`"cpu": "256"`), versions that are strings at the envelope and
//! integers in `detail`, and nulls where a list or a flag is expected.

use serde::{Deserialize, Deserializer, de};
use std::fmt;

/// A `u64` given as a JSON number or a decimal string.
pub fn u64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer or a string holding one")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("negative value {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            if v.fract() == 0.0 && (0.0..1.8e19).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::custom(format!("not a non-negative integer: {v}")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("not a non-negative integer: {v:?}")))
        }
    }
    d.deserialize_any(V)
}

/// An optional `u64` given as a JSON number, a decimal string, or null.
pub fn opt_u64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "u64_or_string")] u64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(v)| v))
}

/// An optional `i64` given as a JSON number, a decimal string, or null.
pub fn opt_i64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer, a string holding one, or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("integer out of range: {v}")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && v.abs() < 9.2e18 {
                Ok(Some(v as i64))
            } else {
                Err(E::custom(format!("not an integer: {v}")))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format!("not an integer: {v:?}")))
        }
    }
    d.deserialize_any(V)
}

/// An optional string given as a JSON string, a number (kept as its decimal
/// text), or null. ECS sends `cpu`/`memory` as strings in events and the API.
pub fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, a number, or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }
    d.deserialize_any(V)
}

/// A list that may be given as `null`.
pub fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut v = Option::<Vec<T>>::deserialize(d)?.unwrap_or_default();
    // A list is deserialized by pushing, which leaves up to half its
    // capacity unused (4 slots for 1 or 2 elements): cached entities keep
    // their lists for as long as they live, so give the slack back.
    v.shrink_to_fit();
    Ok(v)
}

/// An optional value that may be given as the empty string (none): Blox
/// v0.3 writes `""` for a task's unknown `containerInstanceARN` and
/// `createdAt`.
pub fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: de::DeserializeOwned,
{
    match Option::<serde_json::Value>::deserialize(d)? {
        None => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(v) => T::deserialize(v).map(Some).map_err(de::Error::custom),
    }
}

/// A flag that may be given as `null` (false) or as the string `"true"`.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v {
                "true" | "TRUE" | "True" => Ok(true),
                "false" | "FALSE" | "False" => Ok(false),
                _ => Err(E::custom(format!("not a boolean: {v:?}"))),
            }
        }
    }
    d.deserialize_any(V)
}

/// `true` for `is_false` fields that need not be serialized.
pub fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Lists {
        #[serde(deserialize_with = "super::null_as_empty")]
        items: Vec<String>,
    }

    #[test]
    fn a_list_keeps_no_spare_capacity() {
        let lists: Lists = serde_json::from_str(r#"{"items": ["a", "b"]}"#).unwrap();
        assert_eq!(lists.items, ["a", "b"]);
        assert_eq!(lists.items.capacity(), 2, "entities keep their lists");
        let empty: Lists = serde_json::from_str(r#"{"items": null}"#).unwrap();
        assert!(empty.items.is_empty());
    }
}
