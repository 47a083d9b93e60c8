//! The server connector against real NATS servers (each test starts its own `nats-server`, so
//! it can stop it): connect/disconnect hooks through ten server restarts with in-process bags
//! unaffected; publish/subscribe and request/reply; grants; two hosts of one cluster sharing work;
//! a durable block losing nothing when its host is killed, and not getting waiting bags twice;
//! grants changed by a manifest edit while the block runs.

use bagpipe_test_support::{Bagpipe, BlockDir, Nats, SAFETY, Want, Write, block_of, within};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn start(dir: &BlockDir, nats: &Nats) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report])
}

#[tokio::test]
async fn hooks_follow_the_server_through_ten_restarts_and_local_bags_never_notice() {
    let mut nats = Nats::start(false).await;
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"courier\"\nafter = []\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"local-sink\"\nafter = []\n[block.config]\nexpect = 3000\n\n\
         [[block]]\nname = \"bench_source\"\nafter = [\"local-sink\"]\n[block.config]\nto = \"local-sink\"\ncount = 3000\nbatch = 5\ninterval_ms = 5\n",
    );
    let mut host = start(&dir, &nats);
    host.wait_for(1, |e| e["event"] == "connected").await;
    for _ in 0..10 {
        nats.stop().await;
        host.wait_for(1, |e| e["event"] == "disconnected").await;
        nats.restart().await;
        host.wait_for(1, |e| e["event"] == "connected").await;
    }
    let out = host.finish().await;
    out.assert_success();
    let transitions: Vec<_> = out
        .events
        .iter()
        .filter(|e| e["event"] == "connected" || e["event"] == "disconnected")
        .map(|e| e["event"].as_str().unwrap_or("").to_owned())
        .collect();
    let expected: Vec<_> = (0..21).map(|i| if i % 2 == 0 { "connected" } else { "disconnected" }).collect();
    assert_eq!(transitions, expected, "once per transition, in order");
    let items: Vec<u64> = out.bags_of("local-sink").iter().filter_map(|b| b["n"].as_u64()).collect();
    assert_eq!(items, (1..=3000).collect::<Vec<_>>(), "in-process bags were never affected");
    assert_eq!(dir.report().0["server"]["reconnects"], 10);
}

