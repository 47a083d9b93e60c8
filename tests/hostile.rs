//! Hostile guests: a block cannot make the host hold more than its budgets, reach past its grants,
//! or act on other blocks without a grant. Each test runs a block that tries, through the real
//! binary: the host stays up, the block gets a typed error or a fault of its own, and the refusal
//! is counted or logged.

use bagpipe_test_support::{Bagpipe, BlockDir, Nats, Want, artifacts, block_of, wat_block};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// The blocks that finished, in order.
fn finished(events: &[Value]) -> Vec<String> {
    events.iter().filter(|e| e["event"] == "finish").filter_map(|e| e["block"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn finishing_another_block_needs_a_control_grant() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nresponsibility = \"victim\"\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"asker\"\n[block.config]\nfinish = \"victim\"\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    let asked = host.wait_for(1, |e| e["event"] == "finish_asked").await;
    let asked = asked.iter().find(|e| e["event"] == "finish_asked").expect("asked");
    let error = asked["error"].as_str().unwrap_or_default();
    assert!(error.contains("not granted") && error.contains("control = [\"victim\"]"), "{asked}");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(finished(&out.events), ["asker", "victim"], "the victim ran until shutdown");
    let refusal = out.log_events("not_granted");
    assert!(refusal.iter().any(|r| r["target"] == "victim"), "the refusal is logged:\n{}", out.stderr);
}

#[tokio::test]
async fn a_control_grant_lets_a_block_finish_the_blocks_it_names() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nresponsibility = \"victim\"\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"asker\"\ncontrol = [\"victim\"]\n[block.config]\nfinish = \"victim\"\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    let seen =
        host.wait_for(2, |e| e["event"] == "finish_asked" || (e["event"] == "finish" && e["block"] == "victim")).await;
    let asked = seen.iter().find(|e| e["event"] == "finish_asked").expect("asked");
    assert!(asked["error"].is_null(), "{asked}");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(finished(&out.events), ["victim", "asker"], "the victim was finished when asked, once");
}

#[tokio::test]
async fn a_block_restarting_without_backoff_still_obeys_shutdown() {
    // It traps in every `run`, restarts at once, and may restart a million times a second.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"faulty\"\nbackoff_ms = 0\nbackoff_max_ms = 0\nmax_restarts = 1000000\nrestart_window_ms = 1000\n\
         [block.config]\nfault = \"trap\"\nin = \"run\"\nquiet = true\n\n\
         [[block]]\nname = \"probe\"\nafter = []\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    host.log_event_where("restarting", |r| r["attempt"].as_u64().is_some_and(|n| n >= 20)).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(
        finished(&out.events),
        ["probe"],
        "its neighbour was finished; the faulty block had no instance to finish"
    );
}

#[tokio::test]
async fn a_busy_admin_address_stops_start_up_before_anything_started() {
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let dir = BlockDir::from_manifest("[[block]]\nname = \"echo\"\nlisten = [\"tcp://127.0.0.1:0\"]\n");
    let out = Bagpipe::run_with(BIN, &dir, &["--admin", &addr]).finish().await;
    assert!(!out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("binding the admin address"), "{}", out.stderr);
    assert!(out.log_events("listening").is_empty(), "no socket was opened:\n{}", out.stderr);
    assert!(out.events.is_empty(), "no guest code ran: {:?}", out.events);
}

