//! The http block (`guests/protocols/http`) through the test kit: a POSTed JSON object becomes a
//! bag for the responsibility its path names and gets the block's exact answer; requests may be
//! pipelined or arrive in pieces; what is not a request it takes gets the 4xx (or 503) the block
//! documents, and the connection stays open or is closed as it says.

use bagpipe_test::{Block, Conn, Value, block, json};
use bagpipe_test_support::artifacts;

/// The http block with `config`, a TCP listener and a stand-in `sink`.
fn http(config: Value) -> Block {
    block(artifacts::HTTP)
        .config(config)
        .entry(r#"listen = ["tcp://127.0.0.1:0"]"#)
        .stand_in("sink")
        .start()
        .expect("the http block starts")
}

/// A `POST` of `body` to `path`, with its `content-length`.
fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The block's answer: `status` (code and reason), the JSON `body`, and `extra` header lines
/// (each ending in `\r\n`) after its content headers.
fn answer(status: &str, body: &Value, extra: &str) -> String {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// `202 {"queued":true}`, the connection kept.
fn queued() -> String {
    answer("202 Accepted", &json!({"queued": true}), "")
}

/// An error answer with `{"error": why}`, the connection kept.
fn refused(status: &str, why: &str) -> String {
    answer(status, &json!({ "error": why }), "")
}

/// An error answer with `{"error": why}` after which the block closes the connection.
fn refused_and_closed(status: &str, why: &str) -> String {
    answer(status, &json!({ "error": why }), "connection: close\r\n")
}

/// What the block wrote on `conn` since the last look, as text.
fn received(b: &mut Block, conn: Conn) -> String {
    String::from_utf8(b.received(conn).unwrap()).expect("the block answers in UTF-8")
}

#[test]
fn a_post_of_a_json_object_becomes_a_bag_and_is_answered_202_queued() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, post("/bags/sink", r#"{"hello":"http","n":[1,2]}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), queued());
    assert_eq!(b.bags_to("sink"), vec![json!({"hello": "http", "n": [1, 2]})]);
    assert!(!b.closed_by_block(conn).unwrap(), "HTTP/1.1 keeps the connection");
    b.finish().unwrap();
}

#[test]
fn the_bag_goes_to_the_responsibility_the_path_names_stamped_as_from_the_block() {
    let mut b = block(artifacts::HTTP)
        .entry(r#"listen = ["tcp://127.0.0.1:0"]"#)
        .stand_in("sink")
        .stand_in("orders")
        .start()
        .unwrap();
    let conn = b.connect(None).unwrap();
    b.send(conn, post("/bags/orders?source=test", r#"{"order":7}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), queued());
    let arrived = b.sent_to("orders");
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].bag, json!({"order": 7, "__from": "http", "__seq": 1}));
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order_in_one_go() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    let requests = [
        post("/bags/sink", r#"{"n":1}"#),
        "GET /health HTTP/1.1\r\nhost: test\r\n\r\n".to_owned(),
        post("/bags/nobody", r#"{"n":2}"#),
        post("/bags/sink", r#"{"n":3}"#),
    ];
    b.send(conn, requests.concat().as_bytes()).unwrap();
    let want =
        [queued(), answer("200 OK", &json!({"ok": true}), ""), refused("404 Not Found", "no block `nobody`"), queued()];
    assert_eq!(received(&mut b, conn), want.concat());
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 1}), json!({"n": 3})]);
    b.finish().unwrap();
}

#[test]
fn a_request_split_at_every_byte_gets_one_answer_and_one_bag() {
    let mut b = http(json!({}));
    let request = post("/bags/sink", r#"{"a":1}"#);
    for cut in 1..request.len() {
        let (first, second) = request.as_bytes().split_at(cut);
        let conn = b.connect(None).unwrap();
        b.send(conn, first).unwrap();
        assert_eq!(received(&mut b, conn), "", "an answer before the request is whole (cut at {cut})");
        assert_eq!(b.bags_to("sink"), Vec::<Value>::new(), "cut at {cut}");
        b.send(conn, second).unwrap();
        assert_eq!(received(&mut b, conn), queued(), "cut at {cut}");
        assert_eq!(b.bags_to("sink"), vec![json!({"a": 1})], "cut at {cut}");
        b.close(conn).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn get_health_is_answered_200_ok() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"GET /health HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(received(&mut b, conn), answer("200 OK", &json!({"ok": true}), ""));
    b.finish().unwrap();
}

#[test]
fn expect_100_continue_is_answered_before_the_body_comes() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"POST /bags/sink HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 7\r\n\r\n").unwrap();
    assert_eq!(received(&mut b, conn), "HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.send(conn, br#"{"a":1}"#).unwrap();
    assert_eq!(received(&mut b, conn), queued());
    assert_eq!(b.bags_to("sink"), vec![json!({"a": 1})]);
    b.finish().unwrap();
}

#[test]
fn connection_close_is_answered_then_closed() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    let request = "POST /bags/sink HTTP/1.1\r\nconnection: close\r\ncontent-length: 7\r\n\r\n{\"a\":1}";
    // What follows the last request is not read.
    b.send(conn, format!("{request}{}", post("/bags/sink", r#"{"a":2}"#)).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), answer("202 Accepted", &json!({"queued": true}), "connection: close\r\n"));
    assert!(b.closed_by_block(conn).unwrap());
    assert_eq!(b.bags_to("sink"), vec![json!({"a": 1})]);
    b.finish().unwrap();
}

#[test]
fn http_1_0_closes_after_the_answer_unless_it_asks_for_keep_alive() {
    let mut b = http(json!({}));
    let kept = b.connect(None).unwrap();
    b.send(kept, b"GET /health HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").unwrap();
    assert_eq!(received(&mut b, kept), answer("200 OK", &json!({"ok": true}), ""));
    assert!(!b.closed_by_block(kept).unwrap());
    let closed = b.connect(None).unwrap();
    b.send(closed, b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(received(&mut b, closed), answer("200 OK", &json!({"ok": true}), "connection: close\r\n"));
    assert!(b.closed_by_block(closed).unwrap());
    b.finish().unwrap();
}

#[test]
fn a_malformed_request_gets_400_and_the_connection_is_closed() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"this is not http\r\n\r\n").unwrap();
    let got = received(&mut b, conn);
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP answer: {got:?}"));
    let body: Value = serde_json::from_str(body).unwrap();
    let why = body["error"].as_str().unwrap_or_default();
    assert!(why.starts_with("malformed request"), "{why}");
    assert_eq!(got, refused_and_closed("400 Bad Request", why), "{head}");
    assert!(b.closed_by_block(conn).unwrap());
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_body_that_is_not_json_gets_400_and_the_connection_stays_open() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, post("/bags/sink", "nope").as_bytes()).unwrap();
    assert_eq!(
        received(&mut b, conn),
        refused("400 Bad Request", "the body is not JSON: expected ident at line 1 column 2")
    );
    b.send(conn, post("/bags/sink", r#"{"ok":true}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), queued());
    assert_eq!(b.bags_to("sink"), vec![json!({"ok": true})]);
    b.finish().unwrap();
}

#[test]
fn a_body_that_is_not_one_json_object_gets_400() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, [post("/bags/sink", "[1,2]"), post("/bags/sink", "42")].concat().as_bytes()).unwrap();
    let error = refused("400 Bad Request", "the body must be one JSON object");
    assert_eq!(received(&mut b, conn), [error.clone(), error].concat());
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_body_that_sets_a_host_key_gets_400() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, post("/bags/sink", r#"{"a":1,"__seq":9}"#).as_bytes()).unwrap();
    assert_eq!(
        received(&mut b, conn),
        refused("400 Bad Request", "`__seq`: keys starting with `__` belong to the host")
    );
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_body_that_is_not_utf8_gets_400() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"POST /bags/sink HTTP/1.1\r\ncontent-length: 3\r\n\r\n\"\xff\"").unwrap();
    assert_eq!(received(&mut b, conn), refused("400 Bad Request", "the body is not UTF-8"));
    b.finish().unwrap();
}

#[test]
fn a_post_to_a_responsibility_that_does_not_exist_gets_404() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, post("/bags/nobody", r#"{"a":1}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), refused("404 Not Found", "no block `nobody`"));
    b.finish().unwrap();
}

#[test]
fn an_unknown_path_gets_404() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, [post("/elsewhere", "{}"), post("/bags/", "{}")].concat().as_bytes()).unwrap();
    let want = [refused("404 Not Found", "no such path: /elsewhere"), refused("404 Not Found", "no such path: /bags/")];
    assert_eq!(received(&mut b, conn), want.concat());
    b.finish().unwrap();
}

#[test]
fn another_method_gets_405_with_allow() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"GET /bags/sink HTTP/1.1\r\n\r\nPOST /health HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}").unwrap();
    let want = [
        answer("405 Method Not Allowed", &json!({"error": "use POST"}), "allow: POST\r\n"),
        answer("405 Method Not Allowed", &json!({"error": "use GET"}), "allow: GET\r\n"),
    ];
    assert_eq!(received(&mut b, conn), want.concat());
    assert!(!b.closed_by_block(conn).unwrap());
    b.finish().unwrap();
}

