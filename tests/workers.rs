//! Worker pools: one responsibility served by several instances of its block (`workers` in the
//! manifest), each a full instance with its own Store. The `worker` fixture prints which worker
//! handled each bag; the host logs `scaled_up`, `retired` and `group_swapped`.

use std::collections::{BTreeMap, BTreeSet};

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Write, run_to_end};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn run(dir: &BlockDir, extra: &[&str]) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    let mut args = vec!["--report", report.as_str()];
    args.extend_from_slice(extra);
    Bagpipe::run_with(BIN, dir, &args)
}

/// The `handled` events of block `block`, in the order they were printed.
fn handled<'a>(out: &'a Finished, block: &str) -> Vec<&'a Value> {
    out.events("handled").into_iter().filter(|e| e["block"] == block).collect()
}

/// `{"key": .., "n": ..}` bags as the sender's `bags` list: `n` from 1 to `count`, `keys` keys
/// in turn, each with a sleep of its own (`ms`, 0 to 3) so that workers go at different speeds.
fn keyed_bags(count: u64, keys: u64) -> String {
    let bags: Vec<String> =
        (1..=count).map(|n| format!("'{{\"key\":\"k{}\",\"n\":{n},\"ms\":{}}}'", n % keys, (n * 7) % 4)).collect();
    format!("[{}]", bags.join(", "))
}

/// Each key's `n`s, in the order the bags were handled.
fn per_key(events: &[&Value]) -> BTreeMap<String, Vec<u64>> {
    let mut keys: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        let key = e["key"].as_str().unwrap_or("none").to_owned();
        keys.entry(key).or_default().push(e["n"].as_u64().expect("n"));
    }
    keys
}

/// A pool of one to three workers, each bag taking 40 ms: while bags wait the host adds workers
/// up to three; once there is nothing to do they are retired down to one. Every bag is handled
/// once, by more than one worker. `bagpipe status --workers` shows the group and its workers.
#[tokio::test]
async fn a_pool_grows_while_bags_wait_and_shrinks_back_when_idle() {
    let manifest = "[[block]]\nname = \"worker\"\nresponsibility = \"pool\"\nafter = []\n\
         workers = { min = 1, max = 3, idle_ms = 300, scale_ms = 10 }\n[block.config]\nsleep_ms = 40\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"pool\"]\n[block.config]\nto = \"pool\"\nbags = ";
    let dir = BlockDir::from_manifest(&format!("{manifest}{}\n", keyed_bags(90, 90)));
    let mut host = run(&dir, &["--admin", "127.0.0.1:0"]);
    let addr = host.admin_addr().await;
    host.log_event_where("scaled_up", |r| r["workers"] == 3).await;

    let status = run_to_end(BIN, ["status", "--admin", &addr, "--workers"]).await;
    status.assert_success();
    let table = status.stdout.join("\n");
    let pool_row = table.lines().find(|l| l.starts_with("pool")).unwrap_or_else(|| panic!("pool in\n{table}"));
    assert!(pool_row.contains("3/3 high=3 up=2"), "workers column of\n{table}");
    for id in 0..3 {
        assert!(table.lines().any(|l| l.starts_with(&format!("  #{id}"))), "worker {id} in\n{table}");
    }
    let metrics = bagpipe::admin_get(&addr, "/metrics").await.expect("metrics");
    let gauge = metrics.lines().find(|l| l.starts_with("bagpipe_block_workers{block=\"pool\""));
    assert!(gauge.is_some_and(|l| l.ends_with(" 3")), "{metrics}");

    host.wait_for(90, |e| e["event"] == "handled").await;
    // Idle for 300 ms, the two added workers go, the newest first.
    host.log_event_where("retired", |r| r["workers"] == 1).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();

    let seen = handled(&out, "pool");
    let ns: BTreeSet<u64> = seen.iter().map(|e| e["n"].as_u64().expect("n")).collect();
    assert_eq!((seen.len(), ns), (90, (1..=90).collect()), "every bag once");
    let workers: BTreeSet<u64> = seen.iter().map(|e| e["worker"].as_u64().expect("worker")).collect();
    assert!(workers.len() >= 2, "more than one worker handled bags: {workers:?}");
    let report = dir.report();
    let pool = &report.block("pool")["workers"];
    assert_eq!((pool["high_water"].as_u64(), pool["scale_ups"].as_u64()), (Some(3), Some(2)), "{pool}");
    assert_eq!(pool["retirements"].as_u64(), Some(2), "{pool}");
    assert_eq!(report.count("pool", "processed"), 90);
    assert_eq!(report.count("pool", "received"), 90, "a bag counts once, not again on its way to a worker");
    assert_eq!(report.count("pool", "lost"), 0);
}

