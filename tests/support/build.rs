//! Builds every block in `guests/` for wasm32-wasip2 and writes one constant per component
//! (`PROBE`, `SENDER`, ...) holding its path, so tests name the fixture they run, and `path`,
//! which finds a component by the name a manifest gives it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("workspace root");
    let guests = root.join("guests");
    println!("cargo::rerun-if-changed=build.rs");
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
    // Only the workspace's own crates: the target directory may hold other components (stale
    // ones, or a `bagpipe dev` test's).
    for stem in member_components(&guests) {
        let path = release.join(format!("{stem}.wasm"));
        assert!(path.is_file(), "the guest build produced no {}", path.display());
        let ident = stem.to_uppercase();
        consts.push_str(&format!("/// `{stem}.wasm`\npub const {ident}: &str = {:?};\n", path.display().to_string()));
        names.push(stem);
    }
    names.sort();
    consts.push_str(&format!("/// Every component built.\npub const ALL: &[&str] = &{names:?};\n"));
    consts.push_str(
        "/// The path of the component a manifest names `name` (`name.wasm`), if one was built.\n\
         pub fn path(name: &str) -> Option<&'static str> {\n    match name {\n",
    );
    for stem in &names {
        consts.push_str(&format!("        {stem:?} => Some({}),\n", stem.to_uppercase()));
    }
    consts.push_str("        _ => None,\n    }\n}\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("artifacts.rs");
    std::fs::write(out, consts).expect("writing artifacts.rs");
}

/// The component file stems of the guest workspace's crates (`guests/<group>/<crate>`): the
/// package name with `-` as `_`.
fn member_components(guests: &Path) -> Vec<String> {
    let mut stems = Vec::new();
    for group in ["pipeline", "fixtures", "protocols"] {
        let Ok(entries) = std::fs::read_dir(guests.join(group)) else { continue };
        for entry in entries.flatten() {
            let Ok(manifest) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else { continue };
            let name = manifest
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = ").map(|v| v.trim_matches('"').to_owned()))
                .expect("a package name");
            stems.push(name.replace('-', "_"));
        }
    }
    stems.sort();
    stems
}
