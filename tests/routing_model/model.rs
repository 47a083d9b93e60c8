//! The model: from a scenario and what each `enqueue` returned (the senders print it), what every
//! receiver must have been given, in which order, what became a dead letter, and what every
//! counter of every block must say. Pure: it reads what a finished run printed and reported.
//!
//! What the host guarantees, and so what is checked:
//! - a send is refused with the type its bag and target call for (`unknown-target`,
//!   `invalid-bag`, `too-large` with the receiver's limit); any other send is queued or refused
//!   `queue-full`, whichever the queue's room decided;
//! - every queued bag is delivered, stamped with its sender and its sender's sequence number
//!   (which counts queued bags only), exactly once, or, for a bag its receiver traps on, exactly
//!   `max_attempts` times in a row and then it is a dead letter of that receiver; nothing else is
//!   delivered, nothing is lost;
//! - bags from one sender to one receiver are delivered in the order they were sent, redeliveries
//!   and a hot swap included;
//! - each receiver's `received`, `refused_full`, `refused_too_large`, `refused_invalid`,
//!   `processed`, `failed`, `dead_letters`, `faults`, `restarts`, `lost` (0), `swaps` and `sent`
//!   are exactly the model's; each sender's `sent` is the bags it had queued;
//! - a swapped receiver ends on the new version, and the swap is counted in `swaps` once,
//!   whether it found the receiver running (its new instance's `restore` tells) or landed during
//!   a restart's backoff (the new version starts without a snapshot).

use std::collections::BTreeMap;

use bagpipe_test_support::{Finished, Report};
use serde_json::{Value, json};

use super::{MAX_BAG, NOBODY, Scenario, receiver_name, sender_name};

/// One send, as its sender printed it.
#[derive(Debug, Clone)]
struct Sent {
    k: u64,
    to: String,
    kind: String,
    result: String,
    detail: String,
}

/// A bag a receiver's queue took.
#[derive(Debug)]
struct Accepted {
    to: String,
    kind: String,
    /// Its `__seq`: the how-manieth bag its sender had queued.
    seq: u64,
}

/// `(sender, k)`: a bag, as its sender numbered it.
type Key = (String, u64);

/// What differs from the model.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: impl std::fmt::Display, got: T, want: T) {
        if got != want {
            self.0.push(format!("{what}: got {got:?}, the model says {want:?}"));
        }
    }

    fn holds(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
}

/// The sends `sender` printed, in order.
fn sends_of(out: &Finished, sender: &str) -> Vec<Sent> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    out.events("sent")
        .into_iter()
        .filter(|e| e["block"] == sender)
        .map(|e| Sent {
            k: e["k"].as_u64().unwrap_or(u64::MAX),
            to: text(&e["to"]),
            kind: text(&e["kind"]),
            result: text(&e["result"]),
            detail: text(&e["detail"]),
        })
        .collect()
}

/// How many `event` lines `block` printed.
fn printed(out: &Finished, event: &str, block: &str) -> u64 {
    out.events(event).iter().filter(|e| e["block"] == block).count() as u64
}

fn key(bag: &Value) -> Key {
    (bag["s"].as_str().unwrap_or("?").to_owned(), bag["k"].as_u64().unwrap_or(u64::MAX))
}

/// Checks `out` and `report` against the model; a summary of the case, or what differs.
pub fn check(sc: &Scenario, out: &Finished, report: &Report, swapped_version: Option<&str>) -> Result<String, String> {
    let mut p = Problems::default();
    let mut accepted: BTreeMap<Key, Accepted> = BTreeMap::new();
    let mut sends_to: BTreeMap<String, Vec<Sent>> = BTreeMap::new();
    let (mut sends, mut pumps) = (0, 0);
    for j in 0..sc.senders.len() {
        let s = sender_name(j);
        let sent = sends_of(out, &s);
        check_sender(sc, j, &sent, &mut p);
        let mut seq = 0;
        for x in &sent {
            if x.result == "ok" {
                seq += 1;
                accepted.insert((s.clone(), x.k), Accepted { to: x.to.clone(), kind: x.kind.clone(), seq });
            }
            sends_to.entry(x.to.clone()).or_default().push(x.clone());
        }
        sends += sent.len();
        pumps += sent.iter().filter(|x| x.kind == "pump").count();
        let goes = printed(out, "go", &s);
        p.holds(goes <= 1, || format!("{s} was told `go` {goes} times"));
        p.eq(format!("`done` lines of {s}"), printed(out, "done", &s), 1);
        let want = [("sent", seq), ("received", goes), ("processed", goes)];
        counters(&mut p, report, &s, &want, &["failed", "faults", "dead_letters", "lost", "stdout_dropped"]);
    }
    let letters = report.dead_letters();
    let traps = accepted.values().filter(|a| a.kind == "trap").count();
    p.eq("dead letters, all blocks together", letters.len(), traps);
    let mut restored = Vec::new();
    for i in 0..sc.receivers.len() {
        let r = receiver_name(i);
        if check_receiver(sc, i, out, report, &accepted, sends_to.get(&r).map_or(&[][..], Vec::as_slice), &mut p) {
            restored.push(r.clone());
        }
        let version = report.block(&r)["version"].as_str();
        if sc.swap == Some(i) && version != swapped_version {
            p.0.push(format!(
                "{r} runs version {version:?}, not {swapped_version:?}: the swap had not landed at the end"
            ));
        }
    }
    let full = sends_to.values().flatten().filter(|x| x.result == "queue-full").count();
    let swap = match sc.swap {
        Some(_) if restored.is_empty() => "swapped during a restart (no restore)",
        Some(_) => "swapped with traffic (restore woke the pumps)",
        None => "no swap",
    };
    let summary = format!(
        "{} senders, {} receivers, {sends} sends ({pumps} pumps): {} queued, {full} queue-full, {traps} dead letters; {swap}",
        sc.senders.len(),
        sc.receivers.len(),
        accepted.len()
    );
    if p.0.is_empty() {
        Ok(summary)
    } else {
        let shown = p.0.len().min(20);
        Err(format!("{summary}\n{} differences from the model:\n  {}", p.0.len(), p.0[..shown].join("\n  ")))
    }
}

