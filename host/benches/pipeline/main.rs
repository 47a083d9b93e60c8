//! `cargo bench -p bagpipe --bench pipeline`: the same pipeline (source -> transform -> sink,
//! ~200-byte bags, the transform parses and re-serialises each bag) as bagpipe blocks and as plain
//! tokio tasks doing the same serde_json work, in one process run. Prints bags/s for both, the
//! ratio, and the host's cost per bag per hop.
//!
//! Then the supervision figures: the time from a trap to the fresh instance having processed its
//! next bag (p50/p99 over many traps), and the pipeline's rate while a neighbour block crash-loops,
//! as a ratio to the pipeline alone, and beside blocks that keep trying to break their budgets
//! ([`hostile`]); and syslog over TCP through a block to a NATS subject against the same natively,
//! with what five server crashes lose ([`broker`]); and 10,000 idle blocks in one host, their
//! start, shutdown and memory ([`many`]; `BAGPIPE_BENCH_MANY=N` runs only that, with N blocks);
//! and request/response between two blocks next to NATS request/reply ([`calls`];
//! `BAGPIPE_BENCH_CALLS=1` runs only that); and a CPU-bound transform with a pool of 1, 2 and 4
//! workers against the same work on as many tokio tasks ([`workers`]; `BAGPIPE_BENCH_WORKERS=1`
//! runs only that); and a transform in Python and in JavaScript next to one in Rust: per-bag
//! cost, start with a cold and a warm compile cache, memory per instance ([`polyglot`];
//! `BAGPIPE_BENCH_POLYGLOT=1` runs only that).
//!
//! Rates are measured at the sink, from its first bag to its last (start-up and shutdown left
//! out, the same way for both), and each is the median of several runs. `BAGPIPE_BENCH_BAGS` sets
//! the bag count (default 200000); `BAGPIPE_BENCH_PIPELINE=1` runs only the pipeline against
//! native; `BAGPIPE_BENCH_SYSLOG=1` only syslog over TCP to a sink against the same natively
//! ([`syslog`]), and `BAGPIPE_BENCH_SYSLOG=profile` only its block side, for a profiler.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bagpipe::{Host, HostConfig, Manifest, RunReport};
use bagpipe_test_support::{BlockDir, artifacts, workspace_root};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt as _;

mod broker;
mod calls;
mod cross;
mod hostile;
mod many;
mod polyglot;
mod syslog;
mod workers;

/// The allocator the `bagpipe` binary runs with, so the figures are the binary's. Both sides of
/// each comparison run in this process, so the native side has it too.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 5;
/// Bags through the Python and JavaScript transforms (fewer: they are slower).
const POLYGLOT_BAGS: u64 = 20_000;
const QUEUE: usize = 1024;

