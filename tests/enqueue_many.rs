//! `enqueue-many`: a list of bags sent in one call, in order, stopping at the first one not
//! taken, with the answer `enqueue` gives for it. In one host, and across two hosts of a cluster,
//! where the list travels in as few requests as the server's message size allows.

use bagpipe_test_support::{Bagpipe, BlockDir, Nats, Want};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

fn start(dir: &BlockDir, nats: Option<&Nats>) -> Bagpipe {
    let report = dir.report_path().display().to_string();
    match nats {
        Some(nats) => Bagpipe::run_with(BIN, dir, &["--server", &nats.url(), "--report", &report]),
        None => Bagpipe::run_with(BIN, dir, &["--report", &report]),
    }
}

fn pairs(bags: &[&Value], a: &str, b: &str) -> Vec<(Value, Value)> {
    bags.iter().map(|bag| (bag[a].clone(), bag[b].clone())).collect()
}

#[tokio::test]
async fn a_list_stops_at_the_first_bag_not_taken_and_says_why() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"lister\"\nafter = [\"sink\"]\n[block.config]\nto = \"sink\"\nmany = true\n\
         bags = ['{\"n\":1}', '{\"n\":2}', '[\"not\", \"an object\"]', '{\"n\":4}']\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"to-nowhere\"\nafter = [\"lister\"]\n[block.config]\nto = \"nowhere\"\nmany = true\nbags = ['{\"n\":1}']\n",
    );
    let mut host = start(&dir, None);
    // Both answers and the two bags, in whatever order they are printed.
    let seen = host.wait_for(4, |e| e["event"] == "sent_many" || (e["event"] == "bag" && e["block"] == "sink")).await;
    let sent: Vec<_> = seen.into_iter().filter(|e| e["event"] == "sent_many").collect();
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let lister = sent.iter().find(|e| e["to"] == "sink").cloned().unwrap_or_default();
    assert_eq!((lister["taken"].clone(), lister["error"].clone()), (json!(2), json!("invalid-bag")), "{lister}");
    let nowhere = sent.iter().find(|e| e["to"] == "nowhere").cloned().unwrap_or_default();
    assert_eq!((nowhere["taken"].clone(), nowhere["error"].clone()), (json!(0), json!("unknown-target")), "{nowhere}");
    let got = out.bags_of("sink");
    assert_eq!(
        pairs(&got, "n", "__seq"),
        [(json!(1), json!(1)), (json!(2), json!(2))],
        "the two before it, and nothing after"
    );
    let report = dir.report();
    assert_eq!(report.count("lister", "sent"), 2);
    assert_eq!(report.count("sink", "refused_invalid"), 1, "the bad bag was counted where it was going");
}

#[tokio::test]
async fn a_list_crosses_to_another_host_in_order_and_stops_where_the_far_block_refuses() {
    let nats = Nats::start(false).await;
    let cluster = "[host]\ncluster = \"many\"\n\n";
    // `far` takes bags of any size up to the default; `small` only up to 64 bytes.
    let far = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"recorder\"\nresponsibility = \"far\"\nafter = []\nqueue = 64\n\n\
         [[block]]\nname = \"recorder\"\nresponsibility = \"small\"\nafter = []\nmax_bag_bytes = 64\n"
    ));
    // 40 bags of ~40 KB: more than one server message (1 MB), so more than one request.
    let near = BlockDir::from_manifest(&format!(
        "{cluster}[[block]]\nname = \"sender\"\nresponsibility = \"to-far\"\nafter = []\n[block.config]\nto = \"far\"\nmany = true\ncount = 40\npad_bytes = 40000\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"to-small\"\nafter = [\"to-far\"]\n[block.config]\nto = \"small\"\nmany = true\n\
         bags = ['{{\"n\":1}}', '{{\"n\":2}}', '{{\"n\":3,\"long\":\"{}\"}}', '{{\"n\":4}}']\n",
        "x".repeat(100)
    ));
    let mut far_host = start(&far, Some(&nats));
    let serving = |block: &str| Want::event("serving_cluster").block(block);
    far_host.log_records(&[serving("far"), serving("small"), Want::event("running")]).await;
    let mut near_host = start(&near, Some(&nats));
    let sent = near_host.wait_for(2, |e| e["event"] == "sent_many").await;
    far_host.wait_for(42, |e| e["event"] == "bag").await;
    near_host.signal(libc::SIGTERM);
    far_host.signal(libc::SIGTERM);
    let (near_out, far_out) = (near_host.finish().await, far_host.finish().await);
    near_out.assert_success();
    far_out.assert_success();

    let to_far = sent.iter().find(|e| e["to"] == "far").cloned().unwrap_or_default();
    assert_eq!(
        (to_far["taken"].clone(), to_far["queued"].clone(), to_far["error"].clone()),
        (json!(40), json!(true), Value::Null),
        "{to_far}"
    );
    let got = far_out.bags_of("far");
    let expected: Vec<_> = (1..=40).map(|i| (json!(i), json!(i))).collect();
    assert_eq!(pairs(&got, "i", "__seq"), expected, "every bag, in order, numbered by its sender");
    assert!(got.iter().all(|b| b["__from"] == "to-far" && b["pad"].as_str().map(str::len) == Some(40000)));

    let to_small = sent.iter().find(|e| e["to"] == "small").cloned().unwrap_or_default();
    assert_eq!(
        (to_small["taken"].clone(), to_small["error"].clone(), to_small["detail"].clone()),
        (json!(2), json!("too-large"), json!("64")),
        "the far host's own limit, as a single bag would hear it: {to_small}"
    );
    assert_eq!(pairs(&far_out.bags_of("small"), "n", "__seq"), [(json!(1), json!(1)), (json!(2), json!(2))]);
    let near_report = near.report();
    assert_eq!(near_report.count("to-far", "sent"), 40);
    assert_eq!(near_report.count("to-small", "sent"), 2);
}
