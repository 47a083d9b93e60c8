//! Topics between blocks through the real binary: fan-out to every subscriber whose pattern
//! covers the topic, in emit order, with deny-by-default grants for emitting and for
//! subscribing at run time; and slow subscribers, lossy ones dropping (counted) and blocking
//! ones making the emitter `busy`, all or none.

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Nats, Want};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

async fn run_until(dir: &BlockDir, done: impl Fn(&[Value]) -> bool) -> Finished {
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, dir, &["--report", &report]);
    let mut seen = Vec::new();
    while !done(&seen) {
        seen.push(host.next_event().await.expect("bagpipe ended before the awaited events"));
    }
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    out
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

/// `(topic, i)` of each bag `block` got from topics, in order.
fn got(out: &Finished, block: &str) -> Vec<(String, u64)> {
    out.bags_of(block)
        .into_iter()
        .map(|b| (b["__topic"].as_str().unwrap_or_default().to_owned(), b["i"].as_u64().unwrap_or(u64::MAX)))
        .collect()
}

#[tokio::test]
async fn a_topic_reaches_every_subscriber_in_emit_order_within_the_grants() {
    let manifest = r#"
[[block]]
name = "caller"
responsibility = "late"
subscribe_topics = ["orders.>"]
[block.config]
phase = "init"
steps = [{ subscribe_topic = "orders.>" }, { subscribe_topic = "secret.>" }]

[[block]]
name = "caller"
responsibility = "all"
topics = ["orders.*"]

[[block]]
name = "caller"
responsibility = "paid"
topics = [{ topic = "orders.paid", lossy = false }]

[[block]]
name = "caller"
responsibility = "shop"
emit = ["orders.>"]
[block.config]
steps = [
  { emit = "orders.new", count = 3 },
  { emit = "orders.paid", count = 2 },
  { emit = "secret.x" },
  { emit = "orders.*" },
]
"#;
    let dir = BlockDir::from_manifest(manifest);
    let out = run_until(&dir, |seen| count(seen, "emitted") == 7 && count(seen, "bag") == 12).await;

    let new = |i| ("orders.new".to_owned(), i);
    let paid = |i| ("orders.paid".to_owned(), i);
    assert_eq!(got(&out, "all"), [new(0), new(1), new(2), paid(0), paid(1)], "every order, in emit order");
    assert_eq!(got(&out, "paid"), [paid(0), paid(1)]);
    assert_eq!(got(&out, "late"), got(&out, "all"), "subscribed at run time to a wider pattern");
    for bag in out.bags_of("all") {
        assert_eq!(bag["__from"], "shop", "{bag}");
    }
    let seqs: Vec<u64> = out.bags_of("late").iter().map(|b| b["__seq"].as_u64().unwrap_or(0)).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "the emitter's sequence counts its emits");

    let results: Vec<(String, Value)> = out
        .events("emitted")
        .iter()
        .map(|e| (e["topic"].as_str().unwrap_or_default().to_owned(), e["result"].clone()))
        .collect();
    let to =
        |topic: &str| -> Vec<Value> { results.iter().filter(|(t, _)| t == topic).map(|(_, r)| r.clone()).collect() };
    assert_eq!(to("orders.new"), vec![json!({"ok": 2}); 3], "`all` and `late`");
    assert_eq!(to("orders.paid"), vec![json!({"ok": 3}); 2], "`all`, `paid` and `late`");
    assert!(to("secret.x")[0]["error"].as_str().is_some_and(|e| e.contains("::NotGranted")), "{results:?}");
    assert!(to("orders.*")[0]["error"].as_str().is_some_and(|e| e.contains("::InvalidTopic")), "{results:?}");
    let subscribed: Vec<(Value, Value)> =
        out.events("subscribed").iter().map(|e| (e["pattern"].clone(), e["result"].clone())).collect();
    assert_eq!(subscribed[0], (json!("orders.>"), json!("Ok(())")));
    assert!(subscribed[1].1.as_str().is_some_and(|r| r.contains("NotGranted")), "{subscribed:?}");

    let report = dir.report();
    assert_eq!(report.count("shop", "emitted"), 5);
    assert_eq!(report.count("all", "received"), 5);
}

