//! Supervision: restart policies (`one`, `all`, `escalate`, `none`), backoff and restart
//! intensity, `on_give_up`, dependency order with parallel start and reverse finish, SIGTERM
//! during a slow start, and the admin endpoint with `bagpipe status`.

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Want, block_of, run_to_end};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn with_report(dir: &BlockDir) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--report", &report])
}

/// The supervisor's `gave_up` (a `block` field; a block's own is logged in its span): `restart =
/// "all"` of block `responsibility` came too often.
fn every_block_too_often(responsibility: &str) -> impl Fn(&Value) -> bool {
    move |r| r["block"] == responsibility
}

fn count(out: &Finished, event: &str, block: &str) -> usize {
    out.trace().iter().filter(|(e, b)| e == event && b == block).count()
}

#[tokio::test]
async fn restart_all_finishes_every_block_in_reverse_and_starts_them_again() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\nafter = []\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"b\"\nafter = [\"a\"]\n\n\
         [[block]]\nname = \"faulty\"\nafter = [\"b\"]\nrestart = \"all\"\nmax_restarts = 2\n[block.config]\nfault = \"trap\"\nin = \"run\"\n",
    );
    let mut host = with_report(&dir);
    host.log_event_where("gave_up", every_block_too_often("faulty")).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    // Two restarts of everything, then the faulty block is left failed and the rest runs on.
    assert_eq!(out.log_events("restart_all").len(), 2, "{}", out.stderr);
    assert_eq!(count(&out, "init", "a"), 3);
    assert_eq!(count(&out, "init", "b"), 3);
    assert_eq!(count(&out, "run", "faulty"), 3);
    assert_eq!(count(&out, "finish", "a"), 3, "two restarts and the final shutdown");
    // Each restart finishes in reverse order: b before a.
    let finishes: Vec<_> = out.trace().into_iter().filter(|(e, _)| e == "finish").map(|(_, b)| b).collect();
    assert_eq!(finishes, ["b", "a", "b", "a", "b", "a"]);
    let report = dir.report();
    assert_eq!(report.block("faulty")["state"], "failed");
    assert_eq!(report.block("a")["state"], "finished");
}

#[tokio::test]
async fn restart_escalate_shuts_the_host_down_and_exits_non_zero() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\n\n\
         [[block]]\nname = \"faulty\"\nrestart = \"escalate\"\n[block.config]\nfault = \"panic\"\nin = \"run\"\n",
    );
    let out = with_report(&dir).finish().await;
    assert!(!out.status.success(), "escalation exits non-zero");
    let escalated: Vec<_> = out.log_events("escalated").iter().map(|r| r["block"].clone()).collect();
    assert_eq!(escalated, ["faulty"], "{}", out.stderr);
    // The host's last words name the block and the guest's own.
    assert!(
        out.stderr.contains("block `faulty` faulted and escalated") && out.stderr.contains("panics on purpose"),
        "{}",
        out.stderr
    );
    assert_eq!(count(&out, "finish", "a"), 1, "the other blocks were finished gracefully");
    assert_eq!(dir.report().0["escalated"], "faulty");
}

#[tokio::test]
async fn restart_none_leaves_the_block_failed_and_refuses_bags_for_it() {
    // The faulting bag becomes a dead letter, which goes to `relay`; relay then sends to the
    // failed block and is told it is unavailable.
    let dir = BlockDir::from_manifest(
        "[host]\ndead_letters = \"relay\"\n\n\
         [[block]]\nname = \"faulty\"\nafter = []\nrestart = \"none\"\n[block.config]\nfault = \"panic\"\nin = \"marked\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"relay\"\nafter = []\n[block.config]\nto = \"faulty\"\nreply_bags = ['{\"again\":true}']\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"faulty\"]\n[block.config]\nto = \"faulty\"\nbags = ['{\"crash\":true}']\n",
    );
    let mut host = with_report(&dir);
    host.wait_for(1, |e| e["event"] == "sent" && e["to"] == "faulty" && e["error"].is_string()).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let refusal = out.events("sent").into_iter().find(|e| e["error"].is_string()).cloned().unwrap_or_default();
    assert_eq!(refusal["error"], "unavailable");
    assert!(refusal["detail"].as_str().unwrap_or("").contains("failed"), "{refusal}");
    let report = dir.report();
    assert_eq!(report.count("faulty", "restarts"), 0);
    assert_eq!(report.block("faulty")["state"], "failed");
    assert_eq!(report.dead_letters().len(), 1);
    assert_eq!(report.dead_letters()[0]["bag"]["crash"], true);
}

