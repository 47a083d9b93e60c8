//! Durable blocks against a real NATS server with JetStream (each test starts its own): a dead
//! letter goes to the cluster's dead-letter stream and its bag is acknowledged, so it is never
//! delivered again, and it is a dead letter of its host too (counted, listed by the admin
//! endpoint, sent to the dead-letter block), once; a bag too big for the server's `max_payload`
//! once wrapped as a dead letter is stored cut, and counted; a message that can never be a bag is
//! terminated; a bag on the consumer's
//! last delivery (`max_deliver`) goes to the dead letters without reaching the block; bags sent to a durable
//! block while its host starts are queued, never `unknown-target`; a durable block whose host is
//! killed three times mid-stream processes every bag at least once, its duplicates counted.

use std::collections::BTreeMap;
use std::future::IntoFuture as _;

use async_nats::jetstream;
use bagpipe_test_support::{Bagpipe, BlockDir, Nats, Want, within};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn start(dir: &BlockDir, nats: &Nats) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report])
}

/// [`start`], with the admin endpoint on a free port, and its address.
async fn start_with_admin(dir: &BlockDir, nats: &Nats) -> (Bagpipe, String) {
    let report = dir.report_path().display().to_string();
    let mut host =
        Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report, "--admin", "127.0.0.1:0"]);
    let addr = host.admin_addr().await;
    host.log_record(Want::event("consuming_stream").block("store")).await;
    (host, addr)
}

/// The admin endpoint's `/dead-letters`.
async fn dead_letters_of(addr: &str) -> Value {
    let page = bagpipe::admin_get(addr, "/dead-letters").await.expect("/dead-letters");
    serde_json::from_str(&page).unwrap_or_else(|e| panic!("{e}: {page}"))
}

/// The event among `seen` (the host's events read so far) that fits `pred`, or else the next one
/// that does (what is read meanwhile joins `seen`).
async fn event_where(host: &mut Bagpipe, seen: &mut Vec<Value>, pred: impl Fn(&Value) -> bool) -> Value {
    if let Some(event) = seen.iter().find(|e| pred(e)) {
        return event.clone();
    }
    seen.extend(host.wait_for(1, &pred).await);
    seen.last().cloned().expect("the awaited event")
}

/// Whether `event` is a bag the dead-letter block `dlq` (a `recorder`) printed.
fn at_dlq(event: &Value) -> bool {
    event["event"] == "bag" && event["block"] == "dlq"
}

/// A dead-letter block (`recorder`, responsibility `dlq`) for a manifest's end.
const DLQ_BLOCK: &str = "[[block]]\nname = \"recorder\"\nresponsibility = \"dlq\"\n";

/// Starts a host and waits until its durable block `store` takes from its stream.
async fn start_store(dir: &BlockDir, nats: &Nats) -> Bagpipe {
    let mut host = start(dir, nats);
    host.log_record(Want::event("consuming_stream").block("store")).await;
    host
}

async fn jetstream_of(nats: &Nats) -> jetstream::Context {
    jetstream::new(within(async_nats::connect(nats.url())).await.expect("connect"))
}

/// Puts `bag` in a durable stream, as a sender's host does, once the stream stored it.
async fn put(js: &jetstream::Context, subject: &str, bag: &str) {
    let ack = within(js.publish(subject.to_owned(), bag.to_owned().into())).await.expect("publish");
    within(ack.into_future()).await.expect("stored");
}

/// `(messages in the stream, bags its consumer `store` has pending or unacknowledged)`.
async fn backlog(js: &jetstream::Context, stream: &str) -> (u64, u64) {
    let mut stream = within(js.get_stream(stream)).await.expect("stream");
    let messages = within(stream.info()).await.expect("stream info").state.messages;
    let consumer = within(stream.consumer_info("store")).await.expect("consumer info");
    (messages, consumer.num_pending + consumer.num_ack_pending as u64)
}

/// Counts each bag `n` the store's host printed in `events`.
fn tally(seen: &mut BTreeMap<u64, u64>, events: &[Value]) {
    for n in events.iter().filter(|e| e["event"] == "bag").filter_map(|e| e["bag"]["n"].as_u64()) {
        *seen.entry(n).or_insert(0) += 1;
    }
}

