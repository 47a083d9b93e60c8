//! Property tests of the syslog block's TCP framing (RFC 6587): whatever bytes a client sends,
//! in whatever pieces, framing never panics and finds the same frames as in the whole stream,
//! byte for byte (a frame too long included: it is reported with its first `max_frame` bytes);
//! frames built by the rules come out as they went in, and one too long is reported, skipped,
//! and does not disturb the frames after it; the framer never holds much more than `max_frame`.

use proptest::prelude::*;

use crate::syslog_frame::{Frame, Framer};

/// A frame, owned, for comparing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Got {
    Message(Vec<u8>),
    TooLong(Vec<u8>),
    Truncated(Vec<u8>),
}

fn got(frame: Frame<'_>) -> Got {
    match frame {
        Frame::Message(b) => Got::Message(b.to_vec()),
        Frame::TooLong(b) => Got::TooLong(b.to_vec()),
        Frame::Truncated(b) => Got::Truncated(b.to_vec()),
    }
}

/// The frames of a stream that arrives in `chunks` and then ends.
pub(crate) fn frames<'a>(max_frame: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Got> {
    let mut framer = Framer::new(max_frame);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk, &mut |f| out.push(got(f)));
    }
    if let Some(f) = framer.finish() {
        out.push(got(f));
    }
    out
}

/// `bytes` cut at the given points.
fn cut<'a>(bytes: &'a [u8], at: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = at.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[from..p]);
        from = p;
    }
    chunks
}

/// Bytes with plenty of what framing looks at: digits, spaces, `\r`, `\n`.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'<'), b'0'..=b'9', any::<u8>()];
    prop::collection::vec(byte, 0..160)
}

/// A syslog message as a client frames it: octet-counted (any bytes) or newline-terminated
/// (printable, with `\r\n` or `\n`). Both start with `<`, as every syslog message does.
fn framed() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let counted = prop::collection::vec(any::<u8>(), 0..60).prop_map(|body| {
        let mut msg = b"<".to_vec();
        msg.extend(body);
        let mut frame = format!("{} ", msg.len()).into_bytes();
        frame.extend(&msg);
        (msg, frame)
    });
    let line = ("<[ -~]{0,60}", any::<bool>()).prop_map(|(msg, crlf)| {
        let frame = format!("{msg}{}", if crlf { "\r\n" } else { "\n" }).into_bytes();
        (msg.into_bytes(), frame)
    });
    prop_oneof![counted, line]
}

proptest! {
    #![proptest_config(crate::bounded(256))]

    #[test]
    fn any_bytes_in_any_pieces_frame_as_the_whole_stream(
        bytes in stream(),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        max_frame in 1usize..48,
    ) {
        let whole = frames(max_frame, [bytes.as_slice()]);
        for (i, frame) in whole.iter().enumerate() {
            match frame {
                Got::Message(m) => {
                    prop_assert!(m.len() <= max_frame, "a message of {} bytes, over {}", m.len(), max_frame);
                }
                // Only the stream's end can cut a report short.
                Got::TooLong(b) if i + 1 < whole.len() => prop_assert_eq!(b.len(), max_frame),
                Got::TooLong(b) => prop_assert!(b.len() <= max_frame, "{} bytes of a frame too long", b.len()),
                Got::Truncated(_) => {}
            }
        }
        prop_assert_eq!(frames(max_frame, cut(&bytes, &at)), whole);
    }

    #[test]
    fn a_stream_cut_at_any_byte_frames_as_the_whole_stream(
        messages in prop::collection::vec(framed(), 0..6),
        tail in stream(),
        max_frame in 1usize..80,
    ) {
        let mut bytes: Vec<u8> = messages.iter().flat_map(|(_, frame)| frame.clone()).collect();
        bytes.extend(tail);
        let whole = frames(max_frame, [bytes.as_slice()]);
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            prop_assert_eq!(&frames(max_frame, [a, b]), &whole, "cut at {}", i);
        }
    }

    #[test]
    fn framed_messages_come_out_as_sent_and_too_long_ones_are_skipped(
        messages in prop::collection::vec(framed(), 0..8),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        max_frame in 1usize..80,
    ) {
        let bytes: Vec<u8> = messages.iter().flat_map(|(_, frame)| frame.clone()).collect();
        let want: Vec<Got> = messages
            .iter()
            .map(|(msg, _)| {
                if msg.len() > max_frame { Got::TooLong(msg[..max_frame].to_vec()) } else { Got::Message(msg.clone()) }
            })
            .collect();
        prop_assert_eq!(frames(max_frame, cut(&bytes, &at)), want);
    }

    #[test]
    fn a_stream_that_ends_inside_a_counted_frame_says_so(body in prop::collection::vec(any::<u8>(), 1..60), keep in any::<prop::sample::Index>()) {
        let mut frame = format!("{} ", body.len() + 1).into_bytes();
        frame.push(b'<');
        frame.extend(&body);
        // Cut somewhere after the `LEN SP` and before the end.
        let head = frame.len() - body.len() - 1;
        let end = head + keep.index(body.len() + 1);
        let got = frames(1024, [&frame[..end]]);
        prop_assert_eq!(got, vec![Got::Truncated(frame[..end].to_vec())]);
    }

    #[test]
    fn a_stream_that_ends_inside_a_counted_frame_too_long_reports_what_it_had(
        body in prop::collection::vec(any::<u8>(), 1..60),
        keep in any::<prop::sample::Index>(),
        max_frame in 1usize..60,
    ) {
        prop_assume!(body.len() + 1 > max_frame);
        let mut frame = format!("{} ", body.len() + 1).into_bytes();
        let head = frame.len();
        frame.push(b'<');
        frame.extend(&body);
        // Cut anywhere after the `LEN SP` and before the end: the report is the message's first
        // `max_frame` bytes, or what came of them.
        let end = head + keep.index(body.len() + 1);
        let got = frames(max_frame, [&frame[..end]]);
        prop_assert_eq!(got, vec![Got::TooLong(frame[head..end.min(head + max_frame)].to_vec())]);
    }

    #[test]
    fn the_framer_holds_at_most_max_frame_bytes_and_a_length(
        bytes in stream(),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        max_frame in 1usize..48,
    ) {
        let mut framer = Framer::new(max_frame);
        for chunk in cut(&bytes, &at) {
            framer.push(chunk, &mut |_| {});
            let held = framer.snapshot()["buf"].as_array().map_or(0, Vec::len);
            // `LEN SP` and less than `max_frame` bytes; a line of `max_frame` bytes and a `\r`.
            prop_assert!(held <= max_frame + 11, "{} bytes held, max_frame {}", held, max_frame);
        }
    }

    #[test]
    fn framing_state_survives_a_swap(bytes in stream(), at in any::<prop::sample::Index>(), max_frame in 1usize..48) {
        // A swap snapshots the framer between two pieces and restores it in the new version.
        let i = at.index(bytes.len() + 1);
        let mut first = Framer::new(max_frame);
        let mut out = Vec::new();
        first.push(&bytes[..i], &mut |f| out.push(got(f)));
        let state = first.snapshot();
        let mut second = Framer::restore(max_frame, &state).expect("a snapshot restores");
        second.push(&bytes[i..], &mut |f| out.push(got(f)));
        out.extend(second.finish().map(got));
        prop_assert_eq!(out, frames(max_frame, [bytes.as_slice()]));
    }
}

