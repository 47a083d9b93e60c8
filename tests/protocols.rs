//! The protocol blocks against real clients nobody here wrote: `logger` (util-linux) for syslog,
//! `socat` for JSON lines, `curl` for the HTTP gateway; plus garbage, partial frames, a 10 MB
//! line, and a swap of the syslog block under a client that keeps sending.

use std::process::Stdio;

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Want, Write, artifacts, version_of, within};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// Starts the host and waits until `block` listens; returns the URL of each listener
/// (`tcp://...` or `udp://...`), in the order the host logged them.
async fn start(dir: &BlockDir, block: &str, listeners: usize) -> (Bagpipe, Vec<String>) {
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, dir, &["--report", &report]);
    let mut addrs = Vec::new();
    while addrs.len() < listeners {
        let listening = host.log_record(Want::event("listening").block(block)).await;
        addrs.push(listening["url"].as_str().expect("url").to_owned());
    }
    host.log_event("running").await;
    (host, addrs)
}

fn addr<'a>(addrs: &'a [String], scheme: &str) -> &'a str {
    addrs.iter().find_map(|a| a.strip_prefix(scheme)).unwrap_or_else(|| panic!("no {scheme} in {addrs:?}"))
}

async fn command(program: &str, args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).await.expect("stdin");
    }
    let out = child.wait_with_output().await.expect(program);
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn sink(out: &Finished) -> Vec<Value> {
    out.bags_of("sink").into_iter().cloned().collect()
}

#[tokio::test]
async fn logger_sends_rfc5424_and_rfc3164_over_udp_and_tcp() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n[block.config]\nexpect = 4\n\n\
         [[block]]\nname = \"syslog\"\nafter = []\nlisten = [\"udp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]\n",
    );
    let (host, addrs) = start(&dir, "syslog", 2).await;
    let (udp, tcp) = (addr(&addrs, "udp://"), addr(&addrs, "tcp://"));
    let (udp_port, tcp_port) = (udp.rsplit(':').next().unwrap_or(""), tcp.rsplit(':').next().unwrap_or(""));
    let base = ["--server", "127.0.0.1", "--tag", "checkout", "-p", "local3.err"];
    let runs: [(&str, &[&str], &str); 4] = [
        (udp_port, &["--udp", "--rfc5424"], "udp 5424"),
        (udp_port, &["--udp", "--rfc3164"], "udp 3164"),
        (tcp_port, &["--tcp", "--rfc5424", "--octet-count"], "tcp 5424 octet-counted"),
        (tcp_port, &["--tcp", "--rfc3164"], "tcp 3164 newline"),
    ];
    for (port, flags, msg) in runs {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--port", port]);
        args.extend(flags);
        args.push(msg);
        command("logger", &args, None).await;
    }
    let out = host.finish().await;
    out.assert_success();
    let bags = sink(&out);
    assert_eq!(bags.len(), 4, "{bags:?}");
    for bag in &bags {
        let msg = bag["msg"].as_str().unwrap_or("");
        assert_eq!(bag["facility"], "local3", "{bag}");
        assert_eq!(bag["severity"], "err", "{bag}");
        assert_eq!(bag["app"], "checkout", "{bag}");
        let (transport, protocol) = match msg {
            "udp 5424" => ("udp", "rfc5424"),
            "udp 3164" => ("udp", "rfc3164"),
            "tcp 5424 octet-counted" => ("tcp", "rfc5424"),
            "tcp 3164 newline" => ("tcp", "rfc3164"),
            other => panic!("unexpected message {other:?} in {bag}"),
        };
        assert_eq!((bag["transport"].as_str(), bag["protocol"].as_str()), (Some(transport), Some(protocol)), "{bag}");
        assert!(bag["timestamp"].is_string(), "{bag}");
        assert!(bag["host"].is_string(), "{bag}");
    }
}

