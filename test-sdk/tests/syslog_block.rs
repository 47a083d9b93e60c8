//! The syslog block (`guests/protocols/syslog`) through the test kit: messages over TCP (newline
//! and octet-counted framing, split anywhere) and UDP, every header variant it reads, what it
//! makes of what is not syslog, a full target, and publishing to the message server.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bagpipe_test::{Block, Value, block, json, without_host_keys};
use bagpipe_test_support::artifacts;

/// The block's listeners: one TCP, one UDP, ports chosen by the system.
const LISTEN: &str = r#"listen = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0"]"#;

/// The syslog block with `config`, its listeners and a stand-in `sink`.
fn syslog(config: Value) -> Block {
    block(artifacts::SYSLOG).config(config).entry(LISTEN).stand_in("sink").start().expect("the syslog block starts")
}

/// `bag` without its `peer`, checked to be a loopback `ip:port` (the test's socket).
fn from_loopback(mut bag: Value) -> Value {
    let peer = bag.as_object_mut().and_then(|map| map.remove("peer"));
    let peer = peer.as_ref().and_then(Value::as_str).unwrap_or_else(|| panic!("no peer in {bag}"));
    assert!(peer.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback()), "peer `{peer}` is not the test's socket");
    bag
}

/// Takes the bags that reached `target`, without host keys and peers.
fn bags(b: &mut Block, target: &str) -> Vec<Value> {
    b.bags_to(target).into_iter().map(from_loopback).collect()
}

/// What the block makes of the one newline-framed `line` over TCP.
fn over_tcp(line: &str) -> Value {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, format!("{line}\n").as_bytes()).unwrap();
    let mut got = bags(&mut b, "sink");
    assert_eq!(got.len(), 1, "one bag for `{line}`, got {got:?}");
    b.finish().unwrap();
    got.remove(0)
}

/// The fields of a parsed message.
fn parsed(
    pri: (&str, &str),
    timestamp: Option<&str>,
    header: [Option<&str>; 4],
    msg: &str,
    protocol: &str,
    transport: &str,
) -> Value {
    let [host, app, procid, msgid] = header;
    let mut bag = json!({
        "facility": pri.0, "severity": pri.1, "host": host, "app": app, "procid": procid, "msgid": msgid,
        "msg": msg, "protocol": protocol, "transport": transport,
    });
    if let Some(timestamp) = timestamp {
        bag["timestamp"] = timestamp.into();
    }
    bag
}

/// `<34>`: facility `auth`, severity `crit`.
const AUTH_CRIT: (&str, &str) = ("auth", "crit");
/// `<13>`: facility `user`, severity `notice`.
const USER_NOTICE: (&str, &str) = ("user", "notice");

/// The message of the splitting tests and what it reads as.
const MESSAGE: &str = "<34>2026-11-30T09:15:02 myhost app[123]: hello";

fn message_bag() -> Value {
    parsed(
        AUTH_CRIT,
        Some("2026-11-30T09:15:02+00:00"),
        [Some("myhost"), Some("app"), Some("123"), None],
        "hello",
        "rfc3164",
        "tcp",
    )
}

/// The year it is now (UTC), as the block takes it for an RFC 3164 date in January.
fn this_year() -> i64 {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64 / 86_400;
    // Days since 1970-01-01 to a civil year (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let month_from_march = (5 * doy + 2) / 153;
    yoe + era * 400 + i64::from(month_from_march >= 10)
}

/// Connects, sends `stream` in two writes cut at every byte, and checks that each connection
/// gives nothing after the first part and exactly `want` after the second.
fn split_everywhere(b: &mut Block, stream: &[u8], want: &Value) {
    for cut in 1..stream.len() {
        let (first, second) = stream.split_at(cut);
        let conn = b.connect(None).unwrap();
        b.send(conn, first).unwrap();
        assert_eq!(bags(b, "sink"), Vec::<Value>::new(), "a bag before the message is whole (cut at {cut})");
        b.send(conn, second).unwrap();
        assert_eq!(bags(b, "sink"), vec![want.clone()], "cut at {cut}");
        b.close(conn).unwrap();
        assert_eq!(bags(b, "sink"), Vec::<Value>::new(), "nothing more at the close (cut at {cut})");
    }
}

