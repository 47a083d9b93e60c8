//! Broker faults: what a block publishes survives the server going away. Each test starts its own
//! `nats-server` so that it can kill, restart or pause it while a block publishes a steady flow:
//! every message arrives (at least once; duplicates are counted), local bags keep flowing, and a
//! shutdown during an outage ends in time with what was never confirmed counted.

use std::collections::BTreeMap;
use std::time::Duration;

use bagpipe_test_support::{Bagpipe, BlockDir, Nats, SAFETY, Want, within};
use futures_util::StreamExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn start(dir: &BlockDir, nats: &Nats) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report])
}

/// A relay that publishes every bag it gets to `out.bags`, fed `count` bags (`n` = 1..=count) at
/// about 400 a second.
fn relay(count: u64, extra: &str) -> BlockDir {
    BlockDir::from_manifest(&format!(
        "[[block]]\nname = \"courier\"\nresponsibility = \"relay\"\nafter = []\npublish = [\"out.>\"]\nqueue = 4096\n{extra}\
         [block.config]\nforward = \"out.bags\"\n\n\
         [[block]]\nname = \"bench_source\"\nafter = [\"relay\"]\n[block.config]\nto = \"relay\"\ncount = {count}\nbatch = 2\ninterval_ms = 5\n"
    ))
}

/// How many times each `n` arrived.
fn tally(ns: impl IntoIterator<Item = u64>) -> BTreeMap<u64, u64> {
    let mut seen = BTreeMap::new();
    for n in ns {
        *seen.entry(n).or_insert(0) += 1;
    }
    seen
}

/// The syslog-nats example's manifest, listening on free ports.
fn syslog_example() -> String {
    std::fs::read_to_string(bagpipe_test_support::workspace_root().join("examples/syslog-nats/bagpipe.toml"))
        .expect("example manifest")
        .replace("127.0.0.1:5514", "127.0.0.1:0")
}

fn n_of(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(payload).ok()?["n"].as_u64()
}

#[tokio::test]
async fn published_messages_reach_the_stream_across_five_server_crashes() {
    const COUNT: u64 = 3000;
    let mut nats = Nats::start(true).await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "OUT".into(),
        subjects: vec!["out.>".into()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let dir = relay(COUNT, "publish_to_stream = true\n");
    let mut host = start(&dir, &nats);
    host.wait_for(1, |e| e["event"] == "connected").await;
    for _ in 0..5 {
        // Crash the server while bags flow, and bring it back.
        host.wait_for(200, |e| e["event"] == "bag").await;
        nats.stop().await;
        host.wait_for(1, |e| e["event"] == "disconnected").await;
        nats.restart().await;
        host.wait_for(1, |e| e["event"] == "connected").await;
    }
    // Local bags never stopped: the relay gets every one.
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["last"] == true).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_eq!(report.count("relay", "processed"), COUNT, "{}", out.stderr);
    assert_eq!(report.count("relay", "publish_dropped"), 0, "{}", out.stderr);
    assert!(out.events("error").is_empty(), "no publish failed for the block: {:?}", out.events("error"));

    let seen = tally(nats.stored("OUT").await.iter().filter_map(|p| n_of(p)));
    let missing: Vec<u64> = (1..=COUNT).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "every message is in the stream; missing {} of them: {missing:?}", missing.len());
    assert_eq!(seen.len() as u64, COUNT, "nothing else is in the stream");
    // Messages sent again after a crash carry the same message id: the stream keeps one.
    let duplicates: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
    assert!(duplicates.is_empty(), "no duplicates in the stream: {duplicates:?}");
    assert_eq!(report.count("relay", "published"), COUNT, "each message is confirmed once");
    // An outage is logged at most about once a second per block, not once per message.
    let warnings = out.log_events("publish_failing").len();
    assert!(warnings <= 30, "{warnings} warnings for five outages:\n{}", out.stderr);
}

