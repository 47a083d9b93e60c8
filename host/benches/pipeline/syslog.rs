//! Syslog over TCP through the syslog block to a sink, against the same job done natively in the
//! same run: a tokio TCP reader with the block's own parser (`parse.rs`, compiled natively),
//! serde_json, a bounded channel and a sink task that parses each bag, as the bench sink does.
//! The bare parser in a loop over lines already in memory is reported too: the ceiling, with no
//! socket, no queue and no second block.

use std::time::{Duration, Instant};

use bagpipe::{Host, Manifest};
use bagpipe_test_support::{BlockDir, artifacts};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::{QUEUE, SINK_TIMING, next_log, paired, tap_log, untap_log};

#[path = "../../../guests/protocols/syslog/src/parse.rs"]
#[allow(dead_code)]
pub mod parse;

/// What the table shows.
pub struct Figures {
    /// Messages/s at the sink, through the block.
    pub block: f64,
    /// The same job natively, messages/s at its sink.
    pub native: f64,
    /// Median of the per-round ratios block/native.
    pub ratio: f64,
    /// The bare parser, messages/s.
    pub parse_only: f64,
}

/// Measures the block against the native job, `n` messages a round, alternating.
pub async fn measure(host: &Host, n: u64) -> Figures {
    let (native, block, ratio) = paired(|| native_tcp(n), || through_block(host, n)).await;
    let parse_only = (0..3).map(|_| parse_loop(n)).fold(0.0, f64::max);
    Figures { block, native, ratio, parse_only }
}

pub fn print(f: &Figures) {
    println!("| syslog over TCP to a sink (parse, bag, queue, sink parses)         | value      |");
    println!("|--------------------------------------------------------------------|-----------:|");
    println!("| through the syslog block, messages/s                                | {:>10.0} |", f.block);
    println!("| native: tokio reader, the same parser, channel, sink task, msg/s    | {:>10.0} |", f.native);
    println!("| ... ratio block/native (goal >= 0.5)                                | {:>10.2} |", f.ratio);
    println!("| the bare parser in a loop (no socket, no queue, no sink), msg/s     | {:>10.0} |", f.parse_only);
}

/// The `n`-th line the benches send.
pub fn line(n: u64) -> String {
    format!(
        "<134>1 2026-11-22T10:00:00.123Z web-01 nginx 4242 access [req@32473 id=\"{n}\"] GET /index.html 200 1532\n"
    )
}

/// Writes `n` lines to `stream`, 1,000 a write.
pub async fn write_lines(stream: &mut tokio::net::TcpStream, n: u64) {
    let mut batch = String::new();
    for k in 1..=n {
        batch.push_str(&line(k));
        if k % 1000 == 0 || k == n {
            stream.write_all(batch.as_bytes()).await.expect("write");
            batch.clear();
        }
    }
}

/// Parses `n` lines already in memory and serialises each result; returns messages/s.
fn parse_loop(n: u64) -> f64 {
    let lines: Vec<String> = (1..=n).map(line).collect();
    let start = Instant::now();
    let mut bytes = 0usize;
    for line in &lines {
        let mut bag = parse::parse(line.as_bytes()).expect("syslog");
        bag.insert("transport".into(), "tcp".into());
        bag.insert("peer".into(), "127.0.0.1:50000".into());
        bytes += serde_json::to_string(&bag).expect("serialise").len();
    }
    std::hint::black_box(bytes);
    n as f64 / start.elapsed().as_secs_f64()
}

/// The block's job natively: accept one connection, split it into lines, parse each, add the
/// transport and peer, serialise, send it through a bounded channel to a sink task that parses
/// it. Returns the sink's rate from its first message to its last.
async fn native_tcp(n: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let reader = tokio::spawn(async move {
        let (socket, peer) = listener.accept().await.expect("accept");
        let peer = peer.to_string();
        let mut lines = tokio::io::BufReader::new(socket).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut bag = parse::parse(line.as_bytes()).expect("syslog");
            bag.insert("transport".into(), "tcp".into());
            bag.insert("peer".into(), peer.clone().into());
            if tx.send(serde_json::to_string(&bag).expect("serialise")).await.is_err() {
                return;
            }
        }
    });
    let sink = tokio::spawn(async move {
        let (mut count, mut first) = (0u64, None);
        while count < n
            && let Some(text) = rx.recv().await
        {
            first.get_or_insert_with(Instant::now);
            let bag: Map<String, Value> = serde_json::from_str(&text).expect("parse");
            std::hint::black_box(&bag);
            count += 1;
        }
        (count, first.map_or(Duration::ZERO, |f| f.elapsed()))
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    write_lines(&mut stream, n).await;
    let (count, elapsed) = sink.await.expect("sink");
    drop(stream);
    reader.await.expect("reader");
    assert_eq!(count, n);
    (count - 1) as f64 / elapsed.as_secs_f64()
}

/// Sends `n` lines over one TCP connection to the syslog block; returns the sink's messages/s.
pub async fn through_block(host: &Host, n: u64) -> f64 {
    let dir = BlockDir::new(
        &format!(
            "[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\nqueue = {QUEUE}\n[block.config]\nexpect = {n}\n\n\
             [[block]]\nname = \"syslog\"\nafter = []\nqueue = {QUEUE}\nlisten = [\"tcp://127.0.0.1:0\"]\n"
        ),
        &[("syslog", artifacts::SYSLOG), ("bench_sink", artifacts::BENCH_SINK)],
    );
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let mut log = tap_log();
    *SINK_TIMING.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let client = async {
        let Some(addr) = next_log(&mut log, |m| m.strip_prefix("listening on tcp://").map(str::to_owned)).await else {
            return;
        };
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        write_lines(&mut stream, n).await;
        // Held open until the host is done with it.
        let _ = next_log(&mut log, |_| None::<()>).await;
    };
    let run = async {
        let report = host.run(&manifest, std::future::pending()).await;
        untap_log();
        report
    };
    let (report, ()) = tokio::join!(run, client);
    report.expect("run");
    let timing = SINK_TIMING.lock().unwrap_or_else(|p| p.into_inner()).take();
    timing.map_or(f64::NAN, |(ns, bags)| (bags - 1) as f64 / Duration::from_nanos(ns).as_secs_f64())
}