fn main() {
    let bags: u64 = std::env::var("BAGPIPE_BENCH_BAGS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    // The binary's default filter: what is below it costs the host what it costs the binary (a
    // disabled callsite), not a formatted message per host call.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info,async_nats=warn"))
        .with(SinkTiming);
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let cache = workspace_root().join("target").join("bagpipe-test-cache");
        let host = Host::new(HostConfig { cache_dir: Some(cache), ..HostConfig::default() }).expect("host");
        let host = &host;

        let three_hops = |n: u64| {
            format!(
                "[[block]]\nname = \"bench_source\"\nafter = []\n[block.config]\nto = \"transform\"\ncount = {n}\n\n\
                 [[block]]\nname = \"transform\"\nafter = []\nqueue = {QUEUE}\n[block.config]\nop = \"upper\"\nto = \"sink\"\n\n\
                 [[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\nqueue = {QUEUE}\n"
            )
        };
        let one_hop = |n: u64| {
            format!(
                "[[block]]\nname = \"bench_source\"\nafter = []\n[block.config]\nto = \"sink\"\ncount = {n}\n\n\
                 [[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\nqueue = {QUEUE}\n"
            )
        };
        // A block that traps on every bag it gets and restarts at once each time, fed as fast as
        // it restarts.
        let crash_loop = "[[block]]\nname = \"faulty\"\nafter = []\nmax_attempts = 1\nmax_restarts = 1000000\nbackoff_ms = 0\n\
             [block.config]\nfault = \"trap\"\nin = \"enqueue\"\nquiet = true\n\n\
             [[block]]\nname = \"bench_source\"\nresponsibility = \"crash-feeder\"\nafter = [\"faulty\"]\n\
             [block.config]\nto = \"faulty\"\ncount = 100000000\n\n";

        if std::env::var_os("BAGPIPE_BENCH_CROSS").is_some() {
            let c = cross::measure(20_000).await;
            println!(
                "across {:.0} bags/s, local {:.0} bags/s; at {:.0} bags/s offered, latency (p50, p99 µs) across {:?}, in one host {:?}",
                c.remote_rate, c.local_rate, c.offered, c.remote_latency, c.local_latency
            );
            return;
        }
        if std::env::var_os("BAGPIPE_BENCH_CALLS").is_some() {
            calls::print(&calls::measure(host, 20_000).await);
            return;
        }
        if std::env::var_os("BAGPIPE_BENCH_POLYGLOT").is_some() {
            polyglot::print(&polyglot::measure(host, bags.min(POLYGLOT_BAGS)).await, bags.min(POLYGLOT_BAGS));
            return;
        }
        if std::env::var_os("BAGPIPE_BENCH_WORKERS").is_some() {
            workers::print(&workers::measure(host, 20_000).await);
            return;
        }
        if std::env::var_os("BAGPIPE_BENCH_SWAPS").is_some() {
            let watching =
                Host::new(HostConfig { cache_dir: Some(workspace_root().join("target").join("bagpipe-test-cache")), watch: true, ..HostConfig::default() })
                    .expect("host");
            let s = swaps_under_load(&watching).await;
            println!("swaps {} failed {} p50 {} p99 {} lost {}", s.done, s.failed, s.pause_p50_us, s.pause_p99_us, s.lost);
            return;
        }
        if let Some(what) = std::env::var_os("BAGPIPE_BENCH_SYSLOG") {
            if what == "profile" {
                // For a profiler: only the block's side, over and over.
                for _ in 0..RUNS {
                    println!("{:.0} messages/s", syslog::through_block(host, 100_000).await);
                }
            } else {
                syslog::print(&syslog::measure(host, 100_000).await);
            }
            return;
        }
        if std::env::var_os("BAGPIPE_BENCH_BROKER").is_some() {
            broker::print(&broker::measure(50_000).await);
            return;
        }
        if let Some(n) = std::env::var("BAGPIPE_BENCH_MANY").ok().and_then(|v| v.parse().ok()) {
            many::print(&many::measure(host, n).await);
            return;
        }
        if std::env::var_os("BAGPIPE_BENCH_HOSTILE").is_some() {
            hostile::print(&hostile::neighbours(host, &three_hops(bags)).await);
            return;
        }
        if let Some(what) = std::env::var_os("BAGPIPE_BENCH_PROFILE") {
            // For a profiler: only the 3-hop bagpipe pipeline, over and over (`native`: only the
            // native side of it, to count what the same work costs outside the sandbox).
            for _ in 0..RUNS {
                if what == "native" {
                    println!("{:.0} bags/s natively", native(bags, true).await);
                    continue;
                }
                println!("{:.0} bags/s", run_blocks(host, three_hops(bags)).await.0);
            }
            return;
        }
        // Each comparison alternates its two sides run by run, so that drift in the machine's
        // speed hits both alike; the ratio is the median of the per-round ratios.
        let hops3 = paired_spread(|| native(bags, true), || async { run_blocks(host, three_hops(bags)).await.0 }).await;
        let hops1 = paired_spread(|| native(bags, false), || async { run_blocks(host, one_hop(bags)).await.0 }).await;
        let (native3, blocks3, ratio3) = (hops3.a, hops3.b, hops3.ratio);
        let (native1, blocks1, ratio1) = (hops1.a, hops1.b, hops1.ratio);
        let spread = |p: &Paired| format!("{:.2} to {:.2} over {RUNS} rounds", p.ratios.0, p.ratios.1);
        if std::env::var_os("BAGPIPE_BENCH_PIPELINE").is_some() {
            // Only the pipeline against native: for working on the data path.
            println!("3 hops: native {native3:.0} blocks {blocks3:.0} bags/s, ratio {ratio3:.2} ({})", spread(&hops3));
            println!("1 hop:  native {native1:.0} blocks {blocks1:.0} bags/s, ratio {ratio1:.2} ({})", spread(&hops1));
            println!("host cost per bag per hop: {:.2} µs", 1e6 / blocks1 - 1e6 / native1);
            return;
        }
        let (_, beside_hammering, hammering_ratio) = paired(
            || async { run_blocks(host, three_hops(bags)).await.0 },
            || async { run_blocks(host, format!("{crash_loop}{}", three_hops(bags))).await.0 },
        )
        .await;
        let default_policy = crash_loop.replace("backoff_ms = 0\n", "");
        let (_, beside_backing_off, backing_off_ratio) = paired(
            || async { run_blocks(host, three_hops(bags)).await.0 },
            || async { run_blocks(host, format!("{default_policy}{}", three_hops(bags))).await.0 },
        )
        .await;
        let restarts = |manifest: String| async move {
            let (_, report) = run_blocks(host, manifest).await;
            report.stats.iter().find(|s| s.responsibility == "faulty").map_or(0, |s| s.restarts)
        };
        let hammering_restarts = restarts(format!("{crash_loop}{}", three_hops(bags))).await;
        let backing_off_restarts = restarts(format!("{default_policy}{}", three_hops(bags))).await;
        let beside_hostile = hostile::neighbours(host, &three_hops(bags)).await;
        let recovery = recovery(host).await;
        let watching = Host::new(HostConfig {
            cache_dir: Some(workspace_root().join("target").join("bagpipe-test-cache")),
            watch: true,
            ..HostConfig::default()
        })
        .expect("host");
        let swaps = swaps_under_load(&watching).await;
        let syslog = syslog::measure(host, 100_000).await;
        let http = http_with_wrk(host).await;
        let to_broker = broker::measure(50_000).await;
        let cross = cross::measure(20_000).await;
        let idle = many::measure(host, 10_000).await;
        let round_trips = calls::measure(host, 20_000).await;
        let pools = workers::measure(host, 20_000).await;
        let languages = polyglot::measure(host, bags.min(POLYGLOT_BAGS)).await;

        println!("bagpipe pipeline benchmark: {bags} bags of ~200 bytes, median of {RUNS} runs");
        println!();
        println!("| pipeline                                    | bags/s     | µs per bag |");
        println!("|---------------------------------------------|-----------:|-----------:|");
        row("native tokio tasks, source->transform->sink", native3);
        row("bagpipe blocks,     source->transform->sink", blocks3);
        row("native tokio tasks, source->sink", native1);
        row("bagpipe blocks,     source->sink", blocks1);
        println!();
        println!("ratio bagpipe/native, 3 hops: {ratio3:.2} ({}; goal >= 0.8)", spread(&hops3));
        println!("ratio bagpipe/native, 1 hop:  {ratio1:.2} ({}; goal >= 0.8)", spread(&hops1));
        // With one hop, the difference is what the host adds to moving one bag: checking and
        // stamping it, the queue, the call into the guest, and the guest-side parse that the
        // native sink also does.
        println!("host cost per bag per hop (1-hop per-bag time difference): {:.2} µs", 1e6 / blocks1 - 1e6 / native1);
        println!();
        println!("| supervision                                                        | value      |");
        println!("|--------------------------------------------------------------------|-----------:|");
        println!("| trap -> fresh instance processed the next bag, p50 (goal <= 1 ms)  | {:>7.0} µs |", recovery.0);
        println!("| trap -> fresh instance processed the next bag, p99                 | {:>7.0} µs |", recovery.1);
        println!("| 3 hops beside a block crash-looping with the default backoff, bags/s | {beside_backing_off:>10.0} |");
        println!("| ... as a ratio to the 3 hops alone (goal >= 0.9)                   | {backing_off_ratio:>10.2} |");
        println!("| ... restarts of the crash-looping block in one run                 | {backing_off_restarts:>10} |");
        println!("| 3 hops beside a block crash-looping with no backoff at all, bags/s | {beside_hammering:>10.0} |");
        println!("| ... as a ratio to the 3 hops alone                                 | {hammering_ratio:>10.2} |");
        println!("| ... restarts of the crash-looping block in one run                 | {hammering_restarts:>10} |");
        println!();
        hostile::print(&beside_hostile);
        println!();
        println!("| hot swap: 20 swaps of the transform under load ({} bags at ~20k/s)   | value      |", swaps.bags);
        println!("|--------------------------------------------------------------------|-----------:|");
        println!("| swap pause (no bag processed; compile excluded), p50                | {:>7.0} µs |", swaps.pause_p50_us);
        println!("| swap pause, p99 (goal <= 1 ms)                                      | {:>7.0} µs |", swaps.pause_p99_us);
        println!("| swaps done / refused                                                | {:>5} / {} |", swaps.done, swaps.failed);
        println!("| bags lost (goal 0)                                                  | {:>10} |", swaps.lost);
        println!();
        println!("| protocols                                                          | value      |");
        println!("|--------------------------------------------------------------------|-----------:|");
        println!("| HTTP POST /bags/sink through the http block, wrk requests/s         | {http:>10} |");
        println!();
        syslog::print(&syslog);
        println!();
        broker::print(&to_broker);
        println!();
        println!("| two hosts over NATS (source on one, sink on the other; enqueue_many of 1024), {} bags | value |", cross.bags);
        println!("|--------------------------------------------------------------------|-----------:|");
        println!("| across two hosts, bags/s                                            | {:>10.0} |", cross.remote_rate);
        println!("| the same in one host, bags/s                                        | {:>10.0} |", cross.local_rate);
        println!("| ... ratio across/in one host                                        | {:>10.2} |", cross.remote_rate / cross.local_rate);
        println!("| offered load for the latencies (half the cross-host maximum), bags/s | {:>10.0} |", cross.offered);
        println!("| latency across two hosts at that load, p50 / p99                    | {:>4.0} / {:>4.0} µs |", cross.remote_latency.0, cross.remote_latency.1);
        println!("| latency in one host at that load, p50 / p99                         | {:>4.0} / {:>4.0} µs |", cross.local_latency.0, cross.local_latency.1);
        println!();
        many::print(&idle);
        println!();
        calls::print(&round_trips);
        println!();
        workers::print(&pools);
        println!();
        polyglot::print(&languages, bags.min(POLYGLOT_BAGS));
    });
}

