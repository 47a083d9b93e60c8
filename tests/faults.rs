//! Fault isolation: a guest that panics, traps, loops, eats memory or recurses without end ends
//! only its own instance. The process survives, a neighbour pipeline keeps processing, the counts
//! are right, and every bag is either processed or a listed dead letter.

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Report, Want, block_of};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// A healthy pipeline beside the faulty block: 100 bags from `healthy-source` to `healthy-sink`.
/// With `shutdown`, the sink shuts the host down after the 100th.
fn neighbours(shutdown: bool) -> String {
    let expect = if shutdown { "expect = 100" } else { "" };
    format!(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"healthy-sink\"\nafter = []\n[block.config]\n{expect}\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"healthy-source\"\nafter = [\"healthy-sink\"]\n[block.config]\nto = \"healthy-sink\"\ncount = 100\n\n"
    )
}

fn run_args(dir: &BlockDir) -> Vec<String> {
    vec!["--report".into(), dir.report_path().display().to_string()]
}

/// The neighbour pipeline got all 100 bags, in order, and never faulted.
fn assert_neighbours_unharmed(out: &Finished, report: &Report) {
    let items: Vec<u64> = out.bags_of("healthy-sink").iter().filter_map(|b| b["i"].as_u64()).collect();
    assert_eq!(items, (1..=100).collect::<Vec<_>>(), "the healthy pipeline delivered everything in order");
    for block in ["healthy-sink", "healthy-source"] {
        assert_eq!(report.count(block, "faults"), 0, "{block} never faulted");
    }
    assert_eq!(report.count("healthy-sink", "processed"), 100);
}

/// Runs a faulty block that faults on every bag, fed three bags, beside the healthy pipeline;
/// waits until the three bags are dead letters and the pipeline is done, then stops the host.
async fn faults_on_every_bag(fault: &str, limits: &str, cause: &str) {
    let manifest = format!(
        "[host]\ndead_letters = \"dlq\"\n\n{}\
         [[block]]\nname = \"recorder\"\nresponsibility = \"dlq\"\nafter = []\n\n\
         [[block]]\nname = \"faulty\"\nafter = []\nmax_restarts = 100\n{limits}\n[block.config]\nfault = \"{fault}\"\nin = \"enqueue\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"faulty\"]\n[block.config]\nto = \"faulty\"\ncount = 3\n",
        neighbours(false)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let mut host = Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>());
    host.wait_for(103, |e| e["event"] == "bag" && (e["block"] == "dlq" || e["block"] == "healthy-sink")).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);

    // Each bag was delivered twice (max_attempts = 2), faulting each time, then dead-lettered;
    // every fault got a fresh instance.
    assert_eq!(report.count("faulty", "faults"), 6, "{:#}", report.0);
    assert_eq!(report.count("faulty", "restarts"), 6);
    assert_eq!(report.count("faulty", "dead_letters"), 3);
    assert_eq!(report.count("faulty", "processed"), 0);
    assert_eq!(report.count("faulty", "lost"), 0);
    let letters = report.dead_letters();
    assert_eq!(letters.len(), 3);
    for (k, letter) in letters.iter().enumerate() {
        assert_eq!(letter["block"], "faulty");
        assert_eq!(letter["attempts"], 2);
        assert_eq!(letter["bag"]["i"], k as u64 + 1, "dead letters in order");
        let error = letter["error"].as_str().unwrap_or("");
        assert!(error.contains(cause), "dead letter error {error:?} should say {cause:?}");
    }
    // ... and each was sent to the dead-letter block, with the block and error attached.
    let routed: Vec<_> = out.bags_of("dlq").iter().map(|b| (b["block"].clone(), b["bag"]["i"].clone())).collect();
    assert_eq!(routed, [(json!("faulty"), json!(1)), (json!("faulty"), json!(2)), (json!("faulty"), json!(3))]);
    assert!(out.stderr.contains(cause), "the cause is logged:\n{}", out.stderr);
}

#[tokio::test]
async fn panics_in_on_enqueue() {
    faults_on_every_bag("panic", "", "faulty block panics on purpose").await;
}

#[tokio::test]
async fn traps_in_on_enqueue() {
    faults_on_every_bag("trap", "", "unreachable").await;
}

#[tokio::test]
async fn loops_in_on_enqueue() {
    faults_on_every_bag("loop", "call_timeout_ms = 100", "call timeout of 100ms").await;
}

#[tokio::test]
async fn sleeps_in_on_enqueue_where_epochs_cannot_reach() {
    faults_on_every_bag("sleep", "call_timeout_ms = 100", "call timeout of 100ms").await;
}

#[tokio::test]
async fn eats_memory_in_on_enqueue() {
    faults_on_every_bag("memory", "memory_mb = 16", "memory limit").await;
}

#[tokio::test]
async fn eats_memory_in_small_pieces_in_on_enqueue() {
    // Served from the SDK's size classes, which take chunks from talc until none fits.
    faults_on_every_bag("small_memory", "memory_mb = 16", "memory limit").await;
}

