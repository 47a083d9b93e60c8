//! One syslog message (RFC 5424 or RFC 3164, read by `syslog_loose`) into bag fields.

use bagpipe_guest::Value;
use bagpipe_guest::serde_json::Map;
use chrono::{Datelike, Utc};
use syslog_loose::{IncompleteDate, Message, Protocol, StructuredElement, Variant, decompose_pri};

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

    let mut out = Map::new();
    out.insert("facility".into(), facility.map(|f| f.as_str()).into());
    out.insert("severity".into(), severity.map(|s| s.as_str()).into());
    if let Some(ts) = message.timestamp {
        out.insert("timestamp".into(), ts.to_rfc3339().into());
    }
    out.insert("host".into(), message.hostname.into());
    out.insert("app".into(), message.appname.into());
    out.insert("procid".into(), message.procid.map(|p| p.to_string()).into());
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
