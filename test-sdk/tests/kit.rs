//! The test kit itself, on the repository's example and fixture blocks: what a test gives a
//! block reaches it, what the block does is what the test reads, time moves only when told.

use std::time::Duration;

use bagpipe_test::{CallFailure, block, json};
use bagpipe_test_support::artifacts;
use serde_json::Value;

fn printed_events(printed: &str) -> Vec<Value> {
    printed.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn a_transform_sends_each_bag_on_to_its_target() {
    let mut b =
        block(artifacts::TRANSFORM).config(json!({"op": "upper", "to": "sink"})).stand_in("sink").start().unwrap();
    b.enqueue(json!({"text": "hi"})).unwrap();
    b.enqueue(json!({"text": "there"})).unwrap();
    let arrived = b.sent_to("sink");
    assert_eq!(arrived.len(), 2);
    assert_eq!(arrived[0].bag["__from"], "transform", "stamped by the host as the block's");
    assert_eq!(arrived[0].bag["text"], "HI");
    assert_eq!(arrived[1].bag["seen_by_transform"], 2);
    assert!(b.sent_to("sink").is_empty(), "taken once");
    b.finish().unwrap();
}

#[test]
fn an_unknown_target_and_a_full_one_are_refusals_the_block_sees() {
    let mut b = block(artifacts::TRANSFORM).config(json!({"to": "nowhere"})).stand_in("sink").start().unwrap();
    b.enqueue(json!({"text": "x"})).unwrap();
    assert_eq!(b.stats().failed, 1, "its on-enqueue returned the enqueue error");
    b.finish().unwrap();

    let mut b = block(artifacts::TRANSFORM).config(json!({"to": "sink"})).stand_in("sink").start().unwrap();
    b.fill("sink").unwrap();
    b.enqueue(json!({"text": "a"})).unwrap();
    assert!(b.bags_to("sink").is_empty());
    assert_eq!(b.stats().failed, 1, "queue-full reached the block");
    b.reopen("sink").unwrap();
    b.enqueue(json!({"text": "b"})).unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"text": "B", "seen_by_transform": 2})]);
    b.finish().unwrap();
}

#[test]
fn bags_the_queue_refuses_are_the_test_s_errors() {
    let mut b = block(artifacts::TRANSFORM).entry("max_bag_bytes = 64").stand_in("sink").start().unwrap();
    assert!(b.enqueue_text("not json").is_err());
    let big = json!({"text": "x".repeat(100)});
    let err = b.enqueue(big).unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");
    assert!(b.bags_to("sink").is_empty());
    b.finish().unwrap();
}

#[test]
fn timers_fire_only_when_the_clock_passes_them() {
    let mut b = block(artifacts::TICKER).start().unwrap();
    let tags: Vec<_> = b.timers().into_iter().map(|t| (t.tag, t.due)).collect();
    assert_eq!(
        tags,
        vec![
            ("a".to_owned(), Duration::from_millis(10)),
            ("b".to_owned(), Duration::from_millis(20)),
            ("c".to_owned(), Duration::from_millis(30))
        ],
        "x was cancelled"
    );
    assert!(!b.printed().contains("\"timer\""), "nothing fired yet");
    b.advance(Duration::from_millis(15)).unwrap();
    let fired: Vec<_> = printed_events(&b.printed()).into_iter().filter(|e| e["event"] == "timer").collect();
    assert_eq!(fired, vec![json!({"event": "timer", "tag": "a"})]);
    b.advance(Duration::from_millis(15)).unwrap();
    let fired: Vec<_> = printed_events(&b.printed()).into_iter().map(|e| e["tag"].clone()).collect();
    assert_eq!(fired, vec![json!("b"), json!("c")], "in order");
    assert!(b.timers().is_empty());
    b.finish().unwrap();
}

#[test]
fn calls_to_the_block_get_its_answer_or_why_not() {
    let mut b = block(artifacts::CALLER).config(json!({"quiet": true})).start().unwrap();
    assert_eq!(b.call(json!({"do": "answer", "n": 1})).unwrap().unwrap()["echo"]["n"], 1);
    assert!(matches!(b.call(json!({"do": "refuse"})).unwrap(), Err(CallFailure::Refused(_))));
    assert!(matches!(b.call(json!({"do": "ignore"})).unwrap(), Err(CallFailure::NoReply)));
    assert!(b.faults().is_empty());
    assert!(matches!(b.call(json!({"do": "trap"})).unwrap(), Err(CallFailure::Faulted(_))));
    let faults = b.faults();
    assert_eq!(faults.len(), 1, "{faults:?}");
    // Restarted by its policy: it answers again.
    assert!(b.call(json!({"do": "answer"})).unwrap().is_ok());
    b.finish().unwrap();
}