/// Found by `any_bytes_in_any_pieces_frame_as_the_whole_stream`: a stream that ended in a run
/// of digits (which may still be an octet count) longer than a small `max_frame` gave a message
/// over `max_frame`.
#[test]
fn a_digit_run_at_the_end_over_max_frame_is_too_long() {
    assert_eq!(frames(3, [b"12345".as_slice()]), vec![Got::TooLong(b"123".to_vec())]);
    assert_eq!(frames(5, [b"12345".as_slice()]), vec![Got::Message(b"12345".to_vec())]);
}

/// A frame too long was reported with the bytes of it that were at hand, so with different bytes
/// depending on where the stream was cut, and an octet-counted one with other bytes than the same
/// message newline-framed.
#[test]
fn a_frame_too_long_is_reported_with_its_first_max_frame_bytes_however_the_stream_is_cut() {
    let long = b"<13>1 - - - - - - 0123456789";
    let next = Got::Message(b"<13>next".to_vec());
    let want = vec![Got::TooLong(long[..16].to_vec()), next];
    let counted = [format!("{} ", long.len()).as_bytes(), long, b"<13>next\n"].concat();
    let line = [long.as_slice(), b"\n<13>next\n"].concat();
    let crlf = [long.as_slice(), b"\r\n<13>next\n"].concat();
    for stream in [counted, line, crlf] {
        let name = String::from_utf8_lossy(&stream).into_owned();
        assert_eq!(frames(16, [stream.as_slice()]), want, "{name:?} whole");
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(frames(16, [a, b]), want, "{name:?} cut at {i}");
        }
        assert_eq!(frames(16, stream.chunks(1)), want, "{name:?} in single bytes");
    }
}

/// A line exactly `max_frame` bytes long, with or without a `\r` before its newline, is a
/// message; one byte more is too long, a `\r` too.
#[test]
fn a_line_is_too_long_from_max_frame_and_one_byte() {
    for end in ["\n", "\r\n"] {
        let fits = format!("<13>456789{end}");
        assert_eq!(frames(10, fits.as_bytes().chunks(1)), vec![Got::Message(b"<13>456789".to_vec())], "{end:?}");
    }
    for over in ["<13>4567890\n", "<13>4567890\r\n", "<13>456789\r\r\n"] {
        let over = format!("{over}<13>next\n");
        let want = vec![Got::TooLong(b"<13>456789".to_vec()), Got::Message(b"<13>next".to_vec())];
        assert_eq!(frames(10, [over.as_bytes()]), want, "{over:?}");
        assert_eq!(frames(10, over.as_bytes().chunks(1)), want, "{over:?} in single bytes");
    }
}