fn row(name: &str, rate: f64) {
    println!("| {name:<43} | {rate:>10.0} | {:>10.2} |", 1e6 / rate);
}

/// Runs `a` and `b` alternately, [`RUNS`] times each after one warm-up round; returns the median
/// rate of each and the median of the per-round ratios `b / a`.
async fn paired<A, FA, B, FB>(a: A, b: B) -> (f64, f64, f64)
where
    A: FnMut() -> FA,
    FA: std::future::Future<Output = f64>,
    B: FnMut() -> FB,
    FB: std::future::Future<Output = f64>,
{
    let p = paired_spread(a, b).await;
    (p.a, p.b, p.ratio)
}

/// What [`paired_spread`] measured: the medians, and the lowest and highest per-round ratio.
struct Paired {
    a: f64,
    b: f64,
    ratio: f64,
    ratios: (f64, f64),
}

/// [`paired`], with the spread of the per-round ratios (how much the ratio means on this
/// machine: both sides run on the same runtime, with the same worker threads).
async fn paired_spread<A, FA, B, FB>(mut a: A, mut b: B) -> Paired
where
    A: FnMut() -> FA,
    FA: std::future::Future<Output = f64>,
    B: FnMut() -> FB,
    FB: std::future::Future<Output = f64>,
{
    a().await;
    b().await;
    let (mut ra, mut rb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let x = a().await;
        let y = b().await;
        ra.push(x);
        rb.push(y);
        ratios.push(y / x);
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Paired { a: median(ra), b: median(rb), ratio: median(ratios), ratios: (low, high) }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A tap on the host's log: every message, while a scenario listens.
static LOG_TAP: Mutex<Option<mpsc::UnboundedSender<String>>> = Mutex::new(None);

fn tap_log() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    *LOG_TAP.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    rx
}

fn untap_log() {
    *LOG_TAP.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// The next log message that `pick` accepts, as `pick` maps it.
async fn next_log<T>(log: &mut mpsc::UnboundedReceiver<String>, pick: impl Fn(&str) -> Option<T>) -> Option<T> {
    while let Some(message) = log.recv().await {
        if let Some(found) = pick(&message) {
            return Some(found);
        }
    }
    None
}

struct SwapFigures {
    bags: u64,
    pause_p50_us: f64,
    pause_p99_us: f64,
    done: u64,
    failed: u64,
    lost: u64,
}

/// Swaps the middle block of a paced pipeline 20 times while bags flow.
async fn swaps_under_load(host: &Host) -> SwapFigures {
    let bags = 200_000u64;
    let dir = BlockDir::new(
        &format!(
            "[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\n\n\
             [[block]]\nname = \"transform\"\nafter = []\n[block.config]\nop = \"upper\"\nto = \"sink\"\n\n\
             [[block]]\nname = \"bench_source\"\nafter = [\"sink\", \"transform\"]\n\
             [block.config]\nto = \"transform\"\ncount = {bags}\nbatch = 100\ninterval_ms = 5\n"
        ),
        &[
            ("bench_source", artifacts::BENCH_SOURCE),
            ("transform", artifacts::TRANSFORM),
            ("bench_sink", artifacts::BENCH_SINK),
        ],
    );
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let mut log = tap_log();
    let swapper = async {
        // The host must be watching before the first new version lands.
        if next_log(&mut log, |m| m.starts_with("watching `").then_some(())).await.is_none() {
            return;
        }
        for k in 0..20 {
            let bytes = bagpipe_test_support::variant(artifacts::TRANSFORM, &format!("bench-{k}"));
            dir.write_as("transform.wasm", &bytes, bagpipe_test_support::Write::Rename);
            if next_log(&mut log, |m| (m == "swapped").then_some(())).await.is_none() {
                break;
            }
        }
    };
    let run = async {
        let report = host.run(&manifest, std::future::pending()).await;
        // Ends the swapper if the pipeline finished first.
        untap_log();
        report
    };
    let (report, ()) = tokio::join!(run, swapper);
    let report = report.expect("run");
    let stats = |name: &str| report.stats.iter().find(|s| s.responsibility == name).expect("stats").clone();
    let (transform, sink) = (stats("transform"), stats("sink"));
    SwapFigures {
        bags,
        pause_p50_us: transform.swap_pause_p50_us.unwrap_or(f64::NAN),
        pause_p99_us: transform.swap_pause_p99_us.unwrap_or(f64::NAN),
        done: transform.swaps,
        failed: transform.swaps_failed,
        lost: bags.saturating_sub(sink.processed),
    }
}

/// The last `bench elapsed_ns=.. bags=..` line a bench sink logged.
static SINK_TIMING: Mutex<Option<(u64, u64)>> = Mutex::new(None);

/// Picks the bench sink's timing out of the log.
struct SinkTiming;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SinkTiming {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut message = Message(None);
        event.record(&mut message);
        let Some(text) = message.0 else { return };
        if std::env::var_os("BAGPIPE_BENCH_DEBUG").is_some() {
            eprintln!("log: {text}");
        }
        if let Some(tx) = LOG_TAP.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(text.clone());
        }
        let Some(rest) = text.strip_prefix("bench elapsed_ns=") else { return };
        let mut parts = rest.split(" bags=");
        if let (Some(ns), Some(bags)) = (parts.next(), parts.next())
            && let (Ok(ns), Ok(bags)) = (ns.parse(), bags.trim().parse())
        {
            *SINK_TIMING.lock().unwrap_or_else(|p| p.into_inner()) = Some((ns, bags));
        }
    }
}

