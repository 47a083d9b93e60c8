//! Hostile guests: a block cannot make the host hold more than its budgets, reach past its grants,
//! or act on other blocks without a grant. Each test runs a block that tries, through the real
//! binary: the host stays up, the block gets a typed error or a fault of its own, and the refusal
//! is counted or logged.

use bagpipe_test_support::{Bagpipe, BlockDir};
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
