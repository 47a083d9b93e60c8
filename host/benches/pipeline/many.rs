//! Many idle blocks in one host: how long they take to start (from `Host::run` to "all blocks
//! running") and to shut down gracefully (from the shutdown signal to `run` returning), and
//! what each one holds (the process's resident memory once they run, less before, per block).
//! Goals: 10,000 blocks start in at most 2 s and stop in at most 2 s, at most 128 KiB each.
//!
//! Two shapes: independent blocks (`after = []`: they start and finish in parallel) and one
//! chain (no `after`: each block starts after the one before it and finishes before it).

use std::time::{Duration, Instant};

use bagpipe::{Host, Manifest};
use bagpipe_test_support::{BlockDir, artifacts};

use crate::{next_log, tap_log, untap_log};

/// One row of the table.
pub struct Row {
    shape: &'static str,
    blocks: usize,
    start: Duration,
    stop: Duration,
    kib_per_block: f64,
    maps_per_block: f64,
}

/// Measures `n` idle blocks, independent and chained.
pub async fn measure(host: &Host, n: usize) -> Vec<Row> {
    vec![run(host, n, "independent (after = [])", true).await, run(host, n, "one chain (no after)", false).await]
}

async fn run(host: &Host, n: usize, shape: &'static str, independent: bool) -> Row {
    let after = if independent { "after = []\n" } else { "" };
    let manifest: String =
        (0..n).map(|i| format!("[[block]]\nname = \"bench_sink\"\nresponsibility = \"s{i}\"\n{after}\n")).collect();
    let dir = BlockDir::new(&manifest, &[("bench_sink", artifacts::BENCH_SINK)]);
    let Grown { start, stop, kib, maps } = start_and_stop(host, &dir).await;
    let (kib_per_block, maps_per_block) = (kib as f64 / n as f64, maps as f64 / n as f64);
    Row { shape, blocks: n, start, stop, kib_per_block, maps_per_block }
}

/// What running a manifest took and added.
pub struct Grown {
    /// From `Host::run` to "all blocks running".
    pub start: Duration,
    /// From the shutdown signal to `run` returning.
    pub stop: Duration,
    /// Resident memory the process gained once the blocks ran, KiB.
    pub kib: u64,
    /// Memory mappings it gained.
    pub maps: usize,
}

/// Runs the manifest in `dir` on `host` until all its blocks run, notes what that took and added,
/// then shuts it down and times that; every block must have run.
pub async fn start_and_stop(host: &Host, dir: &BlockDir) -> Grown {
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let before = resident_kib();
    let maps_before = mappings();
    let mut log = tap_log();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let began = Instant::now();
    let run = host.run(&manifest, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(run);
    let running = next_log(&mut log, |m| (m == "all blocks running").then_some(()));
    tokio::select! {
        found = running => found.expect("the host said its blocks run"),
        ended = &mut run => panic!("the host ended before its blocks ran: {:?}", ended.err()),
    }
    let start = began.elapsed();
    untap_log();
    let kib = resident_kib().saturating_sub(before);
    let maps = mappings().saturating_sub(maps_before);
    let stopping = Instant::now();
    let _ = stop_tx.send(());
    let report = run.await.expect("run");
    let stop = stopping.elapsed();
    assert!(report.failed.is_empty(), "every block ran: {:?}", report.failed.first());
    Grown { start, stop, kib, maps }
}

/// The process's resident memory, KiB (`VmRSS`).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches("kB").trim().to_owned()))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The process's memory mappings (the kernel allows `vm.max_map_count`, 65,530 by default).
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count())
}

/// Prints the table.
pub fn print(rows: &[Row]) {
    println!(
        "| idle blocks in one host            | blocks | start   | shutdown | KiB per block | mappings per block |"
    );
    println!(
        "|------------------------------------|-------:|--------:|---------:|--------------:|-------------------:|"
    );
    for r in rows {
        println!(
            "| {:<34} | {:>6} | {:>5.2} s | {:>6.2} s | {:>13.0} | {:>18.1} |",
            r.shape,
            r.blocks,
            r.start.as_secs_f64(),
            r.stop.as_secs_f64(),
            r.kib_per_block,
            r.maps_per_block
        );
    }
    println!("(goals for 10,000: start <= 2 s, shutdown <= 2 s, <= 128 KiB per idle block)");
}
