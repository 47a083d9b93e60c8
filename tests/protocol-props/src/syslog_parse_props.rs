//! Property tests of the syslog block's parsing: any bytes are read without panicking, a
//! refusal says which of its reasons holds, and a valid RFC 5424 or RFC 3164 message, built
//! here from generated fields, comes out as those fields.

use bagpipe_guest::Value;
use bagpipe_guest::serde_json::{Map, json};
use chrono::{DateTime, Datelike, Timelike};
use proptest::prelude::*;

use crate::syslog_parse::{parse, raw};

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp",
    "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];
const SEVERITIES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// The reason `parse` must give for `bytes`, or `None` when it must read them. A `<PRI>` is
/// 1 to 3 digits, at most 191, between `<` and the first `>`.
fn expected_refusal(bytes: &[u8]) -> Option<&'static str> {
    let Ok(text) = std::str::from_utf8(bytes) else { return Some("not UTF-8") };
    let text = text.trim();
    if text.is_empty() {
        return Some("empty");
    }
    let Some(rest) = text.strip_prefix('<') else { return Some("no <PRI>") };
    let digits = rest.split('>').next().filter(|_| rest.contains('>')).unwrap_or_default();
    let valid = (1..=3).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.parse::<u32>().is_ok_and(|p| p <= 191);
    (!valid).then_some("invalid <PRI>")
}

/// Text that is, or is close to, the start of a syslog message.
fn near_syslog() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        "\\s{0,2}<[0-9]{0,4}>?\\PC{0,60}".prop_map(String::into_bytes),
        "<[0-9]{1,3}>1 [ -~]{0,80}".prop_map(String::into_bytes),
        "<[0-9]{1,3}>[A-Z][a-z]{2} [ 0-9]{2} [0-9:]{8} [ -~]{0,60}".prop_map(String::into_bytes),
    ]
}

/// `(<PRI>, facility, severity)`.
fn pri() -> impl Strategy<Value = (u8, &'static str, &'static str)> {
    (0u8..24, 0u8..8).prop_map(|(f, s)| (f * 8 + s, FACILITIES[usize::from(f)], SEVERITIES[usize::from(s)]))
}

/// An RFC 5424 field: a value, or `None` for the nil value `-`.
fn field(pattern: &'static str) -> impl Strategy<Value = Option<String>> {
    prop::option::of(pattern)
}

/// A message text as a sender writes it: no space at either end (the frame is trimmed), not
/// starting with `[` (which would read as structured data).
fn msg() -> impl Strategy<Value = String> {
    "([!-Z\\\\^-~]([ -~]{0,40}[!-~])?)?"
}

/// An RFC 5424 timestamp: its text, with a fraction and a zone or `Z`.
fn timestamp_5424() -> impl Strategy<Value = String> {
    (
        1990i32..2100,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        "(\\.[0-9]{1,6})?",
        "Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]",
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, zone)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}"))
}

/// Structured data: element ids (with an optional `@` enterprise number) and their parameters,
/// values with every character that must be escaped.
fn structured_data() -> impl Strategy<Value = Vec<(String, Vec<(String, String)>)>> {
    let params = prop::collection::btree_map("[a-z][a-z0-9]{0,7}", "[ -~]{0,12}", 1..4)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>());
    prop::collection::btree_map("[a-z][a-z0-9]{0,7}(@[0-9]{1,5})?", params, 0..3).prop_map(|m| m.into_iter().collect())
}

fn nil_or(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

fn string_or_null(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::String)
}

/// The instant and the zone of an RFC 3339 timestamp.
fn instant(text: &str) -> Result<DateTime<chrono::FixedOffset>, TestCaseError> {
    DateTime::parse_from_rfc3339(text).map_err(|e| TestCaseError::fail(format!("timestamp `{text}`: {e}")))
}

/// Reads `message`, failing the case when it is refused.
fn read(message: &str) -> Result<Map<String, Value>, TestCaseError> {
    parse(message.as_bytes()).map_err(|why| TestCaseError::fail(format!("`{message}` refused: {why}")))
}

