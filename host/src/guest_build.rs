//! `--build`: compile a workspace of guest crates for `wasm32-wasip2` and put the components a
//! manifest names into its directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The target every block is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds the cargo workspace at `guests` (release, [`TARGET`]) and copies `<name>.wasm` for
/// every name in `names` into `dir`. A file whose content did not change is left alone.
pub async fn build_into(guests: &Path, dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let manifest = guests.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("`{}` is not a cargo workspace (no Cargo.toml)", guests.display());
    }
    let target_dir = guests.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    tracing::info!("building the blocks in `{}` for {TARGET}", guests.display());
    let status = tokio::process::Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .kill_on_drop(true)
        .status()
        .await
        .context("running cargo")?;
    if !status.success() {
        bail!(
            "building the blocks in `{}` failed ({status}); is the target installed? \
             run `rustup target add {TARGET}`",
            guests.display()
        );
    }
    let built = target_dir.join(TARGET).join("release");
    for name in names {
        let from = built.join(format!("{name}.wasm"));
        let to: PathBuf = dir.join(format!("{name}.wasm"));
        let bytes = std::fs::read(&from).with_context(|| {
            format!("the manifest names `{name}`, but `{}` builds no `{name}.wasm`", guests.display())
        })?;
        if std::fs::read(&to).ok().as_deref() != Some(bytes.as_slice()) {
            std::fs::write(&to, &bytes).with_context(|| format!("writing `{}`", to.display()))?;
            tracing::info!("installed `{}`", to.display());
        }
    }
    Ok(())
}
