//! Hot reload on a real running host with real file operations: swaps lose and duplicate
//! nothing and keep order, whichever way the file is written; state carries over; bad versions
//! are refused while the old one serves on; manifest changes apply live.

use bagpipe_test_support::{Bagpipe, BlockDir, Want, Write, artifacts, variant, version_of};
use std::ffi::OsStr;

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// A paced pipeline: `count` bags from `source` through `transform` to `sink`, which shuts the
/// host down after the last.
fn pipeline(count: u64) -> String {
    format!(
        "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n[block.config]\nexpect = {count}\n\n\
         [[block]]\nname = \"transform\"\nafter = []\n[block.config]\nop = \"stamp\"\nto = \"sink\"\n\n\
         [[block]]\nname = \"bench_source\"\nresponsibility = \"source\"\nafter = [\"sink\", \"transform\"]\n\
         [block.config]\nto = \"transform\"\ncount = {count}\nbatch = 10\ninterval_ms = 5\n"
    )
}

fn args(dir: &BlockDir) -> Vec<String> {
    vec!["--report".into(), dir.report_path().display().to_string()]
}

fn start(dir: &BlockDir) -> Bagpipe {
    Bagpipe::run_with(BIN, dir, &args(dir).iter().map(String::as_str).collect::<Vec<_>>())
}

#[tokio::test]
async fn twenty_swaps_by_copy_rename_and_chunked_write_lose_and_duplicate_nothing() {
    // The source keeps sending for as long as the swaps take (however slowly a cold cache
    // compiles), then the host is stopped (source, transform, sink: the reverse of their order),
    // and the sink must have every bag the source sent, once and in order.
    let manifest = "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\nafter = []\n\n\
         [[block]]\nname = \"transform\"\nafter = [\"sink\"]\n[block.config]\nop = \"stamp\"\nto = \"sink\"\n\n\
         [[block]]\nname = \"bench_source\"\nresponsibility = \"source\"\nafter = [\"transform\"]\n\
         [block.config]\nto = \"transform\"\ncount = 100000000\nbatch = 10\ninterval_ms = 5\n";
    let dir = BlockDir::from_manifest(manifest);
    let mut host = start(&dir);
    host.log_event("running").await;
    let ways = [Write::Copy, Write::Rename, Write::Chunked];
    let mut last = String::new();
    for k in 0..20 {
        let bytes = variant(artifacts::TRANSFORM, &format!("v{k}"));
        last = version_of(&bytes);
        dir.write_as("transform.wasm", &bytes, ways[k % 3]);
        let swapped = host.log_record(Want::event("swapped").block("transform")).await;
        assert_eq!(swapped["version"], last.as_str(), "swap {k} ({:?}) installed {last}: {swapped}", ways[k % 3]);
    }
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    // Every bag the source sent arrived exactly once and in order, whichever instance handled it.
    let report = dir.report();
    let sent = report.count("source", "sent");
    let bags = out.bags_of("sink");
    assert!(sent > 0, "bags flowed during the swaps");
    assert_eq!(bags.len() as u64, sent, "nothing lost or duplicated");
    for (k, bag) in bags.iter().enumerate() {
        let n = k as u64 + 1;
        assert_eq!((bag["n"].as_u64(), bag["__seq"].as_u64()), (Some(n), Some(n)), "bag {k}: {bag}");
    }
    // The transform took its bags in batches (`on-batch`), so each swap came between two of
    // them: a batch that a swap command interrupts ends after the bag in hand.
    assert!(report.count("transform", "batches") > 0, "bags reached the transform in batches");
    assert_eq!(report.count("transform", "swaps"), 20, "exactly one swap per change");
    assert_eq!(report.count("transform", "swaps_failed"), 0);
    assert_eq!(report.count("transform", "lost"), 0);
    assert_eq!(report.count("sink", "lost"), 0);
    assert_eq!(report.block("transform")["version"], last);
    assert!(report.block("transform")["swap_pause_p99_us"].as_f64().is_some());
}

#[tokio::test]
async fn rewriting_the_same_content_is_not_a_swap() {
    let dir = BlockDir::from_manifest(&pipeline(3000));
    let mut host = start(&dir);
    // A write before the watch starts is seen only by the reloader's first, quiet look.
    host.log_event("watching").await;
    let same = std::fs::read(artifacts::TRANSFORM).expect("transform");
    dir.write_as("transform.wasm", &same, Write::Copy);
    host.log_event_where("unchanged", |r| r["path"].as_str().is_some_and(|p| p.ends_with("/transform.wasm"))).await;
    let changed = variant(artifacts::TRANSFORM, "new");
    dir.write_as("transform.wasm", &changed, Write::Copy);
    host.log_record(Want::event("swapped").block("transform").field("version", version_of(&changed))).await;
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(dir.report().count("transform", "swaps"), 1);
}

