//! [`Bag`]: the JSON object blocks exchange.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A bag: a JSON object.
///
/// It dereferences to a [`serde_json::Map`], so `get`, `insert`, `iter` and friends work on it.
/// Keys starting with `__` belong to the host: it adds `__from` and `__seq` to every bag it
/// delivers (read them with [`Bag::sender`] and [`Bag::seq`]) and refuses a bag in which a block
/// sets such a key itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bag(Map<String, Value>);

/// Why text could not be read as a bag.
#[derive(Debug)]
pub struct BagError(String);

impl fmt::Display for BagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BagError {}

impl Bag {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the JSON text of an object.
    pub fn from_json(text: &str) -> Result<Self, BagError> {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => Self::try_from(value),
            Err(e) => Err(BagError(format!("bag is not JSON: {e}"))),
        }
    }

    /// The bag's JSON text.
    pub fn to_json(&self) -> String {
        // Most bags are a few hundred bytes: start with room for that rather than grow (and copy)
        // from serde_json's 128. Every caller in the SDK drops the text right after the call.
        let mut text = Vec::with_capacity(512);
        // A map with string keys always serialises.
        if serde_json::to_writer(&mut text, &self.0).is_err() {
            return "{}".to_owned();
        }
        // SAFETY: serde_json writes only UTF-8 (its own `to_string` relies on the same).
        unsafe { String::from_utf8_unchecked(text) }
    }

    /// Adds `key` and returns the bag, for building bags in one expression.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// The responsibility of the block that sent this bag (`__from`).
    pub fn sender(&self) -> Option<&str> {
        self.0.get("__from").and_then(Value::as_str)
    }

    /// The sender's sequence number for this bag (`__seq`), counting from 1 over all its bags.
    pub fn seq(&self) -> Option<u64> {
        self.0.get("__seq").and_then(Value::as_u64)
    }

    /// The message server subject this bag came from (`__subject`), if it came from one.
    pub fn subject(&self) -> Option<&str> {
        self.0.get("__subject").and_then(Value::as_str)
    }

    /// The topic this bag was emitted on (`__topic`), if it came through one.
    pub fn topic(&self) -> Option<&str> {
        self.0.get("__topic").and_then(Value::as_str)
    }

    /// Where to send a reply (`__reply`), if the sender asked for one.
    pub fn reply(&self) -> Option<&str> {
        self.0.get("__reply").and_then(Value::as_str)
    }

    /// A copy without the host's keys (those starting with `__`): what to send on when a block
    /// forwards a bag it received.
    pub fn payload(&self) -> Bag {
        Bag(self.0.iter().filter(|(k, _)| !k.starts_with("__")).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Removes the host's keys in place (see [`Bag::payload`]).
    pub fn strip_host_keys(&mut self) {
        self.0.retain(|k, _| !k.starts_with("__"));
    }

    /// The bag as a JSON map.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

impl Deref for Bag {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Bag {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<Map<String, Value>> for Bag {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl TryFrom<Value> for Bag {
    type Error = BagError;
    fn try_from(value: Value) -> Result<Self, BagError> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            Value::Null => Ok(Self::new()),
            other => Err(BagError(format!("a bag is a JSON object, not {other}"))),
        }
    }
}

impl fmt::Display for Bag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_keys_are_read_and_stripped() {
        let mut bag = Bag::from_json(r#"{"__from":"a","__seq":7,"x":1}"#).unwrap();
        assert_eq!(bag.sender(), Some("a"));
        assert_eq!(bag.seq(), Some(7));
        assert_eq!(bag.payload().to_json(), r#"{"x":1}"#);
        bag.strip_host_keys();
        assert_eq!(bag, Bag::new().with("x", 1));
    }

    #[test]
    fn only_objects_are_bags() {
        assert!(Bag::try_from(json!([1])).is_err());
        assert!(Bag::from_json("nope").is_err());
        assert_eq!(Bag::try_from(json!(null)).unwrap(), Bag::new());
    }
}