proptest! {
    #![proptest_config(crate::bounded(256))]

    #[test]
    fn any_bytes_are_read_without_panicking_and_a_refusal_says_why(bytes in near_syslog()) {
        match parse(&bytes) {
            Ok(fields) => {
                prop_assert_eq!(expected_refusal(&bytes), None);
                for key in ["facility", "severity", "host", "app", "procid", "msgid", "msg", "protocol"] {
                    prop_assert!(fields.contains_key(key), "no `{}` in {:?}", key, fields);
                }
                prop_assert!(matches!(fields["protocol"].as_str(), Some("rfc5424" | "rfc3164")));
            }
            Err(why) => prop_assert_eq!(Some(why), expected_refusal(&bytes)),
        }
        let quoted = raw(&bytes);
        prop_assert!(quoted.chars().count() <= 1024);
        prop_assert!(String::from_utf8_lossy(&bytes).starts_with(&quoted));
    }

    #[test]
    fn an_rfc5424_message_reads_as_the_fields_it_was_built_from(
        (pri, facility, severity) in pri(),
        timestamp in prop::option::of(timestamp_5424()),
        host in field("[a-zA-Z0-9][a-zA-Z0-9.-]{0,20}"),
        app in field("[a-zA-Z][a-zA-Z0-9_.]{0,15}"),
        // A number comes back as sent, leading zeros and all.
        procid in field("[0-9]{1,6}|[a-z][a-z0-9]{0,8}"),
        msgid in field("[A-Za-z0-9_]{1,12}"),
        sd in structured_data(),
        bom in any::<bool>(),
        text in msg(),
    ) {
        let sd_text: String = sd
            .iter()
            .map(|(id, params)| {
                let params: String = params
                    .iter()
                    .map(|(name, value)| {
                        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]");
                        format!(" {name}=\"{escaped}\"")
                    })
                    .collect();
                format!("[{id}{params}]")
            })
            .collect();
        let mut message = format!(
            "<{pri}>1 {} {} {} {} {} {}",
            nil_or(&timestamp),
            nil_or(&host),
            nil_or(&app),
            nil_or(&procid),
            nil_or(&msgid),
            if sd_text.is_empty() { "-" } else { &sd_text },
        );
        if !text.is_empty() {
            message = format!("{message} {}{text}", if bom { "\u{feff}" } else { "" });
        }
        let out = read(&message)?;
        prop_assert_eq!(&out["protocol"], "rfc5424");
        prop_assert_eq!(&out["facility"], facility);
        prop_assert_eq!(&out["severity"], severity);
        prop_assert_eq!(&out["host"], &string_or_null(&host));
        prop_assert_eq!(&out["app"], &string_or_null(&app));
        prop_assert_eq!(&out["procid"], &string_or_null(&procid));
        prop_assert_eq!(&out["msgid"], &string_or_null(&msgid));
        prop_assert_eq!(&out["msg"], text.as_str());
        match &timestamp {
            None => prop_assert!(!out.contains_key("timestamp")),
            Some(sent) => {
                let (sent, got) = (instant(sent)?, instant(out["timestamp"].as_str().unwrap_or_default())?);
                prop_assert_eq!(got, sent);
                prop_assert_eq!(got.offset(), sent.offset());
            }
        }
        let want_sd: Map<String, Value> = sd
            .iter()
            .map(|(id, params)| {
                let params: Map<String, Value> = params.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
                (id.clone(), Value::Object(params))
            })
            .collect();
        match out.get("structured_data") {
            None => prop_assert!(want_sd.is_empty()),
            Some(got) => prop_assert_eq!(got, &Value::Object(want_sd)),
        }
    }

    #[test]
    fn an_rfc3164_message_reads_as_the_fields_it_was_built_from(
        (pri, facility, severity) in pri(),
        (month, day, hour, minute, second) in (1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60),
        host in "[a-z][a-z0-9-]{0,12}",
        app in "[a-z][a-z0-9_]{0,10}",
        pid in prop::option::of(1u32..100_000),
        text in msg(),
    ) {
        let tag = match pid {
            Some(pid) => format!("{app}[{pid}]"),
            None => app.clone(),
        };
        let month_name = MONTHS[month as usize - 1];
        let message = format!("<{pri}>{month_name} {day:>2} {hour:02}:{minute:02}:{second:02} {host} {tag}: {text}");
        let out = read(&message)?;
        prop_assert_eq!(&out["protocol"], "rfc3164");
        prop_assert_eq!(&out["facility"], facility);
        prop_assert_eq!(&out["severity"], severity);
        prop_assert_eq!(&out["host"], host.as_str());
        prop_assert_eq!(&out["app"], app.as_str());
        prop_assert_eq!(&out["procid"], &pid.map_or(Value::Null, |p| Value::String(p.to_string())));
        prop_assert_eq!(&out["msgid"], &Value::Null);
        prop_assert_eq!(&out["msg"], text.as_str());
        // No year and no zone in RFC 3164: this year or last, in UTC.
        let got = instant(out["timestamp"].as_str().unwrap_or_default())?;
        prop_assert_eq!(
            (got.month(), got.day(), got.hour(), got.minute(), got.second()),
            (month, day, hour, minute, second)
        );
        prop_assert_eq!(got.offset().local_minus_utc(), 0);
        let this_year = chrono::Utc::now().year();
        prop_assert!((this_year - 1..=this_year).contains(&got.year()));
    }
}

/// Found by `an_rfc3164_message_reads_as_the_fields_it_was_built_from`: `syslog_loose` took an
/// RFC 3164 text starting with `-` for RFC 5424's nil structured data and dropped the `-`.
#[test]
fn an_rfc3164_text_starting_with_a_dash_is_kept_whole() {
    for (text, want) in [
        ("<13>Jan  5 10:00:00 web app: -5 degrees", "-5 degrees"),
        ("<13>Jan  5 10:00:00 web app[42]: -- MARK --", "-- MARK --"),
        ("<13>Jan  5 10:00:00 web app:-", "-"),
        ("<13>Jan  5 10:00:00 web app: - x", "- x"),
    ] {
        let fields = parse(text.as_bytes()).expect(text);
        assert_eq!(fields["msg"], want, "{text}");
        assert_eq!(fields["app"], "app", "{text}");
    }
}
