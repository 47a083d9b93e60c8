//! Sockets the host owns for a block: TCP and UDP through a real echo block, grants (deny by
//! default), connections kept across a swap, 1,000 concurrent connections, a client that stops
//! reading.

use bagpipe_test_support::{Bagpipe, BlockDir, Want, Write, artifacts, run_to_end, variant, version_of, within};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// Starts an echo block listening on TCP and UDP ports the system picks; returns the host and
/// the two addresses.
async fn echo(extra: &str) -> (Bagpipe, BlockDir, String, String) {
    let manifest = format!(
        "{extra}\n[[block]]\nname = \"echo\"\nlisten = [\"tcp://127.0.0.1:0\", \"udp://127.0.0.1:0\"]\n[block.config]\nquiet = true\n"
    );
    let dir = BlockDir::from_manifest(&manifest);
    let mut host = Bagpipe::run(BIN, &dir);
    let seen = host.wait_for(1, |e| e["event"] == "listeners").await;
    let listeners = seen.last().expect("listeners")["listeners"].clone();
    let addr = |scheme: &str| {
        listeners
            .as_array()
            .and_then(|l| l.iter().filter_map(|v| v.as_str()).find(|v| v.starts_with(scheme)))
            .map(|v| v.trim_start_matches(scheme).to_owned())
            .unwrap_or_else(|| panic!("no {scheme} listener in {listeners}"))
    };
    let (tcp, udp) = (addr("tcp://"), addr("udp://"));
    (host, dir, tcp, udp)
}

/// Whether a `listening` record is for a URL of `scheme` (`tcp://` or `udp://`).
fn scheme(scheme: &'static str) -> impl Fn(&Value) -> bool {
    move |r| r["url"].as_str().is_some_and(|u| u.starts_with(scheme))
}

/// The `ip:port` of a `listening` record's URL.
fn address(listening: &Value) -> String {
    let url = listening["url"].as_str().unwrap_or_else(|| panic!("no url in {listening}"));
    url.split_once("://").map_or(url, |(_, addr)| addr).to_owned()
}

async fn round_trip(stream: &mut BufReader<TcpStream>, line: &str) -> String {
    stream.get_mut().write_all(line.as_bytes()).await.expect("write");
    let mut back = String::new();
    within(stream.read_line(&mut back)).await.expect("read");
    back
}