#[tokio::test]
async fn a_counter_carries_its_count_across_a_swap() {
    let manifest = "[[block]]\nname = \"counter\"\nafter = []\n[block.config]\nevery = true\n\n\
                    [[block]]\nname = \"bench_source\"\nafter = [\"counter\"]\n[block.config]\nto = \"counter\"\ncount = 400\nbatch = 2\ninterval_ms = 5\n";
    let dir = BlockDir::from_manifest(manifest);
    let mut host = start(&dir);
    host.wait_for(1, |e| e["event"] == "counted" && e["count"] == 50).await;
    dir.write_as("counter.wasm", &variant(artifacts::COUNTER, "v2"), Write::Rename);
    let seen = host.wait_for(1, |e| e["event"] == "restored").await;
    let restored = seen.last().and_then(|e| e["count"].as_u64()).expect("restored count");
    assert!(restored >= 50, "the new version took over the count ({restored})");
    // The count goes on from there, without a gap or a reset.
    let next = host.wait_for(1, |e| e["event"] == "counted").await;
    assert_eq!(next.last().and_then(|e| e["count"].as_u64()), Some(restored + 1));
    host.wait_for(1, |e| e["event"] == "counted" && e["count"] == 400).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(out.events("count").last().map(|e| e["count"].clone()), Some(json!(400)));
    assert_eq!(dir.report().count("counter", "swaps"), 1);
}

#[tokio::test]
async fn bad_versions_are_refused_and_the_old_version_serves_on() {
    let count = 4000u64;
    let dir = BlockDir::from_manifest(&pipeline(count));
    let mut host = start(&dir);
    host.log_event("running").await;
    let good = std::fs::read(artifacts::TRANSFORM).expect("transform");
    let running = version_of(&good);
    let random: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let bad: [(&str, Vec<u8>); 5] = [
        ("truncated", good[..good.len() / 3].to_vec()),
        ("random bytes", random),
        ("wrong world", std::fs::read(artifacts::NOT_A_BLOCK).expect("not_a_block")),
        ("init error", std::fs::read(artifacts::REFUSES_TO_START).expect("refuses_to_start")),
        ("trap in init", std::fs::read(artifacts::TRAPS_IN_INIT).expect("traps_in_init")),
    ];
    for (what, bytes) in &bad {
        dir.write_as("transform.wasm", bytes, Write::Copy);
        // A file that is no block is refused before any swap; a block that fails to start is
        // refused by the swap.
        let by_reloader = Want::event("version_refused").field("component", "transform");
        let by_swap = Want::event("swap_refused").block("transform").field("version", version_of(bytes));
        let (want, expected) = match *what {
            "truncated" | "random bytes" => (by_reloader, "not a valid WebAssembly component"),
            "wrong world" => (by_reloader, "does not export `bagpipe:block/lifecycle@0.1.0`"),
            "init error" => (by_swap, "this version refuses to start"),
            _ => (by_swap, "unreachable"),
        };
        let refused = host.log_record(want).await;
        let message = refused["message"].as_str().unwrap_or("");
        assert!(message.contains(expected), "{what}: {refused}");
    }
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(out.bags_of("sink").len() as u64, count, "nothing was lost");
    let report = dir.report();
    assert_eq!(report.count("transform", "swaps"), 0);
    assert_eq!(report.count("transform", "swaps_failed"), 5);
    assert_eq!(report.count("transform", "lost"), 0);
    assert_eq!(report.block("transform")["version"], running, "the old version still runs");
}

#[tokio::test]
async fn manifest_changes_add_remove_and_reconfigure_blocks_live() {
    let v1 = "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\n\n\
              [[block]]\nname = \"probe\"\nresponsibility = \"b\"\n[block.config]\nlabel = \"first\"\n";
    let dir = BlockDir::from_manifest(v1);
    let mut host = start(&dir);
    host.wait_for(2, |e| e["event"] == "run").await;

    // c is added, a removed, b's config changes.
    let v2 = "[[block]]\nname = \"probe\"\nresponsibility = \"b\"\n[block.config]\nlabel = \"second\"\n\n\
              [[block]]\nname = \"probe\"\nresponsibility = \"c\"\n";
    dir.write_as("bagpipe.toml", v2.as_bytes(), Write::Rename);
    let seen = host.wait_for(1, |e| e["event"] == "run" && e["block"] == "c").await;
    let applied = host.log_event("manifest_applied").await;
    assert!(applied["partly"].is_null(), "applied whole: {applied}");
    let trace: Vec<String> = seen
        .iter()
        .map(|e| format!("{} {}", e["event"].as_str().unwrap_or(""), e["block"].as_str().unwrap_or("")))
        .collect();
    assert!(trace.contains(&"finish a".to_owned()), "a finished: {trace:?}");
    let b_inits: Vec<_> = seen.iter().filter(|e| e["event"] == "init" && e["block"] == "b").collect();
    assert_eq!(b_inits.len(), 1, "b swapped to a new instance: {trace:?}");
    assert_eq!(b_inits[0]["config"]["label"], "second");
    assert!(trace.contains(&"finish b".to_owned()), "the old b finished: {trace:?}");

    // An invalid edit is refused whole; nothing changes.
    dir.write_as("bagpipe.toml", b"[[block]]\nname = \"probe\"\nresponsibility = \"b\"\nqeue = 1\n", Write::Copy);
    let refused = host.log_event("manifest_refused").await;
    let message = refused["message"].as_str().unwrap_or("");
    assert!(message.contains("bagpipe.toml:4") && message.contains("qeue"), "{refused}");

    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    let finishes: Vec<_> = out.trace().into_iter().filter(|(e, _)| e == "finish").map(|(_, b)| b).collect();
    assert_eq!(finishes, ["a", "b", "c", "b"], "a taken out, old b swapped out, then c and b at shutdown");
    let report = dir.report();
    assert_eq!(report.block("b")["swaps"], 1);
    assert!(report.0["blocks"].as_array().expect("blocks").iter().all(|b| b["responsibility"] != "a"));
}

