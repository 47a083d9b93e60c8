//! The example in `examples/pipeline` runs as the README says: the sink prints every bag,
//! transformed by both responsibilities of `transform`, then shuts the host down.

use bagpipe_test_support::{BlockDir, run_to_end, workspace_root};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

#[tokio::test]
async fn the_example_pipeline_runs_to_the_end_and_exits_zero() {
    let manifest =
        std::fs::read_to_string(workspace_root().join("examples/pipeline/bagpipe.toml")).expect("example manifest");
    let dir = BlockDir::from_manifest(&manifest);
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let bags: Vec<&Value> = out.events.iter().collect();
    assert_eq!(bags.len(), 10, "{:?}", out.stdout);
    for (k, bag) in bags.iter().enumerate() {
        let n = k as u64 + 1;
        assert_eq!(bag["n"], n);
        assert_eq!(bag["text"], format!("HELLO NUMBER {n}"));
        assert_eq!(bag["stamped_by"], "stamp");
        assert_eq!(bag["seen_by_upper"], n);
        assert_eq!(bag["seen_by_stamp"], n);
        assert_eq!(bag["__from"], "stamp");
        assert_eq!(bag["__seq"], n);
        assert_eq!(bag["last"], n == 10);
    }
    let finished: Vec<_> = out.log_events("finished").iter().filter_map(|r| r["block"].as_str()).collect();
    assert_eq!(finished, ["sink", "stamp", "upper", "source"], "finished in reverse order:\n{}", out.stderr);
}