#[tokio::test]
async fn tcp_and_udp_go_through_the_block_and_back() {
    let (mut host, _dir, tcp, udp) = echo("").await;
    assert!(!tcp.ends_with(":0") && !udp.ends_with(":0"), "bound ports are reported: {tcp} {udp}");
    let mut conn = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
    assert_eq!(round_trip(&mut conn, "hello\n").await, "hello\n");
    assert_eq!(round_trip(&mut conn, "again\n").await, "again\n");
    let accept = host.wait_for(1, |e| e["event"] == "accept").await;
    assert_eq!(accept.last().expect("accept")["listener"], format!("tcp://{tcp}"));
    drop(conn);
    host.wait_for(1, |e| e["event"] == "close").await;

    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    socket.send_to(b"ping", &udp).await.expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = socket.recv_from(&mut buf).await.expect("echo");
    assert_eq!((&buf[..n], from.to_string()), (&b"ping"[..], udp.clone()));

    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn connecting_out_is_refused_unless_granted() {
    let server = TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let target = server.local_addr().expect("addr").to_string();
    let manifest = |grant: &str| {
        format!("[[block]]\nname = \"echo\"\n{grant}\n[block.config]\nconnect = \"{target}\"\nquiet = true\n")
    };
    let denied = BlockDir::from_manifest(&manifest(""));
    let mut host = Bagpipe::run(BIN, &denied);
    let seen = host.wait_for(1, |e| e["event"] == "connect").await;
    let error = seen.last().expect("connect")["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("not granted") && error.contains(&target), "{error}");
    host.log_record(Want::event("not_granted").block("echo")).await;
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();

    let granted = BlockDir::from_manifest(&manifest(&format!("connect = [\"{target}\"]")));
    let host = Bagpipe::run(BIN, &granted);
    let (stream, _) = server.accept().await.expect("the block connects");
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("read");
    assert_eq!(line, "hello\n");
    // The echo block echoes what the far side says.
    assert_eq!(round_trip(&mut stream, "back at you\n").await, "back at you\n");
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn a_block_granted_sockets_must_export_the_net_hook() {
    let dir = BlockDir::from_manifest("[[block]]\nname = \"probe\"\nlisten = [\"tcp://127.0.0.1:0\"]\n");
    let out = run_to_end(BIN, ["check".as_ref(), dir.path().as_os_str()]).await;
    assert!(!out.status.success());
    assert!(out.stderr.contains("does not export `bagpipe:block/net-hook@0.1.0`"), "{}", out.stderr);
    let ok = BlockDir::from_manifest(
        "[[block]]\nname = \"echo\"\nlisten = [\"udp://127.0.0.1:0\"]\nconnect = [\"127.0.0.1:9\"]\n",
    );
    let out = run_to_end(BIN, ["check".as_ref(), ok.path().as_os_str()]).await;
    out.assert_success();
    assert!(
        out.stdout.join("\n").contains("grants: listen [udp://127.0.0.1:0], connect [127.0.0.1:9]"),
        "{:?}",
        out.stdout
    );
}

#[tokio::test]
async fn a_connection_stays_open_across_a_swap_of_its_block() {
    let (mut host, dir, tcp, _) = echo("").await;
    let mut conn = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
    assert_eq!(round_trip(&mut conn, "before\n").await, "before\n");
    let v2 = variant(artifacts::ECHO, "v2");
    dir.write_as("echo.wasm", &v2, Write::Rename);
    host.log_record(Want::event("swapped").block("echo").field("version", version_of(&v2))).await;
    assert_eq!(round_trip(&mut conn, "after\n").await, "after\n", "the same connection, served by the new version");
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn a_thousand_concurrent_connections_are_all_served() {
    let (host, _dir, tcp, _) = echo("").await;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let tcp = tcp.clone();
        clients.spawn(async move {
            let mut conn = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
            round_trip(&mut conn, &format!("client {i}\n")).await == format!("client {i}\n")
        });
    }
    let mut served = 0;
    while let Some(ok) = clients.join_next().await {
        served += usize::from(ok.expect("client"));
    }
    assert_eq!(served, 1000);
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_would_block_and_others_are_still_served() {
    let (mut host, _dir, tcp, _) = echo("[host]\nenqueue_timeout_ms = 5\n").await;
    // Sends 8 MB and never reads the echo: the host's send buffer for it fills up.
    let mut stubborn = TcpStream::connect(&tcp).await.expect("connect");
    let chunk = vec![b'x'; 64 * 1024];
    let writer = tokio::spawn(async move {
        for _ in 0..128 {
            if stubborn.write_all(&chunk).await.is_err() {
                break;
            }
        }
        stubborn
    });
    let seen = host.wait_for(1, |e| e["event"] == "send").await;
    let error = seen.last().expect("send")["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("WouldBlock"), "{error}");
    let mut polite = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
    assert_eq!(round_trip(&mut polite, "still here?\n").await, "still here?\n");
    writer.abort();
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn udp_datagrams_that_find_the_queue_full_are_counted_as_dropped() {
    // The echo block's queue holds 2; nothing runs while `slow` initialises, so of 50 datagrams
    // sent meanwhile 2 are queued and 48 find the queue full.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"echo\"\nqueue = 2\nlisten = [\"udp://127.0.0.1:0\"]\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"slow\"\ncall_timeout_ms = 10000\n[block.config]\ninit_ms = 1500\n",
    );
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, &dir, &["--report", &report]);
    let udp = address(&host.log_event_where("listening", scheme("udp://")).await);
    host.wait_for(1, |e| e["event"] == "init" && e["block"] == "slow").await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    for i in 0..50 {
        socket.send_to(format!("d{i}").as_bytes(), &udp).await.expect("send");
    }
    let echoed = host.wait_for(2, |e| e["event"] == "datagram").await;
    assert_eq!(echoed.iter().filter(|e| e["event"] == "datagram").count(), 2);
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_eq!(report.count("echo", "udp_dropped"), 48);
    assert_eq!(report.count("echo", "received"), 2);
}

#[tokio::test]
async fn listen_and_connect_grants_change_live_and_open_connections_stay() {
    let manifest = |grants: &str, config: &str| {
        format!("[[block]]\nname = \"echo\"\n{grants}\n[block.config]\nquiet = true\n{config}\n")
    };
    let dir = BlockDir::from_manifest(&manifest("listen = [\"tcp://127.0.0.1:0\"]", ""));
    let mut host = Bagpipe::run(BIN, &dir);
    let tcp = address(&host.log_event_where("listening", scheme("tcp://")).await);
    let mut kept = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
    assert_eq!(round_trip(&mut kept, "one\n").await, "one\n");

    // TCP taken away, UDP granted: no swap, the open connection stays.
    dir.write_as("bagpipe.toml", manifest("listen = [\"udp://127.0.0.1:0\"]", "").as_bytes(), Write::Rename);
    let udp = address(&host.log_event_where("listening", scheme("udp://")).await);
    host.log_record(Want::event("stopped_listening").block("echo").field("url", format!("tcp://{tcp}"))).await;
    let applied = host.log_event("manifest_applied").await;
    assert!(applied["partly"].is_null(), "applied whole: {applied}");
    assert!(TcpStream::connect(&tcp).await.is_err(), "nothing listens on {tcp} any more");
    assert_eq!(round_trip(&mut kept, "two\n").await, "two\n", "the accepted connection is kept");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
    let mut buf = [0u8; 16];
    let mut udp_round_trip = async |text: &[u8]| {
        socket.send_to(text, &udp).await.expect("send");
        let (n, _) = within(socket.recv_from(&mut buf)).await.expect("echo");
        buf[..n].to_vec()
    };
    assert_eq!(udp_round_trip(b"ping").await, b"ping");

    // A connect grant and a config that uses it, in one edit: the new instance finds the grant
    // in force when it runs.
    let server = TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let target = server.local_addr().expect("addr").to_string();
    let granted = manifest(
        &format!("listen = [\"udp://127.0.0.1:0\"]\nconnect = [\"{target}\"]"),
        &format!("connect = \"{target}\""),
    );
    dir.write_as("bagpipe.toml", granted.as_bytes(), Write::Rename);
    let (stream, _) = within(server.accept()).await.expect("the swapped block connects");
    let mut line = String::new();
    within(BufReader::new(stream).read_line(&mut line)).await.expect("read");
    assert_eq!(line, "hello\n");
    assert_eq!(round_trip(&mut kept, "three\n").await, "three\n", "kept across the swap too");

    // A grant that cannot be served refuses the whole edit: the old grants serve on.
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let busy = taken.local_addr().expect("addr");
    let refused = manifest(&format!("listen = [\"udp://127.0.0.1:0\", \"tcp://{busy}\"]"), "label = \"refused\"");
    dir.write_as("bagpipe.toml", refused.as_bytes(), Write::Rename);
    let refused = host.log_record(Want::event("grants_refused").block("echo")).await;
    let message = refused["message"].as_str().unwrap_or("");
    assert!(message.contains(&format!("cannot listen on tcp://{busy}")), "{refused}");
    assert_eq!(udp_round_trip(b"still").await, b"still", "the grants in force before the edit serve on");

    // A block that refuses its swap keeps its old grants: the listener bound for the edit closes.
    let failing = manifest(
        &format!("listen = [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]\nconnect = [\"{target}\"]"),
        &format!("connect = \"{target}\"\nfail_init = \"not today\""),
    );
    dir.write_as("bagpipe.toml", failing.as_bytes(), Write::Rename);
    let added = address(&host.log_event_where("listening", scheme("tcp://")).await);
    host.log_record(Want::event("stopped_listening").block("echo").field("url", format!("tcp://{added}"))).await;
    let refusal = host.log_record(Want::event("change_refused").block("echo")).await;
    assert!(refusal["message"].as_str().is_some_and(|m| m.contains("not today")), "{refusal}");
    assert!(TcpStream::connect(&added).await.is_err(), "the listener of the refused edit is closed");
    assert_eq!(udp_round_trip(b"kept").await, b"kept");

    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let runs: Vec<_> = out.events("listeners").iter().map(|e| e["listeners"].clone()).collect();
    assert_eq!(runs.len(), 2, "one start and one swap; the refused edits never ran: {runs:?}");
    assert_eq!(runs[1], serde_json::json!([format!("udp://{udp}")]), "the swapped instance sees the new grants");
}

#[tokio::test]
async fn a_fresh_instance_after_a_fault_finds_the_connections_its_clients_kept_open() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"echo\"\nmax_attempts = 1\nlisten = [\"tcp://127.0.0.1:0\"]\n\
         [block.config]\nquiet = true\npanic_on = \"boom\"\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    let first = host.wait_for(1, |e| e["event"] == "listeners").await;
    let first = first.last().expect("run").clone();
    assert_eq!(first["connections"], serde_json::json!([]), "nobody connected yet");
    let listener = first["listeners"][0].as_str().expect("listener").to_owned();
    let tcp = listener.trim_start_matches("tcp://").to_owned();
    let mut a = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
    let mut b = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
    assert_eq!(round_trip(&mut a, "a\n").await, "a\n");
    assert_eq!(round_trip(&mut b, "b\n").await, "b\n");
    let peers = [a.get_ref().local_addr().expect("a").to_string(), b.get_ref().local_addr().expect("b").to_string()];

    a.get_mut().write_all(b"boom\n").await.expect("write");
    let again = host.wait_for(1, |e| e["event"] == "listeners").await;
    let open = again.last().expect("run")["connections"].as_array().expect("connections").clone();
    let seen: Vec<(&str, &str)> =
        open.iter().map(|c| (c["listener"].as_str().unwrap_or(""), c["peer"].as_str().unwrap_or(""))).collect();
    assert_eq!(seen, [(listener.as_str(), peers[0].as_str()), (listener.as_str(), peers[1].as_str())]);
    assert_eq!(round_trip(&mut b, "still b\n").await, "still b\n", "served by the fresh instance");
    assert_eq!(round_trip(&mut a, "still a\n").await, "still a\n", "the connection outlived the fault it caused");

    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert!(out.stderr.contains("echo was told to panic"), "the panic is logged");
}
