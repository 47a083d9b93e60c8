//! `--build`: compile a workspace of guest crates for `wasm32-wasip2` and put the components a
//! manifest names into its directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The target every block is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds the cargo workspace at `guests` (release, [`TARGET`]) and copies `<name>.wasm` for
/// every name in `names` into `dir`. A file whose content did not change is left alone. The
/// build goes to `$CARGO_TARGET_DIR` when set, else `guests/target`.
pub async fn build_into(guests: &Path, dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let manifest = guests.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("`{}` is not a cargo workspace (no Cargo.toml)", guests.display());
    }
    // Cargo's own variable wins, as it does for cargo itself.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| guests.join("target"), PathBuf::from);
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

/// `bagpipe dev`: rebuilds the guest workspace whenever a source file in it changes, and copies
/// the components the manifest at `dir` names into `dir` (only those whose content changed), where
/// the running host's reloader swaps them in. Returns only when the workspace cannot be watched.
pub async fn rebuild_on_change(guests: &Path, dir: &Path) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let target = guests.join("target");
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event.paths.iter().any(|p| !p.starts_with(&target))
        {
            // A full channel already means "rebuild".
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch `{}` ({e}); rebuilding on change is off", guests.display());
            return;
        }
    };
    use notify::Watcher as _;
    if let Err(e) = watcher.watch(guests, notify::RecursiveMode::Recursive) {
        tracing::warn!("cannot watch `{}` ({e}); rebuilding on change is off", guests.display());
        return;
    }
    tracing::info!(event = "watching_sources", dir = %guests.display(), "watching the block sources in `{}`", guests.display());
    while rx.recv().await.is_some() {
        // Let a burst of saves settle, then build once.
        loop {
            tokio::select! {
                Some(()) = rx.recv() => continue,
                () = tokio::time::sleep(crate::defaults::RELOAD_DEBOUNCE) => break,
            }
        }
        let started = std::time::Instant::now();
        let names = match crate::manifest::Manifest::component_names(dir) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!("not rebuilding: {e}");
                continue;
            }
        };
        match build_into(guests, dir, &names).await {
            Ok(()) => tracing::info!(event = "rebuilt", ms = started.elapsed().as_millis() as u64, "blocks rebuilt"),
            Err(e) => tracing::warn!("rebuilding the blocks failed: {e:#}"),
        }
    }
}
