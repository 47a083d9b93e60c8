//! Request/response between two blocks of one host (`controller.call`, `reply`, `on-reply`)
//! next to NATS request/reply on the same machine (one client answering another through a NATS
//! server of the benchmark's own): round trips per second one at a time, with p50/p99 latency,
//! and the blocks' rate with 16 calls waiting at once.

use std::time::Instant;

use bagpipe::{Host, Manifest};
use bagpipe_test_support::{BlockDir, artifacts};
use futures_util::StreamExt as _;

use super::{next_log, tap_log, untap_log};

pub struct CallFigures {
    pub calls: u64,
    /// Round trips/s one at a time, p50 and p99 in µs.
    pub blocks: (f64, f64, f64),
    /// Round trips/s with 16 calls waiting at once.
    pub blocks_16: f64,
    pub nats: (f64, f64, f64),
}

pub async fn measure(host: &Host, calls: u64) -> CallFigures {
    let blocks = between_blocks(host, calls, 1).await;
    let blocks_16 = between_blocks(host, calls, 16).await.0;
    let nats = nats_request_reply(calls).await;
    CallFigures { calls, blocks, blocks_16, nats }
}

pub fn print(f: &CallFigures) {
    println!("| request/response, {} round trips                                | value      |", f.calls);
    println!("|--------------------------------------------------------------------|-----------:|");
    println!("| two blocks in one host (call / reply / on_reply), one at a time, /s | {:>10.0} |", f.blocks.0);
    println!(
        "| ... latency p50 / p99                                               | {:>4.0} / {:>4.0} µs |",
        f.blocks.1, f.blocks.2
    );
    println!("| ... with 16 calls waiting at once, round trips/s                    | {:>10.0} |", f.blocks_16);
    println!("| NATS request/reply (two clients, local server), one at a time, /s   | {:>10.0} |", f.nats.0);
    println!(
        "| ... latency p50 / p99                                               | {:>4.0} / {:>4.0} µs |",
        f.nats.1, f.nats.2
    );
    println!(
        "| ... ratio blocks/NATS, one at a time                                | {:>10.2} |",
        f.blocks.0 / f.nats.0
    );
}

/// `(round trips/s, p50 µs, p99 µs)` of `calls` calls from a bench caller to a responder.
async fn between_blocks(host: &Host, calls: u64, in_flight: u64) -> (f64, f64, f64) {
    let manifest = format!(
        "[[block]]\nname = \"caller\"\nresponsibility = \"responder\"\nqueue = 1024\n[block.config]\nquiet = true\n\n\
         [[block]]\nname = \"bench_caller\"\nqueue = 1024\n[block.config]\nto = \"responder\"\ncount = {calls}\nin_flight = {in_flight}\n"
    );
    let dir = BlockDir::new(&manifest, &[("caller", artifacts::CALLER), ("bench_caller", artifacts::BENCH_CALLER)]);
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let mut log = tap_log();
    let run = host.run(&manifest, std::future::pending());
    let figures = async { next_log(&mut log, calls_line).await };
    let (report, figures) = tokio::join!(run, figures);
    untap_log();
    report.expect("calls run");
    figures.unwrap_or((f64::NAN, f64::NAN, f64::NAN))
}

/// From `bench calls elapsed_ns=.. calls=.. failed=.. p50_ns=.. p99_ns=..`.
fn calls_line(message: &str) -> Option<(f64, f64, f64)> {
    let rest = message.strip_prefix("bench calls ")?;
    let field = |name: &str| -> Option<f64> {
        rest.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let rate = field("calls")? / (field("elapsed_ns")? / 1e9);
    Some((rate, field("p50_ns")? / 1e3, field("p99_ns")? / 1e3))
}

/// `(round trips/s, p50 µs, p99 µs)` of NATS requests answered by another client.
async fn nats_request_reply(calls: u64) -> (f64, f64, f64) {
    let nats = bagpipe_test_support::Nats::start(false).await;
    let responder = async_nats::connect(nats.url()).await.expect("connect");
    let requester = async_nats::connect(nats.url()).await.expect("connect");
    let mut questions = responder.subscribe("bench.rr").await.expect("subscribe");
    responder.flush().await.expect("flush");
    let answer = async {
        while let Some(m) = questions.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    };
    let ask = async {
        let payload = bytes::Bytes::from_static(br#"{"question":"how are you","n":1}"#);
        let mut latencies = Vec::with_capacity(calls as usize);
        let started = Instant::now();
        for _ in 0..calls {
            let at = Instant::now();
            requester.request("bench.rr", payload.clone()).await.expect("request");
            latencies.push(at.elapsed());
        }
        let rate = calls as f64 / started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let at = |p: usize| latencies[(latencies.len() - 1) * p / 100].as_secs_f64() * 1e6;
        (rate, at(50), at(99))
    };
    let figures = tokio::select! {
        figures = ask => figures,
        () = answer => (f64::NAN, f64::NAN, f64::NAN),
    };
    drop(nats);
    figures
}