#[tokio::test]
async fn a_paused_server_holds_nothing_up_and_gets_every_message_when_it_resumes() {
    const COUNT: u64 = 1000;
    let nats = Nats::start(false).await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut subscriber = client.subscribe("out.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let dir = relay(COUNT, "");
    let mut host = start(&dir, &nats);
    host.wait_for(100, |e| e["event"] == "bag").await;
    nats.pause().await;
    // Bags keep flowing through the relay while the server does not answer.
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["last"] == true).await;
    nats.resume().await;
    let mut seen = BTreeMap::new();
    while seen.len() < COUNT as usize {
        let message = within(subscriber.next()).await.expect("the subscription ended");
        if let Some(n) = n_of(&message.payload) {
            *seen.entry(n).or_insert(0u64) += 1;
        }
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>());
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(dir.report().count("relay", "publish_dropped"), 0, "{}", out.stderr);
}

#[tokio::test]
async fn a_shutdown_while_the_server_is_paused_ends_within_the_drain_timeout() {
    let nats = Nats::start(false).await;
    let dir = relay(400, "");
    std::fs::write(
        dir.path().join("bagpipe.toml"),
        format!(
            "[host]\ndrain_timeout_ms = 500\n\n{}",
            std::fs::read_to_string(dir.path().join("bagpipe.toml")).expect("manifest")
        ),
    )
    .expect("manifest");
    let probe = async_nats::connect(nats.url()).await.expect("connect");
    let mut host = start(&dir, &nats);
    host.wait_for(50, |e| e["event"] == "bag").await;
    nats.pause().await;
    // (A request: the client's `flush` only writes to the socket.)
    let answered = tokio::time::timeout(Duration::from_millis(300), probe.request(probe.new_inbox(), "".into())).await;
    assert!(answered.is_err(), "the paused server does not answer: {answered:?}");
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["last"] == true).await;
    let asked = std::time::Instant::now();
    host.signal(libc::SIGTERM);
    let out = tokio::time::timeout(SAFETY, host.finish()).await.expect("the host ended");
    let took = asked.elapsed();
    nats.resume().await;
    out.assert_success();
    // The drain timeout (500 ms), shared by the queue and the outbox, then closing the
    // connection (bounded by the drain timeout too) and the process's own exit.
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}:\n{}", out.stderr);
    let report = dir.report();
    let (published, dropped) = (report.count("relay", "published"), report.count("relay", "publish_dropped"));
    assert!(dropped > 0, "what the paused server never confirmed is counted ({published} published)");
    assert!(published + dropped >= 400, "every message is published or counted dropped: {published} + {dropped}");
    assert_eq!(out.log_events("publish_dropped").len(), 1, "and logged once:\n{}", out.stderr);
}

