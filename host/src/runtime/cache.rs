//! Compiled components, cached by the SHA-256 of their bytes: in memory for the life of the host,
//! and on disk across runs.
//!
//! Compiling is the slow step of loading a block (~0.1 s per component in a release host, over a
//! second in a debug one); loading a cached compilation takes well under a millisecond. The disk
//! cache is keyed by content and by the engine's compatibility hash, so a different wasmtime or a
//! different engine configuration never reads an entry it did not write.
//!
//! Invariant: the cache never changes what runs: an entry is the compilation of exactly the bytes
//! whose hash names it. A broken or unreadable entry is recompiled and rewritten; disk trouble is
//! logged and never fails a load.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The SHA-256 of a component file: the version of a block.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The full hash in hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 12 hex digits, for logs and tables.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// Where compiled components are kept.
pub struct ComponentCache {
    engine: Engine,
    dir: Option<PathBuf>,
    engine_tag: String,
    memory: Mutex<HashMap<ContentHash, Component>>,
}

impl ComponentCache {
    /// A cache for `engine`; `dir` is the disk cache, `None` for memory only. A directory that
    /// another user could write to is not used: its entries are native code the host would run.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let dir = dir.filter(|d| match private_dir(d) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(dir = %d.display(), "not using the compile cache directory: {why}");
                false
            }
        });
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let engine_tag = format!("{:016x}", hasher.finish());
        Self { engine: engine.clone(), dir, engine_tag, memory: Mutex::new(HashMap::new()) }
    }

    /// The default disk cache: `$BAGPIPE_CACHE_DIR`, else `$XDG_CACHE_HOME/bagpipe`, else
    /// `$HOME/.cache/bagpipe`.
    pub fn default_dir() -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        var("BAGPIPE_CACHE_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("bagpipe")))
            .or_else(|| var("HOME").map(|d| d.join(".cache").join("bagpipe")))
    }

    /// The compiled form of `bytes` (whose hash is `hash`), from the cache or freshly compiled.
    /// Blocking: call it off the async workers.
    pub fn get(&self, hash: ContentHash, bytes: &[u8]) -> wasmtime::Result<Component> {
        if let Some(c) = self.lock().get(&hash) {
            return Ok(c.clone());
        }
        let entry = self.dir.as_ref().map(|d| d.join(format!("{}-{}.cwasm", hash.hex(), self.engine_tag)));
        let component = match entry.as_deref().and_then(|p| self.read(p)) {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes)?;
                if let Some(path) = &entry {
                    self.write(path, &c);
                }
                c
            }
        };
        self.lock().insert(hash, component.clone());
        Ok(component)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Component>> {
        // The map holds plain values; a panic elsewhere cannot leave it half-written.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, path: &Path) -> Option<Component> {
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. Entries are
        // written only by `write` below into the user's cache directory, named by content and
        // engine hash; wasmtime also checks the engine and version recorded in the file.
        match unsafe { Component::deserialize_file(&self.engine, path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(entry = %path.display(), "ignoring unreadable compile cache entry: {e:#}");
                None
            }
        }
    }

    fn write(&self, path: &Path, component: &Component) {
        let result = (|| -> std::io::Result<()> {
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            // Write beside, then rename: a reader never sees half an entry.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            tracing::warn!(entry = %path.display(), "could not write compile cache entry: {e}");
        }
    }
}

/// Creates `dir` (only the user may enter it) if missing, and checks that it belongs to this
/// user and nobody else can write to it.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!("it belongs to uid {}, not to this user ({me})", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("others can write to it (mode {:o})", meta.mode() & 0o777));
    }
    Ok(())
}