#[test]
fn a_newline_framed_message_split_at_every_byte_gives_one_identical_bag() {
    let mut b = syslog(json!({}));
    split_everywhere(&mut b, format!("{MESSAGE}\n").as_bytes(), &message_bag());
    assert!(b.logs().is_empty());
    b.finish().unwrap();
}

#[test]
fn an_octet_counted_message_split_at_every_byte_gives_one_identical_bag() {
    let mut b = syslog(json!({}));
    split_everywhere(&mut b, format!("{} {MESSAGE}", MESSAGE.len()).as_bytes(), &message_bag());
    b.finish().unwrap();
}

#[test]
fn an_octet_counted_message_keeps_the_newlines_inside_it() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    let msg = "<13>1 2003-10-11T22:14:15.003Z web app 77 ID1 - two\nlines";
    let newline = "<13>Jan  5 09:15:02 web app: after";
    b.send(conn, format!("{} {msg}{newline}\n", msg.len()).as_bytes()).unwrap();
    let year = this_year();
    assert_eq!(
        bags(&mut b, "sink"),
        vec![
            parsed(
                USER_NOTICE,
                Some("2003-10-11T22:14:15.003+00:00"),
                [Some("web"), Some("app"), Some("77"), Some("ID1")],
                "two\nlines",
                "rfc5424",
                "tcp",
            ),
            parsed(
                USER_NOTICE,
                Some(&format!("{year}-01-05T09:15:02+00:00")),
                [Some("web"), Some("app"), None, None],
                "after",
                "rfc3164",
                "tcp",
            ),
        ]
    );
    b.finish().unwrap();
}

#[test]
fn messages_of_one_write_come_out_in_order_with_blank_lines_and_crlf_skipped() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"<13>one\n\n\r\n<13>two\r\n<13>three\n").unwrap();
    let msgs: Vec<Value> = bags(&mut b, "sink").iter().map(|bag| bag["msg"].clone()).collect();
    assert_eq!(msgs, vec![json!("one"), json!("two"), json!("three")]);
    b.finish().unwrap();
}

#[test]
fn a_stream_of_both_framings_cut_at_every_byte_gives_the_same_bags() {
    let mut b = syslog(json!({}));
    let counted = "<34>1 - - - - - - octet\ncounted";
    let stream = format!("{} {counted}<13>web: newline\n\n\r\n{MESSAGE}\r\n11 <13>counted", counted.len());
    let want = vec![
        parsed(AUTH_CRIT, None, [None; 4], "octet\ncounted", "rfc5424", "tcp"),
        parsed(USER_NOTICE, None, [None; 4], "web: newline", "rfc3164", "tcp"),
        message_bag(),
        parsed(USER_NOTICE, None, [None; 4], "counted", "rfc3164", "tcp"),
    ];
    for cut in 1..stream.len() {
        let (first, second) = stream.as_bytes().split_at(cut);
        let conn = b.connect(None).unwrap();
        b.send(conn, first).unwrap();
        b.send(conn, second).unwrap();
        b.close(conn).unwrap();
        assert_eq!(bags(&mut b, "sink"), want, "cut at {cut}");
    }
    b.finish().unwrap();
}

