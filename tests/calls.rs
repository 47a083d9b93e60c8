//! Calls between blocks (`controller.call`, `reply`, `on-reply`) through the real binary: every
//! typed outcome, exactly one outcome per call, across restarts of either side, and calls in a
//! cycle. The `caller` fixture makes the calls its steps say and answers requests as their `do`
//! says.

use std::collections::HashMap;

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Nats, Want, Write, artifacts, variant};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn run(dir: &BlockDir) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--report", &report])
}

/// Reads events until `done` says the ones read so far are enough, then shuts the host down.
async fn until(mut host: Bagpipe, done: impl Fn(&[Value]) -> bool) -> Finished {
    let mut seen = Vec::new();
    while !done(&seen) {
        let event = host.next_event().await.expect("bagpipe ended before the awaited events");
        seen.push(event);
    }
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    out
}

fn count(events: &[Value], kind: &str, block: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind && e["block"] == block).count()
}

/// What `block`'s calls came to, by label: the outcome of each call it made (`"answer"`,
/// `"timeout"`, ...), or the error `call` returned at once. Checks that every call made ended
/// exactly once.
fn outcomes<'a>(out: &'a Finished, block: &str) -> HashMap<String, (String, &'a Value)> {
    let mut ended: HashMap<u64, Vec<&Value>> = HashMap::new();
    for reply in out.events("reply").into_iter().filter(|e| e["block"] == block) {
        ended.entry(reply["call"].as_u64().expect("a call id")).or_default().push(reply);
    }
    let mut by_label = HashMap::new();
    for called in out.events("called").into_iter().filter(|e| e["block"] == block) {
        let id = called["call"].as_u64().expect("a call id");
        let replies = ended.remove(&id).unwrap_or_default();
        assert_eq!(replies.len(), 1, "call {called} ended {} times: {replies:?}", replies.len());
        let label = called["label"].as_str().unwrap_or_default().to_owned();
        by_label.insert(label, (replies[0]["outcome"].as_str().unwrap_or_default().to_owned(), replies[0]));
    }
    assert!(ended.is_empty(), "outcomes of calls never made: {ended:?}");
    for refused in out.events("call_refused").into_iter().filter(|e| e["block"] == block) {
        let label = refused["label"].as_str().unwrap_or_default().to_owned();
        by_label
            .insert(label, (format!("refused at once: {}", refused["error"].as_str().unwrap_or_default()), refused));
    }
    by_label
}

