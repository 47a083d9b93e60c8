//! Worker pools: a CPU-bound transform (the `worker` fixture spinning [`SPIN`] rounds of
//! xorshift per bag) between the bench source and sink, with a fixed pool of 1, 2 and 4 workers
//! (`workers = { min = N, max = N }`; none for 1), against the same work natively: the same
//! bags from a source task, parsed, spun with the same function (the fixture's own `spin.rs`,
//! compiled here) and re-serialised by N tokio tasks taking them from one queue, to a sink task.
//! Each side's speed-up is against its own single worker; the ratio block/native is the median
//! of paired rounds, with its spread. Both sides share the runtime's threads, one per core, so
//! the speed-up is bounded by the cores (and the source and sink take their share).
//!
//! With more than one worker, bags reach the sink out of order: the one marked `last` may
//! overtake a few others, and both sinks stop at it (or at the `n`-th bag), so a run may count
//! a few bags fewer (the bench sink counts on while the host drains, and logs again if all
//! arrive); the rate is over the bags counted.

use std::time::{Duration, Instant};

use bagpipe::Host;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::hostile::StdoutToNull;
use crate::{Paired, QUEUE, RUNS, paired_spread, run_blocks, source_bag};

#[path = "../../../guests/fixtures/worker/src/spin.rs"]
mod spin;

/// Rounds of xorshift64 per bag. One round took about 1.7 ns natively and 2.4 ns in the block
/// (Cranelift, with the host's interruption checks in the loop) on the 2-core machine this was
/// written on, so a bag costs about 25 µs of CPU natively and 35 µs in the block: in the 20-50 µs
/// where the work, not the host's per-bag cost of a few µs, sets the rate.
const SPIN: u64 = 15_000;

/// The pool sizes measured.
const POOLS: [usize; 3] = [1, 2, 4];

/// One pool size: the block and native rates (medians) and the per-round ratios.
pub struct Row {
    workers: usize,
    paired: Paired,
}

/// What [`measure`] found.
pub struct PoolFigures {
    bags: u64,
    cores: usize,
    /// The spin's cost per bag natively, µs, on one thread.
    spin_us: f64,
    rows: Vec<Row>,
}

/// Measures `bags` bags through each pool size, block and native alternately.
pub async fn measure(host: &Host, bags: u64) -> PoolFigures {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spin_us = spin_cost();
    // The workers print a line when they start and finish, several per run; not into the table.
    let _quiet = StdoutToNull::new();
    let mut rows = Vec::new();
    for workers in POOLS {
        let manifest = pipeline(bags, workers);
        let paired =
            paired_spread(|| native(bags, workers), || async { run_blocks(host, manifest.clone()).await.0 }).await;
        rows.push(Row { workers, paired });
    }
    PoolFigures { bags, cores, spin_us, rows }
}

/// Prints the table.
pub fn print(f: &PoolFigures) {
    println!(
        "worker pools: a CPU-bound transform, {} bags, spin {SPIN} (≈ {:.0} µs per bag natively), {} cores",
        f.bags, f.spin_us, f.cores
    );
    println!(
        "| workers | blocks bags/s | speed-up | native bags/s | speed-up | block/native | spread ({RUNS} rounds) |"
    );
    println!("|--------:|--------------:|---------:|--------------:|---------:|-------------:|------------------:|");
    let Some(one) = f.rows.first() else { return };
    for r in &f.rows {
        let spread = format!("{:.2} to {:.2}", r.paired.ratios.0, r.paired.ratios.1);
        println!(
            "| {:>7} | {:>13.0} | {:>7.2}x | {:>13.0} | {:>7.2}x | {:>12.2} | {spread:>17} |",
            r.workers,
            r.paired.b,
            r.paired.b / one.paired.b,
            r.paired.a,
            r.paired.a / one.paired.a,
            r.paired.ratio,
        );
    }
    println!("(speed-up: to 1 worker of the same side; rates are medians, each at its sink from first bag to last)");
}

/// bench_source -> worker (a pool of `workers`, spinning) -> bench_sink. The source starts once
/// the pool and the sink run, so the first bags do not wait for workers still starting.
fn pipeline(bags: u64, workers: usize) -> String {
    let pool = if workers > 1 { format!("workers = {{ min = {workers}, max = {workers} }}\n") } else { String::new() };
    format!(
        "[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\nqueue = {QUEUE}\n\
         [block.config]\nexpect = {bags}\n\n\
         [[block]]\nname = \"worker\"\nafter = []\nqueue = {QUEUE}\n{pool}\
         [block.config]\nto = \"sink\"\nspin = {SPIN}\nquiet = true\n\n\
         [[block]]\nname = \"bench_source\"\nafter = [\"sink\", \"worker\"]\n\
         [block.config]\nto = \"worker\"\ncount = {bags}\n"
    )
}

/// The same pipeline natively: a source task, `workers` tasks each taking bags from a bounded
/// queue of its own, dealt in turn (each parses a bag, counts it, spins, adds `worker` and
/// `spun` and serialises it, as the fixture does), and a sink task that parses each bag. Returns
/// the sink's rate.
async fn native(bags: u64, workers: usize) -> f64 {
    // The source deals the bags out to the workers in turn, each through a bounded queue of its
    // own (a shared receiver behind a lock would make the workers take turns).
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::channel::<String>(QUEUE / workers)).unzip();
    let (out, mut sink_rx) = mpsc::channel::<String>(QUEUE);
    let source = tokio::spawn(async move {
        for i in 1..=bags {
            if txs[(i as usize) % txs.len()].send(source_bag(i, bags)).await.is_err() {
                return;
            }
        }
    });
    let pool: Vec<_> = rxs
        .into_iter()
        .zip(0u64..)
        .map(|(mut rx, worker)| {
            let out = out.clone();
            tokio::spawn(async move {
                let mut count = 0u64;
                while let Some(text) = rx.recv().await {
                    let mut bag: Map<String, Value> = serde_json::from_str(&text).expect("parse");
                    count += 1;
                    let spun = spin::spin(count, SPIN);
                    bag.insert("worker".into(), worker.into());
                    bag.insert("spun".into(), spun.into());
                    if out.send(serde_json::to_string(&bag).expect("serialise")).await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(out);
    let sink = tokio::spawn(async move {
        let (mut count, mut first) = (0u64, None);
        while let Some(text) = sink_rx.recv().await {
            first.get_or_insert_with(Instant::now);
            let bag: Map<String, Value> = serde_json::from_str(&text).expect("parse");
            count += 1;
            if bag.get("last") == Some(&Value::Bool(true)) || count == bags {
                break;
            }
        }
        (count, first.map_or(Duration::ZERO, |f| f.elapsed()))
    });
    let (count, elapsed) = sink.await.expect("sink");
    // With the sink gone, the workers' sends fail and they end; then so does the source's.
    for worker in pool {
        worker.await.expect("worker");
    }
    source.await.expect("source");
    (count - 1) as f64 / elapsed.as_secs_f64()
}

/// The spin's cost per bag on one thread, µs (best of a few tries of 500 bags).
fn spin_cost() -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        for seed in 1..=500 {
            std::hint::black_box(spin::spin(std::hint::black_box(seed), SPIN));
        }
        best = best.min(started.elapsed().as_secs_f64() * 1e6 / 500.0);
    }
    best
}
