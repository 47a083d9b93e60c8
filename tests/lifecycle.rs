//! Lifecycle order: init in manifest order, run only after every init, finish once each in
//! reverse order; init errors; SIGTERM; timers; the block directory.

use bagpipe_test_support::{Bagpipe, BlockDir, Want, run_to_end};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn probes(last_config: &str) -> BlockDir {
    let manifest = format!(
        "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"b\"\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"c\"\n[block.config]\n{last_config}\n"
    );
    BlockDir::from_manifest(&manifest)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test]
async fn init_in_order_then_run_all_then_finish_in_reverse_once() {
    let dir = probes("shutdown_on_run = true");
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let trace = out.trace();
    assert_eq!(trace[..3], pairs(&[("init", "a"), ("init", "b"), ("init", "c")]));
    let mut runs: Vec<_> = trace[3..6].to_vec();
    runs.sort();
    assert_eq!(runs, pairs(&[("run", "a"), ("run", "b"), ("run", "c")]));
    assert_eq!(trace[6..], pairs(&[("finish", "c"), ("finish", "b"), ("finish", "a")]));
}

#[tokio::test]
async fn init_error_finishes_the_initialised_blocks_in_reverse_and_fails() {
    let manifest = "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\n\n\
                    [[block]]\nname = \"probe\"\nresponsibility = \"b\"\n\n\
                    [[block]]\nname = \"probe\"\nresponsibility = \"c\"\n[block.config]\nfail_init = \"no database here\"\n\n\
                    [[block]]\nname = \"probe\"\nresponsibility = \"d\"\n";
    let dir = BlockDir::from_manifest(manifest);
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    assert!(!out.status.success(), "must exit non-zero");
    assert_eq!(out.trace(), pairs(&[("init", "a"), ("init", "b"), ("init", "c"), ("finish", "b"), ("finish", "a")]));
    assert!(
        out.stderr.contains("block `c` failed to initialise: no database here"),
        "stderr must name the block and its error:\n{}",
        out.stderr
    );
}

#[tokio::test]
async fn sigterm_finishes_every_block_in_reverse_and_exits_zero() {
    let dir = probes("");
    let mut host = Bagpipe::run(BIN, &dir);
    // Ready: every block has run.
    host.wait_for(3, |e| e["event"] == "run").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let finishes: Vec<_> = out.trace().into_iter().filter(|(e, _)| e == "finish").collect();
    assert_eq!(finishes, pairs(&[("finish", "c"), ("finish", "b"), ("finish", "a")]));
    let signals: Vec<_> = out.log_events("shutdown").iter().map(|r| r["signal"].clone()).collect();
    assert_eq!(signals, ["SIGTERM"], "{}", out.stderr);
}

#[tokio::test]
async fn sigint_also_shuts_down_gracefully() {
    let dir = probes("");
    let mut host = Bagpipe::run(BIN, &dir);
    host.wait_for(3, |e| e["event"] == "run").await;
    host.signal(libc::SIGINT);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(out.events("finish").len(), 3);
}

#[tokio::test]
async fn a_second_signal_stops_at_once_while_a_finish_hangs() {
    // `stuck` sleeps for an hour in `finish`, and may: its call timeout is an hour too.
    let manifest = "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\n\n\
                    [[block]]\nname = \"faulty\"\nresponsibility = \"stuck\"\ncall_timeout_ms = 3600000\n\
                    [block.config]\nfault = \"sleep\"\nin = \"finish\"\n";
    let dir = BlockDir::from_manifest(manifest);
    let mut host = Bagpipe::run(BIN, &dir);
    host.wait_for(2, |e| e["event"] == "run").await;
    host.signal(libc::SIGTERM);
    host.log_record(Want::event("shutdown").field("signal", "SIGTERM")).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    assert!(!out.status.success(), "a forced stop exits non-zero");
    assert!(out.stderr.contains("a second SIGTERM during shutdown: stopping now"), "{}", out.stderr);
    assert!(out.events("finish").is_empty(), "nothing finished after the hanging block: {:?}", out.events("finish"));
}

#[tokio::test]
async fn timers_fire_in_order_and_a_cancelled_timer_never_fires() {
    let dir = BlockDir::from_manifest("[[block]]\nname = \"ticker\"\n");
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let tags: Vec<_> = out.events("timer").iter().map(|e| e["tag"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(tags, ["a", "b", "c"]);
    assert_eq!(out.events("cancel")[0]["was_pending"], true);
}

#[tokio::test]
async fn a_block_without_on_timer_is_told_its_timer_could_never_fire() {
    let dir = probes("try_timer = true\nshutdown_on_run = true");
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let error = out.events("timer")[0]["error"].as_str().unwrap_or("").to_owned();
    assert!(error.contains("timer-hook"), "{error}");
}

#[tokio::test]
async fn blocks_can_list_and_look_up_each_other() {
    let dir = probes("list = true\nshutdown_on_run = true");
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let list = &out.events("list")[0]["blocks"];
    let names: Vec<_> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|b| (b["responsibility"].as_str().unwrap_or("").to_owned(), b["builtin"] == true))
        .collect();
    assert_eq!(
        names,
        [
            ("initiator".into(), true),
            ("finisher".into(), true),
            ("a".into(), false),
            ("b".into(), false),
            ("c".into(), false)
        ]
    );
    let c = &list[4];
    assert_eq!(c["name"], "probe");
    assert_eq!(c["accepts_bags"], false);
    assert_eq!(c["state"], "running");
    let lookup = &out.events("lookup")[0];
    assert_eq!(lookup["missing_is_none"], true);
    assert_eq!(lookup["self_name"], "probe");
}
