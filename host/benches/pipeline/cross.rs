//! Two hosts of one cluster over a NATS server of the benchmark's own: a source on one, the sink
//! on the other, against the same pair in one host. The source sends its bags 1,024 to an
//! `enqueue_many` call (one request across hosts, answered once). Rates are taken at saturation;
//! latency both ways at one offered load, half the cross-host maximum, so the two compare.

use std::sync::Mutex;
use std::time::Duration;

use bagpipe::{Host, HostConfig, Manifest};
use bagpipe_test_support::{BlockDir, artifacts, workspace_root};

use super::{SINK_TIMING, latency_of, next_log, run_blocks, tap_log, untap_log};

pub struct CrossHost {
    pub bags: u64,
    pub remote_rate: f64,
    pub local_rate: f64,
    /// The offered load both latencies are taken at, bags/s.
    pub offered: f64,
    pub remote_latency: (f64, f64),
    pub local_latency: (f64, f64),
}

fn host(server: Option<String>) -> Host {
    let cache = Some(workspace_root().join("target").join("bagpipe-test-cache"));
    Host::new(HostConfig { cache_dir: cache, server, ..HostConfig::default() }).expect("host")
}

fn source(bags: u64, pace: &str) -> String {
    let batch = if pace.is_empty() { "batch = 1024\n" } else { "" };
    format!("to = \"sink\"\ncount = {bags}\nstamp = true\nmany = true\n{batch}{pace}")
}

pub async fn measure(bags: u64) -> CrossHost {
    let nats = bagpipe_test_support::Nats::start(false).await;
    let (remote_rate, _) = across(&nats, bags, "").await;
    let local = host(None);
    let (local_rate, _) = in_one_host(&local, bags, "").await;
    // Half the cross-host maximum, as a batch a millisecond.
    let per_ms = if remote_rate.is_finite() { (remote_rate / 2000.0).round().max(1.0) as u64 } else { 1 };
    let pace = format!("batch = {per_ms}\ninterval_ms = 1\n");
    let (_, remote_latency) = across(&nats, bags, &pace).await;
    let (_, local_latency) = in_one_host(&local, bags, &pace).await;
    drop(nats);
    CrossHost { bags, remote_rate, local_rate, offered: per_ms as f64 * 1000.0, remote_latency, local_latency }
}

/// The source on one host, the sink on another: the sink's rate, and latency p50/p99 in µs.
async fn across(nats: &bagpipe_test_support::Nats, bags: u64, pace: &str) -> (f64, (f64, f64)) {
    let (a, b) = (host(Some(nats.url())), host(Some(nats.url())));
    let source = format!(
        "[host]\ncluster = \"bench\"\n\n[[block]]\nname = \"bench_source\"\n[block.config]\n{}",
        source(bags, pace)
    );
    let sink =
        "[host]\ncluster = \"bench\"\n\n[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nqueue = 4096\n";
    let dir = |manifest: &str| {
        let d = BlockDir::new(
            manifest,
            &[("bench_source", artifacts::BENCH_SOURCE), ("bench_sink", artifacts::BENCH_SINK)],
        );
        let m = Manifest::load(d.path()).expect("manifest");
        (d, m)
    };
    let ((_ds, source), (_dk, sink)) = (dir(&source), dir(sink));
    let mut log = tap_log();
    *SINK_TIMING.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sink_run = async {
        let report = b.run(&sink, std::future::pending()).await;
        let _ = stop.send(());
        report
    };
    let latency = std::sync::Arc::new(Mutex::new(None));
    let source_run = async {
        // The sink's host must serve the cluster before the source starts.
        next_log(&mut log, |m| m.starts_with("serving the cluster").then_some(())).await;
        let seen = latency.clone();
        let watch = async move {
            let l = next_log(&mut log, latency_of).await;
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = l;
        };
        let run = a.run(&source, async {
            let _ = stopped.await;
        });
        let (report, ()) = tokio::join!(run, watch);
        report
    };
    let (r1, r2) = tokio::join!(sink_run, source_run);
    untap_log();
    r1.expect("sink host");
    r2.expect("source host");
    let rate = SINK_TIMING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .map_or(f64::NAN, |(ns, n)| (n - 1) as f64 / Duration::from_nanos(ns).as_secs_f64());
    let latency = latency.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or((f64::NAN, f64::NAN));
    (rate, latency)
}

/// The same pair in one host: the sink's rate, and latency p50/p99 in µs.
async fn in_one_host(host: &Host, bags: u64, pace: &str) -> (f64, (f64, f64)) {
    let manifest = format!(
        "[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\nqueue = 4096\n\n\
         [[block]]\nname = \"bench_source\"\nafter = []\n[block.config]\n{}",
        source(bags, pace)
    );
    let mut log = tap_log();
    let watch = async { next_log(&mut log, latency_of).await };
    let run = async {
        let r = run_blocks(host, manifest).await;
        untap_log();
        r
    };
    let ((rate, _), latency) = tokio::join!(run, watch);
    (rate, latency.unwrap_or((f64::NAN, f64::NAN)))
}
