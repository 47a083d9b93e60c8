//! `bagpipe check` (and `run`) on bad input: every message names the file, and the line and key
//! or the missing export; the exit status is non-zero.

use bagpipe_test_support::{BlockDir, Finished, artifacts, run_to_end};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

async fn check(dir: &BlockDir) -> Finished {
    run_to_end(BIN, ["check".as_ref(), dir.path().as_os_str()]).await
}

fn assert_fails_saying(out: &Finished, needles: &[&str]) {
    assert!(!out.status.success(), "must fail:\n{}", out.stderr);
    for needle in needles {
        assert!(out.stderr.contains(needle), "stderr must contain {needle:?}:\n{}", out.stderr);
    }
}

#[tokio::test]
async fn a_valid_directory_passes_and_lists_each_block_with_its_hooks() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\n\n[[block]]\nname = \"ticker\"\n\n[[block]]\nname = \"recorder\"\nresponsibility = \"r\"\n",
    );
    let out = check(&dir).await;
    out.assert_success();
    let text = out.stdout.join("\n");
    assert!(text.contains("ok    probe (probe.wasm"), "{text}");
    assert!(text.contains("hooks: none"), "{text}");
    assert!(text.contains("ok    ticker (ticker.wasm") && text.contains("hooks: on-timer"), "{text}");
    assert!(text.contains("ok    r (recorder.wasm") && text.contains("hooks: on-enqueue"), "{text}");
    assert!(text.contains("3 blocks, all valid"), "{text}");
}

#[tokio::test]
async fn a_corrupt_component_is_named_and_refused() {
    let dir =
        BlockDir::new("[[block]]\nname = \"probe\"\n\n[[block]]\nname = \"junk\"\n", &[("probe", artifacts::PROBE)]);
    dir.write("junk.wasm", b"\x00asm but then nothing sensible at all");
    let out = check(&dir).await;
    assert_fails_saying(&out, &["bagpipe.toml:4: block `junk`", "junk.wasm` is not a valid WebAssembly component"]);
    assert!(out.stdout.join("\n").contains("ok    probe"), "the valid block is still reported");
}

#[tokio::test]
async fn a_truncated_component_is_refused() {
    let bytes = std::fs::read(artifacts::PROBE).expect("probe");
    let dir = BlockDir::new("[[block]]\nname = \"half\"\n", &[]);
    dir.write("half.wasm", &bytes[..bytes.len() / 2]);
    let out = check(&dir).await;
    assert_fails_saying(&out, &["half.wasm` is not a valid WebAssembly component"]);
}

#[tokio::test]
async fn a_component_of_another_world_names_the_missing_export() {
    let dir = BlockDir::new("[[block]]\nname = \"cmd\"\n", &[("cmd", artifacts::NOT_A_BLOCK)]);
    let out = check(&dir).await;
    assert_fails_saying(
        &out,
        &["cmd.wasm` is not a bagpipe block: it does not export `bagpipe:block/lifecycle@0.1.0`", "wasi:cli/run"],
    );
}

#[tokio::test]
async fn a_manifest_with_an_unknown_key_names_file_line_and_key() {
    let dir = BlockDir::from_manifest("[[block]]\nname = \"probe\"\nqeue = 10\n");
    let out = check(&dir).await;
    assert_fails_saying(&out, &["bagpipe.toml:3: key `qeue`: unknown field `qeue`"]);
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    assert_fails_saying(&out, &["bagpipe.toml:3: key `qeue`"]);
}

#[tokio::test]
async fn a_missing_component_file_names_the_line_and_the_file() {
    let dir =
        BlockDir::new("[[block]]\nname = \"probe\"\n\n[[block]]\nname = \"ghost\"\n", &[("probe", artifacts::PROBE)]);
    let out = check(&dir).await;
    assert_fails_saying(&out, &["bagpipe.toml:5: key `name`: component file", "ghost.wasm` does not exist"]);
}

#[tokio::test]
async fn a_missing_manifest_is_reported() {
    let dir = BlockDir::new("", &[]);
    std::fs::remove_file(dir.path().join("bagpipe.toml")).expect("remove");
    let out = check(&dir).await;
    assert_fails_saying(&out, &["bagpipe.toml: cannot read the manifest"]);
}

#[test]
fn every_fixture_is_used_by_a_test() {
    let root = bagpipe_test_support::workspace_root();
    let mut sources = String::new();
    // Test files and benchmarks, one folder deep (a test or bench with modules of its own).
    let mut dirs = vec![root.join("tests"), root.join("host/benches")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("tests dir").flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&path).expect("test source"));
            } else if path.is_dir() && path.parent() != Some(root.as_path()) && !path.ends_with("support") {
                dirs.push(path);
            }
        }
    }
    for name in artifacts::ALL {
        let ident = format!("artifacts::{}", name.to_uppercase());
        // A manifest in a test's source names it (`BlockDir::from_manifest` copies it).
        let in_manifest = [format!("name = \\\"{name}\\\""), format!("name = \"{name}\"")];
        let used = sources.contains(&ident) || in_manifest.iter().any(|m| sources.contains(m.as_str()));
        let example = ["source", "transform", "sink"].contains(name);
        assert!(
            example || used,
            "fixture `{name}` has no test: use {ident} or name it in a manifest in tests/ or a bench"
        );
    }
}

#[tokio::test]
async fn a_dependency_cycle_is_named_before_anything_starts() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\nresponsibility = \"a\"\nafter = [\"c\"]\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"b\"\nafter = [\"a\"]\n\n\
         [[block]]\nname = \"probe\"\nresponsibility = \"c\"\nafter = [\"b\"]\n",
    );
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    assert_fails_saying(&out, &["bagpipe.toml:1: key `after`: dependency cycle: a -> c -> b -> a"]);
    assert!(out.events.is_empty(), "nothing started");
}

#[tokio::test]
async fn a_missing_dependency_is_named_before_anything_starts() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"probe\"\n\n[[block]]\nname = \"probe\"\nresponsibility = \"b\"\nafter = [\"database\"]\n",
    );
    let out = check(&dir).await;
    assert_fails_saying(
        &out,
        &["bagpipe.toml:4: key `after`: block `b` is after `database`, but no block has that responsibility"],
    );
}