#[tokio::test]
async fn a_crash_loop_backs_off_more_each_time_then_gives_up() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"faulty\"\nafter = []\nmax_restarts = 4\nbackoff_ms = 20\nmax_attempts = 1\n[block.config]\nfault = \"panic\"\nin = \"enqueue\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"faulty\"]\n[block.config]\nto = \"faulty\"\ncount = 10\n",
    );
    let mut host = with_report(&dir);
    host.log_record(Want::event("gave_up").block("faulty")).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    // Each restart of the block is logged in its span with its attempt and delay.
    let delays: Vec<u64> = out
        .log_events("restarting")
        .into_iter()
        .filter(|r| block_of(r) == Some("faulty"))
        .filter_map(|r| r["delay_ms"].as_u64())
        .collect();
    assert_eq!(delays.len(), 4, "{}", out.stderr);
    assert_eq!(delays[0], 0, "the first restart is immediate");
    assert!(delays.windows(2).all(|w| w[1] > w[0]), "backoff grows: {delays:?}");
    assert!((16..=24).contains(&delays[1]), "second restart waits the base backoff (20 ms ± 20%): {delays:?}");
    let report = dir.report();
    assert_eq!(report.count("faulty", "restarts"), 4);
    assert_eq!(report.block("faulty")["state"], "failed");
    // Nothing vanished: every one of the 10 bags is a dead letter or was refused to the sender.
    let refused = out.events("sent").iter().filter(|e| e["error"].is_string()).count() as u64;
    assert_eq!(report.count("faulty", "dead_letters") + refused, 10);
    assert_eq!(report.count("faulty", "lost"), 0);
}

#[tokio::test]
async fn giving_up_can_escalate() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"faulty\"\nafter = []\nmax_restarts = 1\non_give_up = \"escalate\"\n[block.config]\nfault = \"trap\"\nin = \"run\"\n",
    );
    let out = with_report(&dir).finish().await;
    assert!(!out.status.success());
    assert_eq!(out.log_events("gave_up").len(), 1, "{}", out.stderr);
    let escalated: Vec<_> = out.log_events("escalated").iter().map(|r| r["block"].clone()).collect();
    assert_eq!(escalated, ["faulty"], "{}", out.stderr);
}

#[tokio::test]
async fn independent_blocks_start_in_parallel_and_dependents_wait() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\nafter = []\n[block.config]\ninit_ms = 400\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"b\"\nafter = []\n[block.config]\ninit_ms = 400\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"c\"\nafter = [\"a\", \"b\"]\n[block.config]\nshutdown_on_run = true\n",
    );
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let trace: Vec<(String, String)> = out.trace().into_iter().filter(|(e, _)| e == "init" || e == "inited").collect();
    let pos = |e: &str, b: &str| trace.iter().position(|(x, y)| x == e && y == b).expect("event");
    // Both started before either finished initialising: in parallel, not one after the other.
    assert!(pos("init", "a") < pos("inited", "b") && pos("init", "b") < pos("inited", "a"), "{trace:?}");
    assert!(pos("init", "c") > pos("inited", "a") && pos("init", "c") > pos("inited", "b"), "{trace:?}");
    // Finish in reverse dependency order: c first, then a and b.
    let finishes: Vec<_> = out.trace().into_iter().filter(|(e, _)| e == "finish").map(|(_, b)| b).collect();
    assert_eq!(finishes[0], "c");
}

#[tokio::test]
async fn sigterm_during_a_slow_start_lets_the_init_finish_then_finishes_what_started() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"b\"\ncall_timeout_ms = 5000\n[block.config]\ninit_ms = 1000\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"c\"\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    host.wait_for(1, |e| e["event"] == "init" && e["block"] == "b").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let trace: Vec<_> = out.trace().into_iter().map(|(e, b)| format!("{e} {b}")).collect();
    assert_eq!(trace, ["init a", "init b", "inited b", "finish b", "finish a"]);
}

