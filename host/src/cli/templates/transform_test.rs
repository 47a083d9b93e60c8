//! The block through the real host (`bagpipe-test`): built for wasm32-wasip2, started with a
//! config and a stand-in for the block it sends to, given bags; what reached the stand-in is
//! read back. `cargo test` runs these.
use bagpipe_test::{block, build, json};

/// The block's component, built once per test run.
fn component() -> std::path::PathBuf {
    build(env!("CARGO_MANIFEST_DIR")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn passes_each_bag_on_with_seen_added() {
    let mut b = block(component())
        .config(json!({"to": "sink"}))
        .stand_in("sink")
        .start()
        .unwrap();
    b.enqueue(json!({"text": "hi"})).unwrap();
    b.enqueue(json!({"text": "there", "n": 2})).unwrap();
    assert_eq!(
        b.bags_to("sink"),
        vec![
            json!({"text": "hi", "seen": true}),
            json!({"text": "there", "n": 2, "seen": true})
        ]
    );
    b.finish().unwrap();
}

#[test]
fn does_not_start_without_to() {
    let Err(e) = block(component()).start() else {
        panic!("`init` must refuse a config without `to`")
    };
    assert!(e.to_string().contains("config `to`"), "{e}");
}
