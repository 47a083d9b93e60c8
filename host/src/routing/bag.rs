//! Checking a bag a guest sends and stamping the host's keys on it. Pure: no I/O, no state.
//!
//! A bag crosses the boundary as JSON text. The host reads it once, without building a tree: it
//! checks that it is one JSON object, within the size and nesting limits, with no top-level key
//! that starts with `__`; then it writes `__from` and `__seq` in front of the sender's keys, so
//! the rest of the text is copied, never re-serialised. A one-pass scan (`bag_scan`) accepts the
//! usual bag; what it cannot vouch for goes through serde, which decides and says why.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Prefix of the keys that belong to the host.
pub const HOST_KEY_PREFIX: &str = "__";

/// Why a bag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BagError {
    /// Larger than the receiver accepts.
    #[error("bag is {size} bytes, larger than the limit of {limit}")]
    TooLarge {
        /// The bag's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Not JSON text.
    #[error("bag is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("bag must be a JSON object, not {0}")]
    NotObject(&'static str),
    /// Nested deeper than the receiver accepts.
    #[error("bag is nested deeper than the limit of {0}")]
    TooDeep(usize),
    /// Sets a key that belongs to the host.
    #[error("bag sets `{0}`: keys starting with `__` belong to the host")]
    ReservedKey(String),
}

/// What the receiver accepts.
#[derive(Debug, Clone, Copy)]
pub struct BagLimits {
    /// Largest bag, in bytes of JSON text.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects, the bag itself counting as 1.
    pub max_depth: usize,
}

/// Checks `raw` and returns it with `__from` and `__seq` added. Empty text and `null` are the
/// empty bag `{}`.
pub fn stamp(raw: &str, from: &str, seq: u64, limits: BagLimits) -> Result<String, BagError> {
    if raw.len() > limits.max_bytes {
        return Err(BagError::TooLarge { size: raw.len(), limit: limits.max_bytes });
    }
    let text = raw.trim();
    let body = if text.is_empty() || text == "null" {
        "}"
    } else {
        let has_keys = check(text, limits.max_depth)?;
        // `check` accepted an object, so the text starts with `{`.
        let rest = &text[1..];
        if has_keys {
            // Becomes `{"__from":..,"__seq":..,<the sender's keys>}`.
            return Ok(with_header(from, seq, ",", rest));
        }
        rest
    };
    Ok(with_header(from, seq, "", body))
}

/// Checks a bag that comes in already stamped (from another host, or a stream): one JSON object
/// within `limits`; host keys are allowed.
pub fn check_inbound(text: &str, limits: BagLimits) -> Result<(), BagError> {
    if text.len() > limits.max_bytes {
        return Err(BagError::TooLarge { size: text.len(), limit: limits.max_bytes });
    }
    match super::bag_scan::object(text, limits.max_depth, false) {
        Some(_) => Ok(()),
        None => check_inbound_by_serde(text, limits.max_depth),
    }
}

/// [`check_inbound`] by serde alone, once the size is known to fit.
pub(super) fn check_inbound_by_serde(text: &str, max_depth: usize) -> Result<(), BagError> {
    let refusal = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let depth = Depth { left: max_depth, max: max_depth, refusal: &refusal };
    match depth.deserialize(&mut de) {
        Ok(()) => {}
        Err(e) => return Err(refusal.take().unwrap_or_else(|| BagError::NotJson(e.to_string()))),
    }
    de.end().map_err(|e| BagError::NotJson(e.to_string()))?;
    if !text.trim_start().starts_with('{') {
        return Err(BagError::NotObject("something else"));
    }
    Ok(())
}

/// A stamped bag (as [`stamp`] made it) with `__reply` set to `handle`, first: what a request
/// from `controller.call` carries so that its target can answer.
pub fn with_reply(stamped: &str, handle: &str) -> String {
    with_key(stamped, "__reply", handle)
}

/// A stamped bag (as [`stamp`] made it) with the host key `key` (which starts with `__`) set to
/// `value`, first.
pub fn with_key(stamped: &str, key: &str, value: &str) -> String {
    debug_assert!(key.starts_with(HOST_KEY_PREFIX));
    let mut out = String::with_capacity(stamped.len() + key.len() + value.len() + 8);
    out.push_str("{\"");
    out.push_str(key);
    out.push_str("\":");
    push_json_str(&mut out, value);
    out.push(',');
    // A stamped bag always starts with `{"__from":`: the rest follows the new key.
    out.push_str(stamped.strip_prefix('{').unwrap_or(stamped));
    out
}

/// `{"__from":<from>,"__seq":<seq><sep><rest>`, in one allocation: this runs for every bag.
fn with_header(from: &str, seq: u64, sep: &str, rest: &str) -> String {
    let mut out = String::with_capacity(rest.len() + from.len() + 48);
    out.push_str("{\"__from\":");
    push_json_str(&mut out, from);
    out.push_str(",\"__seq\":");
    // Not `write!`: the formatting machinery cost ten times as many instructions.
    out.push_str(itoa::Buffer::new().format(seq));
    out.push_str(sep);
    out.push_str(rest);
    out
}

/// Appends `text` as a JSON string: as it is between quotes when nothing in it needs escaping
/// (a responsibility's name, usually), else as serde_json escapes it.
fn push_json_str(out: &mut String, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(text).to_string());
    }
}

