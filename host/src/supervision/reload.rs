//! Hot reload: watch the component directory, and when a component file or the manifest changes
//! (and has stopped changing), compile and check the new version off the block tasks, then hand
//! it to the supervisor, which swaps it in between two bags.
//!
//! Invariants: only complete, valid, new content reaches the supervisor: a change is acted on
//! once the file has been quiet for [`RELOAD_DEBOUNCE`]; identical content (same hash as the
//! running version) is ignored; a version that does not compile or fails the world check, or a
//! manifest that does not parse, is refused here and nothing running is touched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::block::component::{BlockComponent, Loader};
use crate::defaults::{MANIFEST_FILE, RELOAD_DEBOUNCE};
use crate::error::LoadError;
use crate::manifest::Manifest;
use crate::routing::router::Router;
use crate::runtime::cache::ContentHash;
use crate::stats::Counters;
use crate::supervision::supervisor::{Reload, SwapOutcome};

/// Watches one component directory for one running host.
pub struct Reloader<'a> {
    loader: &'a Loader,
    manifest: Manifest,
    /// The running version of each component name.
    versions: HashMap<String, ContentHash>,
    /// The hash of the manifest text in force.
    manifest_hash: Option<ContentHash>,
    reloads: mpsc::Sender<Reload>,
    router: Arc<Router>,
}

impl<'a> Reloader<'a> {
    /// A reloader for `manifest`, whose blocks run `components` (in its order).
    pub fn new(
        loader: &'a Loader,
        manifest: &Manifest,
        components: &[Arc<BlockComponent>],
        reloads: mpsc::Sender<Reload>,
        router: Arc<Router>,
    ) -> Self {
        let versions = manifest.blocks.iter().zip(components).map(|(b, c)| (b.name.clone(), c.hash)).collect();
        let manifest_hash = std::fs::read(&manifest.path).ok().map(|text| ContentHash::of(&text));
        Self { loader, manifest: manifest.clone(), versions, manifest_hash, reloads, router }
    }

