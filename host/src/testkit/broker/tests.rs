use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

const WAIT: Duration = Duration::from_secs(5);

async fn client(broker: &Broker) -> async_nats::Client {
    async_nats::connect(broker.url()).await.expect("connects to the broker")
}

async fn next(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, subscriber.next()).await.expect("a message in time").expect("the subscription is open")
}

/// Reads from a raw connection until `want` has come (or the connection closed); returns all.
async fn read_until(stream: &mut tokio::net::TcpStream, want: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("an answer in time") {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A raw connection past its `INFO`, having sent `connect`.
async fn raw(broker: &Broker, connect: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    let info = read_until(&mut stream, "\r\n").await;
    assert!(info.starts_with("INFO {") && info.contains("\"max_payload\":1048576"), "{info}");
    stream.write_all(format!("CONNECT {connect}\r\nPING\r\n").as_bytes()).await.unwrap();
    assert!(read_until(&mut stream, "PONG\r\n").await.ends_with("PONG\r\n"));
    stream
}

#[tokio::test]
async fn publish_and_subscribe_with_wildcards() {
    let broker = Broker::start().await.unwrap();
    let (a, b) = (client(&broker).await, client(&broker).await);
    let mut one = a.subscribe("a.*.c").await.unwrap();
    let mut rest = a.subscribe("a.>").await.unwrap();
    assert!(broker.subscribed("a.x", WAIT).await && broker.subscribed("a.*.c", WAIT).await);
    assert_eq!(broker.subscriptions(), ["a.*.c", "a.>"]);
    b.publish("a.b.c", "abc".into()).await.unwrap();
    b.publish("a.b", "ab".into()).await.unwrap();
    b.publish("x.b.c", "x".into()).await.unwrap();
    b.publish("a.b.c.d", "abcd".into()).await.unwrap();
    assert_eq!(next(&mut one).await.payload, "abc");
    for (subject, payload) in [("a.b.c", "abc"), ("a.b", "ab"), ("a.b.c.d", "abcd")] {
        let message = next(&mut rest).await;
        assert_eq!((message.subject.as_str(), &message.payload[..]), (subject, payload.as_bytes()));
    }
    assert!(one.next().now_or_never().is_none());
    assert_eq!(broker.connections(), 2);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_queue_group_gets_each_message_once() {
    let broker = Broker::start().await.unwrap();
    let c = client(&broker).await;
    let mut members =
        [c.queue_subscribe("work", "q".into()).await.unwrap(), c.queue_subscribe("work", "q".into()).await.unwrap()];
    let mut plain = c.subscribe("work").await.unwrap();
    let mut done = c.subscribe("done").await.unwrap();
    assert!(broker.subscribed("done", WAIT).await);
    assert_eq!(broker.subscriptions(), ["done", "work", "work q", "work q"]);
    for i in 0..10 {
        assert_eq!(broker.publish("work", None, &[], format!("{i}").as_bytes()).await, 2);
    }
    broker.publish("done", None, &[], b"").await;
    next(&mut done).await;
    // One connection delivers in order: everything before `done` has reached the subscribers.
    let mut got = 0;
    for member in &mut members {
        while let Some(Some(_)) = member.next().now_or_never() {
            got += 1;
        }
    }
    assert_eq!(got, 10);
    for _ in 0..10 {
        next(&mut plain).await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn requests_are_answered_by_another_client() {
    let broker = Broker::start().await.unwrap();
    let (asker, answerer) = (client(&broker).await, client(&broker).await);
    let mut service = answerer.subscribe("svc").await.unwrap();
    assert!(broker.subscribed("svc", WAIT).await);
    let answering = async {
        let request = next(&mut service).await;
        answerer
            .publish(request.reply.unwrap(), format!("re: {}", String::from_utf8_lossy(&request.payload)).into())
            .await
            .unwrap();
    };
    let (answer, ()) = tokio::join!(asker.request("svc", "hi".into()), answering);
    assert_eq!(answer.unwrap().payload, "re: hi");
    let published = broker.published_all();
    assert_eq!(published.len(), 2);
    assert_eq!((published[0].subject.as_str(), published[0].reply.as_deref().map(is_inbox)), ("svc", Some(true)));
    assert!(is_inbox(&published[1].subject) && broker.published().len() == 1);
    broker.shutdown().await;
}

#[tokio::test]
async fn a_request_nobody_answers_gets_no_responders() {
    let broker = Broker::start().await.unwrap();
    let c = client(&broker).await;
    let error = c.request("nobody.home", "hi".into()).await.unwrap_err();
    assert_eq!(error.kind(), async_nats::RequestErrorKind::NoResponders);
    broker.shutdown().await;
}

#[tokio::test]
async fn headers_go_round_and_are_recorded() {
    let broker = Broker::start().await.unwrap();
    let c = client(&broker).await;
    let mut sub = c.subscribe("h").await.unwrap();
    assert!(broker.subscribed("h", WAIT).await);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-One", "1");
    headers.insert("Nats-Msg-Id", "abc");
    c.publish_with_headers("h", headers, "body".into()).await.unwrap();
    let message = next(&mut sub).await;
    let got = message.headers.unwrap();
    assert_eq!(
        (got.get("X-One").map(|v| v.as_str()), got.get("Nats-Msg-Id").map(|v| v.as_str())),
        (Some("1"), Some("abc"))
    );
    assert_eq!(message.payload, "body");
    let recorded = broker.published();
    assert_eq!(recorded.len(), 1);
    let mut pairs = recorded[0].headers.clone();
    pairs.sort();
    assert_eq!(pairs, [("Nats-Msg-Id".to_owned(), "abc".to_owned()), ("X-One".to_owned(), "1".to_owned())]);
    assert_eq!(recorded[0].payload, b"body");
    broker.shutdown().await;
}

#[tokio::test]
async fn published_keeps_order_and_leaves_inboxes_out() {
    let broker = Broker::start().await.unwrap();
    let c = client(&broker).await;
    c.publish("one", "1".into()).await.unwrap();
    c.publish("_INBOX.x", "i".into()).await.unwrap();
    c.publish("two", "2".into()).await.unwrap();
    // Answered only once the broker handled everything before it.
    assert!(c.request("three", "3".into()).await.is_err());
    let subjects = |p: Vec<Published>| p.into_iter().map(|p| p.subject).collect::<Vec<_>>();
    assert_eq!(subjects(broker.published()), ["one", "two", "three"]);
    assert_eq!(subjects(broker.published_all()), ["one", "_INBOX.x", "two", "three"]);
    let taken = broker.take_published();
    assert_eq!(taken[0], Published { subject: "one".into(), reply: None, headers: vec![], payload: b"1".to_vec() });
    assert!(taken[2].reply.as_deref().is_some_and(is_inbox));
    assert!(broker.published().is_empty());
    assert_eq!(subjects(broker.published_all()), ["_INBOX.x"]);
    broker.shutdown().await;
}

#[tokio::test]
async fn the_test_publishes_to_subscribers() {
    let broker = Broker::start().await.unwrap();
    let c = client(&broker).await;
    let mut sub = c.subscribe("in.*").await.unwrap();
    assert!(broker.subscribed("in.x", WAIT).await);
    assert!(!broker.subscribed("out.x", Duration::from_millis(1)).await);
    let headers = [("K".to_owned(), "V".to_owned())];
    assert_eq!(broker.publish("in.x", Some("back"), &headers, b"hi").await, 1);
    assert_eq!(broker.publish("elsewhere", None, &[], b"hi").await, 0);
    let message = next(&mut sub).await;
    assert_eq!(
        (message.subject.as_str(), message.reply.as_deref(), &message.payload[..]),
        ("in.x", Some("back"), &b"hi"[..])
    );
    assert_eq!(message.headers.unwrap().get("K").map(|v| v.as_str()), Some("V"));
    assert!(broker.published().is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn disconnect_is_seen_and_resume_reconnects() {
    let broker = Broker::start().await.unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let c = async_nats::ConnectOptions::new()
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        })
        .connect(broker.url())
        .await
        .unwrap();
    let mut sub = c.subscribe("kept").await.unwrap();
    let mut wait_for = async |want: async_nats::Event| {
        let seen = async {
            while let Some(event) = events.recv().await {
                if std::mem::discriminant(&event) == std::mem::discriminant(&want) {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(WAIT, seen).await.unwrap_or(false)
    };
    assert!(wait_for(async_nats::Event::Connected).await);
    assert!(broker.subscribed("kept", WAIT).await);
    broker.disconnect().await;
    assert_eq!((broker.connections(), broker.subscriptions().len()), (0, 0));
    assert!(wait_for(async_nats::Event::Disconnected).await);
    broker.resume();
    assert!(wait_for(async_nats::Event::Connected).await);
    assert!(broker.connected(1, WAIT).await);
    // The client subscribed again on its own.
    assert!(broker.subscribed("kept", WAIT).await);
    assert_eq!(broker.publish("kept", None, &[], b"again").await, 1);
    assert_eq!(next(&mut sub).await.payload, "again");
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_an_error_and_a_close() {
    let broker = Broker::start().await.unwrap();
    let mut too_long = vec![b'x'; MAX_LINE + 10];
    too_long.extend_from_slice(b"\r\n");
    let cases: [(&[u8], &str); 8] = [
        (b"GARBAGE\r\n", "Unknown Protocol Operation"),
        (b"\xff\xfe\r\n", "Unknown Protocol Operation"),
        (b"PUB a notanumber\r\n", "Unknown Protocol Operation"),
        (b"PUB a 3\r\nabcdef\r\n", "Unknown Protocol Operation"),
        (b"HPUB a 5 3\r\nabc\r\n", "Unknown Protocol Operation"),
        (b"CONNECT [1]\r\n", "Unknown Protocol Operation"),
        (b"PUB a 2000000\r\n", "Maximum Payload Violation"),
        (&too_long, "Maximum Payload Violation"),
    ];
    for (input, error) in cases {
        let mut stream = raw(&broker, "{}").await;
        stream.write_all(input).await.unwrap();
        let answer = read_until(&mut stream, "never").await;
        assert!(
            answer.ends_with(&format!("-ERR '{error}'\r\n")),
            "{answer:?} for {:?}",
            String::from_utf8_lossy(input)
        );
    }
    // A line that never ends is cut at the limit too.
    let mut stream = raw(&broker, "{}").await;
    let _ = stream.write_all(&vec![b'y'; MAX_LINE + 2]).await;
    assert!(read_until(&mut stream, "never").await.contains("Maximum Payload Violation"));
    let c = client(&broker).await;
    assert!(c.request("x", "".into()).await.is_err_and(|e| e.kind() == async_nats::RequestErrorKind::NoResponders));
    broker.shutdown().await;
}

#[tokio::test]
async fn the_raw_protocol() {
    let broker = Broker::start().await.unwrap();
    let mut stream = raw(&broker, r#"{"verbose":true,"headers":true,"no_responders":true}"#).await;
    stream.write_all(b"SUB _INBOX.a.* 7\r\nPUB nobody _INBOX.a.b 0\r\n\r\n").await.unwrap();
    let nobody = "+OK\r\n+OK\r\nHMSG _INBOX.a.b 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
    assert_eq!(read_until(&mut stream, nobody).await, nobody);
    stream.write_all(b"sub once 9\r\nUNSUB 9 1\r\nSUB bad..subject 3\r\nPING\r\n").await.unwrap();
    assert_eq!(read_until(&mut stream, "PONG\r\n").await, "+OK\r\n+OK\r\n-ERR 'Invalid Subject'\r\nPONG\r\n");
    let headers = [("A".to_owned(), "b".to_owned())];
    assert_eq!(broker.publish("once", Some("r"), &headers, b"x").await, 1);
    assert_eq!(broker.publish("once", None, &[], b"x").await, 0);
    assert_eq!(read_until(&mut stream, "x\r\n").await, "HMSG once 9 r 18 19\r\nNATS/1.0\r\nA: b\r\n\r\nx\r\n");
    // Without `headers` in CONNECT, headers are dropped.
    let mut plain = raw(&broker, "{}").await;
    plain
        .write_all(b"SUB h 1\r\nHPUB h 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPUB nobody _INBOX.a.c 0\r\n\r\nPING\r\n")
        .await
        .unwrap();
    assert_eq!(read_until(&mut plain, "PONG\r\n").await, "MSG h 1 2\r\nhi\r\nPONG\r\n");
    broker.shutdown().await;
}

#[tokio::test]
async fn the_hosts_server_link_works_against_it() {
    let broker = Broker::start().await.unwrap();
    let link =
        crate::io::server::ServerLink::connect(&broker.url(), &crate::defaults::Settings::default()).await.unwrap();
    assert!(link.connected());
    assert_eq!(link.confirm().await, Ok(()));
    assert!(link.barrier().await);
    assert_eq!(broker.connections(), 1);
    link.close().await;
    broker.shutdown().await;
}
