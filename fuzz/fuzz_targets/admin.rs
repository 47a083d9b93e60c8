//! The admin endpoint's request reader on any bytes: it never panics; a refusal is a 4xx that
//! says why; reading the bytes as they arrive gives no answer but the final one.
#![no_main]

use bagpipe::fuzzing::{Request, read_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let got = read_request(data);
    if let Request::Refused { status, why } = &got {
        assert!(status.starts_with('4'), "a refusal is a 4xx, not {status}");
        assert!(why.trim().len() > 1, "a refusal says why");
    }
    for cut in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
        let early = read_request(&data[..cut]);
        assert!(early == Request::Partial || early == got, "{early:?} at {cut}, then {got:?}");
    }
});
