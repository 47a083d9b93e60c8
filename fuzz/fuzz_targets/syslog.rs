//! The syslog block's framing and parsing on any bytes. The first byte picks `max_frame` and
//! where the stream is cut; the rest is the stream. Framing never panics and finds the same
//! frames in the stream cut in two as whole; every frame, and the whole input as one datagram,
//! is parsed without panicking, and a refusal says why.
#![no_main]

use bagpipe_protocol_props::syslog_frame::{Frame, Framer};
use bagpipe_protocol_props::syslog_parse::{parse, raw};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Message(Vec<u8>),
    /// Which bytes of a skipped frame were at hand depends on the cut.
    TooLong,
    Truncated(Vec<u8>),
}

fn frames<'a>(max_frame: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Got> {
    let mut framer = Framer::new(max_frame);
    let mut out = Vec::new();
    let mut got = |frame: Frame<'_>| {
        out.push(match frame {
            Frame::Message(b) => Got::Message(b.to_vec()),
            Frame::TooLong(_) => Got::TooLong,
            Frame::Truncated(b) => Got::Truncated(b.to_vec()),
        })
    };
    for chunk in chunks {
        framer.push(chunk, &mut got);
    }
    if let Some(frame) = framer.finish() {
        got(frame);
    }
    out
}

fn read(bytes: &[u8]) {
    if let Err(why) = parse(bytes) {
        assert!(!why.is_empty());
    }
    assert!(raw(bytes).chars().count() <= 1024);
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, bytes)) = data.split_first() else { return };
    let max_frame = usize::from(k % 64) + 1;
    let cut = usize::from(k) * bytes.len() / 255;
    let whole = frames(max_frame, [bytes]);
    assert_eq!(frames(max_frame, [&bytes[..cut], &bytes[cut..]]), whole, "cut at {cut}");
    for frame in &whole {
        if let Got::Message(message) = frame {
            read(message);
        }
    }
    read(bytes);
});