#[tokio::test]
async fn bagpipe_dev_rebuilds_an_edited_block_and_the_host_swaps_it_in() {
    let root = bagpipe_test_support::workspace_root();
    let work = tempfile::tempdir().expect("temp dir");
    let guests = work.path().join("guests");
    let crate_dir = guests.join("hello");
    let dir = work.path().join("blocks");
    std::fs::create_dir_all(crate_dir.join("src")).expect("dirs");
    std::fs::create_dir_all(&dir).expect("dirs");
    // Same profile and lock file as the repository's guests, and the same target directory, so
    // only the edited crate compiles.
    std::fs::copy(root.join("guests/Cargo.lock"), guests.join("Cargo.lock")).expect("lock file");
    std::fs::write(
        guests.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"hello\"]\n\n\
         [profile.release]\nopt-level = 3\nlto = true\ncodegen-units = 1\nstrip = true\n",
    )
    .expect("workspace");
    let sdk = root.join("guest-sdk").canonicalize().expect("sdk");
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nbagpipe-guest = {{ path = {:?} }}\n",
            sdk.display().to_string()
        ),
    )
    .expect("crate manifest");
    let source = |greeting: &str| {
        format!(
            "use bagpipe_guest::{{Block, Config, Controller, export_block, json}};\n\
             struct Hello;\n\
             impl Block for Hello {{\n\
                 fn init(_ctl: &Controller, _config: Config) -> Result<Self, String> {{ Ok(Hello) }}\n\
                 fn run(&mut self, _ctl: &Controller) {{ println!(\"{{}}\", json!({{\"event\": \"hello\", \"greeting\": {greeting:?}}})); }}\n\
             }}\n\
             export_block!(Hello);\n"
        )
    };
    std::fs::write(crate_dir.join("src/lib.rs"), source("one")).expect("source");
    std::fs::write(dir.join("bagpipe.toml"), "[[block]]\nname = \"hello\"\n").expect("manifest");

    let target = root.join("guests/target").canonicalize().expect("target dir");
    let mut host = Bagpipe::start_env(
        BIN,
        [OsStr::new("dev"), guests.as_os_str(), dir.as_os_str()],
        &[("CARGO_TARGET_DIR", target.as_os_str())],
    );
    host.wait_for(1, |e| e["event"] == "hello" && e["greeting"] == "one").await;
    host.log_event("watching_sources").await;
    let edited = std::time::Instant::now();
    std::fs::write(crate_dir.join("src/lib.rs"), source("two")).expect("edit");
    host.wait_for(1, |e| e["event"] == "hello" && e["greeting"] == "two").await;
    // Not asserted (timing is measured, not tested): reported for the record.
    eprintln!("edit-to-live: {:?}", edited.elapsed());
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert!(!out.log_events("rebuilt").is_empty(), "{}", out.stderr);
    assert!(!out.log_events("swapped").is_empty(), "{}", out.stderr);
}

#[tokio::test]
async fn an_edited_bag_limit_holds_for_every_sender_at_once() {
    let manifest = |limit: &str, round: u32| {
        format!(
            "[[block]]\nname = \"recorder\"\nresponsibility = \"sink\"\n{limit}\n\n\
             [[block]]\nname = \"sender\"\nafter = [\"sink\"]\n[block.config]\nto = \"sink\"\nphase = \"init\"\nbig_bytes = 100\nround = {round}\n"
        )
    };
    let dir = BlockDir::from_manifest(&manifest("", 1));
    let mut host = start(&dir);
    let first = host.wait_for(1, |e| e["event"] == "sent").await;
    assert_eq!(first.iter().find(|e| e["event"] == "sent").expect("sent")["delivered"], true);
    // The sink's limit drops to 64 bytes; the sender is swapped too (its config changed) and
    // sends the same bag again from its new instance's init.
    dir.write_as("bagpipe.toml", manifest("max_bag_bytes = 64", 2).as_bytes(), Write::Rename);
    let second = host.wait_for(1, |e| e["event"] == "sent").await;
    let refused = second.iter().find(|e| e["event"] == "sent").expect("sent");
    assert_eq!(refused["error"], "too-large", "{refused}");
    assert_eq!(refused["detail"], "64", "{refused}");
    host.log_event("manifest_applied").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    assert_eq!(out.bags_of("sink").len(), 1, "only the bag sent before the edit");
}