#[tokio::test]
async fn syslog_over_tcp_reaches_the_example_stream_across_five_server_crashes() {
    // The example as shipped (a stream, publish_to_stream), a TCP client writing a steady flow
    // of messages, and the server killed and restarted five times meanwhile.
    const COUNT: usize = 2500;
    let mut nats = Nats::start(true).await;
    let dir = BlockDir::from_manifest(&syslog_example());
    let mut host = start(&dir, &nats);
    let tcp = |r: &serde_json::Value| r["url"].as_str().is_some_and(|u| u.starts_with("tcp://127.0.0.1:"));
    let listening = host.log_event_where("listening", tcp).await;
    let addr = listening["url"].as_str().expect("url").trim_start_matches("tcp://").to_owned();
    host.log_event("stream_ready").await;
    // The writer says how far it got; the server crashes every 400 lines.
    let (progress_tx, mut progress) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let mut client = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let mut pace = tokio::time::interval(Duration::from_millis(2));
        for i in 1..=COUNT {
            pace.tick().await;
            let line = format!("<134>1 2026-11-29T10:00:00Z web-01 checkout 42 - - message {i}\n");
            client.write_all(line.as_bytes()).await.expect("write");
            if i % 400 == 0 {
                let _ = progress_tx.send(i);
            }
        }
        client.shutdown().await.expect("close");
    });
    for _ in 0..5 {
        within(progress.recv()).await.expect("the writer went on");
        nats.stop().await;
        host.log_event("server_disconnected").await;
        nats.restart().await;
        host.log_event("server_connected").await;
    }
    within(writer).await.expect("the writer");
    // Everything was written: a graceful shutdown sends what waits (the server is up).
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_eq!(report.count("syslog", "publish_dropped"), 0, "{}", out.stderr);
    assert_eq!(report.count("syslog", "published"), COUNT as u64, "{}", out.stderr);

    let mut seen = BTreeMap::new();
    for payload in nats.stored("LOGS").await {
        let bag: serde_json::Value = serde_json::from_slice(&payload).expect("a bag");
        *seen.entry(bag["msg"].as_str().unwrap_or_default().to_owned()).or_insert(0u64) += 1;
    }
    let missing: Vec<usize> = (1..=COUNT).filter(|i| !seen.contains_key(&format!("message {i}"))).collect();
    assert!(missing.is_empty(), "every message is in the stream; {} missing: {missing:?}", missing.len());
    let duplicates: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
    assert!(duplicates.is_empty(), "each stored once: {duplicates:?}");
}

