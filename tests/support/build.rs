//! Builds every block in `guests/` for wasm32-wasip2 and writes one constant per component
//! (`PROBE`, `SENDER`, ...) holding its path, so tests name the fixture they run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("workspace root");
    let guests = root.join("guests");
    // Cargo scans a directory given here for changes; `guests/target` is our own output.
    for dir in ["guest-sdk", "wit"] {
        println!("cargo::rerun-if-changed={}", root.join(dir).display());
    }
    for entry in std::fs::read_dir(&guests).expect("guests directory").flatten() {
        if entry.file_name() != "target" {
            println!("cargo::rerun-if-changed={}", entry.path().display());
        }
    }

    let target_dir = guests.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host build (and clippy's wrapper) must not leak into the guest build.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET"]
    {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the guest blocks");
    assert!(
        status.success(),
        "building the guest blocks failed ({status}); is the target installed? run `rustup target add wasm32-wasip2`"
    );

    let release = target_dir.join("wasm32-wasip2").join("release");
    let mut consts = String::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&release).expect("guest release directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let stem = path.file_stem().and_then(|s| s.to_str()).expect("utf-8 file name").to_owned();
            let ident = stem.to_uppercase().replace('-', "_");
            consts
                .push_str(&format!("/// `{stem}.wasm`\npub const {ident}: &str = {:?};\n", path.display().to_string()));
            names.push(stem);
        }
    }
    names.sort();
    consts.push_str(&format!("/// Every component built.\npub const ALL: &[&str] = &{names:?};\n"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("artifacts.rs");
    std::fs::write(out, consts).expect("writing artifacts.rs");
}
