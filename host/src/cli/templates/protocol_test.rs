//! The block through the real host (`bagpipe-test`): built for wasm32-wasip2, started with a
//! TCP listener on a free port and a stand-in for the block it sends to; the test connects,
//! writes lines, and reads back what the block answered and what reached the stand-in.
//! `cargo test` runs these.
use bagpipe_test::{Block, block, build, json};

/// The block listening on a free port, sending to the stand-in `sink`.
fn start() -> Block {
    let wasm = build(env!("CARGO_MANIFEST_DIR")).unwrap_or_else(|e| panic!("{e}"));
    block(wasm)
        .config(json!({"to": "sink"}))
        .entry(r#"listen = ["tcp://127.0.0.1:0"]"#)
        .stand_in("sink")
        .start()
        .unwrap()
}

#[test]
fn each_line_becomes_a_bag_and_is_answered_ok() {
    let mut b = start();
    let conn = b.connect(None).unwrap();
    b.send(conn, b"hello\r\nworld\n").unwrap();
    assert_eq!(b.received(conn).unwrap(), b"ok\nok\n");
    assert_eq!(
        b.bags_to("sink"),
        vec![json!({"line": "hello"}), json!({"line": "world"})]
    );
    b.finish().unwrap();
}

#[test]
fn a_line_may_arrive_in_pieces() {
    let mut b = start();
    let conn = b.connect(None).unwrap();
    b.send(conn, b"hel").unwrap();
    assert!(b.bags_to("sink").is_empty());
    b.send(conn, b"lo\n").unwrap();
    assert_eq!(b.bags_to("sink"), vec![json!({"line": "hello"})]);
    assert_eq!(b.received(conn).unwrap(), b"ok\n");
    b.finish().unwrap();
}
