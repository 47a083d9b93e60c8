//! The block through the real host (`bagpipe-test`): built for wasm32-wasip2, started, given
//! bags; what it printed is read back. `cargo test` runs these.
use bagpipe_test::{block, build, json};

/// The block's component, built once per test run.
fn component() -> std::path::PathBuf {
    build(env!("CARGO_MANIFEST_DIR")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn prints_each_bag_as_a_json_line() {
    let mut b = block(component()).start().unwrap();
    b.enqueue(json!({"text": "hi"})).unwrap();
    b.enqueue(json!({"n": 2})).unwrap();
    assert_eq!(b.printed(), "{\"text\":\"hi\"}\n{\"n\":2}\n");
    assert!(b.faults().is_empty());
    b.finish().unwrap();
}
