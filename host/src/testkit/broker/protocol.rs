//! The NATS text protocol as the test broker reads it: one operation from the front of a
//! buffer, bounded (a control line of at most `MAX_LINE`, a payload of at most `MAX_PAYLOAD`),
//! and subjects: valid ones and wildcard patterns. Pure: no I/O.

use super::{MAX_LINE, MAX_PAYLOAD};

/// Why a connection is closed (the text of the `-ERR` sent first).
pub(super) type Fatal = &'static str;
pub(super) const TOO_BIG: Fatal = "Maximum Payload Violation";
pub(super) const UNKNOWN: Fatal = "Unknown Protocol Operation";

/// One operation a client sent, borrowing from the read buffer.
pub(super) enum Op<'a> {
    Connect(&'a str),
    Ping,
    Pong,
    Sub { subject: &'a str, queue: Option<&'a str>, sid: &'a str },
    Unsub { sid: &'a str, max: Option<u64> },
    Pub { subject: &'a str, reply: Option<&'a str>, headers: &'a [u8], payload: &'a [u8] },
}

/// The first whole operation in `buf` and how many bytes it takes; `None` while more is needed.
pub(super) fn parse(buf: &[u8]) -> Result<Option<(Op<'_>, usize)>, Fatal> {
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_LINE + 1 { Err(TOO_BIG) } else { Ok(None) };
    };
    if end > MAX_LINE {
        return Err(TOO_BIG);
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| UNKNOWN)?;
    let (verb, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let args: Vec<&str> = rest.split_ascii_whitespace().collect();
    let whole = |op| Ok(Some((op, end + 2)));
    let (subject, reply, headers, total) = match (verb.to_ascii_uppercase().as_str(), args.as_slice()) {
        ("CONNECT", _) => return whole(Op::Connect(rest.trim())),
        ("PING", []) => return whole(Op::Ping),
        ("PONG", []) => return whole(Op::Pong),
        ("SUB", [subject, sid]) => return whole(Op::Sub { subject, queue: None, sid }),
        ("SUB", [subject, queue, sid]) => return whole(Op::Sub { subject, queue: Some(queue), sid }),
        ("UNSUB", [sid]) => return whole(Op::Unsub { sid, max: None }),
        ("UNSUB", [sid, max]) => return whole(Op::Unsub { sid, max: Some(max.parse().map_err(|_| UNKNOWN)?) }),
        ("PUB", [subject, total]) => (*subject, None, "0", *total),
        ("PUB", [subject, reply, total]) => (*subject, Some(*reply), "0", *total),
        ("HPUB", [subject, headers, total]) => (*subject, None, *headers, *total),
        ("HPUB", [subject, reply, headers, total]) => (*subject, Some(*reply), *headers, *total),
        _ => return Err(UNKNOWN),
    };
    // The message: `total` bytes (the first `headers` of them its header block), a line break.
    let (headers, total) = match (headers.parse::<usize>(), total.parse::<usize>()) {
        (Ok(headers), Ok(total)) if headers <= total => (headers, total),
        _ => return Err(UNKNOWN),
    };
    if total > MAX_PAYLOAD {
        return Err(TOO_BIG);
    }
    let (start, stop) = (end + 2, end + 2 + total);
    let Some(tail) = buf.get(stop..stop + 2) else { return Ok(None) };
    if tail != b"\r\n" {
        return Err(UNKNOWN);
    }
    let op = Op::Pub { subject, reply, headers: &buf[start..start + headers], payload: &buf[start + headers..stop] };
    Ok(Some((op, stop + 2)))
}

/// Whether `subject` is a valid subject (`wildcards`: a pattern, `*` any token and `>` the
/// last one standing for the rest).
pub(super) fn valid(subject: &str, wildcards: bool) -> bool {
    let count = subject.split('.').count();
    subject.split('.').enumerate().all(|(i, token)| {
        let wildcard = matches!(token, "*" | ">");
        !token.is_empty()
            && !token.contains(char::is_whitespace)
            && (wildcards || !wildcard)
            && (token != ">" || i + 1 == count)
    })
}

/// Whether the pattern `pattern` covers the subject `subject`.
pub(super) fn matches(pattern: &str, subject: &str) -> bool {
    let (mut pattern, mut subject) = (pattern.split('.'), subject.split('.'));
    loop {
        match (pattern.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some(p), Some(s)) if p == "*" || p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

pub(super) fn is_inbox(subject: &str) -> bool {
    subject.starts_with("_INBOX.")
}

/// The name/value pairs of a header block (`NATS/1.0\r\nName: value\r\n...\r\n\r\n`).
pub(super) fn header_pairs(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    let pairs = text.split("\r\n").skip(1).filter_map(|line| line.split_once(':'));
    pairs.map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned())).collect()
}
