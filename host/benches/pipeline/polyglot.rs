//! Blocks in Python and JavaScript next to the same kind of block in Rust
//! (`BAGPIPE_BENCH_POLYGLOT=1` runs only this): per-bag cost through source -> transform -> sink,
//! start time with a cold compile cache and with a warm one, and memory per instance.
//!
//! The three transforms do comparable work per bag: parse it, add a field or two, serialise it,
//! enqueue it. Rust: `guests/pipeline/transform` (`op = "upper"`); Python:
//! `examples/polyglot/src/enrich.py`; JavaScript: `examples/polyglot/src/tag.js`. The Python and
//! JavaScript components are built with `guest-sdk/build-block`; when that cannot run (no python3
//! or npm), their rows say so and the rest of the benchmark goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bagpipe::{Host, HostConfig};
use bagpipe_test_support::{BlockDir, artifacts, polyglot, workspace_root};

use crate::many::start_and_stop;
use crate::{median, run_in};

/// Instances started at once to weigh one.
const INSTANCES: usize = 8;

/// One language's row.
pub struct Row {
    language: &'static str,
    measured: Result<Measured, String>,
}

struct Measured {
    component_bytes: u64,
    rate: f64,
    cold_start: Duration,
    warm_start: Duration,
    kib_per_instance: f64,
}

/// Measures the three languages with `bags` bags each.
pub async fn measure(host: &Host, bags: u64) -> Vec<Row> {
    let root = workspace_root();
    let sources: [(&'static str, Result<PathBuf, String>); 3] = [
        ("Rust", Ok(PathBuf::from(artifacts::TRANSFORM))),
        ("Python", polyglot::try_block(&root.join("examples/polyglot/src/enrich.py"))),
        ("JavaScript", polyglot::try_block(&root.join("examples/polyglot/src/tag.js"))),
    ];
    let mut rows = Vec::new();
    for (language, component) in sources {
        let measured = match component {
            Ok(path) => Ok(one(host, &path, bags).await),
            Err(e) => Err(e.lines().next().unwrap_or("build failed").to_owned()),
        };
        rows.push(Row { language, measured });
    }
    rows
}

fn config(component: &Path) -> &'static str {
    if component.to_string_lossy().ends_with("transform.wasm") {
        "op = \"upper\"\nto = \"sink\"\n"
    } else {
        "to = \"sink\"\n"
    }
}

async fn one(host: &Host, component: &Path, bags: u64) -> Measured {
    let component_bytes = std::fs::metadata(component).map_or(0, |m| m.len());
    let cfg = config(component);
    // Per bag: the transform between the bench source and sink, median of three runs.
    let pipeline = format!(
        "[[block]]\nname = \"bench_source\"\nafter = []\n[block.config]\nto = \"x\"\ncount = {bags}\n\n\
         [[block]]\nname = \"x\"\nresponsibility = \"x\"\nafter = []\nqueue = 1024\n[block.config]\n{cfg}\n\
         [[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\nqueue = 1024\n"
    );
    let mut rates = Vec::new();
    for _ in 0..3 {
        let dir = BlockDir::new(
            &pipeline,
            &[("bench_source", artifacts::BENCH_SOURCE), ("bench_sink", artifacts::BENCH_SINK)],
        );
        dir.copy("x", &component.to_string_lossy());
        rates.push(run_in(host, &dir).await.0);
    }
    // Start: a host with an empty disk cache compiles; a second host on that cache reads it.
    let cache = tempfile::tempdir().expect("a cache directory");
    let alone = format!("[[block]]\nname = \"x\"\n[block.config]\n{cfg}");
    let cold_start = start_then_stop(cache.path(), &alone, component, 1).await.0;
    let warm_start = start_then_stop(cache.path(), &alone, component, 1).await.0;
    // Memory: what the process holds once INSTANCES more of them run, per instance.
    let many: String = (0..INSTANCES)
        .map(|i| format!("[[block]]\nname = \"x\"\nresponsibility = \"x{i}\"\nafter = []\n[block.config]\n{cfg}\n"))
        .collect();
    let kib = start_then_stop(cache.path(), &many, component, INSTANCES).await.1;
    Measured { component_bytes, rate: median(rates), cold_start, warm_start, kib_per_instance: kib }
}

/// Starts a fresh host on `cache` with `manifest`; returns the time from `run` to all blocks
/// running, and the resident memory it added per instance (of `instances`), then stops it.
async fn start_then_stop(cache: &Path, manifest: &str, component: &Path, instances: usize) -> (Duration, f64) {
    let host = Host::new(HostConfig { cache_dir: Some(cache.to_path_buf()), ..HostConfig::default() }).expect("host");
    let dir = BlockDir::new(manifest, &[]);
    dir.copy("x", &component.to_string_lossy());
    let grown = start_and_stop(&host, &dir).await;
    (grown.start, grown.kib as f64 / instances as f64)
}

/// Prints the table.
pub fn print(rows: &[Row], bags: u64) {
    let rust = rows.iter().find_map(|r| r.measured.as_ref().ok().filter(|_| r.language == "Rust")).map(|m| m.rate);
    println!(
        "| block language ({bags} bags, source -> X -> sink) | component | bags/s | µs per bag | × Rust | start, cold cache | start, warm cache | memory per instance |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        match &row.measured {
            Ok(m) => println!(
                "| {} | {:.1} MB | {:.0} | {:.1} | {:.2} | {:.0} ms | {:.0} ms | {:.1} MiB |",
                row.language,
                m.component_bytes as f64 / 1e6,
                m.rate,
                1e6 / m.rate,
                rust.map_or(f64::NAN, |r| m.rate / r),
                m.cold_start.as_secs_f64() * 1e3,
                m.warm_start.as_secs_f64() * 1e3,
                m.kib_per_instance / 1024.0,
            ),
            Err(why) => println!("| {} | not built: {why} | | | | | | |", row.language),
        }
    }
}