#[tokio::test]
async fn publish_subscribe_and_request_reply_round_trip_within_grants() {
    let nats = Nats::start(false).await;
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"courier\"\nresponsibility = \"listener\"\nafter = []\nsubscribe = [\"cmd.*\"]\n\
         [block.config]\nsubscribe = [\"cmd.*\"]\nreply = true\n\n\
         [[block]]\nname = \"courier\"\nresponsibility = \"talker\"\nafter = [\"listener\"]\npublish = [\"cmd.>\"]\n\
         [block.config]\npublish = \"cmd.go\"\ncount = 3\nrequest = \"cmd.echo\"\n\n\
         [[block]]\nname = \"courier\"\nresponsibility = \"intruder\"\nafter = [\"talker\"]\npublish = [\"other.*\"]\n\
         [block.config]\npublish = \"cmd.go\"\nsubscribe = [\"secret.>\"]\n\n\
         [[block]]\nname = \"courier\"\nresponsibility = \"forger\"\nafter = [\"intruder\"]\npublish = [\"other.*\"]\n\
         [block.config]\npublish = \"_INBOX.forged\"\n",
    );
    let mut host = start(&dir, &nats);
    // The listener takes the three bags before the request that follows them.
    // It and the forger's refusal both come before the host is stopped.
    let forged = |e: &Value| e["event"] == "error" && e["error"].as_str().is_some_and(|m| m.contains("_INBOX.forged"));
    let seen = host.wait_for(2, |e| e["event"] == "reply" || forged(e)).await;
    let reply = &seen.iter().find(|e| e["event"] == "reply").expect("reply")["bag"];
    assert_eq!(reply["echo"]["question"], 42, "{reply}");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let got: Vec<&Value> = out.bags_of("listener").into_iter().filter(|b| b["__subject"] == "cmd.go").collect();
    let items: Vec<u64> = got.iter().filter_map(|b| b["i"].as_u64()).collect();
    assert_eq!(items, [1, 2, 3], "published bags arrive, in order");
    assert!(got.iter().all(|b| b["__from"] == "server" && b["__reply"].is_null()));
    let errors: Vec<(String, String)> = out
        .events("error")
        .iter()
        .map(|e| (e["call"].as_str().unwrap_or("").to_owned(), e["error"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert!(
        errors.iter().any(|(c, e)| c == "publish" && e.contains("not granted") && e.contains("cmd.go")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|(c, e)| c == "subscribe" && e.contains("not granted") && e.contains("secret.>")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|(c, e)| c == "publish" && e.contains("not granted") && e.contains("_INBOX.forged")),
        "a reply subject nobody asked this block to answer is not a free pass: {errors:?}"
    );
    let refusals: Vec<_> = out.log_events("not_granted").into_iter().filter_map(|r| r["target"].as_str()).collect();
    assert!(refusals.contains(&"cmd.go"), "refusals are logged with what was refused: {refusals:?}");
    let report = dir.report();
    assert_eq!(report.count("talker", "published"), 4, "three bags and one request");
}

#[tokio::test]
async fn a_subscribe_grant_taken_away_live_ends_the_subscription_and_given_back_serves_again() {
    let nats = Nats::start(false).await;
    let manifest = |grant: &str, label: &str| {
        format!(
            "[[block]]\nname = \"courier\"\nresponsibility = \"listener\"\n{grant}\n\
             [block.config]\nsubscribe = [\"cmd.*\"]\nreply = true\nlabel = \"{label}\"\n"
        )
    };
    let dir = BlockDir::from_manifest(&manifest("subscribe = [\"cmd.*\"]", "one"));
    let mut host = start(&dir, &nats);
    host.wait_for(1, |e| e["event"] == "subscribed").await;
    let client = async_nats::connect(nats.url()).await.expect("client");
    let ask = |timeout: Duration| {
        let request = async_nats::Request::new().payload("{\"q\":1}".into()).timeout(Some(timeout));
        client.send_request("cmd.a", request)
    };
    let reply: Value = serde_json::from_slice(&ask(SAFETY).await.expect("the block answers").payload).expect("JSON");
    assert_eq!(reply["echo"]["q"], 1, "{reply}");

    // The grant goes, the config stays (no swap): the subscription ends with the grant.
    dir.write_as("bagpipe.toml", manifest("", "one").as_bytes(), Write::Rename);
    host.log_record(Want::event("unsubscribed").block("listener").field("subject", "cmd.*")).await;
    let applied = host.log_event("manifest_applied").await;
    assert!(applied["partly"].is_null(), "applied whole: {applied}");
    // The server hears of it a moment later: ask until nobody is there to answer.
    let mut answered = 0;
    loop {
        // A request caught by the subscription as it ends gets no answer: give up on it soon.
        match ask(Duration::from_secs(1)).await {
            Ok(_) => answered += 1,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => break,
            Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => answered += 1,
            Err(e) => panic!("request: {e}"),
        }
        assert!(answered < 50, "the block still answers on `cmd.a` long after its grant went");
    }

    // Granted again, with a new config: the new instance subscribes in `init` under the new grant.
    dir.write_as("bagpipe.toml", manifest("subscribe = [\"cmd.*\"]", "two").as_bytes(), Write::Rename);
    host.wait_for(1, |e| e["event"] == "subscribed").await;
    let reply: Value = serde_json::from_slice(&ask(SAFETY).await.expect("answered again").payload).expect("JSON");
    assert_eq!(reply["echo"]["q"], 1, "{reply}");
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert!(out.events("error").is_empty(), "no call was refused: {:?}", out.events("error"));
}

#[tokio::test]
async fn two_hosts_in_one_cluster_deliver_to_each_other_and_share_work() {
    let nats = Nats::start(false).await;
    let cluster = "[host]\ncluster = \"test\"\n\n";
    let far = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"recorder\"\nresponsibility = \"far\"\nafter = []\n\n\
         [[block]]\nname = \"counter\"\nresponsibility = \"work\"\nafter = []\nshared = true\n"
    ));
    let near = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"counter\"\nresponsibility = \"work\"\nafter = []\nshared = true\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"to-far\"\nafter = [\"work\"]\ncall_timeout_ms = 30000\n[block.config]\nto = \"far\"\ncount = 50\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"to-work\"\nafter = [\"to-far\"]\ncall_timeout_ms = 30000\n[block.config]\nto = \"work\"\ncount = 200\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"to-nowhere\"\nafter = [\"to-work\"]\n[block.config]\nto = \"nowhere\"\ncount = 1\n"
    ));
    let mut far_host = start(&far, &nats);
    // Both blocks take bags from the cluster (the server has their subscriptions) and run.
    let serving =
        |block: &str| Want::event("serving_cluster").block(block).field("subject", format!("bagpipe.test.to.{block}"));
    far_host.log_records(&[serving("far"), serving("work"), Want::event("running")]).await;
    // The senders send everything from one `run` call (hundreds of round trips to the server):
    // their call timeout is raised so that a slow, loaded machine cannot time them out and make
    // them run, and send, again.
    let mut near_host = start(&near, &nats);
    // Every sender runs at once: the host stops only when all 251 sends have been answered.
    near_host.wait_for(251, |e| e["event"] == "sent").await;
    far_host.wait_for(50, |e| e["event"] == "bag" && e["block"] == "far").await;
    near_host.signal(libc::SIGTERM);
    far_host.signal(libc::SIGTERM);
    let (near_out, far_out) = (near_host.finish().await, far_host.finish().await);
    near_out.assert_success();
    far_out.assert_success();
    // Bags for a block only the other host runs arrive there, in order, with their sender.
    let items: Vec<(Value, Value)> =
        far_out.bags_of("far").iter().map(|b| (b["__from"].clone(), b["i"].clone())).collect();
    assert_eq!(items, (1..=50).map(|i| (Value::from("to-far"), Value::from(i))).collect::<Vec<_>>());
    // A block both hosts run shares the work: both got some, none was lost.
    let count = |out: &bagpipe_test_support::Finished| out.events("count")[0]["count"].as_u64().unwrap_or(0);
    let (near_count, far_count) = (count(&near_out), count(&far_out));
    let undelivered: Vec<&Value> =
        near_out.events("sent").into_iter().filter(|e| e["to"] != "nowhere" && e["delivered"] != true).collect();
    assert!(undelivered.is_empty(), "{undelivered:?}\n{}", near_out.stderr);
    assert_eq!(
        near_count + far_count,
        200,
        "near {near_count} + far {far_count}\n{}\n{}",
        near_out.stderr,
        far_out.stderr
    );
    assert!(near_count > 0 && far_count > 0, "shared: near {near_count}, far {far_count}");
    // A responsibility nobody runs is unknown, across the cluster too.
    let nowhere = near_out.events("sent").into_iter().find(|e| e["to"] == "nowhere").cloned().unwrap_or_default();
    assert_eq!(nowhere["error"], "unknown-target", "{nowhere}");
}