/// Runs a manifest; returns the sink's rate (bags/s from its first bag to its last) and the report.
async fn run_blocks(host: &Host, manifest: String) -> (f64, RunReport) {
    run_in(host, &bench_dir(&manifest)).await
}

/// A directory with `manifest` and every component the benchmark's manifests name.
fn bench_dir(manifest: &str) -> BlockDir {
    BlockDir::new(
        manifest,
        &[
            ("bench_source", artifacts::BENCH_SOURCE),
            ("transform", artifacts::TRANSFORM),
            ("bench_sink", artifacts::BENCH_SINK),
            ("faulty", artifacts::FAULTY),
            ("sender", artifacts::SENDER),
            ("hostile", artifacts::HOSTILE),
            ("worker", artifacts::WORKER),
        ],
    )
}

/// Runs the manifest in `dir` to the end; returns the rate at the sink and the report.
async fn run_in(host: &Host, dir: &BlockDir) -> (f64, RunReport) {
    let manifest = Manifest::load(dir.path()).expect("manifest");
    *SINK_TIMING.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let report = host.run(&manifest, std::future::pending()).await.expect("pipeline run");
    let timing = SINK_TIMING.lock().unwrap_or_else(|p| p.into_inner()).take();
    let rate = timing.map_or(f64::NAN, |(ns, bags)| (bags - 1) as f64 / Duration::from_nanos(ns).as_secs_f64());
    (rate, report)
}

