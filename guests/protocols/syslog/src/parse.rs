//! One syslog message (RFC 5424 or RFC 3164, read by `syslog_loose`) into bag fields.

use bagpipe_guest::Value;
use bagpipe_guest::serde_json::Map;
use chrono::{Datelike, NaiveDateTime, Utc};
use syslog_loose::{IncompleteDate, Message, ProcId, Protocol, StructuredElement, Variant, decompose_pri};

/// The most characters of a message that an unparsed bag quotes in `raw`.
const RAW_CHARS: usize = 1024;

/// The first `RAW_CHARS` characters of `bytes`, invalid UTF-8 replaced.
pub fn raw(bytes: &[u8]) -> String {
    // No character takes more than 4 bytes, so this prefix holds every character kept.
    let prefix = &bytes[..bytes.len().min(4 * RAW_CHARS)];
    String::from_utf8_lossy(prefix).chars().take(RAW_CHARS).collect()
}

/// `<PRI>` at the start of `text`: its value (0 to 191) and what follows it.
fn split_pri(text: &str) -> Option<(u8, &str)> {
    let rest = text.strip_prefix('<')?;
    let end = rest.find('>')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pri = digits.parse::<u8>().ok().filter(|p| *p <= 191)?;
    Some((pri, &rest[end + 1..]))
}

/// Reads one message into its fields, or says why it is not syslog.
pub fn parse(frame: &[u8]) -> Result<Map<String, Value>, &'static str> {
    let text = std::str::from_utf8(frame).map_err(|_| "not UTF-8")?.trim();
    if text.is_empty() {
        return Err("empty");
    }
    let (pri, after_pri) = split_pri(text).ok_or(if text.starts_with('<') { "invalid <PRI>" } else { "no <PRI>" })?;
    let (facility, severity) = decompose_pri(pri);
    // RFC 3164 dates have no year: take this one, or last year for a date months ahead (a
    // December message read in January).
    let now = Utc::now();
    let year = move |(month, ..): IncompleteDate| if month > now.month() + 1 { now.year() - 1 } else { now.year() };
    // An ISO 8601 time with no zone is read as UTC (see `with_utc_zone`).
    let zoned = with_utc_zone(text, after_pri);
    let text = zoned.as_deref().unwrap_or(text);
    let message = syslog_loose::parse_message_with_year_exact_tz(text, year, Some(Utc), Variant::Either)
        // A `<PRI>` and then no header it knows: keep the rest as the message.
        .unwrap_or_else(|_| Message {
            protocol: Protocol::RFC3164,
            facility,
            severity,
            timestamp: None,
            hostname: None,
            appname: None,
            procid: None,
            msgid: None,
            structured_data: Vec::new(),
            msg: after_pri.trim_start(),
        });
    let msg = rfc3164_text(text, &message);
    let (host, app) = rfc3164_app_without_host(text, &message);
    let procid = message.procid.as_ref().map(|id| match (id, sent_procid(text, &message)) {
        (ProcId::PID(pid), Some(sent)) if sent.parse() == Ok(*pid) => sent.to_owned(),
        _ => id.to_string(),
    });

    let mut out = Map::new();
    out.insert("facility".into(), facility.map(|f| f.as_str()).into());
    out.insert("severity".into(), severity.map(|s| s.as_str()).into());
    if let Some(ts) = message.timestamp {
        out.insert("timestamp".into(), ts.to_rfc3339().into());
    }
    out.insert("host".into(), host.into());
    out.insert("app".into(), app.into());
    out.insert("procid".into(), procid.into());
    out.insert("msgid".into(), message.msgid.into());
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    out.insert("msg".into(), msg.into());
    let protocol = match message.protocol {
        Protocol::RFC5424(_) => "rfc5424",
        Protocol::RFC3164 => "rfc3164",
    };
    out.insert("protocol".into(), protocol.into());
    if !message.structured_data.is_empty() {
        out.insert("structured_data".into(), structured_data(&message.structured_data).into());
    }
    Ok(out)
}