#[tokio::test]
async fn a_durable_block_loses_nothing_when_its_host_is_killed() {
    let nats = Nats::start(true).await;
    let cluster = "[host]\ncluster = \"durable\"\n\n";
    let store = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"recorder\"\nresponsibility = \"store\"\ndurable = true\n"
    ));
    let source = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"bench_source\"\n[block.config]\nto = \"store\"\ncount = 300\nbatch = 2\ninterval_ms = 5\n"
    ));
    let mut store_host = start(&store, &nats);
    store_host.log_record(Want::event("consuming_stream").block("store")).await;
    let source_host = start(&source, &nats);
    let first = store_host.wait_for(60, |e| e["event"] == "bag").await;
    store_host.signal(libc::SIGKILL);
    let first_run = store_host.finish().await;
    // The source keeps sending into the stream while nobody takes from it.
    let mut store_host = start(&store, &nats);
    let mut seen: std::collections::BTreeSet<u64> =
        first.iter().chain(first_run.events.iter()).filter_map(|e| e["bag"]["n"].as_u64()).collect();
    while seen.len() < 300 {
        let event = store_host.next_event().await.expect("the store host ended early");
        if let Some(n) = event["bag"]["n"].as_u64() {
            seen.insert(n);
        }
    }
    assert_eq!(seen, (1..=300).collect(), "every bag arrived at least once");
    store_host.signal(libc::SIGTERM);
    source_host.signal(libc::SIGTERM);
    store_host.finish().await.assert_success();
    source_host.finish().await.assert_success();
}