    /// Watches until the supervisor goes away. Returns at once (after logging why) when the
    /// directory cannot be watched.
    pub async fn run(mut self) {
        let (tx, mut rx) = mpsc::channel::<notify::Event>(1024);
        // Events that found the channel full are not lost: the next round looks at everything.
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                if tx.try_send(event).is_err() {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!("watching the component directory: {e}"),
        });
        let dir = self.manifest.dir.clone();
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot watch `{}` ({e}); hot reload is off", dir.display());
                return;
            }
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!("cannot watch `{}` ({e}); hot reload is off", dir.display());
            return;
        }
        tracing::info!(event = "watching", dir = %dir.display(), "watching `{}` for new versions", dir.display());
        // A file that changed between loading and watching would otherwise go unnoticed: look
        // at every file once (unchanged content is ignored).
        let mut pending: HashMap<PathBuf, Instant> =
            self.all_paths().into_iter().map(|p| (p, Instant::now() + RELOAD_DEBOUNCE)).collect();
        // Paths looked at only because of that first look: "unchanged" is not news for them.
        let mut first_look: std::collections::HashSet<PathBuf> = pending.keys().cloned().collect();
        loop {
            let due = pending.values().min().copied();
            tokio::select! {
                event = rx.recv() => {
                    let Some(event) = event else { return };
                    if matches!(event.kind, EventKind::Access(_)) && !closed_after_write(&event.kind) {
                        continue;
                    }
                    for path in event.paths {
                        if self.relevant(&path) {
                            first_look.remove(&path);
                            pending.insert(path, Instant::now() + RELOAD_DEBOUNCE);
                        }
                    }
                    if overflowed.swap(false, Ordering::Relaxed) {
                        for path in self.all_paths() {
                            pending.insert(path, Instant::now() + RELOAD_DEBOUNCE);
                        }
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    let now = Instant::now();
                    let mut ready: Vec<PathBuf> = pending.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
                    // The manifest first: it may name the components that changed with it.
                    ready.sort_by_key(|p| !is_manifest(p));
                    for path in ready {
                        pending.remove(&path);
                        if self.reloads.is_closed() {
                            return;
                        }
                        let quiet = first_look.remove(&path);
                        if is_manifest(&path) {
                            self.manifest_changed(&path).await;
                        } else {
                            self.component_changed(&path, quiet).await;
                        }
                    }
                }
            }
        }
    }

    /// The manifest, or a `.wasm` file the manifest names.
    fn relevant(&self, path: &Path) -> bool {
        is_manifest(path) || component_name(path).is_some_and(|n| self.versions.contains_key(&n))
    }

    fn all_paths(&self) -> Vec<PathBuf> {
        let dir = &self.manifest.dir;
        let mut paths: Vec<PathBuf> = self.versions.keys().map(|n| dir.join(format!("{n}.wasm"))).collect();
        paths.push(dir.join(MANIFEST_FILE));
        paths
    }

    async fn component_changed(&mut self, path: &Path, quiet: bool) {
        let Some(name) = component_name(path) else { return };
        let bytes = match crate::block::component::read_component(path).await {
            Ok(bytes) => bytes,
            Err(LoadError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!("`{}` was removed; the running version carries on", path.display());
                return;
            }
            Err(e) => {
                tracing::warn!(event = "version_refused", component = %name, "{e}; the running version carries on");
                return;
            }
        };
        let hash = ContentHash::of(&bytes);
        if self.versions.get(&name) == Some(&hash) {
            if !quiet {
                tracing::info!(event = "unchanged", path = %path.display(), "`{}` changed but its content did not", path.display());
            }
            return;
        }
        tracing::info!(component = %name, version = %hash, "new version: compiling");
        let component = match self.loader.load_bytes(path, bytes).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = "version_refused", component = %name, "new version refused, the running version carries on: {e}");
                self.count_refused(&name);
                return;
            }
        };
        let (done, outcome) = oneshot::channel();
        if self.reloads.send(Reload::Component { name: name.clone(), component, done }).await.is_err() {
            return;
        }
        let Ok(outcome) = outcome.await else { return };
        log_outcome(&name, &outcome);
        if outcome.refused.is_empty() {
            self.versions.insert(name, hash);
        }
    }

    async fn manifest_changed(&mut self, path: &Path) {
        let hash = tokio::fs::read(path).await.ok().map(|text| ContentHash::of(&text));
        if hash.is_some() && hash == self.manifest_hash {
            tracing::debug!("the manifest changed but its content did not");
            return;
        }
        let manifest = match Manifest::load(path) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(
                    event = "manifest_refused",
                    "manifest change refused, the running blocks are unchanged: {e}"
                );
                return;
            }
        };
        let mut components = Vec::with_capacity(manifest.blocks.len());
        for spec in &manifest.blocks {
            match self.loader.load(&spec.component).await.and_then(|c| c.fits(spec).map(|()| c)) {
                Ok(c) => components.push(c),
                Err(e) => {
                    tracing::warn!(
                        event = "manifest_refused",
                        "manifest change refused, the running blocks are unchanged: block `{}`: {e}",
                        spec.responsibility
                    );
                    return;
                }
            }
        }
        let versions: HashMap<String, ContentHash> =
            manifest.blocks.iter().zip(&components).map(|(b, c)| (b.name.clone(), c.hash)).collect();
        let (done, outcome) = oneshot::channel();
        let reload = Reload::Manifest { manifest: Box::new(manifest.clone()), components, done };
        if self.reloads.send(reload).await.is_err() {
            return;
        }
        let Ok(outcome) = outcome.await else { return };
        log_outcome("manifest", &outcome);
        self.manifest = manifest;
        self.versions = versions;
        if outcome.refused.is_empty() {
            tracing::info!(event = "manifest_applied", "manifest change applied");
            self.manifest_hash = hash;
        } else {
            // Saving the same file again tries the refused blocks again (an address in use may
            // have been freed); what was applied is not applied twice.
            tracing::info!(
                event = "manifest_applied",
                partly = true,
                "manifest change applied, except to the blocks that refused it"
            );
            self.manifest_hash = None;
        }
    }

    fn count_refused(&self, name: &str) {
        for route in self.router.routes() {
            if route.status.name == name && !route.status.builtin {
                Counters::bump(&route.status.counters.swaps_failed);
            }
        }
    }
}

fn log_outcome(what: &str, outcome: &SwapOutcome) {
    for (block, e) in &outcome.refused {
        tracing::warn!(event = "change_refused", block = %block, "`{what}` change refused by the block, which keeps running as it was: {e}");
    }
}

fn closed_after_write(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)))
}

fn is_manifest(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == MANIFEST_FILE)
}

fn component_name(path: &Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    path.file_stem()?.to_str().map(str::to_owned)
}