/// Runs `manifest` with a report (and the server, when given) until a block shuts the host down
/// or `tried` attempts were reported; then stops it. Returns the attempts and the run.
async fn attempts(
    manifest: &str,
    server: Option<&Nats>,
    tried: usize,
) -> (Vec<Value>, bagpipe_test_support::Finished, BlockDir) {
    let dir = BlockDir::from_manifest(manifest);
    let report = dir.report_path().display().to_string();
    let mut args = vec!["--report".to_owned(), report];
    if let Some(nats) = server {
        args.extend(["--server".to_owned(), nats.url()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut host = Bagpipe::run_with(BIN, &dir, &args);
    let seen = host.wait_for(tried, |e| e["event"] == "tried").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let tries = seen.into_iter().filter(|e| e["event"] == "tried").collect();
    (tries, out, dir)
}

#[tokio::test]
async fn timers_are_bounded_in_count_and_tag_size() {
    let (tries, _, dir) = attempts(
        "[[block]]\nname = \"hostile\"\nresponsibility = \"long-tags\"\n[block.config]\ntry = \"timer_tags\"\ncount = 3\nbytes = 100000\n\n\
         [[block]]\nname = \"hostile\"\nresponsibility = \"many\"\nmax_timers = 2\n[block.config]\ntry = \"timer_tags\"\ncount = 5\n",
        None,
        2,
    )
    .await;
    let by = |block: usize| &tries[block];
    let (long, many) = if by(0)["ok"] == 0 { (by(0), by(1)) } else { (by(1), by(0)) };
    assert_eq!((long["ok"].as_u64(), long["errors"].as_u64()), (Some(0), Some(3)), "{long}");
    assert!(long["first_error"].as_str().is_some_and(|e| e.contains("longer than the limit of 1024")), "{long}");
    assert_eq!((many["ok"].as_u64(), many["errors"].as_u64()), (Some(2), Some(3)), "{many}");
    assert!(many["first_error"].as_str().is_some_and(|e| e.contains("too many pending timers")), "{many}");
    let report = dir.report();
    assert_eq!(report.count("long-tags", "budget_refusals"), 3);
    assert_eq!(report.count("many", "budget_refusals"), 3);
}

#[tokio::test]
async fn subscriptions_are_bounded() {
    let nats = Nats::start(false).await;
    let (tries, _, dir) = attempts(
        "[[block]]\nname = \"hostile\"\nsubscribe = [\"flood.>\"]\nmax_subscriptions = 3\n[block.config]\ntry = \"subscriptions\"\ncount = 5\n",
        Some(&nats),
        1,
    )
    .await;
    let tried = &tries[0];
    assert_eq!((tried["ok"].as_u64(), tried["errors"].as_u64()), (Some(3), Some(2)), "{tried}");
    assert!(tried["first_error"].as_str().is_some_and(|e| e.contains("too many subscriptions")), "{tried}");
    assert_eq!(dir.report().count("hostile", "budget_refusals"), 2);
}

#[tokio::test]
async fn what_a_block_sends_waits_in_a_bounded_buffer() {
    // A client that never reads; the block sends 64 MiB at it. Without a budget the host would
    // queue all of it; with a 2 MiB send buffer it holds at most that (plus what the kernel took).
    let dir = BlockDir::from_manifest(
        "[host]\nenqueue_timeout_ms = 50\n\n\
         [[block]]\nname = \"hostile\"\nlisten = [\"tcp://127.0.0.1:0\"]\nsend_buffer_bytes = 2097152\n\
         call_timeout_ms = 10000\n\
         [block.config]\ntry = \"send_flood\"\ncount = 64\nbytes = 1048576\n",
    );
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, &dir, &["--report", &report]);
    let listening = host.log_event("listening").await;
    let url = listening["url"].as_str().expect("url").trim_start_matches("tcp://").to_owned();
    let _client = tokio::net::TcpStream::connect(&url).await.expect("connect");
    let tried = host.wait_for(1, |e| e["event"] == "tried").await;
    let tried = tried.iter().find(|e| e["event"] == "tried").expect("tried");
    let (ok, errors) = (tried["ok"].as_u64().unwrap_or(0), tried["errors"].as_u64().unwrap_or(0));
    assert_eq!(ok + errors, 64, "{tried}");
    assert!(ok < 32, "the buffer stopped the flood: {tried}");
    assert_eq!(tried["first_error"], "NetError::WouldBlock", "{tried}");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(dir.report().count("hostile", "budget_refusals"), errors, "every refusal is counted");
}

#[tokio::test]
async fn a_udp_listener_answers_only_the_peers_that_sent_to_it() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"hostile\"\nlisten = [\"udp://127.0.0.1:0\"]\n\
         [block.config]\ntry = \"udp_elsewhere\"\nto = \"127.0.0.1:9\"\n",
    );
    let mut host = Bagpipe::run(BIN, &dir);
    let listening = host.log_event("listening").await;
    let addr = listening["url"].as_str().expect("url").trim_start_matches("udp://").to_owned();
    let me = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    me.send_to(b"hello", &addr).await.expect("send");
    let mut buf = [0u8; 64];
    let (n, _) = bagpipe_test_support::within(me.recv_from(&mut buf)).await.expect("the answer");
    assert_eq!(&buf[..n], b"hello", "the sender is answered");
    let tried = host.wait_for(2, |e| e["event"] == "tried").await;
    let elsewhere = tried.iter().find(|e| e["try"] == "udp_elsewhere").expect("elsewhere");
    assert_eq!(elsewhere["errors"], 1, "{elsewhere}");
    assert!(elsewhere["first_error"].as_str().is_some_and(|e| e.contains("NotGranted")), "{elsewhere}");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert!(out.log_events("not_granted").iter().any(|r| r["target"] == "127.0.0.1:9"), "{}", out.stderr);
}