/// One block calls two others in every way a call can end: answered, not answered, refused,
/// faulted (and the target's fresh instance answers the next one), an unknown target, a timeout
/// (the target answers too late and is told so), a target that is busy, and an answer given
/// twice (the second is refused). Each call made ends exactly once, with its typed outcome.
#[tokio::test]
async fn every_outcome_of_a_call_is_told_once() {
    let manifest = r#"
[[block]]
name = "caller"
responsibility = "responder"
call_timeout_ms = 5000

[[block]]
name = "caller"
responsibility = "sleeper"
call_timeout_ms = 5000
queue = 1

[[block]]
name = "caller"
responsibility = "asker"
[block.config]
steps = [
  { lookup = "asker" },
  { call = "responder", bag = { do = "answer", n = 1 }, label = "answer" },
  { call = "responder", bag = { do = "ignore" }, label = "no-reply" },
  { call = "responder", bag = { do = "refuse" }, label = "refused" },
  { call = "responder", bag = { do = "trap" }, label = "faulted" },
  { call = "responder", bag = { do = "answer", n = 2 }, label = "after-fault" },
  { call = "nobody", label = "unknown" },
  { call = "sleeper", bag = { do = "sleep", ms = 1500 }, timeout_ms = 100, label = "timeout" },
  { call = "sleeper", bag = { do = "answer" }, label = "maybe-busy" },
  { call = "sleeper", bag = { do = "answer" }, label = "busy" },
  { call = "responder", bag = { do = "twice" }, label = "twice" },
]
"#;
    let dir = BlockDir::from_manifest(manifest);
    let host = run(&dir);
    let out = until(host, |seen| {
        let made = count(seen, "called", "asker");
        let settled = made + count(seen, "call_refused", "asker");
        // Every step said how it went, every call made ended, and the sleeper's late answer
        // was refused.
        settled == 10
            && count(seen, "reply", "asker") == made
            && seen.iter().any(|e| e["event"] == "replied" && e["block"] == "sleeper" && e["ok"] == false)
    })
    .await;
    let got = outcomes(&out, "asker");
    let outcome = |label: &str| got.get(label).map(|(o, _)| o.as_str()).unwrap_or("missing");
    assert_eq!(outcome("answer"), "answer");
    let answer = got["answer"].1["answer"].clone();
    assert_eq!((answer["echo"]["n"].clone(), answer["by"].clone()), (json!(1), json!("responder")));
    assert_eq!(answer["__from"], "responder", "an answer is stamped like any bag: {answer}");
    assert_eq!(outcome("no-reply"), "no-reply");
    assert_eq!(outcome("refused"), "refused");
    assert_eq!(got["refused"].1["detail"], "refused on purpose");
    assert_eq!(outcome("faulted"), "faulted");
    assert_eq!(outcome("after-fault"), "answer", "the target's fresh instance answers");
    assert_eq!(got["after-fault"].1["answer"]["echo"]["n"], 2);
    assert_eq!(outcome("unknown"), "refused at once: unknown-target");
    assert_eq!(outcome("timeout"), "timeout");
    assert_eq!(outcome("twice"), "answer");
    // The sleeper's queue holds one request: of the two calls after the sleeping one, at least
    // one found it full and was told at once (whether the first did depends on whether the
    // sleeper had taken the sleeping request by then); one that went through was answered.
    let busy = ["maybe-busy", "busy"].iter().filter(|l| outcome(l) == "refused at once: queue-full").count();
    assert!(busy >= 1, "{got:?}");
    for label in ["maybe-busy", "busy"] {
        assert!(["answer", "refused at once: queue-full"].contains(&outcome(label)), "{label}: {got:?}");
    }

    // The target saw ordinary bags, stamped by the host, with the call's handle.
    let requests: Vec<&Value> = out.events("request").into_iter().filter(|e| e["block"] == "responder").collect();
    assert!(requests.len() >= 5, "{requests:?}");
    for request in &requests {
        assert_eq!(request["bag"]["__from"], "asker");
        assert!(request["bag"]["__reply"].as_str().is_some_and(|h| h.starts_with("_CALL.")), "{request}");
    }
    // Answering twice, or too late: the second answer is refused, and says why.
    let late: Vec<&Value> = out.events("replied").into_iter().filter(|e| e["ok"] == false).collect();
    assert_eq!(late.len(), 2, "the second answer of `twice` and the sleeper's: {late:?}");
    for refused in late {
        assert!(refused["detail"].as_str().is_some_and(|d| d.contains("already ended")), "{refused}");
    }

    // `lookup` says more than who a block is.
    let lookup = out.events("lookup").into_iter().next().expect("a lookup")["info"].clone();
    let report = dir.report();
    assert_eq!((lookup["name"].clone(), lookup["responsibility"].clone()), (json!("caller"), json!("asker")));
    assert_eq!(lookup["version"], report.block("asker")["version"], "{lookup}");
    assert!(lookup["queued"].is_u64() && lookup["processed"].is_u64() && lookup["faults"].is_u64(), "{lookup}");

    let made = out.events("called").into_iter().filter(|e| e["block"] == "asker").count() as u64;
    let answered = got.values().filter(|(o, _)| o == "answer").count() as u64;
    assert_eq!(report.count("asker", "calls"), made);
    assert_eq!(report.count("asker", "calls_failed"), made - answered);
    assert_eq!(report.count("responder", "faults"), 1);
    assert_eq!(report.count("responder", "dead_letters"), 0, "a faulted request is its caller's, not a dead letter");
}