#[tokio::test]
async fn the_admin_endpoint_serves_stats_metrics_and_dead_letters() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nafter = []\n\n\
         [[block]]\nname = \"faulty\"\nafter = []\nmax_attempts = 1\n[block.config]\nfault = \"panic\"\nin = \"marked\"\n\n\
         [[block]]\nname = \"sender\"\nafter = [\"recorder\", \"faulty\"]\n[block.config]\nto = \"recorder\"\ncount = 5\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"crasher\"\nafter = [\"faulty\"]\n[block.config]\nto = \"faulty\"\nbags = ['{\"crash\":true}', '{\"fine\":true}']\n",
    );
    let mut host = Bagpipe::run_with(BIN, &dir, &["--admin", "127.0.0.1:0"]);
    let addr = host.admin_addr().await;
    host.wait_for(6, |e| e["event"] == "bag").await;

    let status = run_to_end(BIN, ["status", "--admin", &addr]).await;
    status.assert_success();
    let table = status.stdout.join("\n");
    let row = |name: &str| {
        table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in\n{table}")).to_owned()
    };
    let recorder: Vec<_> = row("recorder").split_whitespace().map(str::to_owned).collect();
    assert_eq!(recorder[..3], ["recorder", "recorder", "running"], "{table}");
    assert_eq!(recorder[5], "5", "DONE column:\n{table}");
    let faulty: Vec<_> = row("faulty").split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        (faulty[7].as_str(), faulty[8].as_str(), faulty[9].as_str()),
        ("1", "1", "1"),
        "faults, restarts, dead:\n{table}"
    );

    let letters = run_to_end(BIN, ["status", "--admin", &addr, "--dead-letters"]).await;
    letters.assert_success();
    let letters: serde_json::Value = serde_json::from_str(&letters.stdout.join("\n")).expect("JSON");
    assert_eq!(letters["total"], 1);
    assert_eq!(letters["kept"][0]["bag"]["crash"], true);

    let metrics = bagpipe::admin_get(&addr, "/metrics").await.expect("metrics");
    assert!(metrics.contains("# TYPE bagpipe_block_processed_total counter"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("bagpipe_block_processed_total{block=\"recorder\"") && l.ends_with(" 5")),
        "{metrics}"
    );
    assert!(metrics.contains("bagpipe_dead_letters_total 1"), "{metrics}");
    let missing = bagpipe::admin_get(&addr, "/nope").await;
    assert!(missing.is_err());

    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn restart_all_starts_blocks_after_an_optional_block_the_host_runs_without() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"faulty\"\nresponsibility = \"optional\"\nafter = []\nrequired = false\n[block.config]\nfault = \"panic\"\nin = \"init\"\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"b\"\nafter = [\"optional\"]\n\n\
         [[block]]\nname = \"faulty\"\nresponsibility = \"crasher\"\nafter = [\"b\"]\nrestart = \"all\"\nmax_restarts = 1\n[block.config]\nfault = \"trap\"\nin = \"run\"\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    host.log_event_where("gave_up", every_block_too_often("crasher")).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(count(&out, "init", "b"), 2, "b started again after the restart of everything");
    assert_eq!(count(&out, "run", "crasher"), 2);
}

#[tokio::test]
async fn restarts_of_everything_count_for_the_supervisor_as_a_whole() {
    // Two blocks that trap in every `run`, both `restart = "all"` with at most 4 restarts: four
    // restarts of everything in all (not four per block), as an OTP supervisor counts them.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nafter = []\n\n\
         [[block]]\nname = \"faulty\"\nresponsibility = \"x\"\nafter = [\"probe\"]\nrestart = \"all\"\nmax_restarts = 4\n[block.config]\nfault = \"trap\"\nin = \"run\"\nquiet = true\n\n\
         [[block]]\nname = \"faulty\"\nresponsibility = \"y\"\nafter = [\"probe\"]\nrestart = \"all\"\nmax_restarts = 4\n[block.config]\nfault = \"trap\"\nin = \"run\"\nquiet = true\n",
    );
    let mut host = with_report(&dir);
    host.log_event("gave_up").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(out.log_events("restart_all").len(), 4, "{}", out.stderr);
    assert_eq!(count(&out, "init", "probe"), 5, "started once and restarted four times");
}