/// A block writing `count` lines (its `log` calls or its stderr) past a rate of 50 a second: what
/// is over the rate is counted and summarised, never silently gone.
async fn floods(attempt: &str, line: &str) {
    let dir = BlockDir::from_manifest(&format!(
        "[[block]]\nname = \"hostile\"\nlog_lines_per_sec = 50\n[block.config]\ntry = \"{attempt}\"\ncount = 5000\n"
    ));
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, &dir, &["--report", &report]);
    host.wait_for(1, |e| e["event"] == "logged").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let written = out.log.iter().filter(|r| r["message"].as_str().is_some_and(|m| m.contains(line))).count() as u64;
    let dropped = dir.report().count("hostile", "logs_dropped");
    // 50 a second with a second's burst: a few seconds of flooding write a few hundred at most.
    assert!(written < 1000, "the rate held: {written} of 5000 written");
    assert_eq!(written + dropped, 5000, "every line was written or counted");
    let summarised: u64 = out.log_events("logs_dropped").iter().filter_map(|r| r["lines"].as_u64()).sum();
    assert_eq!(summarised, dropped, "the dropped lines are summarised:\n{}", out.stderr);
}

#[tokio::test]
async fn log_lines_past_the_rate_are_counted_and_summarised() {
    floods("log_flood", "flooding the log").await;
}

#[tokio::test]
async fn stderr_lines_past_the_rate_are_counted_and_summarised() {
    floods("stderr_flood", "flooding stderr").await;
}

#[tokio::test]
async fn output_past_its_rate_waits_and_the_wait_is_not_guest_time() {
    // 100 stderr lines of 2 KB against 64 KB a second (and a second's burst): the block waits
    // about two seconds in all, in one call of at most 500 ms of guest time. It must wait
    // (paced), not fault, and every line is still written or counted.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"hostile\"\ncall_timeout_ms = 500\nstderr_bytes_per_sec = 65536\n\
         [block.config]\ntry = \"stderr_flood\"\ncount = 100\npad = 2000\n",
    );
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, &dir, &["--report", &report]);
    host.wait_for(1, |e| e["event"] == "logged").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert!(report.count("hostile", "output_paced") > 0, "the flood was paced");
    assert_eq!(report.count("hostile", "faults"), 0, "waiting for the budget is not guest time");
    let written =
        out.log.iter().filter(|r| r["message"].as_str().is_some_and(|m| m.contains("flooding stderr"))).count() as u64;
    assert_eq!(written + report.count("hostile", "logs_dropped"), 100, "every line written or counted");
}

#[tokio::test]
async fn stdout_past_its_rate_waits_and_loses_nothing() {
    // 1,000 lines of about 140 bytes against 64 KB a second: paced for about a second in a call
    // of at most 500 ms of guest time, no fault, and every line printed.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"hostile\"\ncall_timeout_ms = 500\nstdout_bytes_per_sec = 65536\n\
         [block.config]\ntry = \"stdout_flood\"\ncount = 1000\n",
    );
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, &dir, &["--report", &report]);
    host.wait_for(1, |e| e["event"] == "flood" && e["i"] == 999).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    assert!(report.count("hostile", "output_paced") > 0, "the flood was paced");
    assert_eq!(report.count("hostile", "faults"), 0, "waiting for the budget is not guest time");
    assert_eq!(report.count("hostile", "stdout_dropped"), 0);
    assert_eq!(out.events("flood").len(), 1000, "every line printed");
}

/// Runs the WAT block `extra` describes (optional, so the host runs on without it) beside a
/// probe that shuts the host down once running; returns why the WAT block failed, if it did.
async fn wat_block_beside_a_neighbour(extra: &str, limits: &str) -> Option<String> {
    let dir = BlockDir::new(
        &format!(
            "[[block]]\nname = \"wat\"\nrequired = false\n{limits}\n\n\
             [[block]]\nname = \"probe\"\nafter = []\n[block.config]\nshutdown_on_run = true\n"
        ),
        &[("probe", artifacts::PROBE)],
    );
    dir.write("wat.wasm", &wat_block(extra));
    let report = dir.report_path().display().to_string();
    let out = Bagpipe::run_with(BIN, &dir, &["--report", &report]).finish().await;
    out.assert_success();
    assert!(out.events.iter().any(|e| e["event"] == "run" && e["block"] == "probe"), "the neighbour ran");
    dir.report().failed().into_iter().find(|(block, _)| block == "wat").map(|(_, why)| why)
}

