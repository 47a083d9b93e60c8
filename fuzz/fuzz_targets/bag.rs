//! The bag checker and stamper on any text: they never panic; a bag they accept is one JSON
//! object with the host's keys in front of the sender's, and passes the inbound check; a refusal
//! says why.
#![no_main]

use bagpipe::fuzzing::{BagLimits, check_inbound, stamp};
use libfuzzer_sys::fuzz_target;

const LIMITS: BagLimits = BagLimits { max_bytes: 16 * 1024, max_depth: 16 };

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match stamp(text, "fu\"zz", 7, LIMITS) {
        Ok(stamped) => {
            let bag: serde_json::Value = serde_json::from_str(&stamped).expect("a stamped bag is JSON");
            let bag = bag.as_object().expect("a stamped bag is an object");
            assert_eq!(bag.get("__from").and_then(|v| v.as_str()), Some("fu\"zz"));
            assert_eq!(bag.get("__seq").and_then(|v| v.as_u64()), Some(7));
            let roomy = BagLimits { max_bytes: usize::MAX, ..LIMITS };
            if let Err(e) = check_inbound(&stamped, roomy) {
                panic!("a stamped bag fails the inbound check: {e}");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Err(e) = check_inbound(text, LIMITS) {
        assert!(!e.to_string().is_empty());
    }
});