#[tokio::test]
async fn recurses_without_end_in_on_enqueue() {
    faults_on_every_bag("recursion", "", "wasm stack limit").await;
}

#[tokio::test]
async fn a_bag_that_faults_is_retried_and_the_queue_is_kept_across_the_restart() {
    let manifest = format!(
        "{}[[block]]\nname = \"faulty\"\nafter = []\n[block.config]\nfault = \"panic\"\nin = \"marked\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"faulty\"]\n[block.config]\nto = \"faulty\"\n\
         bags = ['{{\"n\":1}}', '{{\"n\":2,\"crash\":true}}', '{{\"n\":3}}', '{{\"n\":4}}']\n",
        neighbours(false)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let mut host = Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>());
    host.wait_for(103, |e| e["event"] == "bag" && (e["block"] == "faulty" || e["block"] == "healthy-sink")).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);
    let seen: Vec<_> = out.bags_of("faulty").iter().map(|b| (b["n"].clone(), b["__seq"].clone())).collect();
    assert_eq!(
        seen,
        [(json!(1), json!(1)), (json!(3), json!(3)), (json!(4), json!(4))],
        "bags after the fault, in order"
    );
    assert_eq!(report.count("faulty", "faults"), 2, "the marked bag faulted on both attempts");
    assert_eq!(report.count("faulty", "dead_letters"), 1);
    assert_eq!(report.dead_letters()[0]["bag"]["n"], 2);
    assert_eq!(report.count("faulty", "processed"), 3);
    assert!(report.block("faulty")["recovery_p50_us"].as_f64().is_some(), "recovery time is measured");
}

#[tokio::test]
async fn an_optional_block_that_panics_in_init_is_retried_then_left_out() {
    let manifest = format!(
        "{}[[block]]\nname = \"faulty\"\nafter = []\nrequired = false\ninit_retries = 2\n[block.config]\nfault = \"panic\"\nin = \"init\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"asker\"\nafter = [\"faulty\"]\n[block.config]\nto = \"faulty\"\ncount = 1\n",
        neighbours(true)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out =
        Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>()).finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);
    assert_eq!(out.stderr.matches("stderr: faulty block panics on purpose").count(), 3, "one try and two retries");
    let left_out: Vec<_> = out.log_events("left_out").iter().map(|r| r["block"].clone()).collect();
    assert_eq!(left_out, [json!("faulty")], "the host runs without it:\n{}", out.stderr);
    assert_eq!(report.block("faulty")["state"], "failed");
    let failed = report.failed();
    assert!(failed.iter().any(|(b, e)| b == "faulty" && e.contains("panics on purpose")), "{failed:?}");
    let asked = &out.events("sent")[..].iter().find(|e| e["to"] == "faulty").cloned().cloned().unwrap_or(Value::Null);
    assert_eq!(asked["error"], "unavailable", "{asked}");
}

#[tokio::test]
async fn an_optional_block_that_loops_in_init_is_stopped_and_left_out() {
    let manifest = format!(
        "{}[[block]]\nname = \"faulty\"\nafter = []\nrequired = false\ncall_timeout_ms = 100\n[block.config]\nfault = \"loop\"\nin = \"init\"\n",
        neighbours(true)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out =
        Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>()).finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);
    assert!(report.failed().iter().any(|(b, e)| b == "faulty" && e.contains("call timeout")), "{:?}", report.failed());
}

#[tokio::test]
async fn a_required_block_that_panics_in_init_stops_start_up_cleanly() {
    let manifest = format!(
        "{}[[block]]\nname = \"faulty\"\nafter = [\"healthy-source\"]\n[block.config]\nfault = \"panic\"\nin = \"init\"\n",
        neighbours(false)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out = Bagpipe::run_with(BIN, &dir, &[]).finish().await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("block `faulty` failed to initialise") && out.stderr.contains("panics on purpose"),
        "{}",
        out.stderr
    );
    let finished: Vec<_> = out.log_events("finished").iter().map(|r| r["block"].clone()).collect();
    assert!(finished.contains(&json!("healthy-source")), "started blocks were finished:\n{}", out.stderr);
}

#[tokio::test]
async fn traps_in_run_restart_until_the_intensity_gives_up() {
    let manifest = format!(
        "{}[[block]]\nname = \"faulty\"\nafter = []\nmax_restarts = 3\n[block.config]\nfault = \"trap\"\nin = \"run\"\n",
        neighbours(false)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let mut host = Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>());
    host.wait_for(104, |e| (e["event"] == "run" && e["block"] == "faulty") || e["block"] == "healthy-sink").await;
    host.log_record(Want::event("gave_up").block("faulty")).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);
    assert_eq!(report.count("faulty", "faults"), 4);
    assert_eq!(report.count("faulty", "restarts"), 3);
    assert_eq!(report.block("faulty")["state"], "failed");
}