#[tokio::test]
async fn a_full_outbox_pushes_back_on_the_tcp_client_and_drops_nothing() {
    // A small outbox and queue, a paused server and a client writing 6 MB of syslog: the block
    // is handed nothing while its outbox is over half full, its queue fills, the host stops
    // reading the socket; what one delivery parsed past the outbox's room is refused `busy` and
    // kept by the block; the outbox never holds more than its bound, and once the server is
    // back every message reaches the stream. (Whether the client's writes are seen to wait
    // depends on how much the kernel buffers, so it is not asserted.)
    const COUNT: usize = 12_000;
    let nats = Nats::start(true).await;
    let example = syslog_example()
        .replace("publish_to_stream = true\n", "publish_to_stream = true\noutbox_bytes = 16384\nqueue = 16\n");
    let dir = BlockDir::from_manifest(&example);
    let report = dir.report_path().display().to_string();
    let mut host =
        Bagpipe::run_with(BIN, &dir, &["--server", &nats.url(), "--report", &report, "--admin", "127.0.0.1:0"]);
    // In whatever order they come: the admin address, both listeners, the stream.
    let records = host
        .log_records(&[
            Want::event("admin"),
            Want::event("listening"),
            Want::event("listening"),
            Want::event("stream_ready"),
        ])
        .await;
    let admin = records[0]["addr"].as_str().expect("admin address").to_owned();
    let addr = records[1..3]
        .iter()
        .find_map(|r| r["url"].as_str().and_then(|u| u.strip_prefix("tcp://")))
        .expect("the TCP listener")
        .to_owned();
    nats.pause().await;
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let mut client = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let pad = "x".repeat(420);
        for i in 1..=COUNT {
            let line = format!("<134>1 2026-11-29T10:00:00Z web-01 checkout 42 - - message {i} {pad}\n");
            client.write_all(line.as_bytes()).await.expect("write");
        }
        client.shutdown().await.expect("close");
    });
    // Wait for the push-back: the outbox over half full (the queue holds socket data, which
    // /blocks does not show as a bag queue).
    let syslog = || async {
        let blocks = bagpipe::admin_get(&admin, "/blocks").await.expect("/blocks");
        let blocks: serde_json::Value = serde_json::from_str(&blocks).expect("JSON");
        blocks.as_array().and_then(|a| a.iter().find(|b| b["responsibility"] == "syslog").cloned()).expect("syslog")
    };
    let pushed_back = async {
        loop {
            let s = syslog().await;
            if s["outbox_bytes"].as_u64().unwrap_or(0) > 8192 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let stats = within(pushed_back).await;
    assert!(stats["outbox_bytes"].as_u64().unwrap_or(u64::MAX) <= 16384, "the outbox keeps its bound: {stats}");
    nats.resume().await;
    within(writer).await.expect("the writer");
    // Every message published and confirmed before the shutdown.
    let all_published = async {
        while syslog().await["published"].as_u64() != Some(COUNT as u64) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within(all_published).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    // The outbox filled up (`busy`, counted): the block kept what it refused and published it
    // once there was room again.
    assert!(report.count("syslog", "publish_busy") > 0, "{}", out.stderr);
    assert_eq!(report.count("syslog", "publish_dropped"), 0, "{}", out.stderr);
    assert_eq!(report.count("syslog", "published"), COUNT as u64, "{}", out.stderr);
    let client = async_nats::connect(nats.url()).await.expect("connect again");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("LOGS").await.expect("the stream");
    // Messages sent again are stored once (their ids), so the count is the set.
    assert_eq!(stream.info().await.expect("info").state.messages, COUNT as u64);
}

#[tokio::test]
async fn a_swap_during_an_outage_keeps_what_waits_in_the_outbox() {
    // The outbox belongs to the block, not to an instance: a new version swapped in while the
    // server is paused finds the messages its predecessor published still waiting, and every one
    // arrives once the server is back.
    const COUNT: u64 = 600;
    let nats = Nats::start(false).await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut subscriber = client.subscribe("out.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let dir = relay(COUNT, "");
    let mut host = start(&dir, &nats);
    host.wait_for(100, |e| e["event"] == "bag").await;
    nats.pause().await;
    let new = bagpipe_test_support::variant(bagpipe_test_support::artifacts::COURIER, "v2");
    dir.write_as("courier.wasm", &new, bagpipe_test_support::Write::Rename);
    host.log_record(Want::event("swapped").block("relay")).await;
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["last"] == true).await;
    nats.resume().await;
    let mut seen = BTreeMap::new();
    while seen.len() < COUNT as usize {
        let message = within(subscriber.next()).await.expect("the subscription ended");
        if let Some(n) = n_of(&message.payload) {
            *seen.entry(n).or_insert(0u64) += 1;
        }
    }
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>());
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_eq!(report.count("relay", "swaps"), 1);
    assert_eq!(report.count("relay", "publish_dropped"), 0, "{}", out.stderr);
}

#[tokio::test]
async fn publish_to_stream_can_name_the_subjects_that_go_through_the_stream() {
    // One stream holds both subjects; only `audit.>` is published through JetStream (with a
    // message id and the stream's acknowledgement), `core.>` as plain NATS, which the stream
    // stores without an id. Both reach it, each the way the manifest says.
    let nats = Nats::start(true).await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BOTH".into(),
        subjects: vec!["core.>".into(), "audit.>".into()],
        ..Default::default()
    })
    .await
    .expect("stream");
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"courier\"\nresponsibility = \"relay\"\nafter = []\npublish = [\"core.>\", \"audit.>\"]\n\
         publish_to_stream = [\"audit.>\"]\n[block.config]\npublish = \"core.run\"\ncount = 3\nforward = \"audit.bags\"\n\n\
         [[block]]\nname = \"bench_source\"\nafter = [\"relay\"]\n[block.config]\nto = \"relay\"\ncount = 3\n",
    );
    let mut host = start(&dir, &nats);
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["last"] == true).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(dir.report().count("relay", "published"), 6, "{}", out.stderr);
    let mut stream = js.get_stream("BOTH").await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut seen = BTreeMap::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.expect("stored");
        let id = message.headers.get("Nats-Msg-Id").is_some();
        *seen.entry((message.subject.to_string(), id)).or_insert(0) += 1;
    }
    let expected = BTreeMap::from([(("audit.bags".to_owned(), true), 3), (("core.run".to_owned(), false), 3)]);
    assert_eq!(seen, expected, "audit.> through JetStream (with ids), core.> plain");
}