#[tokio::test]
async fn garbage_and_partial_frames_never_crash_and_never_go_silent() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n[block.config]\nexpect = 5\n\n\
         [[block]]\nname = \"syslog\"\nafter = []\nlisten = [\"tcp://127.0.0.1:0\"]\n[block.config]\nmax_frame = 1000\n",
    );
    let (host, addrs) = start(&dir, "syslog", 1).await;
    let mut conn = TcpStream::connect(addr(&addrs, "tcp://")).await.expect("connect");
    // A frame split in three writes, an octet-counted one split mid-length, garbage, bytes that
    // are not UTF-8, and a frame over max_frame.
    let writes: [&[u8]; 8] = [
        b"<13>Oct 11 22:14:15 mymach",
        b"ine su: first split\n",
        b"3",
        b"1 <13>Oct 11 22:14:15 host a: two",
        b"this is not syslog at all\n",
        b"<13>\xff\xfe\xfd\n",
        &[b'x'; 1500],
        b"\n",
    ];
    for w in writes {
        conn.write_all(w).await.expect("write");
        conn.flush().await.expect("flush");
    }
    let out = host.finish().await;
    out.assert_success();
    let bags = sink(&out);
    assert_eq!(bags.len(), 5, "{bags:#?}");
    assert_eq!(bags[0]["msg"], "first split");
    assert_eq!(bags[0]["host"], "mymachine");
    assert_eq!(bags[1]["msg"], "two");
    let reasons: Vec<_> = bags[2..].iter().map(|b| (b["unparsed"].clone(), b["reason"].clone())).collect();
    assert_eq!(
        reasons,
        [
            (Value::Bool(true), Value::from("no <PRI>")),
            (Value::Bool(true), Value::from("not UTF-8")),
            (Value::Bool(true), Value::from("frame too long")),
        ]
    );
}

#[tokio::test]
async fn json_lines_go_in_with_socat_and_come_back_out_to_clients() {
    // Lines go to `relay`, which answers each with a bag for jsonl, which writes it to every
    // connected client.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"jsonl\"\nafter = []\nlisten = [\"tcp://127.0.0.1:0\"]\n[block.config]\nto = \"relay\"\nmax_line = 65536\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"relay\"\nafter = []\n[block.config]\nto = \"jsonl\"\nreply_bags = ['{\"reply\":true}']\n",
    );
    let (mut host, addrs) = start(&dir, "jsonl", 1).await;
    let tcp = addr(&addrs, "tcp://").to_owned();
    // Connected before socat, so jsonl knows this client when the reply comes.
    let mut listener = BufReader::new(TcpStream::connect(&tcp).await.expect("connect"));
    command("socat", &["-", &format!("TCP:{tcp}")], Some(b"{\"from\":\"socat\",\"n\":1}\n")).await;
    let seen = host.wait_for(1, |e| e["event"] == "bag" && e["block"] == "relay").await;
    let bag = &seen.last().expect("bag")["bag"];
    assert_eq!((bag["from"].as_str(), bag["n"].as_u64()), (Some("socat"), Some(1)));
    let mut line = String::new();
    listener.read_line(&mut line).await.expect("read");
    assert_eq!(serde_json::from_str::<Value>(&line).expect("JSON line"), serde_json::json!({"reply": true}));

    // Garbage and a 10 MB line are answered with an error line; the connection stays usable.
    let client = listener.get_mut();
    client.write_all(b"not json\n").await.expect("write");
    client.write_all(&vec![b'a'; 10 << 20]).await.expect("write 10 MB");
    client.write_all(b"\n{\"after\":\"big\"}\n").await.expect("write");
    let mut errors = Vec::new();
    while errors.len() < 2 {
        let mut line = String::new();
        listener.read_line(&mut line).await.expect("read");
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        if v.get("error").is_some() {
            errors.push(v["error"].as_str().unwrap_or("").to_owned());
        }
    }
    assert!(errors[0].contains("JSON"), "{errors:?}");
    assert!(errors[1].contains("longer than"), "{errors:?}");
    let seen = host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["after"] == "big").await;
    assert!(!seen.is_empty());
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