#[test]
fn a_stand_in_answers_the_block_s_calls() {
    let mut b = block(artifacts::CALLER)
        .answering("svc", |bag| Some(Ok(json!({"got": bag["q"].clone()}))))
        .stand_in("quiet")
        .start()
        .unwrap();
    b.enqueue(json!({"steps": [{"call": "svc", "bag": {"q": 7}, "label": "one"}]})).unwrap();
    let arrived = b.sent_to("svc");
    assert_eq!(arrived.len(), 1);
    assert!(arrived[0].call && arrived[0].bag["__reply"].is_string());
    let printed = b.printed();
    assert!(printed.contains("\"got\":7"), "the block heard the answer: {printed}");
    b.finish().unwrap();
}

#[test]
fn socket_bytes_reach_the_block_and_what_it_writes_comes_back() {
    let mut b =
        block(artifacts::ECHO).entry("listen = [\"tcp://127.0.0.1:0\", \"udp://127.0.0.1:0\"]").start().unwrap();
    let conn = b.connect(None).unwrap();
    b.send(conn, b"hello ").unwrap();
    b.send(conn, b"world").unwrap();
    assert_eq!(b.received(conn).unwrap(), b"hello world");
    b.close(conn).unwrap();
    let events: Vec<_> = printed_events(&b.printed()).into_iter().map(|e| e["event"].clone()).collect();
    assert_eq!(events.iter().filter(|e| *e == "accept").count(), 1);
    assert_eq!(events.last(), Some(&json!("close")), "{events:?}");
    b.datagram(None, b"ping").unwrap();
    assert_eq!(b.datagrams().unwrap(), vec![b"ping".to_vec()]);
    b.finish().unwrap();
}

#[test]
fn a_block_that_traps_in_init_does_not_start() {
    let err = block(artifacts::TRAPS_IN_INIT).start().unwrap_err().to_string();
    assert!(err.contains("did not start"), "{err}");
    let err = block(artifacts::NOT_A_BLOCK).start().unwrap_err().to_string();
    assert!(err.contains("lifecycle"), "names the missing export: {err}");
}

#[test]
fn finishing_delivers_what_is_queued_and_calls_finish() {
    let mut b = block(artifacts::COUNTER).start().unwrap();
    for i in 0..3 {
        b.enqueue(json!({"i": i})).unwrap();
    }
    let finished = b.finish().unwrap();
    let count: Vec<_> = printed_events(&finished.printed).into_iter().filter(|e| e["event"] == "count").collect();
    assert_eq!(count, vec![json!({"event": "count", "block": "counter", "count": 3})]);
}

#[test]
fn the_server_takes_what_the_block_publishes_and_brings_it_messages() {
    let mut b = block(artifacts::COURIER)
        .config(json!({"subscribe": ["in.>"], "publish": "out.a", "count": 2, "forward": "out.fwd", "reply": true}))
        .entry("publish = [\"out.>\"]\nsubscribe = [\"in.>\"]")
        .with_server()
        .start()
        .unwrap();
    let events = printed_events(&b.printed());
    assert!(events.iter().any(|e| e["event"] == "connected"), "told of the server at start: {events:?}");
    let published: Vec<_> = b
        .published()
        .unwrap()
        .into_iter()
        .map(|p| (p.subject, serde_json::from_slice::<Value>(&p.payload).unwrap()["i"].clone()))
        .collect();
    assert_eq!(published, vec![("out.a".to_owned(), json!(1)), ("out.a".to_owned(), json!(2))], "confirmed, in order");
    assert!(b.subscriptions().unwrap().iter().any(|s| s == "in.>"), "{:?}", b.subscriptions());

    b.message("in.x", br#"{"k": 1}"#, None).unwrap();
    let bags: Vec<_> = printed_events(&b.printed()).into_iter().filter(|e| e["event"] == "bag").collect();
    assert_eq!(bags.len(), 1);
    assert_eq!(bags[0]["bag"]["__subject"], "in.x");
    let forwarded = b.published().unwrap();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].subject, "out.fwd");
    assert!(b.message("nobody.listens", b"{}", None).is_err(), "no subscription takes it");
    // Its answer to a request goes to the request's inbox.
    b.message("in.q", br#"{"q": 2}"#, Some("_INBOX.test.1")).unwrap();
    let answers = b.published().unwrap();
    let subjects: Vec<_> = answers.iter().map(|p| p.subject.as_str()).collect();
    assert_eq!(subjects, vec!["out.fwd", "_INBOX.test.1"], "forwarded, then answered");
    assert_eq!(serde_json::from_slice::<Value>(&answers[1].payload).unwrap()["echo"]["q"], 2);

    b.server_disconnect().unwrap();
    assert!(b.printed().contains("\"disconnected\""));
    b.server_reconnect().unwrap();
    assert!(b.printed().contains("\"connected\""));
    b.finish().unwrap();
}

