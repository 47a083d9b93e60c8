//! Property tests of the bag checker and stamper: whatever text a guest (or another host, or the
//! server) hands in, checking never panics; a bag it accepts comes out one JSON object carrying
//! the host's keys and exactly the sender's keys, within the limits; a refusal says why.

use proptest::prelude::*;
use serde_json::Value;

use super::bag::{BagError, BagLimits, check_by_serde, check_inbound, check_inbound_by_serde, stamp};
use super::bag_scan;

const LIMITS: BagLimits = BagLimits { max_bytes: 4096, max_depth: 6 };

/// JSON values of bounded size and depth.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Eighths print and parse back exactly (serde_json reads floats fast, not always exactly).
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        "[ -~]{0,12}".prop_map(Value::String),
        "\\PC{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[_a-z]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_checked_without_panicking(text in "\\PC{0,200}") {
        let _ = stamp(&text, "sender", 1, LIMITS);
        let _ = check_inbound(&text, LIMITS);
    }

    #[test]
    fn an_accepted_bag_is_an_object_with_the_host_keys_and_the_senders(value in json(), seq in 1u64..1_000_000) {
        let text = value.to_string();
        match stamp(&text, "se\"nder", seq, LIMITS) {
            Ok(stamped) => {
                let out: Value = serde_json::from_str(&stamped).expect("the stamped bag is JSON");
                let out = out.as_object().expect("an object");
                prop_assert_eq!(&out["__from"], "se\"nder");
                prop_assert_eq!(&out["__seq"], seq);
                let sent = value.as_object().cloned().unwrap_or_default();
                prop_assert_eq!(out.len(), sent.len() + 2, "the sender's keys and the host's, no more");
                for (k, v) in &sent {
                    prop_assert_eq!(out.get(k), Some(v));
                }
                let roomy = BagLimits { max_bytes: usize::MAX, ..LIMITS };
                prop_assert!(check_inbound(&stamped, roomy).is_ok(), "a stamped bag passes the inbound check");
            }
            Err(BagError::NotObject(_)) => prop_assert!(!value.is_object() && !value.is_null()),
            Err(BagError::ReservedKey(key)) => prop_assert!(key.starts_with("__")),
            Err(BagError::TooDeep(limit)) => prop_assert_eq!(limit, LIMITS.max_depth),
            Err(BagError::TooLarge { limit, .. }) => prop_assert_eq!(limit, LIMITS.max_bytes),
            Err(e) => prop_assert!(false, "a JSON value was refused as {e}"),
        }
    }

    /// The scan is sound: whatever it vouches for, serde accepts, with the same answer about keys.
    /// Tried on bags near the grammar's edges: a valid bag with one byte changed, inserted or
    /// taken out, and hand-made numbers and escapes.
    #[test]
    fn the_scan_vouches_only_for_what_serde_accepts(text in near_json(), depth in 0usize..8) {
        if let Some(has_keys) = bag_scan::object(&text, depth, true) {
            prop_assert_eq!(check_by_serde(&text, depth), Ok(has_keys), "the scan accepted {:?}", text);
        }
        if bag_scan::object(&text, depth, false).is_some() {
            prop_assert_eq!(check_inbound_by_serde(&text, depth), Ok(()), "the scan accepted {:?} inbound", text);
        }
    }

    /// The scan is what runs for usual bags: serde decides only for rare ones.
    #[test]
    fn the_scan_accepts_usual_bags(value in json()) {
        let text = value.to_string();
        let usual = value.as_object().is_some_and(|o| !o.keys().any(|k| k.starts_with("__")))
            && check_by_serde(&text, LIMITS.max_depth).is_ok();
        if usual {
            prop_assert!(bag_scan::object(&text, LIMITS.max_depth, true).is_some(), "the scan gave up on {}", text);
        }
    }
}

/// Text close to a JSON object: a serialised one, maybe with one byte changed, inserted or
/// removed, or an object around a hand-made number or string.
fn near_json() -> impl Strategy<Value = String> {
    let alphabet = prop::sample::select(b"{}[]\",:0123456789-+.eEtrufalsn_u\\ \t\n\x01\x1f".to_vec());
    let edited = (json(), any::<prop::sample::Index>(), alphabet, 0..4u8).prop_map(|(value, at, byte, how)| {
        let mut bytes = value.to_string().into_bytes();
        let i = at.index(bytes.len() + 1);
        match how {
            0 => {}
            1 if i < bytes.len() => bytes[i] = byte,
            2 => bytes.insert(i, byte),
            _ if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => {}
        }
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let number = "-?(0|[1-9][0-9]{0,3}|[1-9][0-9]{290,310})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,4})?";
    let number = number.prop_map(|n| format!("{{\"n\":{n}}}"));
    let escape = "(\\\\u[dD][89abAB][0-9a-fA-F]{2}|\\\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\\\u00[0-9a-fA-F]{2}|\\\\[nrtbf/\"\\\\x]|[a-z_]){0,4}";
    let key = escape.prop_map(|e| format!("{{\"{e}\":1}}"));
    let value = "(\\\\u[dD][89abAB][0-9a-fA-F]{2}|\\\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\\\u[0-9a-fA-F]{4}|\\\\[nrtbf/\"\\\\x]|[a-z_]){0,4}"
        .prop_map(|e| format!("{{\"k\":\"{e}\"}}"));
    prop_oneof![4 => edited, 1 => number, 1 => key, 1 => value]
}