/// Four workers and `partition = "key"`: bags of eight keys, each taking its own time, spread
/// over the workers, and each key's bags are handled in the order they were sent.
#[tokio::test]
async fn order_per_key_holds_across_four_workers() {
    let manifest = format!(
        "[[block]]\nname = \"worker\"\nresponsibility = \"pool\"\nafter = []\nworkers = {{ min = 4, max = 4 }}\npartition = \"key\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"pool\"]\n[block.config]\nto = \"pool\"\nbags = {}\n",
        keyed_bags(400, 8)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let mut host = run(&dir, &[]);
    host.wait_for(400, |e| e["event"] == "handled").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();

    let seen = handled(&out, "pool");
    assert_eq!(seen.len(), 400, "every bag once");
    for (key, ns) in per_key(&seen) {
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, sorted, "key {key}'s bags in the order sent");
        assert_eq!(ns.len(), 50, "key {key}");
    }
    let workers: BTreeSet<u64> = seen.iter().map(|e| e["worker"].as_u64().expect("worker")).collect();
    assert_eq!(workers.len(), 4, "the keys spread over the four workers: {workers:?}");
    assert_eq!(dir.report().count("pool", "processed"), 400);
}

/// Three workers, one of which traps on every bag it is given: that worker restarts again and
/// again (each bag it got delivered twice, then a dead letter) while the other two handle
/// theirs. Every bag is handled once or is a dead letter, none both, none lost; the sink, which
/// takes both, ends the run once it has all 150.
#[tokio::test]
async fn a_crash_looping_worker_ends_only_itself() {
    let manifest = "[host]\ndead_letters = \"sink\"\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n[block.config]\nexpect = 150\n\n\
         [[block]]\nname = \"worker\"\nresponsibility = \"pool\"\nafter = [\"sink\"]\nworkers = { min = 3, max = 3 }\n\
         max_restarts = 100000\nbackoff_ms = 0\nmax_attempts = 2\n[block.config]\ncrash_worker = 1\nsleep_ms = 2\nto = \"sink\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"pool\"]\n[block.config]\nto = \"pool\"\ncount = 150\n";
    let dir = BlockDir::from_manifest(manifest);
    let out = run(&dir, &[]).finish().await;
    out.assert_success();

    let seen = handled(&out, "pool");
    let sunk = out.bags_of("sink");
    let (letters, forwarded): (Vec<&Value>, Vec<&Value>) = sunk.iter().partition(|b| b["error"].is_string());
    let handled_is: BTreeSet<u64> = forwarded.iter().map(|b| b["i"].as_u64().expect("i")).collect();
    let dead: BTreeSet<u64> = letters.iter().map(|l| l["bag"]["i"].as_u64().expect("i")).collect();
    assert_eq!((handled_is.len(), forwarded.len()), (seen.len(), seen.len()), "each handled bag once");
    // Three workers sent at once as `pool`: each of their bags has a sequence number of its own.
    let seqs: BTreeSet<u64> = forwarded.iter().map(|b| b["__seq"].as_u64().expect("__seq")).collect();
    assert_eq!(seqs.len(), forwarded.len(), "no __seq given twice");
    assert_eq!(dead.len(), letters.len(), "each dead letter once");
    assert!(letters.iter().all(|l| l["attempts"] == 2), "{letters:?}");
    assert!(!dead.is_empty(), "worker 1 was given bags");
    assert!(handled_is.is_disjoint(&dead));
    assert_eq!(handled_is.union(&dead).count(), 150, "every bag handled or dead");
    let report = dir.report();
    assert_eq!(report.count("pool", "lost"), 0);
    let workers = report.block("pool")["workers"]["workers"].as_array().expect("workers").clone();
    let faults = |id: u64| workers.iter().find(|w| w["id"] == id).map(|w| w["faults"].as_u64().unwrap_or(0));
    assert_eq!((faults(0), faults(2)), (Some(0), Some(0)), "{workers:?}");
    assert!(faults(1) >= Some(2), "{workers:?}");
    assert!(report.failed().is_empty(), "the group never failed: {:?}", report.failed());
}

