//! Loading a component file as a block: compile (through the cache), link, and check it against
//! the world before anything runs.
//!
//! Architecture invariant: a [`BlockComponent`] that exists is a valid block: it exports
//! `lifecycle` with the right types, every optional hook it exports has the right types, and the
//! host provides everything it imports. Which hooks it has is read from its exports, never
//! learned by calling it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::block::ctx::{BlockCtx, BlockParts};
use crate::defaults::MAX_COMPONENT_BYTES;
use crate::error::LoadError;
use crate::routing::controller::Links;
use crate::runtime::cache::{Compiled, ComponentCache, ContentHash};
use crate::runtime::hooks::{Hooks, Indices, LIFECYCLE, interface};
use crate::runtime::log_rate::LogRate;
use crate::runtime::output_pace::Paces;
use crate::stats::BlockStatus;

/// A compiled, checked block component, ready to instantiate any number of times.
pub struct BlockComponent {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The SHA-256 of the file: the block's version.
    pub hash: ContentHash,
    /// The hooks it exports.
    pub hooks: Hooks,
    pub(crate) pre: InstancePre<BlockCtx>,
    pub(crate) indices: Indices,
}

impl std::fmt::Debug for BlockComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockComponent")
            .field("path", &self.path)
            .field("hash", &self.hash)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// Loads components for one engine.
pub struct Loader {
    engine: Engine,
    linker: Linker<BlockCtx>,
    cache: Arc<ComponentCache>,
}

impl Loader {
    /// A loader whose linker offers WASI and every capability.
    pub fn new(engine: &Engine, cache: ComponentCache) -> anyhow::Result<Self> {
        let linker = crate::block::ctx::linker(engine)?;
        Ok(Self { engine: engine.clone(), linker, cache: Arc::new(cache) })
    }

    /// Reads, compiles (or takes from the cache) and checks the component at `path`.
    pub async fn load(&self, path: &Path) -> Result<Arc<BlockComponent>, LoadError> {
        let bytes = read_component(path).await?;
        self.load_bytes(path, bytes).await
    }

    /// Compiles (or takes from the cache) and checks `bytes`, read from `path`.
    pub async fn load_bytes(&self, path: &Path, bytes: Vec<u8>) -> Result<Arc<BlockComponent>, LoadError> {
        let hash = ContentHash::of(&bytes);
        let cache = self.cache.clone();
        let invalid = |reason: String| LoadError::Invalid { path: path.to_path_buf(), reason };
        let size = bytes.len();
        let started = std::time::Instant::now();
        // Compiling is CPU work of up to a second (many seconds for a component that carries an
        // interpreter): keep it off the async workers.
        let (component, from) = tokio::task::spawn_blocking(move || cache.get_from(hash, &bytes))
            .await
            .map_err(|e| invalid(format!("compiler task failed: {e}")))?
            .map_err(|e| invalid(format!("{e:#}")))?;
        if from != Compiled::Memory {
            let ms = started.elapsed().as_millis() as u64;
            tracing::info!(event = "component_loaded", path = %path.display(), version = %hash, from = from.as_str(), bytes = size, ms, "loaded {} ({}, {ms} ms)", path.display(), from.as_str());
        }
        self.check(path, hash, &component).await.map(Arc::new)
    }

    async fn check(
        &self,
        path: &Path,
        hash: ContentHash,
        component: &wasmtime::component::Component,
    ) -> Result<BlockComponent, LoadError> {
        let path_buf = path.to_path_buf();
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Import { path: path_buf.clone(), reason: format!("{e:#}") })?;
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        if !exports.iter().any(|e| e == LIFECYCLE) {
            let exports = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
            return Err(LoadError::MissingExport { path: path_buf, missing: LIFECYCLE.to_owned(), exports });
        }
        let indices = Indices::new(&pre, &exports).map_err(|(export, e)| LoadError::WrongExport {
            path: path_buf.clone(),
            export: export.to_owned(),
            reason: format!("{e:#}"),
        })?;
        let hooks = indices.hooks();
        let block = BlockComponent { path: path_buf, hash, hooks, pre, indices };
        block.type_check(&self.engine).await?;
        Ok(block)
    }
}

impl BlockComponent {
    /// Whether this component can be the block `spec` describes: a block granted sockets must
    /// export `net-hook`, or their events could never reach it.
    pub fn fits(&self, spec: &crate::manifest::BlockSpec) -> Result<(), LoadError> {
        let granted = !spec.listen.is_empty() || !spec.connect.is_empty();
        if granted && !self.hooks.net {
            return Err(LoadError::MissingHook {
                path: spec.component.clone(),
                hook: interface::net.to_owned(),
                why: "the manifest grants it sockets (listen or connect)".to_owned(),
            });
        }
        Ok(())
    }

    /// Instantiates the component once in a throw-away store (running none of its functions) and
    /// loads every export it has, which checks each export's type against the world.
    async fn type_check(&self, engine: &Engine) -> Result<(), LoadError> {
        let status = Arc::new(BlockStatus::new("check", "check", self.hooks.enqueue));
        let parts = BlockParts {
            log_rate: Arc::new(LogRate::new(crate::defaults::Limits::default().log_lines_per_sec, status.clone())),
            output_pace: Paces::new(&crate::defaults::Limits::default(), &status),
            status,
            links: Links::detached(),
            net: None,
            server: None,
            inbox: None,
            worker: None,
        };
        // The block's own `memory_mb` is not known here (one component may serve several blocks):
        // the check allows the most any block may have; counts of instances, tables and memories
        // hold as always.
        let limits = crate::defaults::Limits { memory_bytes: crate::defaults::MAX_MEMORY_BYTES, ..Default::default() };
        let mut store = BlockCtx::new(&parts, self.hooks, &limits, &[], &crate::manifest::TopicGrants::default())
            .into_store(engine);
        // Instantiating runs the component's start functions, if it has any: bounded like a call
        // (the default call timeout, the wall-clock guard). No export is called.
        store.data_mut().sandbox.enter();
        let clock = store.data().sandbox.clock.clone();
        let instantiated = crate::block::instance::guard(&clock, self.pre.instantiate_async(&mut store)).await;
        let instance = instantiated.map_err(|e| LoadError::Invalid {
            path: self.path.clone(),
            reason: format!("cannot instantiate: {e:#}"),
        })?;
        self.indices.load(&mut store, &instance).map_err(|(export, e)| LoadError::WrongExport {
            path: self.path.clone(),
            export: export.to_owned(),
            reason: format!("{e:#}"),
        })?;
        drop(Store::into_data(store));
        Ok(())
    }
}

/// Reads a component file, at most [`MAX_COMPONENT_BYTES`] of it: a larger file (or one that
/// grows past the limit while being read) is refused without being read whole.
pub async fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    use tokio::io::AsyncReadExt as _;
    let read = |source| LoadError::Read { path: path.to_path_buf(), source };
    let too_large = || LoadError::TooLarge { path: path.to_path_buf(), limit: MAX_COMPONENT_BYTES };
    let file = tokio::fs::File::open(path).await.map_err(read)?;
    let size = file.metadata().await.map_err(read)?.len();
    if size > MAX_COMPONENT_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_COMPONENT_BYTES + 1).read_to_end(&mut bytes).await.map_err(read)?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}