/// `text` with `Z` after its timestamp if that is an ISO 8601 one with no zone
/// (`2026-11-30T09:15:02`, `2026-11-30T09:15:02.123`), as many RFC 3164 senders (and a few RFC 5424
/// ones) write it; `None` if it has no such timestamp. `syslog_loose` reads an ISO 8601 timestamp
/// only with its zone, and without one finds no header at all. A time with no zone is taken as
/// UTC, as RFC 3164's `Mmm dd hh:mm:ss` is (the block knows no sender's zone).
fn with_utc_zone(text: &str, after_pri: &str) -> Option<String> {
    // After `<PRI>`: RFC 5424's version, or (RFC 3164) perhaps spaces.
    let at = match after_pri.strip_prefix('1') {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start_matches([' ', '\t']),
        _ => after_pri.trim_start_matches([' ', '\t']),
    };
    let timestamp = at.split([' ', '\t']).next()?;
    NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let end = text.len() - at.len() + timestamp.len();
    Some(format!("{}Z{}", &text[..end], &text[end..]))
}

/// Where `part`, a slice of `text` (as `syslog_loose` gives), ends in `text`.
fn end_in(text: &str, part: &str) -> Option<usize> {
    (part.as_ptr() as usize + part.len()).checked_sub(text.as_ptr() as usize).filter(|end| *end <= text.len())
}

/// The hostname and app of `message`. `syslog_loose` takes the one word of an RFC 3164 header
/// with no hostname (`Nov  3 09:15:02 app: hello`, as glibc's `syslog()` writes it) for the
/// hostname; but a hostname is followed by a space and the tag, never at once by `:`, so that
/// word is the app (as `app[123]:` already is).
fn rfc3164_app_without_host<'a>(text: &str, message: &Message<&'a str>) -> (Option<&'a str>, Option<&'a str>) {
    match (&message.protocol, message.hostname, message.appname) {
        (Protocol::RFC3164, Some(word), None)
            if end_in(text, word).is_some_and(|end| text.as_bytes().get(end) == Some(&b':')) =>
        {
            (None, Some(word))
        }
        _ => (message.hostname, message.appname),
    }
}

/// The procid as `text` has it: `syslog_loose` reads one that is a number as a number, which
/// would give `0042` back as `42`.
fn sent_procid<'a>(text: &'a str, message: &Message<&str>) -> Option<&'a str> {
    match message.protocol {
        // `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID`: none of them has a space.
        Protocol::RFC5424(_) => text.split_whitespace().nth(4),
        // `APP[PROCID]`
        Protocol::RFC3164 => text.get(end_in(text, message.appname?)?..)?.strip_prefix('[')?.split(']').next(),
    }
}

/// The text of `message`, read from `text`. `syslog_loose` reads structured data (as RFC 5424
/// writes it) after an RFC 3164 tag too, and so takes a text that starts with `-` for RFC 5424's
/// nil value and drops that `-` (`app: -5 degrees` would read `5 degrees`). RFC 3164 has no
/// structured data: after `TAG:` the rest is the message, whole.
fn rfc3164_text<'a>(text: &'a str, message: &Message<&'a str>) -> &'a str {
    let msg = message.msg;
    if !matches!(message.protocol, Protocol::RFC3164) || !message.structured_data.is_empty() || !text.ends_with(msg) {
        return msg;
    }
    let before = text[..text.len() - msg.len()].trim_end_matches([' ', '\t']);
    match before.strip_suffix('-') {
        Some(head) if head.trim_end_matches([' ', '\t']).ends_with(':') => &text[before.len() - 1..],
        _ => msg,
    }
}

/// `[id k="v" ...]...` as `{"id": {"k": "v", ...}, ...}`, escapes undone. A name that repeats
/// within an element (RFC 5424 allows it) gets an array of its values.
fn structured_data(elements: &[StructuredElement<&str>]) -> Map<String, Value> {
    let mut out = Map::new();
    for element in elements {
        let params = out.entry(element.id).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(params) = params else { continue };
        for (name, value) in element.params() {
            match params.get_mut(*name) {
                None => {
                    params.insert((*name).to_owned(), value.into());
                }
                Some(Value::Array(values)) => values.push(value.into()),
                Some(first) => *first = Value::Array(vec![first.take(), value.into()]),
            }
        }
    }
    out
}