/// A hot swap of a group of three (a manifest edit of its config, so `version` says which
/// version handled a bag) while 600 keyed bags go through it: every bag is handled once; each
/// worker takes its own snapshot over (its `count`); no key is handled by the old version after
/// the new one handled it.
#[tokio::test]
async fn a_group_swaps_worker_by_worker_losing_and_repeating_nothing() {
    let manifest = |version: &str| {
        format!(
            "[[block]]\nname = \"worker\"\nresponsibility = \"pool\"\nafter = []\nworkers = {{ min = 3, max = 3 }}\npartition = \"key\"\n\
             [block.config]\nversion = \"{version}\"\nsleep_ms = 10\n\n\
             [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"pool\"]\n[block.config]\nto = \"pool\"\nbags = {}\n",
            keyed_bags(600, 12)
        )
    };
    let dir = BlockDir::from_manifest(&manifest("v1"));
    let mut host = run(&dir, &[]);
    host.wait_for(30, |e| e["event"] == "handled").await;
    dir.write_as("bagpipe.toml", manifest("v2").as_bytes(), Write::Rename);
    host.log_event("group_swapped").await;
    host.wait_for(1, |e| e["event"] == "handled" && e["version"] == "v2").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();

    let seen = handled(&out, "pool");
    let ns: BTreeSet<u64> = seen.iter().map(|e| e["n"].as_u64().expect("n")).collect();
    assert_eq!((seen.len(), ns.len()), (600, 600), "every bag once");
    let v2 = seen.iter().filter(|e| e["version"] == "v2").count();
    assert!(v2 > 0 && v2 < 600, "the swap came while bags went through ({v2} on v2)");
    // Per key: the old version's bags, then the new one's; in the order sent.
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &seen {
        versions.entry(e["key"].as_str().expect("key")).or_default().push(e["version"].as_str().expect("version"));
    }
    for (key, vs) in &versions {
        let first_v2 = vs.iter().position(|v| *v == "v2").unwrap_or(vs.len());
        assert!(vs[first_v2..].iter().all(|v| *v == "v2"), "key {key}: {vs:?}");
    }
    for (key, ns) in per_key(&seen) {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "key {key} in order: {ns:?}");
    }
    // Each worker restored its own count: what it handled on v1.
    let restored = out.events("restored");
    assert_eq!(restored.len(), 3, "{restored:?}");
    for r in restored {
        let w = &r["worker"];
        let v1 = seen.iter().filter(|e| e["worker"] == *w && e["version"] == "v1").count() as u64;
        assert_eq!(r["count"].as_u64(), Some(v1), "worker {w}");
        assert_eq!(r["version"], "v2");
    }
    let report = dir.report();
    assert_eq!(report.count("pool", "swaps"), 3, "one swap a worker");
    assert_eq!(report.count("pool", "lost"), 0);
}

