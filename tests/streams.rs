//! Streams between blocks through the real binary: bags in order and flow-controlled across a hot
//! swap of the receiver, and every way a stream ends told to the other side (ended by either
//! side, refused, a fault of either side).

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Want, Write, artifacts, variant};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// `bagpipe run DIR`, which watches DIR for new versions.
fn start(dir: &BlockDir) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--report", &report])
}

async fn stop(host: Bagpipe) -> Finished {
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    out
}

fn of<'a>(out: &'a Finished, kind: &str, block: &str) -> Vec<&'a Value> {
    out.events(kind).into_iter().filter(|e| e["block"] == block).collect()
}

/// 300 bags through a window of 64 to a receiver that takes 20 ms a bag (the sender waits for
/// the window), while the receiver is swapped to a new version: every bag arrives once, in
/// order, then the end the sender gave.
#[tokio::test]
async fn a_stream_keeps_order_and_flow_across_a_swap_of_its_receiver() {
    let manifest = r#"
[host]
enqueue_timeout_ms = 10000

[[block]]
name = "caller"
responsibility = "receiver"
[block.config]
slow_ms = 20

[[block]]
name = "caller"
responsibility = "opener"
call_timeout_ms = 5000
[block.config]
steps = [{ open_stream = "receiver", bag = { hello = 1 }, send = 300, end = "done" }]
"#;
    let dir = BlockDir::from_manifest(manifest);
    let mut host = start(&dir);
    host.wait_for(20, |e| e["event"] == "stream_data").await;
    dir.write_as("caller.wasm", &variant(artifacts::CALLER, "v2"), Write::Rename);
    host.log_record(Want::event("swapped").block("receiver")).await;
    host.wait_for(1, |e| e["event"] == "stream_end" && e["block"] == "receiver").await;
    let out = stop(host).await;

    // The opener is swapped too (one component serves both), and its new instance's `run`
    // opens a second stream: the first is the one that flowed across the swap.
    let first = of(&out, "opened", "opener")[0]["stream"].clone();
    let data: Vec<u64> = of(&out, "stream_data", "receiver")
        .iter()
        .filter(|e| e["stream"] == first)
        .map(|e| e["i"].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(data, (0..300).collect::<Vec<u64>>(), "every bag once, in order");
    assert!(of(&out, "stream_data", "receiver").iter().all(|e| e["from"] == "opener"));
    let sent = of(&out, "stream_sent", "opener");
    assert_eq!(
        (sent[0]["ok"].clone(), sent[0]["failed"].clone()),
        (json!(300), json!([])),
        "the window held, never busy"
    );
    let open = of(&out, "stream_open", "receiver");
    assert_eq!((open[0]["from"].clone(), open[0]["bag"]["hello"].clone()), (json!("opener"), json!(1)));
    let end = of(&out, "stream_end", "receiver")[0];
    assert_eq!((end["stream"].clone(), end["end"].clone()), (first, json!("ended: done")), "after the last bag");
    assert!(of(&out, "stream_end", "opener").is_empty(), "the side that ended it is not told");
    assert!(!out.log_events("swapped").is_empty());
}

/// A stream refused by its target, one its target ends, one whose target faults, and one whose
/// opener faults: each other side hears how it ended, once.
#[tokio::test]
async fn every_end_of_a_stream_is_told_to_the_other_side() {
    let manifest = r#"
[[block]]
name = "caller"
responsibility = "refuser"
[block.config]
streams = "refuse"

[[block]]
name = "caller"
responsibility = "ender"
[block.config]
streams = "end_after:2"

[[block]]
name = "caller"
responsibility = "trapper"
[block.config]
streams = "trap_at:1"

[[block]]
name = "caller"
responsibility = "watcher"

[[block]]
name = "caller"
responsibility = "opener"
[block.config]
steps = [
  { open_stream = "refuser", send = 1 },
  { open_stream = "ender", send = 5 },
  { open_stream = "trapper", send = 3 },
  { open_stream = "nobody" },
]

[[block]]
name = "caller"
responsibility = "doomed"
[block.config]
steps = [{ open_stream = "watcher", send = 2 }, { enqueue = "doomed", bag = { crash = true } }]
"#;
    let dir = BlockDir::from_manifest(manifest);
    let mut host = start(&dir);
    // `doomed` restarts after its fault and opens another stream to `watcher` (and faults
    // again): wait for the opener's three ends and the watcher's first.
    let (mut opener_ends, mut watcher_ends) = (0, 0);
    while opener_ends < 3 || watcher_ends < 1 {
        let e = host.next_event().await.expect("bagpipe ended before the awaited events");
        if e["event"] == "stream_end" {
            opener_ends += usize::from(e["block"] == "opener");
            watcher_ends += usize::from(e["block"] == "watcher");
        }
    }
    let out = stop(host).await;

    let opened: Vec<u64> = of(&out, "opened", "opener").iter().map(|e| e["stream"].as_u64().unwrap_or(0)).collect();
    assert_eq!(opened.len(), 3);
    let ends: Vec<(u64, String)> = of(&out, "stream_end", "opener")
        .iter()
        .map(|e| (e["stream"].as_u64().unwrap_or(0), e["end"].as_str().unwrap_or_default().to_owned()))
        .collect();
    let mut by_stream = ends.clone();
    by_stream.sort();
    assert_eq!(
        by_stream,
        [
            (opened[0], "refused: not today".to_owned()),
            (opened[1], "ended: had enough".to_owned()),
            (opened[2], "faulted".to_owned())
        ],
        "each stream's end, once"
    );
    let refused = of(&out, "open_refused", "opener");
    assert_eq!(refused[0]["error"], "unknown-target");
    let ender: Vec<u64> = of(&out, "stream_data", "ender").iter().map(|e| e["i"].as_u64().unwrap_or(0)).collect();
    assert_eq!(ender, [0, 1], "nothing after the receiver ended it");
    assert!(of(&out, "stream_data", "refuser").is_empty());
    assert_eq!(of(&out, "stream_end", "watcher")[0]["end"], "faulted", "the opener faulted");
    let report = dir.report();
    assert_eq!(report.count("trapper", "faults"), 1);
    assert_eq!(report.count("trapper", "dead_letters"), 0, "a stream's bag is its stream's, not a dead letter");
}