/// p50 and p99, in µs, of the time from a trap to the fresh instance having processed the next
/// bag: the block traps on every other bag and restarts at once.
async fn recovery(host: &Host) -> (f64, f64) {
    let pairs = 500;
    let bags: Vec<String> = (0..pairs)
        .flat_map(|i| [format!("'{{\"crash\":true,\"i\":{i}}}'"), format!("'{{\"i\":{i}}}'")])
        .chain(["'{\"last\":true}'".to_owned()])
        .collect();
    let manifest = format!(
        "[[block]]\nname = \"faulty\"\nmax_attempts = 1\nmax_restarts = 100000\nqueue = 2048\n\
         [block.config]\nfault = \"trap\"\nin = \"marked\"\nquiet = true\n\n\
         [[block]]\nname = \"sender\"\n[block.config]\nto = \"faulty\"\nbags = [{}]\n",
        bags.join(", ")
    );
    let (_, report) = run_blocks(host, manifest).await;
    let faulty = report.stats.iter().find(|s| s.responsibility == "faulty").expect("faulty stats");
    assert_eq!(faulty.restarts, pairs, "every trap restarted the block");
    (faulty.recovery_p50_us.unwrap_or(f64::NAN), faulty.recovery_p99_us.unwrap_or(f64::NAN))
}

