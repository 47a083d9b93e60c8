//! Batches: a block is handed what is queued for it several bags a call (`on-batch`), and the
//! guest SDK hands each bag to `on_enqueue`. Each test queues its bags before the receiver runs
//! (the senders send from `init`), so what one batch holds is known: every bag queued, up to the
//! batch's bounds.

use bagpipe_test_support::{Bagpipe, BlockDir};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn run(dir: &BlockDir) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    Bagpipe::run_with(BIN, dir, &["--report", &report])
}

/// The value of `key` in each bag `block` printed, in order.
fn values(bags: &[&Value], key: &str) -> Vec<Value> {
    bags.iter().map(|b| b[key].clone()).collect()
}

/// Eight bags queued for a block that traps on the fourth: the first batch processes bags 1–3
/// and traps on 4. Bag 4 alone is delivered again (and traps again: a dead letter); bags 1–3 are
/// not delivered again; bags 5–8 go to the fresh instance, in order, in one batch.
#[tokio::test]
async fn a_trap_on_the_nth_bag_of_a_batch_retries_that_bag_only() {
    let bags: Vec<String> = (1..=8)
        .map(|n| if n == 4 { format!("'{{\"n\":{n},\"crash\":true}}'") } else { format!("'{{\"n\":{n}}}'") })
        .collect();
    let manifest = format!(
        "[[block]]\nname = \"sender\"\nresponsibility = \"feeder\"\nafter = []\n[block.config]\nto = \"faulty\"\nphase = \"init\"\n\
         bags = [{}]\n\n\
         [[block]]\nname = \"faulty\"\nafter = [\"feeder\"]\n[block.config]\nfault = \"trap\"\nin = \"marked\"\n",
        bags.join(", ")
    );
    let dir = BlockDir::from_manifest(&manifest);
    let mut host = run(&dir);
    host.wait_for(7, |e| e["event"] == "bag" && e["block"] == "faulty").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let report = dir.report();
    let seen = out.bags_of("faulty");
    assert_eq!(
        values(&seen, "n"),
        [1, 2, 3, 5, 6, 7, 8].map(|n| json!(n)),
        "each bag once, in order, but the trapping one"
    );
    assert_eq!(values(&seen, "__seq"), [1, 2, 3, 5, 6, 7, 8].map(|n| json!(n)));
    assert_eq!(report.count("faulty", "faults"), 2, "bag 4 trapped in the batch and once more alone");
    assert_eq!(report.count("faulty", "restarts"), 2);
    let letters = report.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0]["bag"]["n"].clone(), letters[0]["attempts"].clone()), (json!(4), json!(2)));
    assert_eq!(report.count("faulty", "processed"), 7);
    assert_eq!(report.count("faulty", "lost"), 0);
    assert_eq!(report.count("faulty", "batches"), 2, "bags 1–4 in one call, bags 5–8 in another");
}

/// Two senders' bags, interleaved in one queue and delivered in one batch: each sender's bags
/// arrive in the order it sent them, none twice, none missing.
#[tokio::test]
async fn order_per_sender_holds_within_a_batch() {
    let manifest = "[[block]]\nname = \"sender\"\nresponsibility = \"a\"\nafter = []\n[block.config]\nto = \"sink\"\nphase = \"init\"\ncount = 60\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"b\"\nafter = [\"a\"]\n[block.config]\nto = \"sink\"\nphase = \"init\"\ncount = 60\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = [\"b\"]\n[block.config]\nexpect = 120\n";
    let dir = BlockDir::from_manifest(manifest);
    let out = run(&dir).finish().await;
    out.assert_success();
    let seen = out.bags_of("sink");
    for sender in ["a", "b"] {
        let mine: Vec<_> = seen.iter().filter(|b| b["__from"] == sender).copied().collect();
        assert_eq!(values(&mine, "i"), (1..=60).map(|i| json!(i)).collect::<Vec<_>>(), "{sender}'s bags in order");
        assert_eq!(values(&mine, "__seq"), (1..=60).map(|i| json!(i)).collect::<Vec<_>>());
    }
    let report = dir.report();
    assert_eq!(report.count("sink", "processed"), 120);
    assert_eq!(report.count("sink", "batches"), 1, "all 120 queued bags in one call");
}

/// A bag that would take a batch past its byte bound still goes through: it ends the batch it
/// would have joined, goes alone, and what was queued after it comes in the next batch.
#[tokio::test]
async fn a_bag_past_the_batch_byte_bound_still_goes_through() {
    // 1.2 MiB: past the batch bound (1 MiB), within the receiver's raised bag limit.
    let big = 1_258_291;
    let manifest = format!(
        "[[block]]\nname = \"sender\"\nresponsibility = \"first\"\nafter = []\n[block.config]\nto = \"sink\"\nphase = \"init\"\ncount = 2\nbig_bytes = {big}\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"second\"\nafter = [\"first\"]\n[block.config]\nto = \"sink\"\nphase = \"init\"\ncount = 1\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = [\"second\"]\nmax_bag_bytes = 2097152\nstdout_bytes_per_sec = 16777216\n\
         [block.config]\nexpect = 4\n"
    );
    let dir = BlockDir::from_manifest(&manifest);
    let out = run(&dir).finish().await;
    out.assert_success();
    let seen = out.bags_of("sink");
    let order: Vec<_> =
        seen.iter().map(|b| (b["__from"].clone(), b["i"].clone(), b["big"].as_str().map(str::len))).collect();
    assert_eq!(
        order,
        [
            (json!("first"), json!(1), None),
            (json!("first"), json!(2), None),
            (json!("first"), Value::Null, Some(big)),
            (json!("second"), json!(1), None)
        ]
    );
    let report = dir.report();
    assert_eq!(report.count("sink", "processed"), 4);
    assert_eq!(report.count("sink", "batches"), 2, "the two small bags, then (after the big one alone) the last");
}
