//! The disk-spilled outbox (`outbox = "disk"`): what a block published waits in files under the
//! host's state directory (`[host] state_dir`, a temporary folder here), survives the host being
//! killed, and is sent first, in order, when the host starts again. Each test starts its own
//! `nats-server`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bagpipe_test_support::{Bagpipe, BlockDir, Nats, Want, within};
use futures_util::StreamExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn start(dir: &BlockDir, nats: &Nats) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report])
}

/// A relay (`courier` as `relay`) with its outbox on disk under `state`, publishing every bag it
/// gets to `out.bags`; fed `count` bags (`n` = 1..=count, about 400 a second) when `count > 0`.
fn relay(state: &Path, count: u64, extra: &str) -> BlockDir {
    let source = if count > 0 {
        format!(
            "\n[[block]]\nname = \"bench_source\"\nafter = [\"relay\"]\n[block.config]\nto = \"relay\"\ncount = {count}\nbatch = 2\ninterval_ms = 5\n"
        )
    } else {
        String::new()
    };
    BlockDir::from_manifest(&format!(
        "[host]\nstate_dir = \"{}\"\n\n[[block]]\nname = \"courier\"\nresponsibility = \"relay\"\nafter = []\n\
         publish = [\"out.>\"]\nqueue = 4096\noutbox = \"disk\"\n{extra}[block.config]\nforward = \"out.bags\"\n{source}",
        state.display()
    ))
}

/// The relay's spill directory under `state`.
fn spill_dir(state: &Path) -> PathBuf {
    state.join("outbox").join("relay")
}

/// Its segment files, in order.
fn segments(state: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(spill_dir(state))
        .expect("the spill directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    found.sort();
    found
}

fn number(payload: &[u8], key: &str) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(payload).ok()?[key].as_u64()
}

/// Reads `subscriber` until `count` different numbers (under `key`) arrived; returns each the
/// first time it came, in the order they came.
async fn read_distinct(subscriber: &mut async_nats::Subscriber, key: &str, count: u64) -> Vec<u64> {
    let mut firsts = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    while (seen.len() as u64) < count {
        let message = within(subscriber.next()).await.expect("the subscription ended");
        if let Some(n) = number(&message.payload, key)
            && seen.insert(n)
        {
            firsts.push(n);
        }
    }
    firsts
}

#[tokio::test]
async fn what_a_host_killed_during_an_outage_spilled_reaches_the_stream_once_after_a_restart() {
    const COUNT: u64 = 1000;
    let state = tempfile::tempdir().expect("state dir");
    let mut nats = Nats::start(true).await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    async_nats::jetstream::new(client)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "OUT".into(),
            subjects: vec!["out.>".into()],
            ..Default::default()
        })
        .await
        .expect("stream");
    let dir = relay(state.path(), COUNT, "publish_to_stream = true\n");
    let mut host = start(&dir, &nats);
    host.wait_for(1, |e| e["event"] == "connected").await;
    // The server crashes while bags flow; every bag is published (into the spill) meanwhile.
    host.wait_for(200, |e| e["event"] == "bag").await;
    nats.stop().await;
    host.wait_for(1, |e| e["event"] == "disconnected").await;
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["last"] == true).await;
    // Then the host is killed: nothing is closed, nothing synced.
    host.signal(libc::SIGKILL);
    let killed = host.finish().await;
    assert!(!killed.status.success());
    assert!(!segments(state.path()).is_empty(), "the spill holds what was not confirmed");

    nats.restart().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut subscriber = client.subscribe("out.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    // The same state directory, the relay alone (nothing new is published).
    let again = relay(state.path(), 0, "publish_to_stream = true\n");
    let mut host = start(&again, &nats);
    let recovered = host.log_event("outbox_recovered").await;
    let recovered = recovered["messages"].as_u64().expect("a count");
    assert!(recovered > 0 && recovered <= COUNT, "{recovered}");
    // They come first, in order: the ones published after the last confirmed one, up to the
    // last one published (the last bag was printed; its publish may not have come before the
    // kill).
    let firsts = read_distinct(&mut subscriber, "n", recovered).await;
    let last = *firsts.last().expect("recovered messages");
    assert!(last == COUNT || last == COUNT - 1, "up to the last bag: {last}");
    assert_eq!(firsts, (last - recovered + 1..=last).collect::<Vec<_>>());
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = again.report();
    assert_eq!(report.count("relay", "outbox_recovered"), recovered, "{}", out.stderr);
    assert_eq!(report.count("relay", "published"), recovered, "{}", out.stderr);
    assert_eq!(report.count("relay", "publish_dropped"), 0, "{}", out.stderr);
    assert!(segments(state.path()).is_empty(), "everything confirmed: the spill is empty");

    // The stream holds every message once: ids stored with the messages outlived the host.
    let mut seen = BTreeMap::new();
    for payload in nats.stored("OUT").await {
        *seen.entry(number(&payload, "n").expect("n")).or_insert(0u64) += 1;
    }
    let missing: Vec<u64> = (1..=last).filter(|n| !seen.contains_key(n)).collect();
    assert!(missing.is_empty(), "every message is in the stream; {} missing: {missing:?}", missing.len());
    assert_eq!(seen.len() as u64, last, "nothing else is in the stream");
    let duplicates: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
    assert!(duplicates.is_empty(), "no duplicates in the stream: {duplicates:?}");
}