#[test]
fn a_post_without_content_length_gets_411() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"POST /bags/sink HTTP/1.1\r\nhost: test\r\n\r\n").unwrap();
    assert_eq!(received(&mut b, conn), refused("411 Length Required", "content-length required"));
    assert!(!b.closed_by_block(conn).unwrap());
    b.finish().unwrap();
}

#[test]
fn a_chunked_body_gets_411_and_the_connection_is_closed() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"POST /bags/sink HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n").unwrap();
    assert_eq!(
        received(&mut b, conn),
        refused_and_closed("411 Length Required", "chunked bodies are not supported: send content-length")
    );
    assert!(b.closed_by_block(conn).unwrap());
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    b.finish().unwrap();
}

#[test]
fn a_body_over_max_body_gets_413_before_it_is_sent_and_the_connection_is_closed() {
    let mut b = http(json!({"max_body": 8}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"POST /bags/sink HTTP/1.1\r\ncontent-length: 9\r\n\r\n").unwrap();
    assert_eq!(received(&mut b, conn), refused_and_closed("413 Content Too Large", "body larger than 8 bytes"));
    assert!(b.closed_by_block(conn).unwrap());
    b.finish().unwrap();
}

#[test]
fn a_body_of_exactly_max_body_is_taken() {
    let mut b = http(json!({"max_body": 8}));
    let conn = b.connect(None).unwrap();
    b.send(conn, post("/bags/sink", r#"{"a":12}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), queued());
    assert_eq!(b.bags_to("sink"), vec![json!({"a": 12})]);
    b.finish().unwrap();
}

#[test]
fn conflicting_content_lengths_get_400_and_the_connection_is_closed() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, b"POST /bags/sink HTTP/1.1\r\ncontent-length: 7\r\ncontent-length: 8\r\n\r\n{\"a\":1}").unwrap();
    assert_eq!(received(&mut b, conn), refused_and_closed("400 Bad Request", "conflicting content-length"));
    assert!(b.closed_by_block(conn).unwrap());
    b.finish().unwrap();
}

#[test]
fn a_request_head_over_16_kib_gets_431_and_the_connection_is_closed() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    let head = format!("GET /health HTTP/1.1\r\nx-padding: {}\r\n", "a".repeat(16 * 1024));
    b.send(conn, head.as_bytes()).unwrap();
    assert_eq!(
        received(&mut b, conn),
        refused_and_closed("431 Request Header Fields Too Large", "request head larger than 16384 bytes")
    );
    assert!(b.closed_by_block(conn).unwrap());
    b.finish().unwrap();
}

