//! Property tests of the bag checker and stamper: whatever text a guest (or another host, or the
//! server) hands in, checking never panics; a bag it accepts comes out one JSON object carrying
//! the host's keys and exactly the sender's keys, within the limits; a refusal says why.

use proptest::prelude::*;
use serde_json::Value;

use super::bag::{BagError, BagLimits, check_inbound, stamp};

const LIMITS: BagLimits = BagLimits { max_bytes: 4096, max_depth: 6 };

/// JSON values of bounded size and depth.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
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
}