#[test]
fn a_timer_set_again_by_its_handler_fires_as_often_as_it_would_in_that_time() {
    let mut b = block(artifacts::SOURCE)
        .config(json!({"to": "sink", "count": 5, "interval_ms": 100}))
        .stand_in("sink")
        .start()
        .unwrap();
    b.advance(Duration::from_secs(1)).unwrap();
    let bags = b.bags_to("sink");
    assert_eq!(bags.len(), 5, "one every 100 ms, not one per advance: {bags:?}");
    assert_eq!(bags[4]["last"], true);
    assert_eq!(b.timers(), vec![], "done");
    b.finish().unwrap();
}

#[test]
fn bags_the_block_sends_to_test_are_the_test_s() {
    let mut b = block(artifacts::TRANSFORM).config(json!({"to": "test"})).start().unwrap();
    b.enqueue(json!({"text": "back"})).unwrap();
    assert_eq!(b.bags_to("test"), vec![json!({"text": "BACK", "seen_by_transform": 1})]);
    b.finish().unwrap();
}

#[test]
fn closing_a_connection_the_block_closed_first_returns_at_once() {
    let mut b = block(artifacts::HTTP).entry("listen = [\"tcp://127.0.0.1:0\"]").start().unwrap();
    let conn = b.connect(None).unwrap();
    // Not HTTP: answered 400, then the block closes the connection.
    b.send(conn, b"GARBAGE\r\n\r\n").unwrap();
    b.close(conn).unwrap();
    b.finish().unwrap();
}

#[test]
fn a_send_larger_than_the_block_s_queue_goes_through() {
    let mut b = block(artifacts::ECHO)
        .config(json!({"quiet": true}))
        .entry("listen = [\"tcp://127.0.0.1:0\"]\nqueue = 2\nqueue_bytes = 4096\nmax_bag_bytes = 1024")
        .start()
        .unwrap();
    let conn = b.connect(None).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    b.send(conn, &big).unwrap();
    assert_eq!(b.received(conn).unwrap(), big, "echoed whole, in order");
    b.finish().unwrap();
}

#[test]
fn restart_all_gives_up_like_the_supervisor() {
    let mut b = block(artifacts::CALLER)
        .entry("restart = \"all\"\nmax_restarts = 2\nmax_attempts = 20")
        .config(json!({"quiet": true}))
        .start()
        .unwrap();
    b.enqueue(json!({"crash": true})).unwrap();
    let ended = b.ended().expect("it ended");
    assert!(ended.contains("gave up"), "{ended}");
    assert_eq!(b.faults().len(), 3, "the first fault and two restarts");
    assert!(b.enqueue(json!({"i": 1})).is_err(), "an ended block takes nothing");
}

#[test]
fn what_the_kit_cannot_run_is_refused_saying_so() {
    let err = block(artifacts::TRANSFORM).entry("workers = { min = 1, max = 2 }").start().unwrap_err().to_string();
    assert!(err.contains("`workers`") && err.contains("bagpipe run"), "{err}");
}

#[test]
fn a_server_message_the_block_s_queue_refuses_is_an_error() {
    let mut b = block(artifacts::COURIER)
        .config(json!({"subscribe": ["in.>"]}))
        .entry("subscribe = [\"in.>\"]\nmax_bag_bytes = 128")
        .with_server()
        .start()
        .unwrap();
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(500));
    let err = b.message("in.a", big.as_bytes(), None).unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");
    b.message("in.a", b"{\"ok\": 1}", None).unwrap();
    assert!(b.printed().contains("\"ok\":1"));
    b.finish().unwrap();
}