/// A subscriber that is not lossy and cannot keep up makes the emitter `busy` once its queue
/// stayed full for the enqueue timeout, and then nobody gets that bag; a lossy one never holds
/// the emitter up and counts what it missed.
#[tokio::test]
async fn a_slow_subscriber_makes_the_emitter_busy_or_misses_bags_as_its_subscription_says() {
    let manifest = r#"
[host]
enqueue_timeout_ms = 50

[[block]]
name = "caller"
responsibility = "lossy"
queue = 1
topics = [{ topic = "ticks", lossy = true }]
[block.config]
slow_ms = 20

[[block]]
name = "caller"
responsibility = "blocking"
queue = 1
call_timeout_ms = 5000
topics = ["ticks"]
[block.config]
slow_ms = 2000

[[block]]
name = "caller"
responsibility = "emitter"
emit = ["ticks"]
[block.config]
steps = [{ emit = "ticks", count = 5 }]
"#;
    let dir = BlockDir::from_manifest(manifest);
    let out = run_until(&dir, |seen| {
        let ok = seen.iter().filter(|e| e["event"] == "emitted" && e["result"]["ok"].is_u64()).count();
        count(seen, "emitted") == 5
            && seen.iter().filter(|e| e["event"] == "bag" && e["block"] == "blocking").count() == ok
    })
    .await;
    let emitted = out.events("emitted");
    let ok: Vec<u64> =
        emitted.iter().filter(|e| e["result"]["ok"].is_u64()).map(|e| e["i"].as_u64().unwrap_or(0)).collect();
    let busy = emitted.iter().filter(|e| e["result"]["error"].as_str().is_some_and(|r| r.contains("::Busy"))).count();
    // The blocking subscriber holds one bag for 2 s and its queue one more: by the third emit
    // at the latest, its queue stayed full for the 50 ms the emitter may wait.
    assert!(busy >= 1 && ok.len() + busy == 5, "{emitted:?}");
    let blocking: Vec<u64> = got(&out, "blocking").into_iter().map(|(_, i)| i).collect();
    assert_eq!(blocking, ok, "the blocking subscriber got every bag that was emitted, and no other");
    let lossy: Vec<u64> = got(&out, "lossy").into_iter().map(|(_, i)| i).collect();
    assert!(lossy.iter().all(|i| ok.contains(i)), "a busy emit reached nobody: {lossy:?} {ok:?}");
    let report = dir.report();
    assert_eq!(report.count("emitter", "emitted"), ok.len() as u64);
    assert_eq!(
        report.count("lossy", "received") + report.count("lossy", "topic_dropped"),
        ok.len() as u64,
        "each emitted bag was queued for the lossy subscriber or counted as missed"
    );
}