/// The sends of sender `j`: numbered from 0, the plan in order, pumps only where its plan says,
/// `fin`s last (each repeated only while refused `queue-full`), each result of the type the model
/// says.
fn check_sender(sc: &Scenario, j: usize, sent: &[Sent], p: &mut Problems) {
    let s = sender_name(j);
    let ks: Vec<u64> = sent.iter().map(|x| x.k).collect();
    p.eq(format!("{s}'s send numbers"), ks, (0..sent.len() as u64).collect());
    let planned: Vec<(String, String)> =
        sent.iter().filter(|x| x.kind != "pump" && x.kind != "fin").map(|x| (x.to.clone(), x.kind.clone())).collect();
    let plan: Vec<(String, String)> =
        sc.senders[j].plan.iter().map(|x| (x.to_name(), x.kind.name().to_owned())).collect();
    p.eq(format!("{s}'s planned sends"), planned, plan);

    // Pumps: all to the swapped receiver, all at the place the plan gives them.
    let mut before = 0;
    let mut pumped_at = Vec::new();
    for x in sent {
        match x.kind.as_str() {
            "pump" => pumped_at.push((before, x.to.clone())),
            "fin" => {}
            _ => before += 1,
        }
    }
    match (sc.pump_at(j), sc.swap) {
        (Some(at), Some(i)) => {
            p.holds(pumped_at.iter().all(|(b, to)| *b == at && *to == receiver_name(i)), || {
                format!("{s} pumped elsewhere than to r{i} after planned send {at}: {pumped_at:?}")
            });
        }
        _ => p.eq(format!("{s}'s pumps"), pumped_at.len(), 0),
    }

    // `fin`s: last, one queued for each receiver in turn, after any number of `queue-full`.
    let first_fin = sent.iter().position(|x| x.kind == "fin").unwrap_or(sent.len());
    p.holds(sent[first_fin..].iter().all(|x| x.kind == "fin"), || format!("{s} sent something after its first fin"));
    let mut fins = sent[first_fin..].iter().peekable();
    for i in 0..sc.receivers.len() {
        let r = receiver_name(i);
        while fins.next_if(|x| x.to == r && x.result == "queue-full").is_some() {}
        let queued = fins.next().map(|x| (x.to.clone(), x.result.clone()));
        p.eq(format!("{s}'s fin to {r}"), queued, Some((r.clone(), "ok".to_owned())));
    }
    p.eq(format!("{s}'s fins after the last receiver's"), fins.count(), 0);

    for x in sent {
        let typed = match (x.to.as_str(), x.kind.as_str()) {
            (NOBODY, _) => x.result == "unknown-target" && x.detail.contains(NOBODY),
            (_, "invalid") => x.result == "invalid-bag" && x.detail.contains("`__from`"),
            (_, "big") => x.result == "too-large" && x.detail == MAX_BAG.to_string(),
            _ => x.result == "ok" || x.result == "queue-full",
        };
        p.holds(typed, || {
            format!("{s}'s send {} ({} to {}) was answered {} {:?}", x.k, x.kind, x.to, x.result, x.detail)
        });
    }
}