#[test]
fn a_frame_longer_than_max_frame_gives_the_same_bag_however_the_stream_is_cut() {
    let mut b = syslog(json!({"max_frame": 16}));
    let long = "<13>1 - - - - - - 0123456789";
    let mut differ = Vec::new();
    for stream in [format!("{} {long}<13>next\n", long.len()), format!("{long}\n<13>next\n")] {
        let whole = {
            let conn = b.connect(None).unwrap();
            b.send(conn, stream.as_bytes()).unwrap();
            b.close(conn).unwrap();
            bags(&mut b, "sink")
        };
        assert_eq!(whole.len(), 2, "{whole:?}");
        assert_eq!(whole[0]["reason"], "frame too long");
        for cut in 1..stream.len() {
            let (first, second) = stream.as_bytes().split_at(cut);
            let conn = b.connect(None).unwrap();
            b.send(conn, first).unwrap();
            b.send(conn, second).unwrap();
            b.close(conn).unwrap();
            let got = bags(&mut b, "sink");
            if got != whole {
                differ.push(format!("{stream:?} cut at {cut}: raw {} (whole: {})", got[0]["raw"], whole[0]["raw"]));
            }
        }
    }
    b.finish().unwrap();
    assert!(differ.is_empty(), "{} cuts give another bag:\n{}", differ.len(), differ.join("\n"));
}

#[test]
fn rfc3164_with_an_iso_timestamp_without_zone_reads_as_utc() {
    assert_eq!(over_tcp(MESSAGE), message_bag());
}

#[test]
fn rfc3164_with_an_iso_timestamp_with_a_fraction_and_no_zone_keeps_the_fraction() {
    assert_eq!(
        over_tcp("<34>2026-11-30T09:15:02.123 myhost app[123]: hello"),
        parsed(
            AUTH_CRIT,
            Some("2026-11-30T09:15:02.123+00:00"),
            [Some("myhost"), Some("app"), Some("123"), None],
            "hello",
            "rfc3164",
            "tcp",
        )
    );
}

#[test]
fn rfc3164_with_an_iso_timestamp_in_zone_z_reads_as_utc() {
    assert_eq!(over_tcp("<34>2026-11-30T09:15:02Z myhost app[123]: hello"), message_bag());
}

#[test]
fn rfc3164_with_an_iso_timestamp_with_an_offset_keeps_the_offset() {
    assert_eq!(
        over_tcp("<34>2026-11-30T09:15:02+02:00 myhost app[123]: hello"),
        parsed(
            AUTH_CRIT,
            Some("2026-11-30T09:15:02+02:00"),
            [Some("myhost"), Some("app"), Some("123"), None],
            "hello",
            "rfc3164",
            "tcp",
        )
    );
}

#[test]
fn rfc3164_with_a_classic_date_takes_this_year_as_utc() {
    let year = this_year();
    assert_eq!(
        over_tcp("<13>Jan  5 09:15:02 myhost app[123]: hello"),
        parsed(
            USER_NOTICE,
            Some(&format!("{year}-01-05T09:15:02+00:00")),
            [Some("myhost"), Some("app"), Some("123"), None],
            "hello",
            "rfc3164",
            "tcp",
        )
    );
}

#[test]
fn rfc3164_without_hostname_takes_the_word_before_the_colon_for_the_app() {
    let year = this_year();
    assert_eq!(
        over_tcp("<13>Jan  5 09:15:02 app: hello"),
        parsed(
            USER_NOTICE,
            Some(&format!("{year}-01-05T09:15:02+00:00")),
            [None, Some("app"), None, None],
            "hello",
            "rfc3164",
            "tcp",
        )
    );
}

#[test]
fn rfc3164_keeps_a_procid_with_leading_zeros_as_sent() {
    assert_eq!(over_tcp("<34>2026-11-30T09:15:02 myhost app[0042]: hello")["procid"], json!("0042"));
}

#[test]
fn a_pri_without_a_header_keeps_the_rest_whole_in_msg() {
    assert_eq!(
        over_tcp("<13>myhost app[123]: hello"),
        parsed(USER_NOTICE, None, [None; 4], "myhost app[123]: hello", "rfc3164", "tcp")
    );
}

#[test]
fn rfc5424_with_nil_values_reads_them_as_null() {
    assert_eq!(over_tcp("<34>1 - - - - - - hello"), parsed(AUTH_CRIT, None, [None; 4], "hello", "rfc5424", "tcp"));
}