#[test]
fn a_post_to_a_full_target_gets_503_and_a_later_one_is_taken() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.fill("sink").unwrap();
    b.send(conn, post("/bags/sink", r#"{"n":1}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), refused("503 Service Unavailable", "the queue of `sink` is full"));
    b.reopen("sink").unwrap();
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new(), "the refused body is not kept");
    b.send(conn, post("/bags/sink", r#"{"n":2}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), queued());
    assert_eq!(b.bags_to("sink"), vec![json!({"n": 2})]);
    b.finish().unwrap();
}

#[test]
fn bytes_after_a_request_the_block_cannot_read_are_ignored() {
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, [b"BROKEN\r\n\r\n".as_slice(), post("/bags/sink", r#"{"a":1}"#).as_bytes()].concat().as_slice())
        .unwrap();
    let got = received(&mut b, conn);
    assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got:?}");
    assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "one answer: {got:?}");
    assert!(b.closed_by_block(conn).unwrap());
    assert_eq!(b.bags_to("sink"), Vec::<Value>::new());
    assert!(b.faults().is_empty());
    b.finish().unwrap();
}

#[test]
fn a_post_to_a_block_that_takes_no_bags_gets_202_queued_false() {
    // The http block itself takes no bags (it has no enqueue hook).
    let mut b = http(json!({}));
    let conn = b.connect(None).unwrap();
    b.send(conn, post("/bags/http", r#"{"a":1}"#).as_bytes()).unwrap();
    assert_eq!(received(&mut b, conn), answer("202 Accepted", &json!({"queued": false}), ""));
    b.finish().unwrap();
}

#[test]
fn a_request_expecting_100_continue_split_at_every_byte_gets_continue_only_while_its_body_is_missing() {
    let mut b = http(json!({}));
    let head = "POST /bags/sink HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 7\r\n\r\n";
    let request = format!("{head}{{\"a\":1}}");
    for cut in 1..request.len() {
        let (first, second) = request.as_bytes().split_at(cut);
        let conn = b.connect(None).unwrap();
        b.send(conn, first).unwrap();
        let want = if cut >= head.len() { "HTTP/1.1 100 Continue\r\n\r\n" } else { "" };
        assert_eq!(received(&mut b, conn), want, "cut at {cut}");
        b.send(conn, second).unwrap();
        assert_eq!(received(&mut b, conn), queued(), "cut at {cut}");
        assert_eq!(b.bags_to("sink"), vec![json!({"a": 1})], "cut at {cut}");
        b.close(conn).unwrap();
    }
    b.finish().unwrap();
}