#[tokio::test]
async fn a_torn_record_is_reported_and_the_rest_delivered_in_order() {
    const COUNT: u64 = 300;
    let state = tempfile::tempdir().expect("state dir");
    // No server at all during the first run: everything stays in the spill.
    let mut nats = Nats::start(false).await;
    nats.stop().await;
    let dir = relay(state.path(), COUNT, "");
    let mut host = start(&dir, &nats);
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["last"] == true).await;
    // Stopped while the server is away: what was taken stays on disk.
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(out.log_events("outbox_kept").first().and_then(|r| r["messages"].as_u64()), Some(COUNT));
    // Then the machine stops in the middle of a write: the last record is cut short.
    let last = segments(state.path()).pop().expect("a segment");
    let len = last.metadata().expect("segment").len();
    std::fs::OpenOptions::new().write(true).open(&last).expect("segment").set_len(len - 3).expect("cut");

    nats.restart().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut subscriber = client.subscribe("out.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let again = relay(state.path(), 0, "");
    let mut host = start(&again, &nats);
    let records = host.log_records(&[Want::event("outbox_torn"), Want::event("outbox_recovered")]).await;
    let torn = records[0].to_string();
    assert!(torn.contains(&last.display().to_string()), "the warning names the file: {torn}");
    assert_eq!(records[1]["messages"].as_u64(), Some(COUNT - 1));
    let firsts = read_distinct(&mut subscriber, "n", COUNT - 1).await;
    assert_eq!(firsts, (1..COUNT).collect::<Vec<_>>(), "all but the torn one, in order");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = again.report();
    assert_eq!(report.count("relay", "outbox_recovered"), COUNT - 1);
    assert_eq!(report.count("relay", "published"), COUNT - 1, "{}", out.stderr);
}

#[tokio::test]
async fn the_disk_bound_gives_busy_and_a_graceful_stop_keeps_what_was_taken() {
    const TRIES: u64 = 200;
    const BOUND: u64 = 4096;
    let state = tempfile::tempdir().expect("state dir");
    let mut nats = Nats::start(false).await;
    nats.stop().await;
    // The courier publishes TRIES messages in `run`, with the server away and a small outbox.
    let manifest = |publish: &str| {
        format!(
            "[host]\nstate_dir = \"{}\"\n\n[[block]]\nname = \"courier\"\nresponsibility = \"relay\"\n\
             outbox = \"disk\"\noutbox_bytes = {BOUND}\npublish = [\"out.>\"]\n[block.config]\n{publish}",
            state.path().display()
        )
    };
    let dir = BlockDir::from_manifest(&manifest(&format!("publish = \"out.tries\"\ncount = {TRIES}\n")));
    let mut host = start(&dir, &nats);
    host.wait_for(1, |e| e["event"] == "error" && e["call"] == "publish").await;
    let held: u64 = segments(state.path()).iter().map(|p| p.metadata().map_or(0, |m| m.len())).sum();
    assert!(held <= BOUND, "the files hold {held} bytes, more than outbox_bytes");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let errors = out.events("error");
    assert!(errors.iter().all(|e| e["error"].as_str().is_some_and(|t| t.contains("outbox_bytes"))), "{errors:?}");
    let refused = errors.len() as u64;
    let taken = TRIES - refused;
    assert!(refused > 0 && taken > 0, "{taken} taken, {refused} refused");
    let report = dir.report();
    assert_eq!(report.count("relay", "publish_busy"), refused);
    // The server never came: what was taken stays on disk, not dropped.
    assert_eq!(report.count("relay", "publish_dropped"), 0, "{}", out.stderr);
    let kept = out.log_events("outbox_kept");
    assert_eq!(kept.len(), 1, "{}", out.stderr);
    assert_eq!(kept[0]["messages"].as_u64(), Some(taken));

    // Started again with the server there: the taken ones are sent, in order.
    nats.restart().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut subscriber = client.subscribe("out.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let again = BlockDir::from_manifest(&manifest(""));
    let host = start(&again, &nats);
    assert_eq!(read_distinct(&mut subscriber, "i", taken).await, (1..=taken).collect::<Vec<_>>());
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(again.report().count("relay", "outbox_recovered"), taken, "{}", out.stderr);
}

#[tokio::test]
async fn two_hosts_cannot_share_a_spill_directory() {
    let state = tempfile::tempdir().expect("state dir");
    let nats = Nats::start(false).await;
    let dir = relay(state.path(), 0, "");
    let mut first = start(&dir, &nats);
    first.wait_for(1, |e| e["event"] == "connected").await;
    let other = relay(state.path(), 0, "");
    let second = start(&other, &nats).finish().await;
    assert!(!second.status.success(), "the second host must not start:\n{}", second.stderr);
    let dir_text = spill_dir(state.path()).display().to_string();
    assert!(
        second.stderr.contains(&dir_text) && second.stderr.contains("in use"),
        "the error names the directory:\n{}",
        second.stderr
    );
    first.signal(libc::SIGTERM);
    first.finish().await.assert_success();
}