/// A JSON-lines block with two workers: six clients each send 20 lines cut into 7-byte pieces.
/// Each connection stays with one worker (its unfinished line is that instance's), so every
/// line arrives whole and in order, and the connections spread over both workers.
#[tokio::test]
async fn connections_spread_over_workers_each_pinned_to_one() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n[block.config]\nexpect = 120\n\n\
         [[block]]\nname = \"jsonl\"\nafter = [\"sink\"]\nlisten = [\"tcp://127.0.0.1:0\"]\nworkers = { min = 2, max = 2 }\n",
    );
    let mut host = run(&dir, &[]);
    let listening = host.log_event("listening").await;
    let addr = listening["url"].as_str().and_then(|u| u.strip_prefix("tcp://")).expect("tcp url").to_owned();
    host.log_event("running").await;
    let mut clients = Vec::new();
    for c in 0..6 {
        clients.push(TcpStream::connect(&addr).await.unwrap_or_else(|e| panic!("connect {c}: {e}")));
    }
    for l in 0..20 {
        for (c, client) in clients.iter_mut().enumerate() {
            let line = format!("{{\"c\":{c},\"l\":{l},\"pad\":\"{}\"}}\n", "x".repeat(l * 3));
            for piece in line.as_bytes().chunks(7) {
                client.write_all(piece).await.expect("write");
                client.flush().await.expect("flush");
            }
        }
    }
    let out = host.finish().await;
    out.assert_success();
    drop(clients);

    let sunk = out.bags_of("sink");
    assert_eq!(sunk.len(), 120, "every line once, whole");
    for c in 0..6 {
        let ls: Vec<u64> = sunk.iter().filter(|b| b["c"] == c).map(|b| b["l"].as_u64().expect("l")).collect();
        assert_eq!(ls, (0..20).collect::<Vec<u64>>(), "client {c}'s lines in order");
    }
    let report = dir.report();
    let workers = report.block("jsonl")["workers"]["workers"].as_array().expect("workers").clone();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(workers.iter().all(|w| w["handed"].as_u64() >= Some(2)), "both workers served connections: {workers:?}");
}

/// `restart = "none"` acts on the group as a whole: the first fault of any worker ends the
/// group. The other worker finishes what it holds; every other bag, the faulting one included,
/// becomes a dead letter; none is lost, and the block is failed.
#[tokio::test]
async fn a_worker_that_ends_failed_ends_its_group_accounting_for_every_bag() {
    let manifest = format!(
        "[host]\ndead_letters = \"sink\"\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n[block.config]\nexpect = 40\n\n\
         [[block]]\nname = \"worker\"\nresponsibility = \"pool\"\nafter = [\"sink\"]\nworkers = {{ min = 2, max = 2 }}\nrestart = \"none\"\n\
         [block.config]\ncrash_worker = 1\nto = \"sink\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"pool\"]\n[block.config]\nto = \"pool\"\nphase = \"init\"\nbags = {}\n",
        keyed_bags(40, 40)
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out = run(&dir, &[]).finish().await;

    let sunk = out.bags_of("sink");
    let (letters, forwarded): (Vec<&Value>, Vec<&Value>) = sunk.iter().partition(|b| b["error"].is_string());
    let mut all: Vec<u64> = forwarded.iter().map(|b| b["n"].as_u64().expect("n")).collect();
    all.extend(letters.iter().map(|l| l["bag"]["n"].as_u64().expect("n")));
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<u64>>(), "each bag handled or dead, once");
    assert!(!letters.is_empty() && forwarded.iter().all(|b| b["worker"] == 0), "{sunk:?}");
    let report = dir.report();
    assert_eq!(report.block("pool")["state"], "failed");
    assert_eq!(report.count("pool", "restarts"), 0);
    assert_eq!(report.count("pool", "lost"), 0);
    assert!(report.failed().iter().any(|(block, _)| block == "pool"), "{:?}", report.failed());
}

/// Four workers forwarding as fast as they can, all as `pool`: every bag they send gets a
/// sequence number of its own, although they send at once.
#[tokio::test]
async fn workers_sending_at_once_never_share_a_sequence_number() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n[block.config]\nexpect = 400\n\n\
         [[block]]\nname = \"worker\"\nresponsibility = \"pool\"\nafter = [\"sink\"]\nworkers = { min = 4, max = 4 }\n\
         [block.config]\nquiet = true\nto = \"sink\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = [\"pool\"]\n[block.config]\nto = \"pool\"\nphase = \"init\"\ncount = 400\n",
    );
    let out = run(&dir, &[]).finish().await;
    out.assert_success();
    let sunk = out.bags_of("sink");
    let seqs: BTreeSet<u64> = sunk.iter().map(|b| b["__seq"].as_u64().expect("__seq")).collect();
    assert_eq!((sunk.len(), seqs.len()), (400, 400), "a sequence number for each bag");
    let workers: BTreeSet<u64> = sunk.iter().map(|b| b["worker"].as_u64().expect("worker")).collect();
    assert!(workers.len() > 1, "{workers:?}");
}