#[tokio::test]
async fn a_graceful_restart_of_a_durable_block_hands_each_bag_over_once() {
    // The block is stopped with a backlog: what it processed while finishing is acknowledged,
    // so the next host gets every other bag and none of those again.
    let nats = Nats::start(true).await;
    let cluster = "[host]\ncluster = \"handover\"\ndurable_ack_wait_ms = 3000\n\n";
    let store = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"recorder\"\nresponsibility = \"store\"\ndurable = true\nqueue = 8\n[block.config]\nbusy_ms = 10\n"
    ));
    let source = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"bench_source\"\n[block.config]\nto = \"store\"\ncount = 100\nbatch = 100\n"
    ));
    let mut store_host = start(&store, &nats);
    store_host.log_record(Want::event("consuming_stream").block("store")).await;
    let source_host = start(&source, &nats);
    store_host.wait_for(20, |e| e["event"] == "bag").await;
    store_host.signal(libc::SIGTERM);
    let first_run = store_host.finish().await;
    first_run.assert_success();
    // What was still queued goes back to the stream: counted as returned, never as lost.
    assert_eq!(store.report().count("store", "lost"), 0, "{}", first_run.stderr);
    let first: Vec<u64> = first_run.bags_of("store").iter().filter_map(|b| b["n"].as_u64()).collect();
    let mut store_host = start(&store, &nats);
    let mut second = Vec::new();
    while first.len() + second.len() < 100 {
        let event = store_host.next_event().await.expect("the store host ended early");
        if let Some(n) = event["bag"]["n"].as_u64() {
            second.push(n);
        }
    }
    let again: Vec<&u64> = second.iter().filter(|n| first.contains(n)).collect();
    assert!(again.is_empty(), "handed over twice: {again:?} (first run {first:?})");
    let mut all: Vec<u64> = first.iter().chain(&second).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>(), "every bag once");
    store_host.signal(libc::SIGTERM);
    source_host.signal(libc::SIGTERM);
    store_host.finish().await.assert_success();
    source_host.finish().await.assert_success();
}

#[tokio::test]
async fn a_slow_durable_block_is_not_handed_its_waiting_bags_twice() {
    let nats = Nats::start(true).await;
    // Ten bags arrive at once; the last waits in the queue about four times the ack wait.
    let store = BlockDir::from_manifest(
        "[host]\ncluster = \"slow\"\ndurable_ack_wait_ms = 600\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"store\"\ndurable = true\n[block.config]\nbusy_ms = 250\n\n\
         [[block]]\nname = \"bench_source\"\n[block.config]\nto = \"store\"\ncount = 10\nbatch = 10\n",
    );
    let mut host = start(&store, &nats);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 10 {
        let event = host.next_event().await.expect("the host ended early");
        if let Some(n) = event["bag"]["n"].as_u64() {
            seen.insert(n);
        }
    }
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    // Copies the server delivered again would be queued behind the originals: finishing drains
    // them, so they would show here.
    let got: Vec<u64> = out.bags_of("store").iter().filter_map(|b| b["n"].as_u64()).collect();
    assert_eq!(got, (1..=10).collect::<Vec<_>>(), "each bag once, in order");
}

#[tokio::test]
async fn the_syslog_example_publishes_what_logger_sends_to_nats() {
    let nats = Nats::start(true).await;
    let example =
        std::fs::read_to_string(bagpipe_test_support::workspace_root().join("examples/syslog-nats/bagpipe.toml"))
            .expect("example manifest")
            .replace("127.0.0.1:5514", "127.0.0.1:0");
    let manifest = format!(
        "{example}\n[[block]]\nname = \"courier\"\nresponsibility = \"watcher\"\nafter = []\nsubscribe = [\"logs.>\"]\n\
         [block.config]\nsubscribe = [\"logs.>\"]\n"
    );
    let dir = BlockDir::from_manifest(&manifest);
    let mut host = start(&dir, &nats);
    let udp = |r: &Value| r["url"].as_str().is_some_and(|u| u.starts_with("udp://127.0.0.1:"));
    let listening = host.log_event_where("listening", |r| block_of(r) == Some("syslog") && udp(r)).await;
    let port = listening["url"].as_str().and_then(|u| u.rsplit(':').next()).expect("port").to_owned();
    host.log_event("running").await;
    let logged = tokio::process::Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &port, "--udp", "--rfc5424", "--tag", "checkout", "payment accepted"])
        .status()
        .await
        .expect("logger");
    assert!(logged.success());
    let seen = host.wait_for(1, |e| e["event"] == "bag" && e["block"] == "watcher").await;
    let bag = &seen.last().expect("bag")["bag"];
    assert_eq!(bag["__subject"], "logs.syslog");
    assert_eq!(bag["msg"], "payment accepted");
    assert_eq!(bag["app"], "checkout");
    assert_eq!(bag["protocol"], "rfc5424");
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
    assert_eq!(dir.report().count("syslog", "published"), 1);
    // The host made the example's stream, and the stream acknowledged the message.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("LOGS").await.expect("the example's stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
}