/// The next line `reader` gets, as JSON; fails when none comes.
async fn next_line(reader: &mut BufReader<TcpStream>) -> Value {
    let mut line = String::new();
    let read = within(reader.read_line(&mut line)).await;
    assert!(matches!(read, Ok(n) if n > 0), "no line for the reader: {read:?}");
    serde_json::from_str(&line).expect("JSON line")
}

#[tokio::test]
async fn jsonl_clients_keep_getting_lines_after_the_block_restarts() {
    // `out` writes every bag it gets to its clients; `relay` answers each line that came in on
    // `out` with a bag for it. A line on `front` goes to `trip`, whose fault restarts every block.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"jsonl\"\nresponsibility = \"out\"\nafter = []\nlisten = [\"tcp://127.0.0.1:0\"]\n[block.config]\nto = \"relay\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"relay\"\nafter = []\n[block.config]\nto = \"out\"\nreply_bags = ['{\"reply\":true}']\n\n\
         [[block]]\nname = \"faulty\"\nresponsibility = \"trip\"\nafter = []\nrestart = \"all\"\nmax_attempts = 1\n[block.config]\nfault = \"panic\"\nin = \"marked\"\n\n\
         [[block]]\nname = \"jsonl\"\nresponsibility = \"front\"\nafter = []\nlisten = [\"tcp://127.0.0.1:0\"]\n[block.config]\nto = \"trip\"\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    let listening = host
        .log_records(&[
            Want::event("listening").block("out"),
            Want::event("listening").block("front"),
            Want::event("running"),
        ])
        .await;
    let tcp =
        |record: &Value| record["url"].as_str().and_then(|u| u.strip_prefix("tcp://")).expect("tcp url").to_owned();
    let (out, front) = (tcp(&listening[0]), tcp(&listening[1]));
    // The reader writes once, before the restart; after it, `out` can only know of it from the
    // connections the host kept.
    let mut reader = BufReader::new(TcpStream::connect(&out).await.expect("connect"));
    reader.get_mut().write_all(b"{\"n\":1}\n").await.expect("write");
    assert_eq!(next_line(&mut reader).await, serde_json::json!({"reply": true}));

    TcpStream::connect(&front).await.expect("connect").write_all(b"{\"crash\":true}\n").await.expect("write");
    host.log_record(Want::event("restart_all").block("trip")).await;
    host.wait_for(2, |e| e["event"] == "run" && e["block"] == "trip").await;
    let mut writer = TcpStream::connect(&out).await.expect("connect");
    writer.write_all(b"{\"n\":2}\n").await.expect("write");
    assert_eq!(next_line(&mut reader).await, serde_json::json!({"reply": true}), "the fresh `out` knows the reader");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(out.events("run").len(), 2, "trip ran twice: the whole set restarted once");
}

