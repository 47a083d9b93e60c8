//! Bags: routing with `__from`/`__seq`, order per sender, refused bags and their typed errors,
//! targets without `on-enqueue`, unknown targets, self-enqueue, separate state per
//! responsibility, full queues.

use bagpipe_test_support::{BlockDir, Finished, run_to_end};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

async fn run(manifest: &str) -> Finished {
    let dir = BlockDir::from_manifest(manifest);
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    out
}

/// What the sender reported for each bag: `delivered` or the error's name.
fn results(out: &Finished) -> Vec<String> {
    out.events("sent")
        .iter()
        .map(|e| match &e["delivered"] {
            Value::Bool(b) => b.to_string(),
            _ => e["error"].as_str().unwrap_or("?").to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn bags_arrive_in_order_with_sender_and_sequence() {
    let out = run("[[block]]\nname = \"recorder\"\n[block.config]\nexpect = 200\n\n\
         [[block]]\nname = \"sender\"\n[block.config]\nto = \"recorder\"\ncount = 200\n")
    .await;
    let bags = out.bags_of("recorder");
    assert_eq!(bags.len(), 200);
    for (k, bag) in bags.iter().enumerate() {
        let n = k as u64 + 1;
        assert_eq!(**bag, json!({"__from": "sender", "__seq": n, "i": n}));
    }
}

#[tokio::test]
async fn each_sender_keeps_its_order_when_several_send_to_one_block() {
    let out = run("[[block]]\nname = \"recorder\"\n[block.config]\nexpect = 300\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s1\"\n[block.config]\nto = \"recorder\"\ncount = 150\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s2\"\n[block.config]\nto = \"recorder\"\ncount = 150\n")
    .await;
    let bags = out.bags_of("recorder");
    assert_eq!(bags.len(), 300);
    for sender in ["s1", "s2"] {
        let seqs: Vec<u64> =
            bags.iter().filter(|b| b["__from"] == sender).filter_map(|b| b["__seq"].as_u64()).collect();
        let items: Vec<u64> = bags.iter().filter(|b| b["__from"] == sender).filter_map(|b| b["i"].as_u64()).collect();
        assert_eq!(seqs, (1..=150).collect::<Vec<_>>(), "{sender}'s sequence");
        assert_eq!(items, seqs, "{sender}'s bags in the order sent");
    }
}

#[tokio::test]
async fn bad_bags_are_refused_with_a_reason_and_good_ones_still_arrive() {
    let deep = format!("{{\"deep\":{}1{}}}", "[".repeat(70), "]".repeat(70));
    let manifest = format!(
        r#"[[block]]
name = "recorder"
[block.config]
expect = 3

[[block]]
name = "sender"
[block.config]
to = "recorder"
bags = ['{{"__from":"forged"}}', 'not json', '[1,2]', '{{"a":', '', 'null', '{{"ok":1}}', '{deep}']
"#
    );
    let out = run(&manifest).await;
    assert_eq!(
        results(&out),
        ["invalid-bag", "invalid-bag", "invalid-bag", "invalid-bag", "true", "true", "true", "invalid-bag"]
    );
    let detail = |i: usize| out.events("sent")[i]["detail"].as_str().unwrap_or("").to_owned();
    assert!(detail(0).contains("`__from`"), "{}", detail(0));
    assert!(detail(1).contains("not JSON"), "{}", detail(1));
    assert!(detail(2).contains("JSON object, not an array"), "{}", detail(2));
    assert!(detail(7).contains("nested deeper than the limit of 64"), "{}", detail(7));
    let bags: Vec<_> = out.bags_of("recorder").into_iter().cloned().collect();
    assert_eq!(
        bags,
        [
            json!({"__from": "sender", "__seq": 1}),
            json!({"__from": "sender", "__seq": 2}),
            json!({"__from": "sender", "__seq": 3, "ok": 1}),
        ]
    );
}

#[tokio::test]
async fn oversize_bags_are_refused_with_the_receivers_limit() {
    let out = run(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"small\"\nmax_bag_bytes = 100\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"normal\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s1\"\n[block.config]\nto = \"small\"\nbig_bytes = 200\nbags = ['{\"fits\":true}']\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s2\"\n[block.config]\nto = \"normal\"\nbig_bytes = 1100000\nshutdown_after = true\n",
    )
    .await;
    let sent = out.events("sent");
    let by = |to: &str| {
        sent.iter().filter(|e| e["to"] == to).map(|e| (e["error"].clone(), e["detail"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(by("small"), [(Value::Null, Value::Null), (json!("too-large"), json!("100"))]);
    assert_eq!(by("normal"), [(json!("too-large"), json!("1048576"))]);
    assert_eq!(out.bags_of("small").len(), 1);
    assert!(out.bags_of("normal").is_empty());
}

#[tokio::test]
async fn a_target_without_on_enqueue_gets_nothing_and_the_sender_is_told_false() {
    let out = run(
        "[[block]]\nname = \"probe\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s1\"\n[block.config]\nto = \"probe\"\ncount = 2\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s2\"\n[block.config]\nto = \"initiator\"\ncount = 1\nshutdown_after = true\n",
    )
    .await;
    assert_eq!(results(&out), ["false", "false", "false"]);
}

#[tokio::test]
async fn an_unknown_target_is_a_typed_error() {
    let out =
        run("[[block]]\nname = \"sender\"\n[block.config]\nto = \"nobody\"\ncount = 1\nshutdown_after = true\n").await;
    assert_eq!(results(&out), ["unknown-target"]);
    let detail = out.events("sent")[0]["detail"].as_str().unwrap_or("").to_owned();
    assert!(detail.contains("`nobody`"), "{detail}");
}

#[tokio::test]
async fn a_block_can_send_to_itself() {
    let out = run("[[block]]\nname = \"sender\"\nresponsibility = \"loop\"\n[block.config]\nto = \"loop\"\ncount = 3\nshutdown_after = true\n").await;
    assert_eq!(results(&out), ["true", "true", "true"]);
    let bags: Vec<_> = out.bags_of("loop").into_iter().cloned().collect();
    assert_eq!(bags, (1..=3u64).map(|i| json!({"__from": "loop", "__seq": i, "i": i})).collect::<Vec<_>>());
}

#[tokio::test]
async fn two_responsibilities_of_one_component_keep_separate_state() {
    let out = run(
        "[[block]]\nname = \"counter\"\nresponsibility = \"c1\"\n\n\
         [[block]]\nname = \"counter\"\nresponsibility = \"c2\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s1\"\n[block.config]\nto = \"c1\"\ncount = 3\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"s2\"\n[block.config]\nto = \"c2\"\ncount = 2\nshutdown_after = true\n",
    )
    .await;
    let counts: Vec<_> = out.events("count").iter().map(|e| (e["block"].clone(), e["count"].clone())).collect();
    assert_eq!(counts, [(json!("c2"), json!(2)), (json!("c1"), json!(3))]);
}

#[tokio::test]
async fn a_full_queue_makes_the_sender_wait_then_refuses_and_counts() {
    // Bags sent from `init` wait in the recorder's queue of 2 (nothing runs before every init
    // is done), so the third and later find it full for the whole enqueue timeout.
    let out = run("[host]\nenqueue_timeout_ms = 20\n\n\
         [[block]]\nname = \"recorder\"\nqueue = 2\n[block.config]\nexpect = 2\n\n\
         [[block]]\nname = \"sender\"\n[block.config]\nto = \"recorder\"\ncount = 5\nphase = \"init\"\n")
    .await;
    assert_eq!(results(&out), ["true", "true", "queue-full", "queue-full", "queue-full"]);
    assert_eq!(out.bags_of("recorder").len(), 2);
    assert_eq!(
        out.final_stats("recorder")["refused_full"],
        3,
        "the refusals show in the recorder's stats:\n{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_queue_holds_at_most_its_bytes_whatever_the_count() {
    // Room for 1,024 bags by count, but 2 KiB by bytes: bags of ~900 bytes sent from `init`
    // (nothing is delivered before every init is done) fill it after two.
    let pad = "x".repeat(900);
    let bags: Vec<String> = ["a", "b", "c"].iter().map(|k| format!("'{{\"{k}\":\"{pad}\"}}'")).collect();
    let out = run(&format!(
        "[host]\nenqueue_timeout_ms = 20\n\n\
         [[block]]\nname = \"recorder\"\nqueue_bytes = 2048\nmax_bag_bytes = 1024\n[block.config]\nexpect = 2\n\n\
         [[block]]\nname = \"sender\"\n[block.config]\nto = \"recorder\"\nphase = \"init\"\nbags = [{}]\n",
        bags.join(", ")
    ))
    .await;
    assert_eq!(results(&out), ["true", "true", "queue-full"]);
    assert_eq!(out.bags_of("recorder").len(), 2);
    assert_eq!(out.final_stats("recorder")["refused_full"], 1, "the refusal is counted:\n{}", out.stderr);
}