#[test]
fn rfc5424_with_every_field_reads_each_into_its_key() {
    let mut want = parsed(
        ("local4", "notice"),
        Some("2003-10-11T22:14:15.003+00:00"),
        [Some("mymachine.example.com"), Some("evntslog"), Some("1234"), Some("ID47")],
        "An application event",
        "rfc5424",
        "tcp",
    );
    want["structured_data"] =
        json!({"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}});
    assert_eq!(
        over_tcp(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 \
             [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event"
        ),
        want
    );
}

#[test]
fn rfc5424_structured_data_has_its_escapes_undone() {
    let bag = over_tcp(
        r#"<34>1 2003-10-11T22:14:15Z host app - - [q@1 said="he said \"hi\"" path="C:\\tmp" v="a\]b" empty=""][origin ip="10.0.0.7" ip="10.0.0.8"] hello"#,
    );
    let mut want = parsed(
        AUTH_CRIT,
        Some("2003-10-11T22:14:15+00:00"),
        [Some("host"), Some("app"), None, None],
        "hello",
        "rfc5424",
        "tcp",
    );
    want["structured_data"] = json!({
        "q@1": {"said": "he said \"hi\"", "path": "C:\\tmp", "v": "a]b", "empty": ""},
        "origin": {"ip": ["10.0.0.7", "10.0.0.8"]},
    });
    assert_eq!(bag, want);
}

#[test]
fn a_datagram_is_one_message_with_transport_udp() {
    let mut b = syslog(json!({}));
    b.datagram(None, MESSAGE.as_bytes()).unwrap();
    b.datagram(None, b"<13>1 - - - - - - second\n").unwrap();
    let mut first = message_bag();
    first["transport"] = json!("udp");
    assert_eq!(bags(&mut b, "sink"), vec![first, parsed(USER_NOTICE, None, [None; 4], "second", "rfc5424", "udp")]);
    // A datagram is not framed: a newline inside it does not cut it.
    b.datagram(None, b"<13>1 - - - - - - two\nlines").unwrap();
    assert_eq!(bags(&mut b, "sink"), vec![parsed(USER_NOTICE, None, [None; 4], "two\nlines", "rfc5424", "udp")]);
    b.finish().unwrap();
}

#[test]
fn bags_go_to_the_target_the_config_names() {
    let mut b = block(artifacts::SYSLOG)
        .config(json!({"to": "logs"}))
        .entry(LISTEN)
        .stand_in("logs")
        .stand_in("sink")
        .start()
        .unwrap();
    let conn = b.connect(None).unwrap();
    b.send(conn, format!("{MESSAGE}\n").as_bytes()).unwrap();
    assert_eq!(bags(&mut b, "logs"), vec![message_bag()]);
    assert_eq!(bags(&mut b, "sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_line_without_pri_becomes_an_unparsed_bag_and_the_next_line_still_parses() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, format!("this is not syslog\n{MESSAGE}\n").as_bytes()).unwrap();
    assert_eq!(
        bags(&mut b, "sink"),
        vec![
            json!({"unparsed": true, "reason": "no <PRI>", "raw": "this is not syslog", "transport": "tcp"}),
            message_bag(),
        ]
    );
    assert!(!b.closed_by_block(conn).unwrap(), "the connection stays open");
    assert!(b.faults().is_empty());
    b.finish().unwrap();
}

#[test]
fn an_invalid_pri_becomes_an_unparsed_bag() {
    assert_eq!(
        over_tcp("<192>Jan  5 09:15:02 app: hello"),
        json!({"unparsed": true, "reason": "invalid <PRI>", "raw": "<192>Jan  5 09:15:02 app: hello", "transport": "tcp"})
    );
}

#[test]
fn bytes_that_are_not_utf8_become_an_unparsed_bag_with_replacement_characters() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"<13>caf\xe9 \xff\n").unwrap();
    assert_eq!(
        bags(&mut b, "sink"),
        vec![json!({"unparsed": true, "reason": "not UTF-8", "raw": "<13>caf\u{fffd} \u{fffd}", "transport": "tcp"})]
    );
    b.finish().unwrap();
}

#[test]
fn a_line_longer_than_max_frame_becomes_an_unparsed_bag_and_the_next_line_still_parses() {
    let mut b = syslog(json!({"max_frame": 32}));
    let conn = b.connect(None).unwrap();
    let long = "<13>Jan  5 09:15:02 app: this line is longer than 32 bytes";
    b.send(conn, format!("{long}\n<13>short\n").as_bytes()).unwrap();
    assert_eq!(
        bags(&mut b, "sink"),
        vec![
            json!({"unparsed": true, "reason": "frame too long", "raw": &long[..32], "transport": "tcp"}),
            parsed(USER_NOTICE, None, [None; 4], "short", "rfc3164", "tcp"),
        ]
    );
    b.finish().unwrap();
}

#[test]
fn an_octet_counted_frame_longer_than_max_frame_is_skipped_whole_and_reported() {
    let mut b = syslog(json!({"max_frame": 16}));
    let conn = b.connect(None).unwrap();
    let long = "<13>1 - - - - - - 0123456789";
    // The count says 28 bytes; they come in two writes, the second also holding the next frame.
    b.send(conn, format!("{} {}", long.len(), &long[..20]).as_bytes()).unwrap();
    b.send(conn, format!("{}9 <13>short", &long[20..]).as_bytes()).unwrap();
    assert_eq!(
        bags(&mut b, "sink"),
        vec![
            json!({"unparsed": true, "reason": "frame too long", "raw": &long[..16], "transport": "tcp"}),
            parsed(USER_NOTICE, None, [None; 4], "short", "rfc3164", "tcp"),
        ]
    );
    b.finish().unwrap();
}

#[test]
fn a_last_line_without_its_newline_is_taken_when_the_client_closes() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, MESSAGE.as_bytes()).unwrap();
    assert_eq!(bags(&mut b, "sink"), Vec::<Value>::new());
    b.close(conn).unwrap();
    assert_eq!(bags(&mut b, "sink"), vec![message_bag()]);
    b.finish().unwrap();
}

#[test]
fn an_octet_counted_frame_cut_off_by_the_close_becomes_an_unparsed_truncated_bag() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"30 <13>Jan  5").unwrap();
    b.close(conn).unwrap();
    assert_eq!(
        bags(&mut b, "sink"),
        vec![json!({"unparsed": true, "reason": "truncated frame", "raw": "30 <13>Jan  5", "transport": "tcp"})]
    );
    b.finish().unwrap();
}