#[tokio::test]
async fn curl_posts_bags_through_the_http_gateway() {
    let dir = BlockDir::from_manifest(
        "[host]\nenqueue_timeout_ms = 5\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\nmax_bag_bytes = 200\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"slow\"\nafter = []\nqueue = 1\ncall_timeout_ms = 10000\n[block.config]\nbusy_ms = 3000\n\n\
         [[block]]\nname = \"http\"\nafter = []\nlisten = [\"tcp://127.0.0.1:0\"]\n",
    );
    let (mut host, addrs) = start(&dir, "http", 1).await;
    let base = format!("http://{}", addr(&addrs, "tcp://"));
    let curl = |method: &'static str, path: String, body: Option<&'static str>| {
        let url = format!("{base}{path}");
        async move {
            let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method];
            if let Some(body) = body {
                args.extend(["-H", "content-type: application/json", "--data", body]);
            }
            args.push(&url);
            let out = command("curl", &args, None).await;
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    assert_eq!(curl("GET", "/health".into(), None).await, "200");
    assert_eq!(curl("POST", "/bags/sink".into(), Some("{\"hello\":\"http\"}")).await, "202");
    assert_eq!(curl("POST", "/bags/nobody".into(), Some("{}")).await, "404");
    assert_eq!(curl("POST", "/bags/sink".into(), Some("not json")).await, "400");
    let big = Box::leak(format!("{{\"big\":\"{}\"}}", "x".repeat(500)).into_boxed_str());
    assert_eq!(curl("POST", "/bags/sink".into(), Some(big)).await, "413");
    assert_eq!(curl("GET", "/nowhere".into(), None).await, "404");
    assert_eq!(curl("DELETE", "/bags/sink".into(), None).await, "405");
    // `slow` takes the first bag and works on it for 3 s; the next fills its queue of one; the
    // one after finds it full.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(curl("POST", "/bags/slow".into(), Some("{}")).await);
    }
    assert_eq!(codes.last().map(String::as_str), Some("503"), "{codes:?}");
    let seen = host.wait_for(1, |e| e["event"] == "bag" && e["block"] == "sink").await;
    assert_eq!(seen.last().expect("bag")["bag"]["hello"], "http");
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn swapping_syslog_under_a_sending_client_keeps_the_connection_and_every_message() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n\n\
         [[block]]\nname = \"syslog\"\nafter = []\nlisten = [\"tcp://127.0.0.1:0\"]\n",
    );
    let (mut host, addrs) = start(&dir, "syslog", 1).await;
    let mut conn = TcpStream::connect(addr(&addrs, "tcp://")).await.expect("connect");
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    // The client sends until told to stop, at a steady pace, on one connection.
    let client = tokio::spawn(async move {
        let mut n = 0u64;
        while !*stop.borrow_and_update() {
            for _ in 0..10 {
                n += 1;
                conn.write_all(format!("<134>Nov 22 10:00:00 web app: message {n}\n").as_bytes()).await?;
            }
            // A client with a pace of its own, not synchronisation.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        conn.flush().await?;
        Ok::<(TcpStream, u64), std::io::Error>((conn, n))
    });
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["msg"] == "message 200").await;
    let v2 = std::fs::read(artifacts::SYSLOG_V2).expect("syslog_v2");
    dir.write_as("syslog.wasm", &v2, Write::Rename);
    host.log_record(Want::event("swapped").block("syslog").field("version", version_of(&v2))).await;
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["parser"] == "v2").await;
    stop_tx.send(true).expect("stop the client");
    let (conn, sent) = client.await.expect("client").expect("the connection was never closed under the client");
    let last = format!("message {sent}");
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["msg"] == last.as_str()).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    drop(conn);
    out.assert_success();
    let bags = sink(&out);
    let numbers: Vec<u64> =
        bags.iter().filter_map(|b| b["msg"].as_str()?.strip_prefix("message ")?.parse().ok()).collect();
    assert_eq!(numbers, (1..=sent).collect::<Vec<_>>(), "every message exactly once, in order");
    let first_v2 = bags.iter().position(|b| b["parser"] == "v2").expect("messages after the swap carry the new field");
    assert!(first_v2 >= 200, "messages before the swap come from the old version");
    assert!(bags[first_v2..].iter().all(|b| b["parser"] == "v2"), "and every one after it");
    let report = dir.report();
    assert_eq!(report.count("syslog", "connections"), 1, "one connection, never reopened");
    assert_eq!(report.count("syslog", "swaps"), 1);
}

#[tokio::test]
async fn the_gateway_example_is_a_valid_component_directory() {
    let manifest =
        std::fs::read_to_string(bagpipe_test_support::workspace_root().join("examples/gateway/bagpipe.toml"))
            .expect("example manifest");
    let dir = BlockDir::from_manifest(&manifest);
    let out = bagpipe_test_support::run_to_end(BIN, ["check".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let text = out.stdout.join("\n");
    assert!(text.contains("listen [udp://127.0.0.1:5514, tcp://127.0.0.1:5514]"), "{text}");
    assert!(text.contains("4 blocks, all valid"), "{text}");
}