/// The same work with tokio tasks and bounded channels: the source builds and serialises each
/// bag; with `transform`, a middle task parses, changes and re-serialises it; the sink parses it.
/// Returns the sink's rate from its first bag to its last.
async fn native(n: u64, transform: bool) -> f64 {
    let (tx1, rx1) = mpsc::channel::<String>(QUEUE);
    let source = tokio::spawn(async move {
        for i in 1..=n {
            if tx1.send(source_bag(i, n)).await.is_err() {
                return;
            }
        }
    });
    let (middle, sink_rx) = if transform {
        let (tx2, rx2) = mpsc::channel::<String>(QUEUE);
        let mut rx1 = rx1;
        let middle = tokio::spawn(async move {
            let mut seen = 0u64;
            while let Some(text) = rx1.recv().await {
                seen += 1;
                let mut bag: Map<String, Value> = serde_json::from_str(&text).expect("parse");
                if let Some(t) = bag.get("text").and_then(Value::as_str).map(str::to_uppercase) {
                    bag.insert("text".into(), t.into());
                }
                bag.insert("seen_by_transform".into(), seen.into());
                if tx2.send(serde_json::to_string(&bag).expect("serialise")).await.is_err() {
                    return;
                }
            }
        });
        (Some(middle), rx2)
    } else {
        (None, rx1)
    };
    let sink = tokio::spawn(async move {
        let mut rx = sink_rx;
        let mut count = 0u64;
        let mut first = None;
        while let Some(text) = rx.recv().await {
            first.get_or_insert_with(Instant::now);
            let bag: Map<String, Value> = serde_json::from_str(&text).expect("parse");
            count += 1;
            if bag.get("last") == Some(&Value::Bool(true)) {
                break;
            }
        }
        (count, first.map_or(Duration::ZERO, |f| f.elapsed()))
    });
    source.await.expect("source");
    if let Some(middle) = middle {
        middle.await.expect("transform");
    }
    let (count, elapsed) = sink.await.expect("sink");
    assert_eq!(count, n);
    (count - 1) as f64 / elapsed.as_secs_f64()
}