#[tokio::test]
async fn a_wat_block_within_its_limits_runs() {
    // The fixture itself works: what the tests below refuse is the abuse, not the block.
    let failed = wat_block_beside_a_neighbour("(memory 1) (table 10 funcref)", "").await;
    assert_eq!(failed, None);
}

#[tokio::test]
async fn memories_count_together_against_the_memory_limit() {
    // Eight memories of 4 MiB each: each is under memory_mb = 16, together they are not.
    let failed = wat_block_beside_a_neighbour(&"(memory 64) ".repeat(8), "memory_mb = 16").await;
    let why = failed.expect("refused");
    assert!(why.contains("memory") && why.contains("memories and tables together"), "{why}");
}

/// Loads (`bagpipe check`) a WAT block declaring `extra`: a component that declares more than
/// a block may hold is refused before anything runs, and the error says why.
async fn refused_when_loaded(extra: &str) -> String {
    let dir = BlockDir::new("[[block]]\nname = \"wat\"\n", &[]);
    dir.write("wat.wasm", &wat_block(extra));
    let out = Bagpipe::start(BIN, ["check".as_ref(), dir.path().as_os_str()]).finish().await;
    assert!(!out.status.success(), "refused: {}", out.stderr);
    assert!(out.stderr.contains("block `wat`"), "names the block: {}", out.stderr);
    out.stderr
}

#[tokio::test]
async fn a_table_bomb_counts_against_the_memory_limit() {
    // Eight tables of a million references: 128 MiB against the default 64.
    let failed = wat_block_beside_a_neighbour(&"(table 1000000 funcref) ".repeat(8), "").await;
    let why = failed.expect("refused");
    assert!(why.contains("memories and tables together"), "{why}");
}

#[tokio::test]
async fn a_store_holds_a_bounded_number_of_memories() {
    let why = refused_when_loaded(&"(memory 1) ".repeat(40)).await;
    assert!(why.contains("memory count"), "{why}");
}

#[tokio::test]
async fn a_component_file_past_the_size_limit_is_not_read() {
    let dir = BlockDir::new("[[block]]\nname = \"big\"\n", &[]);
    // Sparse: 60 MiB on paper, nothing on disk; the host must refuse it from its size.
    let file = std::fs::File::create(dir.path().join("big.wasm")).expect("create");
    file.set_len(60 << 20).expect("size");
    let out = Bagpipe::start(BIN, ["check".as_ref(), dir.path().as_os_str()]).finish().await;
    assert!(!out.status.success(), "{}", out.stderr);
    assert!(out.stderr.contains("larger than the limit of 50331648 bytes"), "{}", out.stderr);
}

/// `bagpipe run DIR --report ...` with its stdout and stderr piped and left to the test: for tests
/// that must not read one of them (the support's driver reads both).
fn raw_bagpipe(dir: &BlockDir) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .arg("run")
        .arg(dir.path())
        .arg("--report")
        .arg(dir.report_path())
        .env("BAGPIPE_CACHE_DIR", bagpipe_test_support::workspace_root().join("target").join("bagpipe-test-cache"))
        .env("BAGPIPE_LOG_FORMAT", "json")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start bagpipe")
}

/// Sends SIGTERM to `child`.
fn terminate(child: &tokio::process::Child) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id().expect("running") as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

#[tokio::test]
async fn a_stdout_nobody_reads_never_holds_a_block() {
    // 30,000 lines (4 MB) printed while nobody reads the host's stdout: the block must finish
    // its call, the host must stop when asked, and what it could not write is counted.
    use tokio::io::AsyncBufReadExt as _;
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"hostile\"\ncall_timeout_ms = 30000\nstdout_bytes_per_sec = 1073741824\n\
         [block.config]\ntry = \"stdout_flood\"\ncount = 30000\n",
    );
    let mut child = raw_bagpipe(&dir);
    // Held open and never read until the host has stopped.
    let _stdout = child.stdout.take().expect("stdout");
    let mut log = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    bagpipe_test_support::within(async {
        while let Some(line) = log.next_line().await.expect("log") {
            if line.contains("stdout flood done") {
                return;
            }
        }
        panic!("the host ended before the flood was done");
    })
    .await;
    terminate(&child);
    let drain = async { while log.next_line().await.ok().flatten().is_some() {} };
    let (status, ()) = bagpipe_test_support::within(async { tokio::join!(child.wait(), drain) }).await;
    assert!(status.expect("exit").success(), "the host stopped cleanly");
    let dropped = dir.report().count("hostile", "stdout_dropped");
    assert!(dropped > 0, "what could not be written is counted");
}

