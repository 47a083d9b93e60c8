//! Building a block crate for the test that loads it: `cargo build --release --target
//! wasm32-wasip2` in a target directory of its own (`bagpipe-test` under `CARGO_TARGET_DIR`, or
//! under the crate's `target/`: never the directory of the build running the test, whose lock
//! that build may hold), once per crate per test process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The target blocks are built for.
const TARGET: &str = "wasm32-wasip2";

/// Why a block crate could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BuildError {
    /// cargo could not be run.
    #[error("running cargo: {0}")]
    Cargo(String),
    /// The build failed; cargo's output says why.
    #[error("building {crate_dir} for {TARGET} failed{hint}:\n{output}")]
    Failed {
        /// The crate.
        crate_dir: String,
        /// A hint when the cause is known.
        hint: String,
        /// What cargo printed.
        output: String,
    },
    /// The build made no component.
    #[error("building {0} made no .wasm component: is its lib `crate-type = [\"cdylib\"]`?")]
    NoComponent(String),
}

/// Builds the block crate at `dir` (its `Cargo.toml`'s directory, e.g.
/// `env!("CARGO_MANIFEST_DIR")`) for `wasm32-wasip2`, release, and returns its component. Tests
/// of one process share one build.
pub fn build(dir: impl AsRef<Path>) -> Result<PathBuf, BuildError> {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, BuildError>>>> = OnceLock::new();
    let dir = dir.as_ref().to_path_buf();
    let mut built = BUILT.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    built.entry(dir.clone()).or_insert_with(|| build_now(&dir)).clone()
}

fn build_now(dir: &Path) -> Result<PathBuf, BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(shared) => PathBuf::from(shared).join("bagpipe-test"),
        None => dir.join("target").join("bagpipe-test"),
    };
    let output = Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--release", "--message-format=json-render-diagnostics", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .map_err(|e| BuildError::Cargo(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let hint = if stderr.contains("E0463") || stderr.contains("may not be installed") {
            format!(" (the {TARGET} target is missing: run `rustup target add {TARGET}`)")
        } else {
            String::new()
        };
        return Err(BuildError::Failed { crate_dir: dir.display().to_string(), hint, output: stderr });
    }
    // The last compiler artifact of a cdylib is the block's component.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut component = None;
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten();
        for file in files.filter_map(|f| f.as_str()).filter(|f| f.ends_with(".wasm")) {
            component = Some(PathBuf::from(file));
        }
    }
    component.ok_or_else(|| BuildError::NoComponent(dir.display().to_string()))
}
