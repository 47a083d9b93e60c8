//! The admin endpoint's router on any method and path: it never panics; a refusal is a 4xx that
//! says why, in one line. (hyper reads the requests themselves.)
#![no_main]

use bagpipe::fuzzing::{Refused, route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (method, path) = text.split_once(' ').unwrap_or((&text, "/"));
    if let Err(Refused { status, why }) = route(method, path) {
        assert!(status.is_client_error(), "a refusal is a 4xx, not {status}");
        assert!(why.trim().len() > 1 && why.ends_with('\n') && why.lines().count() == 1, "a refusal says why: {why:?}");
    }
});