/// The caller faults right after it made a call: the outcome goes to its next instance, once.
#[tokio::test]
async fn a_call_outlives_a_restart_of_its_caller() {
    let manifest = r#"
[[block]]
name = "sender"
responsibility = "feeder"
after = []
[block.config]
to = "asker"
phase = "init"
bags = ['{"steps": [{"call": "responder", "bag": {"do": "answer", "n": 7}, "label": "across"}]}', '{"crash": true}']

[[block]]
name = "caller"
responsibility = "responder"

[[block]]
name = "caller"
responsibility = "asker"
"#;
    let dir = BlockDir::from_manifest(manifest);
    let host = run(&dir);
    let out = until(host, |seen| count(seen, "reply", "asker") == 1).await;
    let got = outcomes(&out, "asker");
    assert_eq!(got["across"].0, "answer", "{got:?}");
    assert_eq!(got["across"].1["answer"]["echo"]["n"], 7);
    let report = dir.report();
    assert!(report.count("asker", "restarts") >= 1, "the caller was restarted before the answer came to it");
    assert_eq!(report.count("asker", "calls_failed"), 0);
}

/// The target faults on a bag queued before a request: its fresh instance answers the request.
/// A target that fails for good with a request queued ends that call with `unavailable`. Two
/// blocks that call each other while handling each other's calls both get their answers.
#[tokio::test]
async fn calls_survive_target_restarts_end_with_a_failed_target_and_cycles_do_not_deadlock() {
    let manifest = r#"
[[block]]
name = "caller"
responsibility = "responder"

[[block]]
name = "caller"
responsibility = "fragile"
restart = "none"

[[block]]
name = "caller"
responsibility = "b"

[[block]]
name = "caller"
responsibility = "asker"
[block.config]
steps = [
  { enqueue = "responder", bag = { crash = true } },
  { call = "responder", bag = { do = "answer", n = 3 }, label = "after-restart" },
  { enqueue = "fragile", bag = { crash = true } },
  { call = "fragile", bag = { do = "answer" }, label = "failed-target" },
  { call = "b", bag = { do = "call", to = "asker" }, label = "cycle" },
]
"#;
    let dir = BlockDir::from_manifest(manifest);
    let host = run(&dir);
    let out = until(host, |seen| {
        let asker_done = count(seen, "called", "asker") + count(seen, "call_refused", "asker") == 3
            && count(seen, "reply", "asker") == count(seen, "called", "asker");
        asker_done && count(seen, "reply", "b") == 1
    })
    .await;
    let got = outcomes(&out, "asker");
    assert_eq!(got["after-restart"].0, "answer", "{got:?}");
    assert_eq!(got["after-restart"].1["answer"]["echo"]["n"], 3);
    // Either the request was queued before `fragile` failed (then its call ends when the queue
    // is given up), or `fragile` had failed already (then `call` says so at once).
    assert!(["unavailable", "refused at once: unavailable"].contains(&got["failed-target"].0.as_str()), "{got:?}");
    assert_eq!(got["cycle"].0, "answer");
    assert_eq!(got["cycle"].1["answer"]["by"], "b");
    let back = outcomes(&out, "b");
    assert_eq!(back["back"].0, "answer", "b's call to asker, made while asker waited for b: {back:?}");
    assert_eq!(back["back"].1["answer"]["by"], "asker");
    let report = dir.report();
    assert!(report.count("responder", "restarts") >= 1);
    assert_eq!(report.block("fragile")["state"], "failed");
}