#[tokio::test]
async fn a_log_nobody_reads_never_holds_a_block() {
    // The host's stderr is never read while a block logs 200,000 lines (its rate set high enough
    // to let them all through): the host's log writer drops what stderr does not take, and the
    // block finishes its call.
    use tokio::io::AsyncBufReadExt as _;
    use tokio::io::AsyncReadExt as _;
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"hostile\"\ncall_timeout_ms = 60000\nlog_lines_per_sec = 1000000\n\
         [block.config]\ntry = \"log_flood\"\ncount = 200000\n",
    );
    let mut child = raw_bagpipe(&dir);
    // Held open and never read until the block is done logging.
    let mut stderr = child.stderr.take().expect("stderr");
    let mut events = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    bagpipe_test_support::within(async {
        while let Some(line) = events.next_line().await.expect("stdout") {
            if line.contains("\"logged\"") {
                return;
            }
        }
        panic!("the host ended before the block was done logging");
    })
    .await;
    terminate(&child);
    let mut log = Vec::new();
    let drain = async {
        let _ = stderr.read_to_end(&mut log).await;
        while events.next_line().await.ok().flatten().is_some() {}
    };
    let (status, ()) = bagpipe_test_support::within(async { tokio::join!(child.wait(), drain) }).await;
    assert!(status.expect("exit").success(), "the host stopped cleanly");
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("log lines were dropped: stderr was not keeping up"), "the drops are counted");
}

#[tokio::test]
async fn a_host_panic_in_a_block_task_ends_only_that_block_and_accounts_for_its_bags() {
    // The victim takes 20 ms over each bag, so bags queue behind the third one, on which the
    // host's task for it panics (fault injection of debug builds).
    let mut bags: Vec<String> = (1..=20).map(|i| format!("\"{{\\\"i\\\":{i}}}\"")).collect();
    bags[2] = "\"{\\\"panic_the_host_task\\\":true}\"".to_owned();
    let manifest = format!(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"victim\"\nafter = []\nqueue = 100\n[block.config]\nbusy_ms = 20\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"neighbour\"\nafter = []\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"poisoner\"\nafter = [\"victim\"]\n[block.config]\nto = \"victim\"\nphase = \"init\"\nbags = [{}]\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"neighbour\"]\n[block.config]\nto = \"neighbour\"\ncount = 50\n",
        bags.join(", ")
    );
    let dir = BlockDir::from_manifest(&manifest);
    let report_path = dir.report_path().display().to_string();
    let panic_on = std::ffi::OsString::from("victim");
    let mut host = Bagpipe::start_env(
        BIN,
        ["run".as_ref(), dir.path().as_os_str(), "--report".as_ref(), report_path.as_ref()],
        &[("BAGPIPE_TEST_PANIC_ON_BAG", &panic_on)],
    );
    host.log_record(Want::event("host_panic").block("victim")).await;
    host.log_record(Want::event("left_dead").block("victim")).await;
    host.wait_for(50, |e| e["event"] == "bag" && e["block"] == "neighbour").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    let report = dir.report();
    assert_eq!(report.block("victim")["state"], "failed", "the victim does not look alive:\n{}", out.stderr);
    let (received, processed, dead, lost) = (
        report.count("victim", "received"),
        report.count("victim", "processed"),
        report.count("victim", "dead_letters"),
        report.count("victim", "lost"),
    );
    assert_eq!((received, processed, lost), (20, 2, 1), "two processed, the one in flight lost:\n{}", out.stderr);
    assert_eq!(dead, 17, "every bag queued behind it is a dead letter");
    assert_eq!(report.dead_letters().len(), 17);
    assert_eq!(report.count("neighbour", "processed"), 50, "the neighbour got every bag");
    assert!(
        out.events("bag").iter().filter(|e| e["block"] == "victim").count() == 2,
        "the victim processed the two bags before the poisoned one"
    );
    let finished: Vec<_> = out.log_events("finished").iter().filter_map(|r| block_of(r)).collect();
    assert!(finished.contains(&"neighbour"), "the neighbour was finished normally:\n{}", out.stderr);
}