/// The `i`-th of `n` bags the bench source sends, as JSON text: what the native baselines'
/// sources send.
fn source_bag(i: u64, n: u64) -> String {
    let mut bag = Map::new();
    bag.insert("n".into(), i.into());
    bag.insert("host".into(), "web-01.example.org".into());
    bag.insert("app".into(), "nginx".into());
    bag.insert("level".into(), "info".into());
    bag.insert("text".into(), "GET /index.html HTTP/1.1 200 1532 0.004 \"curl/8.5.0\"".into());
    bag.insert("tags".into(), vec!["edge", "eu-west"].into());
    bag.insert("last".into(), (i == n).into());
    serde_json::to_string(&bag).expect("serialise")
}

/// Requests/s `wrk` gets posting small bags to the http block for 5 s, or why there is no
/// figure.
async fn http_with_wrk(host: &Host) -> String {
    if std::process::Command::new("wrk").arg("--version").output().is_err() {
        return "wrk not installed (apt-get install wrk)".to_owned();
    }
    let dir = BlockDir::new(
        "[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\nqueue = 4096\n\n\
         [[block]]\nname = \"http\"\nafter = []\nlisten = [\"tcp://127.0.0.1:0\"]\n",
        &[("http", artifacts::HTTP), ("bench_sink", artifacts::BENCH_SINK)],
    );
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"hello\":\"wrk\",\"n\":1}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .expect("script");
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let mut log = tap_log();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let load = async {
        let result = match next_log(&mut log, |m| m.strip_prefix("listening on tcp://").map(str::to_owned)).await {
            Some(addr) => tokio::process::Command::new("wrk")
                .args(["-t2", "-c16", "-d5s", "-s"])
                .arg(&script)
                .arg(format!("http://{addr}/bags/sink"))
                .output()
                .await
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| format!("wrk failed: {e}")),
            None => "the http block did not listen".to_owned(),
        };
        let _ = done.send(());
        result
    };
    let run = async {
        let report = host.run(&manifest, async {
            let _ = finished.await;
        });
        let report = report.await;
        untap_log();
        report
    };
    let (report, output) = tokio::join!(run, load);
    report.expect("run");
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:").map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| format!("no figure: {output}"))
}

/// `(p50, p99)` in µs from a bench sink's latency line.
fn latency_of(message: &str) -> Option<(f64, f64)> {
    let rest = message.strip_prefix("bench latency p50_ns=")?;
    let (p50, p99) = rest.split_once(" p99_ns=")?;
    Some((p50.trim().parse::<f64>().ok()? / 1e3, p99.trim().parse::<f64>().ok()? / 1e3))
}
