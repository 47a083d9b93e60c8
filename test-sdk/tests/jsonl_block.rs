//! The jsonl block (`guests/protocols/jsonl`) through the test kit: JSON lines in over TCP
//! become bags (split anywhere), what it refuses is answered with an error line on the same
//! connection, and the bags sent to it go out to every client.

use bagpipe_test::{Block, Conn, Value, block, json};
use bagpipe_test_support::artifacts;

/// The jsonl block with `config`, a TCP listener and a stand-in `sink`.
fn jsonl(config: Value) -> Block {
    block(artifacts::JSONL)
        .config(config)
        .entry(r#"listen = ["tcp://127.0.0.1:0"]"#)
        .stand_in("sink")
        .start()
        .expect("the jsonl block starts")
}

/// The lines the block wrote on `conn`, each read as JSON.
fn lines_back(b: &mut Block, conn: Conn) -> Vec<Value> {
    let bytes = b.received(conn).unwrap();
    let text = String::from_utf8(bytes).expect("the block writes UTF-8");
    assert!(text.is_empty() || text.ends_with('\n'), "a line without its newline: {text:?}");
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}` is not JSON: {e}"))).collect()
}

/// One `{"error": why}` line.
fn error(why: &str) -> Value {
    json!({ "error": why })
}

#[test]
fn each_json_line_becomes_a_bag_as_it_is_and_nothing_is_written_back() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"a\":1,\"b\":[true,null,{\"c\":\"\\u00e9\"}]}\n{\"text\":\"two\"}\n").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"a": 1, "b": [true, null, {"c": "é"}]}), json!({"text": "two"})]);
    assert_eq!(lines_back(&mut b, conn), Vec::<Value>::new());
    assert!(!b.closed_by_block(conn).unwrap());
    b.finish().unwrap();
}

#[test]
fn bags_are_stamped_as_coming_from_the_block() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    let arrived = b.sent_to("sink");
    let stamps: Vec<(Value, Value)> =
        arrived.iter().map(|a| (a.bag["__from"].clone(), a.bag["__seq"].clone())).collect();
    assert_eq!(stamps, vec![(json!("jsonl"), json!(1)), (json!("jsonl"), json!(2))]);
    assert!(arrived.iter().all(|a| !a.call));
    b.finish().unwrap();
}

#[test]
fn a_line_split_at_every_byte_gives_one_identical_bag() {
    let mut b = jsonl(json!({}));
    let line = b"{\"msg\":\"hi there\",\"n\":[1,2.5],\"ok\":false}\r\n";
    for cut in 1..line.len() {
        let (first, second) = line.split_at(cut);
        let conn = b.connect(None).unwrap();
        b.send(conn, first).unwrap();
        assert_eq!(b.bags_to("sink"), Vec::<Value>::new(), "a bag before the line is whole (cut at {cut})");
        b.send(conn, second).unwrap();
        assert_eq!(b.bags_to("sink"), vec![json!({"msg": "hi there", "n": [1, 2.5], "ok": false})], "cut at {cut}");
        assert_eq!(lines_back(&mut b, conn), Vec::<Value>::new(), "cut at {cut}");
        b.close(conn).unwrap();
        assert_eq!(b.bags_to("sink"), Vec::<Value>::new(), "nothing more at the close (cut at {cut})");
    }
    b.finish().unwrap();
}

#[test]
fn lines_split_across_sends_come_out_whole_and_in_order() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"n\":1}\n{\"n\"").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 1})]);
    b.send(conn, b":2").unwrap();
    b.send(conn, b"}\n{\"n\":3}\n{").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 2}), json!({"n": 3})]);
    b.send(conn, b"\"n\":4}\n").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 4})]);
    b.finish().unwrap();
}

#[test]
fn blank_lines_are_skipped_and_a_carriage_return_before_the_newline_is_dropped() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"\n\r\n   \n{\"n\":1}\r\n\n{\"n\":2}\n").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 1}), json!({"n": 2})]);
    assert_eq!(lines_back(&mut b, conn), Vec::<Value>::new(), "blank lines are not refused");
    b.finish().unwrap();
}

#[test]
fn lines_go_to_the_target_the_config_names() {
    let mut b = block(artifacts::JSONL)
        .config(json!({"to": "events"}))
        .entry(r#"listen = ["tcp://127.0.0.1:0"]"#)
        .stand_in("events")
        .stand_in("sink")
        .start()
        .unwrap();
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"n\":1}\n").unwrap();
    assert_eq!(b.bags_to("events"), vec![json!({"n": 1})]);
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_line_that_is_not_json_is_answered_with_an_error_line_and_the_connection_stays_open() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"not json\n{\"ok\":true}\n").unwrap();
    assert_eq!(lines_back(&mut b, conn), vec![error("the line is not JSON: expected ident at line 1 column 2")]);
    assert_eq!(b.bags_to("sink"), vec![json!({"ok": true})]);
    assert!(!b.closed_by_block(conn).unwrap());
    assert!(b.faults().is_empty());
    b.finish().unwrap();
}

#[test]
fn a_line_with_json_after_the_object_is_refused() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"a\":1} {\"b\":2}\n").unwrap();
    assert_eq!(lines_back(&mut b, conn), vec![error("the line is not JSON: trailing characters at line 1 column 9")]);
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_json_value_that_is_not_an_object_is_refused() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"[1,2]\n\"text\"\n42\nnull\n").unwrap();
    assert_eq!(lines_back(&mut b, conn), vec![error("a line must be one JSON object"); 4]);
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_line_that_sets_a_host_key_is_refused() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"ok\":1,\"__from\":\"me\"}\n").unwrap();
    assert_eq!(lines_back(&mut b, conn), vec![error("`__from`: keys starting with `__` belong to the host")]);
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_line_that_is_not_utf8_is_refused() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"a\":\"\xff\"}\n").unwrap();
    assert_eq!(lines_back(&mut b, conn), vec![error("the line is not UTF-8")]);
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_line_over_max_line_that_arrives_whole_is_refused_and_the_next_line_goes_on() {
    let mut b = jsonl(json!({"max_line": 16}));
    let conn = b.connect(None).unwrap();
    // 16 bytes is within the limit (the `\r` does not count); 17 is over.
    b.send(conn, b"{\"n\":\"12345678\"}\r\n{\"n\":\"123456789\"}\n{\"n\":2}\n").unwrap();
    assert_eq!(lines_back(&mut b, conn), vec![error("line longer than 16 bytes")]);
    assert_eq!(b.bags_to("sink"), vec![json!({"n": "12345678"}), json!({"n": 2})]);
    b.finish().unwrap();
}

#[test]
fn a_line_over_max_line_in_pieces_is_refused_once_and_discarded_up_to_its_newline() {
    let mut b = jsonl(json!({"max_line": 16}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"long\":\"abcdefghij").unwrap();
    // Refused as soon as it is over the limit, before its end is in.
    assert_eq!(lines_back(&mut b, conn), vec![error("line longer than 16 bytes")]);
    b.send(conn, b"klmnopqrstuvwxyz").unwrap();
    b.send(conn, b"\"}\n{\"n\":1}\n").unwrap();
    assert_eq!(lines_back(&mut b, conn), Vec::<Value>::new(), "refused once");
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 1})]);
    assert!(!b.closed_by_block(conn).unwrap());
    b.finish().unwrap();
}

#[test]
fn a_line_for_a_full_target_is_answered_with_an_error_and_later_lines_go_through() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.fill("sink").unwrap();
    b.send(conn, b"{\"n\":1}\n").unwrap();
    let back = lines_back(&mut b, conn);
    assert_eq!(back.len(), 1, "{back:?}");
    let why = back[0]["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("cannot enqueue to `sink`: "), "{why}");
    // (The wording of the cause is the SDK's: `EnqueueError::QueueFull` today.)
    assert!(why.to_lowercase().replace([' ', '-', '_'], "").contains("queuefull"), "{why}");
    b.reopen("sink").unwrap();
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new(), "the refused line is not kept");
    b.send(conn, b"{\"n\":2}\n").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 2})]);
    assert_eq!(lines_back(&mut b, conn), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_line_for_a_target_that_does_not_exist_is_answered_with_an_error() {
    let mut b = jsonl(json!({"to": "nowhere"}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"n\":1}\n").unwrap();
    let back = lines_back(&mut b, conn);
    assert_eq!(back.len(), 1, "{back:?}");
    let why = back[0]["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("cannot enqueue to `nowhere`: "), "{why}");
    b.finish().unwrap();
}

#[test]
fn a_last_line_without_its_newline_is_taken_when_the_client_closes() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"n\":1}\n{\"last\":true}").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 1})]);
    b.close(conn).unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"last": true})]);
    b.finish().unwrap();
}

#[test]
fn a_bad_last_line_at_the_close_is_not_sent_on() {
    let mut b = jsonl(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"{\"cut\":").unwrap();
    b.close(conn).unwrap();
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    assert!(b.faults().is_empty());
    b.finish().unwrap();
}

#[test]
fn bags_sent_to_the_block_go_to_every_client_as_lines_without_host_keys() {
    let mut b = jsonl(json!({}));
    let (one, two) = (b.connect(None).unwrap(), b.connect(None).unwrap());
    b.enqueue(json!({"reply": "hi", "n": [1, 2]})).unwrap();
    b.enqueue(json!({"reply": "again"})).unwrap();
    let want = vec![json!({"reply": "hi", "n": [1, 2]}), json!({"reply": "again"})];
    assert_eq!(lines_back(&mut b, one), want);
    assert_eq!(lines_back(&mut b, two), want);
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new(), "what goes out does not come back in");
    b.finish().unwrap();
}

#[test]
fn a_client_that_closed_gets_nothing_and_the_others_still_do() {
    let mut b = jsonl(json!({}));
    let (one, two) = (b.connect(None).unwrap(), b.connect(None).unwrap());
    b.close(one).unwrap();
    b.enqueue(json!({"n": 1})).unwrap();
    assert_eq!(lines_back(&mut b, two), vec![json!({"n": 1})]);
    assert!(b.logs().iter().all(|l| l.level != "warn" && l.level != "error"), "a closed client is no failure");
    let three = b.connect(None).unwrap();
    b.enqueue(json!({"n": 2})).unwrap();
    assert_eq!(lines_back(&mut b, two), vec![json!({"n": 2})]);
    assert_eq!(lines_back(&mut b, three), vec![json!({"n": 2})], "a client gets only what came after it connected");
    b.finish().unwrap();
}

#[test]
fn a_bag_with_no_client_connected_is_taken_without_a_fault() {
    let mut b = jsonl(json!({}));
    b.enqueue(json!({"n": 1})).unwrap();
    assert!(b.faults().is_empty());
    let stats = b.stats();
    assert_eq!((stats.received, stats.processed, stats.failed), (1, 1, 0));
    b.finish().unwrap();
}

#[test]
fn a_stream_with_a_long_line_cut_anywhere_refuses_it_once_and_takes_the_others() {
    let mut b = jsonl(json!({"max_line": 16}));
    let stream = b"{\"n\":1}\r\n{\"long\":\"abcdefghijklmnop\"}\r\n{\"n\":\"12345678\"}\r\n{\"n\":3}";
    for cut in 1..stream.len() {
        let (first, second) = stream.split_at(cut);
        let conn = b.connect(None).unwrap();
        b.send(conn, first).unwrap();
        b.send(conn, second).unwrap();
        assert_eq!(lines_back(&mut b, conn), vec![error("line longer than 16 bytes")], "cut at {cut}");
        b.close(conn).unwrap();
        assert_eq!(b.bags_to("sink"), vec![json!({"n": 1}), json!({"n": "12345678"}), json!({"n": 3})], "cut at {cut}");
    }
    b.finish().unwrap();
}