/// Checks that `text` is exactly one JSON object within `max_depth`, with no reserved top-level
/// key. Returns whether the object has any keys.
fn check(text: &str, max_depth: usize) -> Result<bool, BagError> {
    match super::bag_scan::object(text, max_depth, true) {
        Some(has_keys) => Ok(has_keys),
        None => check_by_serde(text, max_depth),
    }
}

/// [`check`] by serde alone: what decides, and says why, when the scan cannot vouch for a bag.
pub(super) fn check_by_serde(text: &str, max_depth: usize) -> Result<bool, BagError> {
    // Our own refusals are noted here; serde's error then only stops the parse.
    let refusal = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let has_keys = Top { max_depth, refusal: &refusal }
        .deserialize(&mut de)
        .map_err(|e| refusal.take().unwrap_or_else(|| BagError::NotJson(e.to_string())))?;
    de.end().map_err(|e| BagError::NotJson(e.to_string()))?;
    Ok(has_keys)
}

fn refuse<E: de::Error>(refusal: &Cell<Option<BagError>>, why: BagError) -> E {
    let e = E::custom(&why);
    refusal.set(Some(why));
    e
}

/// The top level: must be an object; looks at its keys.
struct Top<'r> {
    max_depth: usize,
    refusal: &'r Cell<Option<BagError>>,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut has_keys = false;
        let values = Depth { left: self.max_depth.saturating_sub(1), max: self.max_depth, refusal: self.refusal };
        while let Some(key) = map.next_key::<KeyName<'de>>()? {
            if key.0.starts_with(HOST_KEY_PREFIX) {
                return Err(refuse(self.refusal, BagError::ReservedKey(key.0.into_owned())));
            }
            has_keys = true;
            map.next_value_seed(values.same())?;
        }
        Ok(has_keys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(refuse(self.refusal, BagError::NotObject("an array")))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Err(refuse(self.refusal, BagError::NotObject("a string")))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Err(refuse(self.refusal, BagError::NotObject("a boolean")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Err(refuse(self.refusal, BagError::NotObject("a number")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Err(refuse(self.refusal, BagError::NotObject("a number")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Err(refuse(self.refusal, BagError::NotObject("a number")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Err(refuse(self.refusal, BagError::NotObject("null")))
    }
}

/// A key, borrowed from the text when it has no escapes.
struct KeyName<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyName(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyName(v.to_owned().into()))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any value, counting nesting; `left` is how many more levels may open.
struct Depth<'r> {
    left: usize,
    max: usize,
    refusal: &'r Cell<Option<BagError>>,
}

impl<'r> Depth<'r> {
    fn same(&self) -> Depth<'r> {
        Depth { left: self.left, max: self.max, refusal: self.refusal }
    }

    fn deeper<E: de::Error>(&self) -> Result<Depth<'r>, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Depth { left, ..self.same() }),
            None => Err(refuse(self.refusal, BagError::TooDeep(self.max))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Depth<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Depth<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(inner.same())?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner.same())?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BagLimits = BagLimits { max_bytes: 1 << 20, max_depth: 4 };

    fn check(raw: &str, expected: Result<&str, BagError>) {
        let got = stamp(raw, "src", 7, LIMITS);
        assert_eq!(got.as_deref().map_err(Clone::clone), expected, "for {raw:?}");
        if let Ok(text) = got {
            let parsed: serde_json::Value = serde_json::from_str(&text).expect("stamped bag is JSON");
            assert_eq!(parsed["__from"], "src");
            assert_eq!(parsed["__seq"], 7);
        }
    }

    #[test]
    fn stamps_host_keys_in_front() {
        check(r#"{"a":1}"#, Ok(r#"{"__from":"src","__seq":7,"a":1}"#));
        check(r#"  { "a" : [1, {"b": null}] } "#, Ok(r#"{"__from":"src","__seq":7, "a" : [1, {"b": null}] }"#));
    }

    #[test]
    fn empty_and_null_are_the_empty_bag() {
        for raw in ["", "  ", "null", "{}", "{ }"] {
            let text = stamp(raw, "src", 7, LIMITS).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed, serde_json::json!({"__from": "src", "__seq": 7}), "for {raw:?}");
        }
    }

    #[test]
    fn a_request_carries_its_handle_first() {
        for raw in ["{}", r#"{"a":1}"#] {
            let text = with_reply(&stamp(raw, "src", 7, LIMITS).unwrap(), "_CALL.h.3");
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed["__reply"], "_CALL.h.3", "for {raw:?}");
            assert_eq!(parsed["__from"], "src");
            assert!(text.starts_with(r#"{"__reply":"_CALL.h.3","__from":"src""#), "{text}");
        }
    }

    #[test]
    fn sender_names_are_escaped() {
        for name in ["we\"ird", "back\\slash", "tab\there", "nul\u{0}", "bell\u{7}", "ünï\u{2028}cödé", "plain"] {
            let text = stamp(r#"{"a":1}"#, name, u64::MAX, LIMITS).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed["__from"], name);
            assert_eq!(parsed["__seq"], u64::MAX);
            let reply = with_key(&text, "__reply", name);
            let parsed: serde_json::Value = serde_json::from_str(&reply).unwrap();
            assert_eq!(parsed["__reply"], name, "{reply}");
            assert_eq!(parsed["a"], 1);
        }
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        check("[1,2]", Err(BagError::NotObject("an array")));
        check("42", Err(BagError::NotObject("a number")));
        check("\"x\"", Err(BagError::NotObject("a string")));
        check("true", Err(BagError::NotObject("a boolean")));
        assert!(matches!(stamp("{", "s", 1, LIMITS), Err(BagError::NotJson(_))));
        assert!(matches!(stamp("nope", "s", 1, LIMITS), Err(BagError::NotJson(_))));
        assert!(matches!(stamp("{} {}", "s", 1, LIMITS), Err(BagError::NotJson(_))));
        assert!(matches!(stamp(r#"{"a":1,}"#, "s", 1, LIMITS), Err(BagError::NotJson(_))));
    }

    #[test]
    fn refuses_host_keys_at_the_top_only() {
        check(r#"{"a":1,"__seq":9}"#, Err(BagError::ReservedKey("__seq".into())));
        check(r#"{"__x\u0041":1}"#, Err(BagError::ReservedKey("__xA".into())));
        check(r#"{"a":{"__nested":1}}"#, Ok(r#"{"__from":"src","__seq":7,"a":{"__nested":1}}"#));
    }

    #[test]
    fn inbound_bags_may_carry_host_keys_but_not_break_limits() {
        assert_eq!(check_inbound(r#"{"__from":"a","__seq":1,"x":[1]}"#, LIMITS), Ok(()));
        assert_eq!(check_inbound(r#"{"a":[[[[1]]]]}"#, LIMITS), Err(BagError::TooDeep(4)));
        assert!(matches!(check_inbound("[1]", LIMITS), Err(BagError::NotObject(_))));
        assert!(matches!(check_inbound("{", LIMITS), Err(BagError::NotJson(_))));
    }

    #[test]
    fn limits_depth_and_size() {
        check(r#"{"a":[[[[1]]]]}"#, Err(BagError::TooDeep(4)));
        check(r#"{"a":[{"b":[{}]}]}"#, Err(BagError::TooDeep(4)));
        check(r#"{"a":[[[1]]]}"#, Ok(r#"{"__from":"src","__seq":7,"a":[[[1]]]}"#));
        let small = BagLimits { max_bytes: 8, max_depth: 4 };
        assert_eq!(stamp(r#"{"a":"123456"}"#, "s", 1, small), Err(BagError::TooLarge { size: 14, limit: 8 }));
    }
}
