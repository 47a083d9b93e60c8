//! Example-based tests of the syslog block: each variant of RFC 3164 and RFC 5424 seen in the
//! wild, read into every field of its bag, and one concrete TCP stream of mixed framing cut at
//! every byte.

use bagpipe_guest::Value;
use bagpipe_guest::serde_json::json;
use chrono::{Datelike, Utc};

use crate::syslog_frame_props::{Got, frames};
use crate::syslog_parse::parse;

/// Checks each `(variant, message, bag fields)` case, naming the variant when one fails.
fn check(cases: &[(&str, &str, Value)]) {
    let mut failed = Vec::new();
    for (variant, message, want) in cases {
        match parse(message.as_bytes()) {
            Ok(got) if Value::Object(got.clone()) == *want => {}
            got => failed.push(format!("{variant}: `{message}`\n    got  {got:?}\n    want {want}")),
        }
    }
    assert!(failed.is_empty(), "{} of {} cases:\n{}", failed.len(), cases.len(), failed.join("\n"));
}

/// The timestamp of an RFC 3164 date in January (which has no year: this year's, as no January
/// is months ahead), read as UTC.
fn january(day_time: &str) -> String {
    format!("{}-01-{day_time}+00:00", Utc::now().year())
}

/// The fields of an RFC 3164 message (`local4.info`), which has no msgid and no structured data.
fn rfc3164(timestamp: Option<&str>, host: Option<&str>, app: Option<&str>, procid: Option<&str>, msg: &str) -> Value {
    let mut fields = json!({
        "facility": "local4", "severity": "info", "host": host, "app": app, "procid": procid, "msgid": null,
        "msg": msg, "protocol": "rfc3164",
    });
    if let Some(timestamp) = timestamp {
        fields["timestamp"] = timestamp.into();
    }
    fields
}