#[test]
fn messages_for_a_full_target_are_dropped_with_a_warning_and_later_ones_go_through() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.fill("sink").unwrap();
    b.send(conn, b"<13>lost one\n<13>lost two\n").unwrap();
    assert_eq!(bags(&mut b, "sink"), Vec::<Value>::new());
    let logs = b.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].level, "warn");
    assert!(logs[0].message.starts_with("cannot pass 2 syslog messages on to `sink`"), "{}", logs[0].message);
    // The block keeps nothing to try again: no timer, and nothing arrives once there is room.
    assert!(b.timers().is_empty(), "{:?}", b.timers());
    b.reopen("sink").unwrap();
    b.advance(Duration::from_secs(60)).unwrap();
    assert_eq!(bags(&mut b, "sink"), Vec::<Value>::new());
    b.send(conn, b"<13>after\n").unwrap();
    assert_eq!(bags(&mut b, "sink"), vec![parsed(USER_NOTICE, None, [None; 4], "after", "rfc3164", "tcp")]);
    assert!(b.faults().is_empty());
    b.finish().unwrap();
}

/// The syslog block publishing to `logs.syslog`, with `config` added and `entry` in its manifest
/// entry.
fn publishing(config: Value, entry: &str) -> Block {
    let mut all = json!({"publish": "logs.syslog"});
    all.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
    block(artifacts::SYSLOG)
        .config(all)
        .entry(LISTEN)
        .entry(r#"publish = ["logs.>"]"#)
        .entry(entry)
        .stand_in("sink")
        .with_server()
        .start()
        .expect("the syslog block starts")
}

/// What was published on `logs.syslog`, as bags without host keys and peers. The host stamps a
/// published bag as any other: `__from` the block, `__seq` counting.
fn published(b: &mut Block) -> Vec<Value> {
    b.published()
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.subject, "logs.syslog");
            assert_eq!(p.reply, None);
            let bag: Value = serde_json::from_slice(&p.payload).expect("a published bag is JSON");
            assert_eq!(bag["__from"], "syslog", "{bag}");
            assert!(bag["__seq"].is_u64(), "{bag}");
            from_loopback(without_host_keys(&bag))
        })
        .collect()
}