#[tokio::test]
async fn a_dead_letter_of_a_durable_block_lands_in_the_dead_letter_stream_and_is_not_delivered_again() {
    let nats = Nats::start(true).await;
    let js = jetstream_of(&nats).await;
    let store = BlockDir::from_manifest(&format!(
        "[host]\ncluster = \"dlq\"\ndead_letters = \"dlq\"\n\n\
         [[block]]\nname = \"modelled\"\nresponsibility = \"store\"\ndurable = true\nmax_attempts = 2\n\n{DLQ_BLOCK}"
    ));
    let (mut host, admin) = start_with_admin(&store, &nats).await;
    let refused = r#"{"s":"t","k":1,"kind":"err"}"#;
    put(&js, "bagpipe.dlq.durable.store", refused).await;
    put(&js, "bagpipe.dlq.durable.store", r#"{"s":"t","k":2,"kind":"ok"}"#).await;
    host.log_record(Want::event("dead_letter_stored").block("store")).await;
    let mut seen = host.wait_for(1, |e| e["event"] == "got" && e["bag"]["k"] == 2).await;

    // A dead letter of this host too: listed by the admin endpoint, logged, and sent to the
    // dead-letter block.
    let listed = dead_letters_of(&admin).await;
    assert_eq!(listed["total"], 1, "{listed}");
    let kept = &listed["kept"][0];
    assert_eq!(kept["block"], "store", "{listed}");
    assert_eq!(kept["component"], "modelled", "{listed}");
    assert_eq!(kept["attempts"], 2, "{listed}");
    assert_eq!(kept["bag"]["k"], 1, "{listed}");
    let forwarded = event_where(&mut host, &mut seen, at_dlq).await;
    assert_eq!(forwarded["bag"]["block"], "store");
    assert_eq!(forwarded["bag"]["bag"]["k"], 1);

    // The dead letter: the bag as it was sent, why and where from in its headers.
    let dead = within(js.get_stream("BAGPIPE-DEAD_dlq")).await.expect("the dead-letter stream");
    let letter = within(dead.get_raw_message(1)).await.expect("the dead letter");
    assert_eq!(letter.subject.as_str(), "bagpipe.dlq.dead.store");
    assert_eq!(letter.payload.as_ref(), refused.as_bytes());
    let header = |name: &str| letter.headers.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default();
    assert_eq!(header("Bagpipe-Block"), "store");
    assert_eq!(header("Bagpipe-Component"), "modelled");
    assert_eq!(header("Bagpipe-Attempts"), "2");
    assert!(!header("Bagpipe-Error").is_empty(), "{:?}", letter.headers);
    // Acknowledged once stored: nothing of it is left for the block's stream to deliver.
    assert_eq!(backlog(&js, "BAGPIPE_dlq_store").await, (0, 0));

    host.signal(libc::SIGTERM);
    let first = host.finish().await;
    first.assert_success();
    let report = store.report();
    assert_eq!(report.count("store", "dead_letters"), 1);
    assert_eq!(report.count("store", "failed"), 2);
    assert_eq!(report.count("store", "redelivered"), 0);
    assert_eq!(report.count("store", "dead_letters_cut"), 0);
    // Once each: recorded, logged, sent on.
    assert_eq!(report.dead_letters().len(), 1, "{:#}", report.0);
    assert_eq!(first.log_events("dead_letter").len(), 1, "{}", first.stderr);
    assert_eq!(first.bags_of("dlq").len(), 1, "{}", first.stderr);

    // After a restart the block gets what is sent next, and never the dead letter again.
    let mut host = start_store(&store, &nats).await;
    put(&js, "bagpipe.dlq.durable.store", r#"{"s":"t","k":3,"kind":"ok"}"#).await;
    host.wait_for(1, |e| e["event"] == "got" && e["bag"]["k"] == 3).await;
    host.signal(libc::SIGTERM);
    let second = host.finish().await;
    second.assert_success();
    let got: Vec<u64> = second.events("got").iter().filter_map(|e| e["bag"]["k"].as_u64()).collect();
    assert_eq!(got, [3], "{}", second.stderr);
    let dead = within(js.get_stream("BAGPIPE-DEAD_dlq")).await.expect("the dead-letter stream");
    assert_eq!(dead.cached_info().state.messages, 1, "one dead letter, stored once");
}

#[tokio::test]
async fn a_message_that_can_never_be_a_bag_is_terminated_not_delivered_again() {
    let nats = Nats::start(true).await;
    let js = jetstream_of(&nats).await;
    let store = BlockDir::from_manifest(
        "[host]\ncluster = \"poison\"\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"store\"\ndurable = true\nmax_bag_bytes = 1024\n",
    );
    let mut host = start_store(&store, &nats).await;
    let subject = "bagpipe.poison.durable.store";
    put(&js, subject, "not json at all").await;
    put(&js, subject, &format!(r#"{{"big":"{}"}}"#, "x".repeat(2000))).await;
    put(&js, subject, r#"{"n":1}"#).await;
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["n"] == 1).await;
    host.log_records(&[Want::event("terminated").block("store"), Want::event("terminated").block("store")]).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    // Terminated: gone from the work queue, nothing pending or waiting for an acknowledgement.
    // (Asked once the host is done: the good bag's acknowledgement may still be on its way
    // when the bag is seen.)
    assert_eq!(backlog(&js, "BAGPIPE_poison_store").await, (0, 0));
    let report = store.report();
    assert_eq!(report.count("store", "refused_invalid"), 1);
    assert_eq!(report.count("store", "refused_too_large"), 1);
    assert_eq!(report.count("store", "redelivered"), 0);
    let bags: Vec<&Value> = out.bags_of("store");
    assert_eq!(bags.len(), 1, "{bags:?}");

    // A new host of the block is not handed them either.
    let mut host = start_store(&store, &nats).await;
    put(&js, subject, r#"{"n":2}"#).await;
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["n"] == 2).await;
    host.signal(libc::SIGTERM);
    let again = host.finish().await;
    again.assert_success();
    let ns: Vec<u64> = again.bags_of("store").iter().filter_map(|b| b["n"].as_u64()).collect();
    assert_eq!(ns, [2]);
    assert!(again.log_events("terminated").is_empty(), "{}", again.stderr);
}

#[tokio::test]
async fn a_bag_on_its_last_delivery_goes_to_the_dead_letters_without_reaching_the_block() {
    use futures_util::StreamExt as _;
    // `max_attempts = 1`: the consumer delivers a bag at most 1 × 4 + 1 = 5 times.
    let nats = Nats::start(true).await;
    let js = jetstream_of(&nats).await;
    let store = BlockDir::from_manifest(&format!(
        "[host]\ncluster = \"last\"\ndead_letters = \"dlq\"\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"store\"\ndurable = true\nmax_attempts = 1\n\n{DLQ_BLOCK}"
    ));
    let host = start_store(&store, &nats).await;
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
    // Four deliveries nobody settles (as from hosts that crashed), taken with the block's own
    // consumer while no host runs it.
    put(&js, "bagpipe.last.durable.store", r#"{"n":1}"#).await;
    let stream = within(js.get_stream("BAGPIPE_last_store")).await.expect("stream");
    let consumer: jetstream::consumer::PullConsumer =
        within(stream.get_consumer("store")).await.expect("the block's consumer");
    assert_eq!(consumer.cached_info().config.max_deliver, 5);
    for delivery in 1..=4 {
        let mut batch = within(consumer.fetch().max_messages(1).messages()).await.expect("fetch");
        let message = within(batch.next()).await.expect("a delivery").expect("a message");
        assert_eq!(message.info().expect("info").delivered, delivery);
        within(message.double_ack_with(jetstream::AckKind::Nak(None))).await.expect("nak");
    }
    let (mut host, admin) = start_with_admin(&store, &nats).await;
    host.log_record(Want::event("dead_letter_stored").block("store")).await;
    // A dead letter of this host too, as one of a local block is.
    let listed = dead_letters_of(&admin).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["kept"][0]["bag"]["n"], 1, "{listed}");
    assert_eq!(listed["kept"][0]["attempts"], 0, "{listed}");
    let forwarded = event_where(&mut host, &mut Vec::new(), at_dlq).await;
    assert_eq!(forwarded["bag"]["bag"]["n"], 1);
    put(&js, "bagpipe.last.durable.store", r#"{"n":2}"#).await;
    host.wait_for(1, |e| e["event"] == "bag" && e["bag"]["n"] == 2).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let ns: Vec<u64> = out.bags_of("store").iter().filter_map(|b| b["n"].as_u64()).collect();
    assert_eq!(ns, [2], "the bag on its last delivery never reached the block");
    let report = store.report();
    assert_eq!((report.count("store", "dead_letters"), report.count("store", "redelivered")), (1, 1));
    let letters = report.dead_letters();
    assert_eq!(letters.len(), 1, "{:#}", report.0);
    assert!(letters[0]["error"].as_str().is_some_and(|e| e.contains("delivered 5 times")), "{:?}", letters[0]);
    assert_eq!(out.log_events("dead_letter").len(), 1, "{}", out.stderr);
    assert_eq!(out.bags_of("dlq").len(), 1, "{}", out.stderr);
    let dead = within(js.get_stream("BAGPIPE-DEAD_last")).await.expect("the dead-letter stream");
    let letter = within(dead.get_raw_message(1)).await.expect("the dead letter");
    assert_eq!(letter.payload.as_ref(), br#"{"n":1}"#);
    assert_eq!(letter.headers.get("Bagpipe-Delivered").map(|v| v.as_str()), Some("5"));
    assert_eq!(backlog(&js, "BAGPIPE_last_store").await, (0, 0));
}

#[tokio::test]
async fn a_dead_letter_too_big_for_max_payload_once_wrapped_is_stored_cut_and_counted() {
    const MAX_PAYLOAD: usize = 2048;
    let nats = Nats::start_with_config(true, &format!("max_payload: {MAX_PAYLOAD}\n")).await;
    let js = jetstream_of(&nats).await;
    let store = BlockDir::from_manifest(&format!(
        "[host]\ncluster = \"cut\"\ndead_letters = \"dlq\"\n\n\
         [[block]]\nname = \"modelled\"\nresponsibility = \"store\"\ndurable = true\nmax_attempts = 1\n\n{DLQ_BLOCK}"
    ));
    let mut host = start_store(&store, &nats).await;
    // Within max_payload as it is, past it with the dead letter's headers.
    let head = r#"{"s":"t","k":1,"kind":"err","pad":""#;
    let refused = format!("{head}{}\"}}", "x".repeat(MAX_PAYLOAD - 48 - head.len()));
    assert_eq!(refused.len(), MAX_PAYLOAD - 46);
    put(&js, "bagpipe.cut.durable.store", &refused).await;
    put(&js, "bagpipe.cut.durable.store", r#"{"s":"t","k":2,"kind":"ok"}"#).await;
    host.log_records(&[
        Want::event("dead_letter_cut").block("store"),
        Want::event("dead_letter_stored").block("store"),
    ])
    .await;
    let mut seen = host.wait_for(1, |e| e["event"] == "got" && e["bag"]["k"] == 2).await;
    // The dead-letter block has the whole bag.
    let forwarded = event_where(&mut host, &mut seen, at_dlq).await;
    assert_eq!(forwarded["bag"]["bag"]["pad"].as_str().map(str::len), Some(refused.len() - head.len() - 2));

    // The stream holds what fits, marked with the bag's whole size.
    let dead = within(js.get_stream("BAGPIPE-DEAD_cut")).await.expect("the dead-letter stream");
    let letter = within(dead.get_raw_message(1)).await.expect("the dead letter");
    let header = |name: &str| letter.headers.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default();
    assert_eq!(header("Bagpipe-Cut"), refused.len().to_string());
    assert_eq!(header("Bagpipe-Block"), "store");
    assert!(!letter.payload.is_empty() && letter.payload.len() < refused.len(), "{}", letter.payload.len());
    assert!(refused.as_bytes().starts_with(&letter.payload), "the bag's first bytes");
    // Acknowledged once stored: not delivered again.
    assert_eq!(backlog(&js, "BAGPIPE_cut_store").await, (0, 0));

    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = store.report();
    assert_eq!((report.count("store", "dead_letters"), report.count("store", "dead_letters_cut")), (1, 1));
    assert_eq!(report.count("store", "redelivered"), 0);
    assert_eq!(report.dead_letters().len(), 1);
    assert_eq!(out.log_events("dead_letter_cut").len(), 1, "{}", out.stderr);
}

#[tokio::test]
async fn bags_sent_to_a_durable_block_while_its_host_starts_are_never_unknown_targets() {
    // A fresh server: the block's stream does not exist yet. The sender sends from its `init`,
    // beside the durable block's, before the block's consumer may have made its stream.
    let nats = Nats::start(true).await;
    let dir = BlockDir::from_manifest(
        "[host]\ncluster = \"startup\"\n\n\
         [[block]]\nname = \"sender\"\nafter = []\n[block.config]\nto = \"store\"\nphase = \"init\"\ncount = 20\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"store\"\ndurable = true\nafter = []\n[block.config]\nexpect = 20\n",
    );
    let mut host = start(&dir, &nats);
    let sent = host.wait_for(20, |e| e["event"] == "sent").await;
    let refused: Vec<&Value> = sent.iter().filter(|e| e["event"] == "sent" && e["delivered"] != true).collect();
    assert!(refused.is_empty(), "{refused:?}");
    // The store shuts the host down once it has all 20.
    let out = host.finish().await;
    out.assert_success();
    let got: Vec<u64> = out.bags_of("store").iter().filter_map(|b| b["i"].as_u64()).collect();
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_durable_block_whose_host_is_killed_three_times_processes_every_bag_at_least_once() {
    const COUNT: u64 = 600;
    let nats = Nats::start(true).await;
    let cluster = "[host]\ncluster = \"kills\"\ndurable_ack_wait_ms = 1000\n\n";
    let store = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"recorder\"\nresponsibility = \"store\"\ndurable = true\nqueue = 16\n[block.config]\nbusy_ms = 5\n"
    ));
    let source = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"bench_source\"\n[block.config]\nto = \"store\"\ncount = {COUNT}\nbatch = 2\ninterval_ms = 5\n"
    ));
    let mut store_host = start_store(&store, &nats).await;
    let source_host = start(&source, &nats);
    // How many times each bag was processed, over every run of the store's host.
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for _ in 0..3 {
        store_host.wait_for(50, |e| e["event"] == "bag").await;
        store_host.signal(libc::SIGKILL);
        let killed = store_host.finish().await;
        tally(&mut seen, &killed.events);
        // The source goes on sending into the stream while nobody takes from it.
        store_host = start_store(&store, &nats).await;
    }
    let before = seen.clone();
    let mut all = before.clone();
    while all.len() < COUNT as usize {
        let event = store_host.next_event().await.expect("the store's host ended early");
        tally(&mut all, std::slice::from_ref(&event));
    }
    store_host.signal(libc::SIGTERM);
    source_host.signal(libc::SIGTERM);
    let out = store_host.finish().await;
    out.assert_success();
    source_host.finish().await.assert_success();
    tally(&mut seen, &out.events);
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>(), "none lost");
    let duplicates: u64 = seen.values().map(|times| times - 1).sum();
    // A kill can have only what its host held processed again: at most `max_ack_pending`, the
    // queue's 16.
    assert!(duplicates <= 3 * 16, "{duplicates} duplicates");
    // What the last run processed again was delivered again by the stream, and counted.
    let again = out
        .events
        .iter()
        .filter(|e| e["event"] == "bag")
        .filter_map(|e| e["bag"]["n"].as_u64())
        .filter(|n| before.contains_key(n))
        .count() as u64;
    // The store takes 5 ms a bag, half the source's rate: each killed host held a full queue,
    // which the stream delivered again after the acknowledgement wait.
    let report = store.report();
    let redelivered = report.count("store", "redelivered");
    assert!(redelivered >= again.max(1), "redelivered {redelivered}, {again} bags processed again");
    assert_eq!(report.count("store", "lost"), 0);
    eprintln!(
        "{duplicates} duplicates over 3 kills; the last run: {redelivered} delivered again, {again} processed again"
    );
}
