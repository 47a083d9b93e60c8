//! Compiled components, cached by the SHA-256 of their bytes: in memory (the most recently used
//! `COMPILED_IN_MEMORY`) and on disk across runs (at most `DISK_CACHE_BYTES`, the least recently
//! used entries removed first), so that a stream of new versions cannot fill either.
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

use crate::defaults::{COMPILED_IN_MEMORY, DISK_CACHE_BYTES};

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

/// Where a compiled component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compiled {
    /// This host compiled it earlier (the in-memory cache).
    Memory,
    /// A host compiled it earlier and stored it (the disk cache): read, not compiled.
    Disk,
    /// Compiled now.
    Now,
}

impl Compiled {
    /// How the log names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compiled::Memory => "memory",
            Compiled::Disk => "disk",
            Compiled::Now => "compiled",
        }
    }
}

/// Where compiled components are kept.
pub struct ComponentCache {
    engine: Engine,
    dir: Option<PathBuf>,
    engine_tag: String,
    /// Compiled components with the tick they were last used at.
    memory: Mutex<HashMap<ContentHash, (Component, u64)>>,
    tick: AtomicU64,
    /// Most components kept in memory.
    in_memory: usize,
    /// Most bytes of entries kept on disk.
    disk_bytes: u64,
    /// Components compiled (not found in either cache), for tests and stats.
    compiled: AtomicU64,
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
        Self {
            engine: engine.clone(),
            dir,
            engine_tag,
            memory: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
            in_memory: COMPILED_IN_MEMORY,
            disk_bytes: DISK_CACHE_BYTES,
            compiled: AtomicU64::new(0),
        }
    }

    /// This cache, keeping at most `in_memory` components in memory and `disk_bytes` on disk.
    #[cfg(test)]
    fn bounded(mut self, in_memory: usize, disk_bytes: u64) -> Self {
        self.in_memory = in_memory.max(1);
        self.disk_bytes = disk_bytes;
        self
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
        self.get_from(hash, bytes).map(|(c, _)| c)
    }

    /// [`get`](Self::get), saying where the compiled form came from.
    pub fn get_from(&self, hash: ContentHash, bytes: &[u8]) -> wasmtime::Result<(Component, Compiled)> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let entry = self.dir.as_ref().map(|d| d.join(format!("{}-{}.cwasm", hash.hex(), self.engine_tag)));
        if let Some((c, used)) = self.lock().get_mut(&hash) {
            *used = tick;
            // Recently used on disk too: another host's trim keeps it.
            if let Some(path) = &entry {
                touch(path);
            }
            return Ok((c.clone(), Compiled::Memory));
        }
        let (component, from) = match entry.as_deref().and_then(|p| self.read(p)) {
            Some(c) => (c, Compiled::Disk),
            None => {
                let c = Component::new(&self.engine, bytes)?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                if let Some(path) = &entry {
                    self.write(path, &c);
                }
                (c, Compiled::Now)
            }
        };
        let mut memory = self.lock();
        // The least recently used goes; instances of it keep their code (a `Component` is shared).
        while memory.len() >= self.in_memory {
            let Some(oldest) = memory.iter().min_by_key(|(_, (_, used))| *used).map(|(h, _)| *h) else { break };
            memory.remove(&oldest);
        }
        memory.insert(hash, (component.clone(), tick));
        Ok((component, from))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, (Component, u64)>> {
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
            Ok(c) => {
                touch(path);
                Some(c)
            }
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
        if let Some(dir) = path.parent() {
            self.trim(dir);
        }
    }

    /// Removes the least recently used entries until the directory's entries fit the disk budget.
    fn trim(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut found: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = found.iter().map(|(_, len, _)| len).sum();
        found.sort();
        for (_, len, path) in found {
            if total <= self.disk_bytes {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => total = total.saturating_sub(len),
                Err(e) => tracing::warn!(entry = %path.display(), "could not remove a compile cache entry: {e}"),
            }
        }
    }
}

/// Marks a cache entry as used now: the last to be removed when the cache is over its size.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
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

#[cfg(test)]
mod tests {
    use super::*;
    use bagpipe_test_support::wat_block;

    fn components(n: usize) -> Vec<(ContentHash, Vec<u8>)> {
        (1..=n).map(|i| wat_block(&format!("(memory {i})"))).map(|bytes| (ContentHash::of(&bytes), bytes)).collect()
    }

    #[test]
    fn memory_keeps_the_most_recently_used() {
        let engine = crate::runtime::engine::new_engine().unwrap();
        let cache = ComponentCache::new(&engine, None).bounded(2, 0);
        let c = components(3);
        for (hash, bytes) in &c {
            cache.get(*hash, bytes).unwrap();
        }
        assert_eq!(cache.compiled.load(Ordering::Relaxed), 3);
        assert_eq!(cache.lock().len(), 2, "at most two in memory");
        cache.get(c[2].0, &c[2].1).unwrap();
        assert_eq!(cache.compiled.load(Ordering::Relaxed), 3, "the last one is still there");
        cache.get(c[0].0, &c[0].1).unwrap();
        assert_eq!(cache.compiled.load(Ordering::Relaxed), 4, "the first one was evicted");
    }

    #[test]
    fn the_disk_cache_stays_within_its_size() {
        let engine = crate::runtime::engine::new_engine().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = components(3);
        let cache = ComponentCache::new(&engine, Some(dir.path().to_path_buf())).bounded(1, 1);
        for (hash, bytes) in &c {
            cache.get(*hash, bytes).unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(left.len() <= 1, "over the budget, entries go: {left:?}");
        let roomy = ComponentCache::new(&engine, Some(dir.path().to_path_buf())).bounded(1, 1 << 30);
        for (hash, bytes) in &c {
            roomy.get(*hash, bytes).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "within it, they stay");
    }
}