#[tokio::test]
async fn a_reply_subject_that_is_not_an_inbox_cannot_steer_a_block() {
    // A requester names any subject as its reply: a block answering would publish there on its
    // behalf (a JetStream API subject, another block's cluster subject). Only inboxes are answered.
    let nats = Nats::start(false).await;
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"courier\"\nresponsibility = \"listener\"\nsubscribe = [\"cmd.*\"]\n\
         [block.config]\nsubscribe = [\"cmd.*\"]\nreply = true\n",
    );
    let mut host = start(&dir, &nats);
    host.log_event("running").await;
    let client = async_nats::connect(nats.url()).await.expect("client");
    client.publish_with_reply("cmd.steer", "$JS.API.STREAM.DELETE.victim", "{\"q\":1}".into()).await.expect("publish");
    let answer = within(client.request("cmd.ask", "{\"q\":2}".into())).await.expect("an inbox is answered");
    let answer: Value = serde_json::from_slice(&answer.payload).expect("JSON answer");
    assert_eq!(answer["echo"]["q"], 2);
    let refused = host
        .wait_for(1, |e| e["event"] == "error" && e["call"] == "reply")
        .await
        .into_iter()
        .find(|e| e["event"] == "error")
        .expect("the refusal");
    let why = refused["error"].as_str().unwrap_or_default();
    assert!(why.contains("not granted") && why.contains("$JS.API.STREAM.DELETE.victim"), "{refused}");
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
}

#[tokio::test]
async fn a_durable_bag_the_block_refuses_is_delivered_again_then_a_dead_letter() {
    // Never acknowledged and forgotten on a refusal: three deliveries in all, then a dead letter
    // (which acknowledges it, so its stream does not hand it over again).
    let nats = Nats::start(true).await;
    let cluster = "[host]\ncluster = \"refusals\"\n\n";
    let store = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"modelled\"\nresponsibility = \"store\"\ndurable = true\nmax_attempts = 3\n"
    ));
    let source = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"sender\"\n[block.config]\nto = \"store\"\n\
         bags = ['{{\"s\":\"t\",\"k\":1,\"kind\":\"err\"}}', '{{\"s\":\"t\",\"k\":2,\"kind\":\"ok\"}}']\n"
    ));
    let mut store_host = start(&store, &nats);
    store_host.log_record(Want::event("consuming_stream").block("store")).await;
    let source_host = start(&source, &nats);
    store_host.log_record(Want::event("dead_letter").block("store")).await;
    store_host.wait_for(4, |e| e["event"] == "got").await;
    store_host.signal(libc::SIGTERM);
    source_host.signal(libc::SIGTERM);
    let out = store_host.finish().await;
    out.assert_success();
    source_host.finish().await.assert_success();
    let deliveries: Vec<u64> = out.events("got").iter().filter_map(|e| e["bag"]["k"].as_u64()).collect();
    assert_eq!(deliveries.iter().filter(|k| **k == 1).count(), 3, "the refused bag, three times: {deliveries:?}");
    assert_eq!(deliveries.iter().filter(|k| **k == 2).count(), 1, "the other once: {deliveries:?}");
    let report = store.report();
    assert_eq!(report.count("store", "dead_letters"), 1);
    assert_eq!(report.count("store", "failed"), 3);
    assert_eq!(report.count("store", "lost"), 0);
}