/// A bridged topic reaches the subscribers of another host through the NATS subject of its name,
/// and this host's subscribers once: the host does not take its own bags back from the server.
#[tokio::test]
async fn a_bridged_topic_reaches_subscribers_on_another_host_once() {
    let nats = Nats::start(false).await;
    let bridge = "[host]\nbridge_topics = [\"orders.>\"]\n";
    let far = BlockDir::from_manifest(&format!(
        "{bridge}\n[[block]]\nname = \"caller\"\nresponsibility = \"far\"\ntopics = [\"orders.*\"]\n"
    ));
    let near = BlockDir::from_manifest(&format!(
        "{bridge}\n[[block]]\nname = \"caller\"\nresponsibility = \"near\"\ntopics = [\"orders.*\"]\n\n\
         [[block]]\nname = \"caller\"\nresponsibility = \"shop\"\nemit = [\"orders.>\"]\n\
         [block.config]\nsteps = [{{ emit = \"orders.new\", count = 3 }}, {{ emit = \"orders.last\" }}]\n"
    ));
    let start = |dir: &BlockDir| {
        let report = dir.report_path().display().to_string();
        Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report])
    };
    let mut far_host = start(&far);
    far_host.log_records(&[Want::event("bridging_topic"), Want::event("running")]).await;
    let mut near_host = start(&near);
    far_host.wait_for(4, |e| e["event"] == "bag" && e["block"] == "far").await;
    // The near host bridged before its blocks ran, so the server sends its own bags back to it.
    // A message published now, after `far` got them all, reaches the near host's subscription
    // after those echoes: once `near` has it, any echo taken back would have shown.
    let client = async_nats::connect(nats.url()).await.expect("connect");
    client.publish("orders.done", r#"{"i":9}"#.into()).await.expect("publish");
    client.flush().await.expect("flush");
    near_host.wait_for(5, |e| e["event"] == "bag" && e["block"] == "near").await;
    far_host.signal(libc::SIGTERM);
    near_host.signal(libc::SIGTERM);
    let (far_out, near_out) = (far_host.finish().await, near_host.finish().await);
    far_out.assert_success();
    near_out.assert_success();
    let order =
        [("orders.new", 0), ("orders.new", 1), ("orders.new", 2), ("orders.last", 0)].map(|(t, i)| (t.to_owned(), i));
    let mut then_done = order.to_vec();
    then_done.push(("orders.done".to_owned(), 9));
    assert_eq!(got(&far_out, "far"), then_done, "every bag, in emit order");
    assert_eq!(got(&near_out, "near"), then_done, "once each: the host did not take its own bags back");
    for bag in &far_out.bags_of("far")[..4] {
        assert_eq!(bag["__from"], "shop", "{bag}");
        assert!(bag["__host"].is_string(), "{bag}");
    }
    let done = far_out.bags_of("far")[4];
    assert_eq!((done["__from"].clone(), done["__subject"].clone()), (json!("server"), json!("orders.done")), "{done}");
    assert!(near_out.events("emitted").iter().all(|e| e["result"] == json!({"ok": 1})), "one subscriber here");
}

/// Editing a block's topics in the manifest of a running host: its subscriptions follow (the
/// dropped topic reaches it no more, the new one does), and so do the emitter's grants.
#[tokio::test]
async fn topics_follow_an_edited_manifest() {
    let manifest = |sub: &str, emit: &str, generation: u32| {
        format!(
            "[[block]]\nname = \"caller\"\nresponsibility = \"sub\"\ntopics = [\"{sub}\"]\n\n\
             [[block]]\nname = \"caller\"\nresponsibility = \"shop\"\nemit = [\"{emit}\"]\n[block.config]\n\
             steps = [{{ emit = \"a.x\", bag = {{ g = {generation} }} }}, {{ emit = \"b.x\", bag = {{ g = {generation} }} }}]\n"
        )
    };
    let dir = BlockDir::from_manifest(&manifest("a.x", "a.>", 1));
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, &dir, &["--report", &report]);
    host.wait_for(2, |e| e["event"] == "emitted").await;
    host.log_event("watching").await;
    dir.write_as("bagpipe.toml", manifest("b.x", "b.>", 2).as_bytes(), bagpipe_test_support::Write::Rename);
    host.log_records(&[Want::event("swapped").block("sub"), Want::event("swapped").block("shop")]).await;
    // The swapped emitter's `run` emits both again.
    host.wait_for(2, |e| e["event"] == "emitted").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let got: Vec<(String, u64)> = out
        .bags_of("sub")
        .iter()
        .map(|b| (b["__topic"].as_str().unwrap_or_default().to_owned(), b["g"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(got, [("a.x".to_owned(), 1), ("b.x".to_owned(), 2)], "before the edit a.x, after it b.x");
    let results: Vec<Value> = out.events("emitted").iter().map(|e| e["result"].clone()).collect();
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(results[0], json!({"ok": 1}));
    assert!(
        results[1]["error"].as_str().is_some_and(|e| e.contains("NotGranted")),
        "b.> was not granted yet: {results:?}"
    );
    assert!(results[2]["error"].as_str().is_some_and(|e| e.contains("NotGranted")), "a.> is not granted any more");
    assert_eq!(results[3], json!({"ok": 1}));
}