/// Receiver `i`: what it was given (each bag as sent and stamped, once or `max_attempts` times in
/// a row for a trap, in send order per sender), its dead letters, its counters. Returns whether
/// a swap restored it.
fn check_receiver(
    sc: &Scenario,
    i: usize,
    out: &Finished,
    report: &Report,
    accepted: &BTreeMap<Key, Accepted>,
    sent_to: &[Sent],
    p: &mut Problems,
) -> bool {
    let r = receiver_name(i);
    let attempts = sc.receivers[i].max_attempts as usize;
    let deliveries = |a: &Accepted| if a.kind == "trap" { attempts } else { 1 };
    let got: Vec<&Value> =
        out.events("got").into_iter().filter(|e| e["block"] == r.as_str()).map(|e| &e["bag"]).collect();
    for bag in &got {
        let (s, k) = key(bag);
        match accepted.get(&(s.clone(), k)) {
            None => p.0.push(format!("{r} was given {bag}, which no enqueue queued")),
            Some(a) => {
                let want = json!({"s": s, "k": k, "kind": a.kind, "__from": s, "__seq": a.seq});
                p.holds(a.to == r && **bag == want, || format!("{r} was given {bag}; {s} queued {want} for {}", a.to));
            }
        }
    }
    // The same bag in a row: a trap `max_attempts` times (redelivered at once), any other once.
    let mut n = 0;
    while n < got.len() {
        let first = key(got[n]);
        let run = got[n..].iter().take_while(|b| key(b) == first).count();
        if let Some(a) = accepted.get(&first) {
            p.eq(format!("deliveries in a row of {first:?} ({}) to {r}", a.kind), run, deliveries(a));
        }
        n += run;
    }
    let letters: Vec<&Value> = report.dead_letters().into_iter().filter(|l| l["block"] == r.as_str()).collect();
    for j in 0..sc.senders.len() {
        let s = sender_name(j);
        let from_s = || accepted.iter().filter(|((x, _), a)| *x == s && a.to == r);
        let given: Vec<u64> = got.iter().map(|b| key(b)).filter(|(x, _)| *x == s).map(|(_, k)| k).collect();
        let want: Vec<u64> = from_s().flat_map(|((_, k), a)| std::iter::repeat_n(*k, deliveries(a))).collect();
        p.eq(format!("what {r} was given from {s}, in order"), given, want);
        let dead: Vec<u64> =
            letters.iter().filter(|l| l["bag"]["s"] == s.as_str()).filter_map(|l| l["bag"]["k"].as_u64()).collect();
        let want: Vec<u64> = from_s().filter(|(_, a)| a.kind == "trap").map(|((_, k), _)| *k).collect();
        p.eq(format!("dead letters of {r} from {s}, in order"), dead, want);
    }
    for letter in &letters {
        let error = letter["error"].as_str().unwrap_or_default();
        p.holds(letter["attempts"] == attempts && error.contains("unreachable"), || {
            format!("{r}'s dead letter {letter} should say {attempts} attempts and `unreachable`")
        });
    }

    let queued = |kinds: &[&str]| {
        accepted.values().filter(|a| a.to == r && (kinds.is_empty() || kinds.contains(&a.kind.as_str()))).count() as u64
    };
    let answered = |result: &str| sent_to.iter().filter(|x| x.result == result).count() as u64;
    let traps = queued(&["trap"]);
    let restored = printed(out, "restored", &r);
    p.holds(restored == 0 || (restored == 1 && sc.swap == Some(i)), || format!("{r} was restored {restored} times"));
    let woken = if sc.swap == Some(i) { sc.pumpers().len() as u64 } else { 0 };
    let want = [
        ("received", queued(&[])),
        ("refused_full", answered("queue-full")),
        ("refused_too_large", answered("too-large")),
        ("refused_invalid", answered("invalid-bag")),
        ("processed", queued(&["ok", "pump", "fin"])),
        ("failed", queued(&["err"])),
        ("dead_letters", traps),
        ("faults", traps * attempts as u64),
        ("restarts", traps * attempts as u64),
        // Every swap is counted, also one that landed during a restart's backoff.
        ("swaps", u64::from(sc.swap == Some(i))),
        ("sent", restored * woken),
    ];
    counters(p, report, &r, &want, &["lost", "stdout_dropped", "swaps_failed"]);
    let stats = report.block(&r);
    p.eq(format!("{r}'s state"), stats["state"].as_str(), Some("finished"));
    let high = stats["queue_high_water"].as_u64().unwrap_or(u64::MAX);
    p.holds(high <= sc.receivers[i].queue, || {
        format!("{r}'s queue held {high} bags, more than its {}", sc.receivers[i].queue)
    });
    restored == 1
}

/// Compares `block`'s counters with `want`, and each of `zero` with 0.
fn counters(p: &mut Problems, report: &Report, block: &str, want: &[(&str, u64)], zero: &[&str]) {
    let stats = report.block(block);
    for (counter, value) in want.iter().copied().chain(zero.iter().map(|c| (*c, 0))) {
        p.eq(format!("{block}'s `{counter}`"), stats[counter].as_u64(), Some(value));
    }
}