#[test]
fn rfc3164_variants_read_as_their_fields() {
    let ts = "2026-11-30T09:15:02+00:00";
    check(&[
        (
            "classic date, single-digit day",
            "<166>Jan  5 09:15:02 myhost app[123]: hello",
            rfc3164(Some(&january("05T09:15:02")), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "classic date, two-digit day",
            "<166>Jan 15 23:59:59 myhost app[123]: hello",
            rfc3164(Some(&january("15T23:59:59")), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "classic date with a year",
            "<166>Jan  5 2025 09:15:02 myhost app[123]: hello",
            rfc3164(Some("2025-01-05T09:15:02+00:00"), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "classic date, no pid",
            "<166>Jan  5 09:15:02 myhost app: hello",
            rfc3164(Some(&january("05T09:15:02")), Some("myhost"), Some("app"), None, "hello"),
        ),
        (
            "classic date, no hostname",
            "<166>Jan  5 09:15:02 app[123]: hello",
            rfc3164(Some(&january("05T09:15:02")), None, Some("app"), Some("123"), "hello"),
        ),
        (
            "classic date, no hostname, no pid (glibc's syslog())",
            "<166>Jan  5 09:15:02 app: hello",
            rfc3164(Some(&january("05T09:15:02")), None, Some("app"), None, "hello"),
        ),
        (
            "classic date, hostname and an empty tag",
            "<166>Jan  5 09:15:02 myhost : hello",
            rfc3164(Some(&january("05T09:15:02")), Some("myhost"), None, None, "hello"),
        ),
        (
            "classic date, an IP address for the hostname",
            "<166>Jan  5 09:15:02 10.0.0.7 app[123]: hello",
            rfc3164(Some(&january("05T09:15:02")), Some("10.0.0.7"), Some("app"), Some("123"), "hello"),
        ),
        (
            "pid with leading zeros",
            "<166>Jan  5 09:15:02 myhost app[0042]: hello",
            rfc3164(Some(&january("05T09:15:02")), Some("myhost"), Some("app"), Some("0042"), "hello"),
        ),
        (
            "ISO 8601, zone Z",
            "<166>2026-11-30T09:15:02Z myhost app[123]: hello",
            rfc3164(Some(ts), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "ISO 8601, zone Z, fraction",
            "<166>2026-11-30T09:15:02.123Z myhost app[123]: hello",
            rfc3164(Some("2026-11-30T09:15:02.123+00:00"), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "ISO 8601, zone +02:00",
            "<166>2026-11-30T09:15:02+02:00 myhost app[123]: hello",
            rfc3164(Some("2026-11-30T09:15:02+02:00"), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "ISO 8601, zone -07:00, fraction",
            "<166>2026-11-30T09:15:02.123456-07:00 myhost app[123]: hello",
            rfc3164(Some("2026-11-30T09:15:02.123456-07:00"), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "ISO 8601, no zone (UTC)",
            "<166>2026-11-30T09:15:02 myhost app[123]: hello",
            rfc3164(Some(ts), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "ISO 8601, no zone (UTC), fraction",
            "<166>2026-11-30T09:15:02.123 myhost app[123]: hello",
            rfc3164(Some("2026-11-30T09:15:02.123+00:00"), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "ISO 8601, no zone, no pid",
            "<166>2026-11-30T09:15:02 myhost app: hello",
            rfc3164(Some(ts), Some("myhost"), Some("app"), None, "hello"),
        ),
        (
            "ISO 8601, no zone, no hostname",
            "<166>2026-11-30T09:15:02 app[123]: hello",
            rfc3164(Some(ts), None, Some("app"), Some("123"), "hello"),
        ),
        (
            "ISO 8601, no zone, no hostname, no pid",
            "<166>2026-11-30T09:15:02 app: hello",
            rfc3164(Some(ts), None, Some("app"), None, "hello"),
        ),
        (
            "ISO 8601, no zone, a space after <PRI>",
            "<166> 2026-11-30T09:15:02 myhost app[123]: hello",
            rfc3164(Some(ts), Some("myhost"), Some("app"), Some("123"), "hello"),
        ),
        (
            "no timestamp: all after <PRI> is the message",
            "<166>myhost app[123]: hello",
            rfc3164(None, None, None, None, "myhost app[123]: hello"),
        ),
        (
            "ISO 8601 date that does not exist: no header",
            "<166>2026-13-30T09:15:02 myhost app[123]: hello",
            rfc3164(None, None, None, None, "2026-13-30T09:15:02 myhost app[123]: hello"),
        ),
        (
            "message keeps colons and brackets",
            "<166>Jan  5 09:15:02 myhost httpd[123]: error: [core:warn] [pid 42] AH00111: x[1]=y: z",
            rfc3164(
                Some(&january("05T09:15:02")),
                Some("myhost"),
                Some("httpd"),
                Some("123"),
                "error: [core:warn] [pid 42] AH00111: x[1]=y: z",
            ),
        ),
        (
            "message starts with brackets",
            "<166>2026-11-30T09:15:02 myhost app: [WARN] disk: 91% [sda]",
            rfc3164(Some(ts), Some("myhost"), Some("app"), None, "[WARN] disk: 91% [sda]"),
        ),
        (
            "message keeps inner spaces",
            "<166>Jan  5 09:15:02 myhost app[123]:   a  b\tc",
            rfc3164(Some(&january("05T09:15:02")), Some("myhost"), Some("app"), Some("123"), "a  b\tc"),
        ),
        (
            "empty message",
            "<166>Jan  5 09:15:02 myhost app[123]:",
            rfc3164(Some(&january("05T09:15:02")), Some("myhost"), Some("app"), Some("123"), ""),
        ),
    ]);
}

/// The fields of an RFC 5424 message (`auth.crit`).
fn rfc5424(timestamp: Option<&str>, header: [Option<&str>; 4], sd: Option<Value>, msg: &str) -> Value {
    let [host, app, procid, msgid] = header;
    let mut fields = json!({
        "facility": "auth", "severity": "crit", "host": host, "app": app, "procid": procid, "msgid": msgid,
        "msg": msg, "protocol": "rfc5424",
    });
    if let Some(timestamp) = timestamp {
        fields["timestamp"] = timestamp.into();
    }
    if let Some(sd) = sd {
        fields["structured_data"] = sd;
    }
    fields
}

#[test]
fn rfc5424_variants_read_as_their_fields() {
    let all = [Some("mymachine.example.com"), Some("evntslog"), Some("1234"), Some("ID47")];
    let header = "mymachine.example.com evntslog 1234 ID47";
    let ts = "2003-10-11T22:14:15.003+00:00";
    check(&[
        (
            "all fields",
            &format!(
                "<34>1 2003-10-11T22:14:15.003Z {header} [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" \
                 eventID=\"1011\"] An application event"
            ),
            rfc5424(
                Some(ts),
                all,
                Some(json!({"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}})),
                "An application event",
            ),
        ),
        ("every header field nil", "<34>1 - - - - - - hello", rfc5424(None, [None; 4], None, "hello")),
        ("every field nil, no message", "<34>1 - - - - - -", rfc5424(None, [None; 4], None, "")),
        ("nil timestamp", &format!("<34>1 - {header} - hello"), rfc5424(None, all, None, "hello")),
        (
            "nil hostname",
            "<34>1 2003-10-11T22:14:15.003Z - evntslog 1234 ID47 - hello",
            rfc5424(Some(ts), [None, Some("evntslog"), Some("1234"), Some("ID47")], None, "hello"),
        ),
        (
            "nil app",
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com - 1234 ID47 - hello",
            rfc5424(Some(ts), [Some("mymachine.example.com"), None, Some("1234"), Some("ID47")], None, "hello"),
        ),
        (
            "nil procid",
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - hello",
            rfc5424(Some(ts), [Some("mymachine.example.com"), Some("evntslog"), None, Some("ID47")], None, "hello"),
        ),
        (
            "nil msgid",
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 - - hello",
            rfc5424(Some(ts), [Some("mymachine.example.com"), Some("evntslog"), Some("1234"), None], None, "hello"),
        ),
        (
            "procid a name",
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog worker-7 ID47 - hello",
            rfc5424(
                Some(ts),
                [Some("mymachine.example.com"), Some("evntslog"), Some("worker-7"), Some("ID47")],
                None,
                "hello",
            ),
        ),
        (
            "procid with leading zeros",
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 0042 ID47 - hello",
            rfc5424(
                Some(ts),
                [Some("mymachine.example.com"), Some("evntslog"), Some("0042"), Some("ID47")],
                None,
                "hello",
            ),
        ),
        (
            "several structured data elements, escaped \\\" \\\\ \\] in values",
            &format!(
                "<34>1 2003-10-11T22:14:15.003Z {header} [quote@1 said=\"he said \\\"hi\\\"\" path=\"C:\\\\tmp\\\\x\"]\
                 [bracket@2 v=\"a\\]b\" empty=\"\"][origin ip=\"10.0.0.7\" ip=\"10.0.0.8\"][flag] hello"
            ),
            rfc5424(
                Some(ts),
                all,
                Some(json!({
                    "quote@1": {"said": "he said \"hi\"", "path": "C:\\tmp\\x"},
                    "bracket@2": {"v": "a]b", "empty": ""},
                    "origin": {"ip": ["10.0.0.7", "10.0.0.8"]},
                    "flag": {},
                })),
                "hello",
            ),
        ),
        (
            "structured data and no message",
            &format!("<34>1 2003-10-11T22:14:15.003Z {header} [a@1 k=\"v\"]"),
            rfc5424(Some(ts), all, Some(json!({"a@1": {"k": "v"}})), ""),
        ),
        (
            "no structured data",
            &format!("<34>1 2003-10-11T22:14:15.003Z {header} - hello: [not data] -5"),
            rfc5424(Some(ts), all, None, "hello: [not data] -5"),
        ),
        (
            "BOM before the message",
            &format!("<34>1 2003-10-11T22:14:15.003Z {header} - \u{feff}héllo wörld"),
            rfc5424(Some(ts), all, None, "héllo wörld"),
        ),
        (
            "BOM after structured data",
            &format!("<34>1 2003-10-11T22:14:15.003Z {header} [a@1 k=\"v\"] \u{feff}hello"),
            rfc5424(Some(ts), all, Some(json!({"a@1": {"k": "v"}})), "hello"),
        ),
        (
            "no fraction, zone Z",
            &format!("<34>1 2003-10-11T22:14:15Z {header} - hello"),
            rfc5424(Some("2003-10-11T22:14:15+00:00"), all, None, "hello"),
        ),
        (
            "microseconds, offset -07:00",
            &format!("<34>1 2003-08-24T05:14:15.000003-07:00 {header} - hello"),
            rfc5424(Some("2003-08-24T05:14:15.000003-07:00"), all, None, "hello"),
        ),
        (
            "one fraction digit, offset +05:30",
            &format!("<34>1 2026-11-30T09:15:02.5+05:30 {header} - hello"),
            rfc5424(Some("2026-11-30T09:15:02.500+05:30"), all, None, "hello"),
        ),
        (
            "no zone (UTC), fraction",
            &format!("<34>1 2026-11-30T09:15:02.123 {header} - hello"),
            rfc5424(Some("2026-11-30T09:15:02.123+00:00"), all, None, "hello"),
        ),
    ]);
}

/// `msg` framed by its length (RFC 6587 octet counting).
fn counted(msg: &str) -> String {
    format!("{} {msg}", msg.len())
}

#[test]
fn a_mixed_stream_cut_anywhere_gives_the_same_frames() {
    let stream = [
        counted("<34>1 - - - - - octet-counted"),
        "<13>Jan  5 09:15:02 web app: newline\n".to_owned(),
        "\n\r\n".to_owned(),
        "<13>Jan  5 09:15:02 web app: crlf\r\n".to_owned(),
        counted("<13>two\nlines\r\n"),
        counted("<13>back to back"),
        "123abc is not a count\n".to_owned(),
        "<13>last, closed without a newline".to_owned(),
    ]
    .concat();
    let message = |m: &str| Got::Message(m.as_bytes().to_vec());
    let want = vec![
        message("<34>1 - - - - - octet-counted"),
        message("<13>Jan  5 09:15:02 web app: newline"),
        message("<13>Jan  5 09:15:02 web app: crlf"),
        message("<13>two\nlines\r\n"),
        message("<13>back to back"),
        message("123abc is not a count"),
        message("<13>last, closed without a newline"),
    ];
    let bytes = stream.as_bytes();
    assert_eq!(frames(1024, [bytes]), want, "whole");
    for i in 0..=bytes.len() {
        let (a, b) = bytes.split_at(i);
        assert_eq!(frames(1024, [a, b]), want, "cut at {i}");
    }
    assert_eq!(frames(1024, bytes.chunks(1)), want, "single bytes");
}