/// A call to a block on another host of the cluster ends the same ways, with the same outcomes:
/// answered, not answered, refused, faulted, an unknown target; and the far block can call back
/// while it handles the call.
#[tokio::test]
async fn a_call_reaches_a_block_on_another_host_with_the_same_outcomes() {
    let nats = Nats::start(false).await;
    let cluster = "[host]\ncluster = \"calls\"\n";
    let far = BlockDir::from_manifest(&format!("{cluster}\n[[block]]\nname = \"caller\"\nresponsibility = \"far\"\n"));
    let near = BlockDir::from_manifest(&format!(
        r#"{cluster}
[[block]]
name = "caller"
responsibility = "asker"
[block.config]
steps = [
  {{ call = "far", bag = {{ do = "answer", n = 1 }}, label = "answer" }},
  {{ call = "far", bag = {{ do = "ignore" }}, label = "no-reply" }},
  {{ call = "far", bag = {{ do = "refuse" }}, label = "refused" }},
  {{ call = "far", bag = {{ do = "trap" }}, label = "faulted" }},
  {{ call = "far", bag = {{ do = "call", to = "asker" }}, label = "cycle" }},
  {{ call = "nowhere", label = "unknown" }},
]
"#
    ));
    let start = |dir: &BlockDir| {
        let report = dir.report_path().display().to_string();
        Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report])
    };
    let mut far_host = start(&far);
    far_host.log_records(&[Want::event("serving_cluster").block("far"), Want::event("running")]).await;
    let near_host = start(&near);
    let near_out = until(near_host, |seen| {
        let made = count(seen, "called", "asker");
        made + count(seen, "call_refused", "asker") == 6 && count(seen, "reply", "asker") == made
    })
    .await;
    far_host.wait_for(1, |e| e["event"] == "reply" && e["block"] == "far").await;
    far_host.signal(libc::SIGTERM);
    let far_out = far_host.finish().await;
    far_out.assert_success();

    let got = outcomes(&near_out, "asker");
    let outcome = |label: &str| got.get(label).map(|(o, _)| o.as_str()).unwrap_or("missing");
    assert_eq!(outcome("answer"), "answer", "{got:?}");
    let answer = &got["answer"].1["answer"];
    assert_eq!((answer["echo"]["n"].clone(), answer["__from"].clone()), (json!(1), json!("far")), "{answer}");
    assert_eq!(outcome("no-reply"), "no-reply");
    assert_eq!(outcome("refused"), "refused");
    assert_eq!(got["refused"].1["detail"], "refused on purpose");
    assert_eq!(outcome("faulted"), "faulted");
    assert_eq!(outcome("cycle"), "answer");
    assert_eq!(outcome("unknown"), "refused at once: unknown-target");
    let back = outcomes(&far_out, "far");
    assert_eq!(back["back"].0, "answer", "the far block's call back to the caller: {back:?}");
    assert_eq!(back["back"].1["answer"]["by"], "asker");
    let requests = far_out.events("request");
    assert!(
        requests
            .iter()
            .all(|r| r["bag"]["__from"] == "asker"
                && r["bag"]["__reply"].as_str().is_some_and(|h| h.starts_with("_CALL."))),
        "{requests:?}"
    );
}

/// Both sides are swapped to a new version (one component serves both) while a call is being
/// handled and others wait: every call made before the swap ends once, and the outcomes of the
/// old caller's calls reach its new instance.
#[tokio::test]
async fn calls_end_once_across_a_swap_of_both_sides() {
    let manifest = r#"
[[block]]
name = "caller"
responsibility = "responder"
call_timeout_ms = 5000

[[block]]
name = "caller"
responsibility = "asker"
[block.config]
steps = [
  { call = "responder", bag = { do = "sleep", ms = 3000 }, label = "in-hand" },
  { call = "responder", bag = { do = "answer", n = 2 }, label = "queued" },
]
"#;
    let dir = BlockDir::from_manifest(manifest);
    let mut host = run(&dir);
    let before = host.wait_for(1, |e| e["event"] == "request" && e["block"] == "responder").await;
    dir.write_as("caller.wasm", &variant(artifacts::CALLER, "v2"), Write::Rename);
    host.log_records(&[Want::event("swapped").block("responder"), Want::event("swapped").block("asker")]).await;
    // The new asker's `run` makes its two calls again: four calls, four outcomes (counting what
    // was read before the swap too).
    let out = until(host, |seen| {
        let all = || before.iter().chain(seen);
        let of = |kind: &str| all().filter(|e| e["event"] == kind && e["block"] == "asker").count();
        of("called") == 4 && of("reply") == 4
    })
    .await;
    let replies = out.events("reply");
    assert!(replies.iter().all(|r| r["outcome"] == "answer"), "{replies:?}");
    outcomes(&out, "asker");
    let report = dir.report();
    assert_eq!(report.count("asker", "calls"), 4);
    assert_eq!(report.count("asker", "calls_failed"), 0);
    assert_eq!(report.count("asker", "swaps"), 1);
    assert_eq!(report.count("responder", "swaps"), 1);
}