#[tokio::test]
async fn a_trap_in_finish_is_reported_and_every_other_block_still_finishes() {
    let manifest = format!(
        "{}[[block]]\nname = \"faulty\"\nafter = []\n[block.config]\nfault = \"trap\"\nin = \"finish\"\n",
        neighbours(true)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out =
        Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>()).finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);
    let finish_errors = report.0["finish_errors"].as_array().cloned().unwrap_or_default();
    assert!(
        finish_errors
            .iter()
            .any(|f| f["block"] == "faulty" && f["error"].as_str().unwrap_or("").contains("unreachable"))
    );
    assert_eq!(report.block("healthy-sink")["state"], "finished");
    assert_eq!(report.block("healthy-source")["state"], "finished");
}

#[tokio::test]
async fn flooding_a_full_queue_is_refused_and_counted_without_stalling_anyone() {
    let manifest = format!(
        "[host]\nenqueue_timeout_ms = 5\n\n{}\
         [[block]]\nname = \"recorder\"\nresponsibility = \"slow\"\nafter = []\nqueue = 1\n\n\
         [[block]]\nname = \"faulty\"\nafter = [\"slow\"]\n[block.config]\nfault = \"flood\"\nin = \"init\"\nto = \"slow\"\n",
        neighbours(true)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out =
        Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>()).finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);
    // Flooding from `init`: nothing runs yet, so after the first bag the queue of one stays full;
    // the first refusal waits the enqueue timeout, the rest are refused at once.
    let refused = out.events("flood")[0]["refused"].as_u64().expect("flood result");
    assert_eq!(refused, 9_999);
    assert_eq!(report.count("slow", "refused_full"), refused);
    assert_eq!(report.count("slow", "received") + refused, 10_000);
    assert_eq!(report.count("slow", "processed"), report.count("slow", "received"), "everything queued was delivered");
    assert_eq!(report.count("faulty", "faults"), 0);
}

#[tokio::test]
async fn an_oversize_bag_is_refused_with_a_typed_error_and_nothing_else_happens() {
    let manifest = format!(
        "{}[[block]]\nname = \"faulty\"\nafter = []\n[block.config]\nfault = \"oversize\"\nin = \"run\"\nto = \"healthy-sink\"\n",
        neighbours(true)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out =
        Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>()).finish().await;
    out.assert_success();
    let report = dir.report();
    assert_neighbours_unharmed(&out, &report);
    let result = out.events("oversize")[0]["result"].as_str().unwrap_or("").to_owned();
    assert!(result.contains("too-large") || result.contains("TooLarge"), "{result}");
    assert_eq!(report.count("faulty", "faults"), 0);
}

#[tokio::test]
async fn a_slow_block_gets_the_drain_timeout_at_shutdown_and_the_rest_is_counted() {
    // 100 bags wait for a block that takes 50 ms over each; at shutdown it may drain for 100 ms.
    let manifest = "[host]\ndrain_timeout_ms = 100\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"slow\"\nafter = []\nqueue = 200\n[block.config]\nbusy_ms = 50\n\n\
         [[block]]\nname = \"sender\"\nafter = [\"slow\"]\n[block.config]\nto = \"slow\"\ncount = 100\nphase = \"init\"\n";
    let dir = BlockDir::from_manifest(manifest);
    let mut host = Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>());
    host.wait_for(1, |e| e["event"] == "bag" && e["block"] == "slow").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    let processed = report.count("slow", "processed");
    let lost = report.count("slow", "lost");
    assert_eq!(processed + lost, 100, "every bag is processed or counted lost");
    assert!(lost > 50, "draining stopped at the timeout ({processed} processed)");
    let logged: Vec<_> = out.log_events("lost").iter().map(|r| (block_of(r), r["bags"].as_u64())).collect();
    assert_eq!(logged, [(Some("slow"), Some(lost))], "and it is logged:\n{}", out.stderr);
}

#[tokio::test]
async fn a_shutdown_during_a_restart_backoff_still_drains_the_queue() {
    // The first bag traps twice (a dead letter then), and the block waits out a 3 s backoff with
    // three bags queued when the shutdown comes: they are delivered, not counted lost.
    let manifest = "[[block]]\nname = \"faulty\"\nmax_attempts = 2\nbackoff_ms = 3000\nbackoff_max_ms = 3000\n\
         [block.config]\nfault = \"trap\"\nin = \"marked\"\nquiet = true\n\n\
         [[block]]\nname = \"sender\"\nafter = [\"faulty\"]\n[block.config]\nto = \"faulty\"\nphase = \"init\"\n\
         bags = ['{\"n\":1,\"crash\":true}', '{\"n\":2}', '{\"n\":3}', '{\"n\":4}']\n";
    let dir = BlockDir::from_manifest(manifest);
    let mut host = Bagpipe::run_with(BIN, &dir, &run_args(&dir).iter().map(String::as_str).collect::<Vec<_>>());
    host.log_event_where("restarting", |r| r["attempt"] == 2).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert_eq!(report.count("faulty", "lost"), 0, "nothing queued is lost:\n{}", out.stderr);
    assert_eq!(report.count("faulty", "processed"), 3, "the three queued bags were delivered:\n{}", out.stderr);
    assert_eq!(report.count("faulty", "dead_letters"), 1, "the trapping bag is a dead letter");
}