#[test]
fn publish_sends_each_bag_to_the_subject_as_well_as_to_the_target() {
    let mut b = publishing(json!({}), "");
    let conn = b.connect(None).unwrap();
    b.send(conn, format!("{MESSAGE}\n").as_bytes()).unwrap();
    assert_eq!(published(&mut b), vec![message_bag()]);
    assert_eq!(bags(&mut b, "sink"), vec![message_bag()]);
    b.finish().unwrap();
}

#[test]
fn with_an_empty_to_bags_are_only_published() {
    let mut b = publishing(json!({"to": ""}), "");
    b.datagram(None, b"<13>only published").unwrap();
    assert_eq!(published(&mut b), vec![parsed(USER_NOTICE, None, [None; 4], "only published", "rfc3164", "udp")]);
    assert_eq!(bags(&mut b, "sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn messages_a_full_outbox_refuses_are_published_in_order_once_it_takes_them_again() {
    // An outbox of 1 KiB holds a few bags; the server is away, so nothing leaves it.
    let mut b = publishing(json!({"to": ""}), "outbox_bytes = 1024");
    b.server_disconnect().unwrap();
    let conn = b.connect(None).unwrap();
    let lines: String = (0..12).map(|i| format!("<13>1 - - - - - - message number {i:02} of a dozen\n")).collect();
    b.send(conn, lines.as_bytes()).unwrap();
    assert!(b.published().unwrap().is_empty());
    assert_eq!(b.timers().iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(), vec!["publish"]);

    b.server_reconnect().unwrap();
    // Each retry publishes what the outbox takes, until nothing waits.
    for _ in 0..20 {
        if b.timers().is_empty() {
            break;
        }
        b.advance(Duration::from_millis(20)).unwrap();
    }
    assert!(b.timers().is_empty(), "still retrying: {:?}", b.timers());
    let msgs: Vec<Value> = published(&mut b).iter().map(|bag| bag["msg"].clone()).collect();
    let want: Vec<Value> = (0..12).map(|i| json!(format!("message number {i:02} of a dozen"))).collect();
    assert_eq!(msgs, want);
    assert!(b.logs().iter().all(|l| l.level != "warn" && l.level != "error"), "nothing said lost");
    b.finish().unwrap();
}

#[test]
fn the_peer_is_the_address_of_the_test_s_own_socket() {
    let mut b = syslog(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"<13>1 - - - - - - over tcp\n").unwrap();
    let tcp = b.local_addr(conn).unwrap().to_string();
    b.datagram(None, b"<13>1 - - - - - - over udp").unwrap();
    let udp = b.udp_addr().expect("a datagram was sent").to_string();
    let peers: Vec<Value> = b.bags_to("sink").iter().map(|bag| bag["peer"].clone()).collect();
    assert_eq!(peers, vec![json!(tcp), json!(udp)]);
    b.finish().unwrap();
}