/// `restart = "all"` acts on the group as a whole: a fault in one worker restarts every block,
/// the whole group (each worker finished and initialised again) included; the faulting bag is a
/// dead letter and every other bag is handled once. (The bags come from a client over TCP, so
/// that restarting their sender does not send them again.)
#[tokio::test]
async fn restart_all_restarts_the_whole_group() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"worker\"\nresponsibility = \"pool\"\nafter = []\nworkers = { min = 2, max = 2 }\nrestart = \"all\"\nmax_attempts = 1\n\n\
         [[block]]\nname = \"jsonl\"\nafter = [\"pool\"]\nlisten = [\"tcp://127.0.0.1:0\"]\n[block.config]\nto = \"pool\"\n",
    );
    let mut host = run(&dir, &[]);
    let listening = host.log_event("listening").await;
    let addr = listening["url"].as_str().and_then(|u| u.strip_prefix("tcp://")).expect("tcp url").to_owned();
    host.log_event("running").await;
    let mut client = TcpStream::connect(&addr).await.expect("connect");
    for n in 1..=20 {
        let line = if n == 5 { format!("{{\"n\":{n},\"crash\":true}}\n") } else { format!("{{\"n\":{n}}}\n") };
        client.write_all(line.as_bytes()).await.expect("write");
    }
    host.log_event("restart_all").await;
    host.wait_for(19, |e| e["event"] == "handled").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    drop(client);

    let seen = handled(&out, "pool");
    let mut ns: Vec<u64> = seen.iter().map(|e| e["n"].as_u64().expect("n")).collect();
    ns.sort_unstable();
    assert_eq!(ns, (1..=20).filter(|n| *n != 5).collect::<Vec<u64>>(), "each bag but the faulting one, once");
    let inits = out.events("worker_init").into_iter().filter(|e| e["block"] == "pool").count();
    assert_eq!(inits, 4, "two workers started, then both again");
    let report = dir.report();
    let letters = report.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["bag"]["n"], 5);
}

/// Three workers of a block that connects out (`echo` connects from `run` and says hello): what
/// comes back on each connection goes to the worker that opened it, not to whichever is free.
#[tokio::test]
async fn a_connection_a_worker_opened_is_that_workers() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = server.local_addr().expect("addr").to_string();
    let dir = BlockDir::from_manifest(&format!(
        "[[block]]\nname = \"echo\"\nafter = []\nconnect = [\"{addr}\"]\nworkers = {{ min = 3, max = 3 }}\n[block.config]\nconnect = \"{addr}\"\n"
    ));
    let mut host = run(&dir, &[]);
    let mut peers = Vec::new();
    for _ in 0..3 {
        let (peer, _) = server.accept().await.expect("accept");
        peers.push(peer);
    }
    let connects = host.wait_for(3, |e| e["event"] == "connect").await;
    // Each peer answers five times; echo echoes each answer back, which it then ignores.
    for (i, peer) in peers.iter_mut().enumerate() {
        for k in 0..5 {
            peer.write_all(format!("answer {i}.{k}\n").as_bytes()).await.expect("write");
            peer.flush().await.expect("flush");
        }
    }
    let mut texts = 0;
    while texts < 15 {
        let seen = host.wait_for(1, |e| e["event"] == "data").await;
        texts += seen
            .iter()
            .filter(|e| e["event"] == "data")
            .map(|e| e["text"].as_str().unwrap_or("").matches("answer").count())
            .sum::<usize>();
    }
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    drop(peers);

    let opener: BTreeMap<u64, u64> = connects
        .iter()
        .filter(|e| e["event"] == "connect")
        .map(|e| (e["conn"].as_u64().expect("conn"), e["worker"].as_u64().expect("worker")))
        .collect();
    assert_eq!(opener.values().collect::<BTreeSet<_>>().len(), 3, "each worker opened one: {opener:?}");
    for data in out.events("data") {
        let conn = data["conn"].as_u64().expect("conn");
        assert_eq!(data["worker"].as_u64(), opener.get(&conn).copied(), "connection {conn}: {data}");
    }
}
