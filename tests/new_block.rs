//! `bagpipe new`: the crate it writes (files, SDK paths, a manifest `bagpipe check` accepts), and
//! what it refuses (a place already taken, a bad name, a directory that is no bagpipe
//! repository). Building and testing the generated crates is `.ci/new-block`'s job: it compiles
//! the host again for each, too slow for this suite.

use std::path::Path;
use std::process::{Command, Output};

use bagpipe_test_support::artifacts;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// Runs `bagpipe` with `args`.
fn bagpipe(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running bagpipe")
}

fn new(name: &str, kind: &str, dir: &Path) -> Output {
    // `--` so that a bad name such as `-demo` reaches `new` rather than clap.
    bagpipe(&["new", "--kind", kind, "--dir", dir.to_str().expect("UTF-8 temp dir"), "--", name])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_fails_saying(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "must fail; stdout:\n{}", text(&out.stdout));
    assert!(stderr.contains(needle), "stderr must contain {needle:?}:\n{stderr}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn writes_a_transform_crate_that_depends_on_this_repositorys_sdks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = new("demo", "transform", tmp.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let root = tmp.path().join("demo");
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "tests/block.rs",
        "bagpipe.toml",
        "tests/demo.toml",
        "README.md",
        ".gitignore",
    ] {
        assert!(root.join(file).is_file(), "{file} is missing");
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    let cargo = read(&root.join("Cargo.toml"));
    for needle in [
        "name = \"demo\"".to_owned(),
        "\n[workspace]\n".to_owned(),
        "crate-type = [\"cdylib\"]".to_owned(),
        format!("bagpipe-guest = {{ path = \"{}\" }}", repo.join("guest-sdk").display()),
        format!("bagpipe-test = {{ path = \"{}\" }}", repo.join("test-sdk").display()),
        "[profile.release]".to_owned(),
        "[profile.dev.package.cranelift-codegen]".to_owned(),
        "debug = \"line-tables-only\"".to_owned(),
    ] {
        assert!(cargo.contains(&needle), "Cargo.toml must contain {needle:?}:\n{cargo}");
    }
    assert!(read(&root.join("src/lib.rs")).contains("export_block!(Transform, hooks = [on_enqueue]);"));
    assert!(read(&root.join("tests/block.rs")).contains("bagpipe_test"));
    assert!(read(&root.join(".gitignore")).contains("/target"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("cargo test") && stdout.contains(&root.display().to_string()), "{stdout}");
}

#[test]
fn every_kind_writes_a_manifest_bagpipe_check_accepts() {
    // The generated crates are not built here: an example block with the same hooks stands in
    // for each component.
    for (kind, stand_in, hooks) in [
        ("transform", artifacts::TRANSFORM, "on-enqueue"),
        ("protocol", artifacts::JSONL, "net"),
        ("sink", artifacts::SINK, "on-enqueue"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let name = format!("my-{kind}");
        let out = new(&name, kind, tmp.path());
        assert!(out.status.success(), "{kind}: {}", text(&out.stderr));
        let root = tmp.path().join(&name);
        let manifest = read(&root.join("bagpipe.toml"));
        // The component is the file cargo builds (`my_transform.wasm`), the responsibility the name.
        let component = format!("my_{kind}");
        assert!(manifest.contains(&format!("name = \"{component}\"\nresponsibility = \"{name}\"")), "{manifest}");
        std::fs::copy(stand_in, root.join(format!("{component}.wasm"))).unwrap();
        let out = bagpipe(&["check", root.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{kind}: bagpipe check:\n{stdout}\n{}", text(&out.stderr));
        assert!(stdout.contains(&format!("ok    {name} ({component}.wasm")) && stdout.contains(hooks), "{stdout}");
    }
}

#[test]
fn refuses_a_place_already_taken_and_leaves_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(new("demo", "transform", tmp.path()).status.success());
    let lib = tmp.path().join("demo/src/lib.rs");
    std::fs::write(&lib, "// mine\n").unwrap();
    assert_fails_saying(&new("demo", "sink", tmp.path()), "demo` already exists");
    assert_eq!(read(&lib), "// mine\n");
}

#[test]
fn refuses_names_that_cannot_name_a_crate_or_a_block() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["Demo", "1demo", "de mo", "../demo", "demo.x", "-demo", ""] {
        assert_fails_saying(&new(bad, "transform", tmp.path()), "is not a block name");
    }
    for taken in ["self", "std", "bagpipe-test", "initiator"] {
        assert_fails_saying(&new(taken, "transform", tmp.path()), "cannot name a block");
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing is written");
}

#[test]
fn refuses_an_sdk_that_is_not_a_bagpipe_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let out = bagpipe(&["new", "demo", "--dir", dir, "--sdk", dir]);
    assert_fails_saying(&out, "is not a bagpipe repository: it has no `guest-sdk/Cargo.toml`");
    let out = bagpipe(&["new", "demo", "--dir", dir, "--sdk", "/no/such/repository"]);
    assert_fails_saying(&out, "the bagpipe repository `/no/such/repository` cannot be found");
    assert!(!tmp.path().join("demo").exists());
}
