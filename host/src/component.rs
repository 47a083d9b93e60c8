//! Loading a component file as a block: compile (through the cache), link, and check it against
//! the world before anything runs.
//!
//! Architecture invariant: a [`BlockComponent`] that exists is a valid block: it exports
//! `lifecycle` with the right types, every optional hook it exports has the right types, and the
//! host provides everything it imports. Which hooks it has is read from its exports, never
//! learned by calling it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use crate::bindings::{FullBlock, enqueue_hook, lifecycle, names, net_hook, server_hook, state_hook, timer_hook};
use crate::cache::{ComponentCache, ContentHash};
use crate::error::LoadError;
use crate::state::{BlockCtx, Links};
use crate::stats::BlockStatus;

/// Which optional hooks a block exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `enqueue-hook`: it receives bags.
    pub enqueue: bool,
    /// `timer-hook`: it receives timers.
    pub timer: bool,
    /// `server-hook`: it follows the server connection.
    pub server: bool,
    /// `state-hook`: it carries its state across a swap.
    pub state: bool,
    /// `net-hook`: it hears about its sockets.
    pub net: bool,
}

impl Hooks {
    /// The hooks' WIT names, for reports.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.enqueue, "on-enqueue"),
            (self.timer, "on-timer"),
            (self.server, "on-server"),
            (self.state, "state"),
            (self.net, "net"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

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

/// Where each export lives in the component, looked up once at load.
pub(crate) struct Indices {
    pub lifecycle: lifecycle::GuestIndices,
    pub enqueue: Option<enqueue_hook::GuestIndices>,
    pub timer: Option<timer_hook::GuestIndices>,
    pub server: Option<server_hook::GuestIndices>,
    pub state: Option<state_hook::GuestIndices>,
    pub net: Option<net_hook::GuestIndices>,
}

/// Loads components for one engine.
pub struct Loader {
    engine: Engine,
    linker: Linker<BlockCtx>,
    cache: Arc<ComponentCache>,
}

impl Loader {
    /// A loader whose linker offers WASI and the controller.
    pub fn new(engine: &Engine, cache: ComponentCache) -> anyhow::Result<Self> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        FullBlock::add_to_linker::<_, HasSelf<_>>(&mut linker, |ctx| ctx)?;
        Ok(Self { engine: engine.clone(), linker, cache: Arc::new(cache) })
    }

    /// The engine components are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads, compiles (or takes from the cache) and checks the component at `path`.
    pub async fn load(&self, path: &Path) -> Result<Arc<BlockComponent>, LoadError> {
        let bytes =
            tokio::fs::read(path).await.map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
        self.load_bytes(path, bytes).await
    }

    /// Compiles (or takes from the cache) and checks `bytes`, read from `path`.
    pub async fn load_bytes(&self, path: &Path, bytes: Vec<u8>) -> Result<Arc<BlockComponent>, LoadError> {
        let hash = ContentHash::of(&bytes);
        let cache = self.cache.clone();
        let invalid = |reason: String| LoadError::Invalid { path: path.to_path_buf(), reason };
        // Compiling is CPU work of up to a second: keep it off the async workers.
        let component = tokio::task::spawn_blocking(move || cache.get(hash, &bytes))
            .await
            .map_err(|e| invalid(format!("compiler task failed: {e}")))?
            .map_err(|e| invalid(format!("{e:#}")))?;
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
        let has = |name: &str| exports.iter().any(|e| e == name);
        let wrong = |export: &str, e: wasmtime::Error| LoadError::WrongExport {
            path: path_buf.clone(),
            export: export.to_owned(),
            reason: format!("{e:#}"),
        };
        if !has(names::LIFECYCLE) {
            let exports = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
            return Err(LoadError::MissingExport { path: path_buf, missing: names::LIFECYCLE.to_owned(), exports });
        }
        let indices = Indices {
            lifecycle: lifecycle::GuestIndices::new(&pre).map_err(|e| wrong(names::LIFECYCLE, e))?,
            enqueue: has(names::ENQUEUE_HOOK)
                .then(|| enqueue_hook::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| wrong(names::ENQUEUE_HOOK, e))?,
            timer: has(names::TIMER_HOOK)
                .then(|| timer_hook::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| wrong(names::TIMER_HOOK, e))?,
            server: has(names::SERVER_HOOK)
                .then(|| server_hook::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| wrong(names::SERVER_HOOK, e))?,
            state: has(names::STATE_HOOK)
                .then(|| state_hook::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| wrong(names::STATE_HOOK, e))?,
            net: has(names::NET_HOOK)
                .then(|| net_hook::GuestIndices::new(&pre))
                .transpose()
                .map_err(|e| wrong(names::NET_HOOK, e))?,
        };
        let hooks = Hooks {
            enqueue: indices.enqueue.is_some(),
            timer: indices.timer.is_some(),
            server: indices.server.is_some(),
            state: indices.state.is_some(),
            net: indices.net.is_some(),
        };
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
                hook: names::NET_HOOK.to_owned(),
                why: "the manifest grants it sockets (listen or connect)".to_owned(),
            });
        }
        Ok(())
    }

    /// Instantiates the component once in a throw-away store (running none of its functions) and
    /// loads every export it has, which checks each export's type against the world.
    async fn type_check(&self, engine: &Engine) -> Result<(), LoadError> {
        let (requests, _) = tokio::sync::mpsc::channel(1);
        let links = Links {
            shutdown: tokio_util::sync::CancellationToken::new(),
            router: Arc::new(crate::router::Router::new()),
            requests,
            settings: Arc::new(crate::defaults::Settings::default()),
            dead_letters: Arc::new(crate::deadletter::DeadLetters::new(None)),
            server: None,
        };
        let limits = crate::defaults::Limits::default();
        let me = Arc::new(BlockStatus::new("check", "check", self.hooks.enqueue));
        let mut store = crate::instance::new_store(engine, BlockCtx::new(me, self.hooks, &limits, links));
        let wrong = |export: &str, e: wasmtime::Error| LoadError::WrongExport {
            path: self.path.clone(),
            export: export.to_owned(),
            reason: format!("{e:#}"),
        };
        let instance = self.pre.instantiate_async(&mut store).await.map_err(|e| LoadError::Invalid {
            path: self.path.clone(),
            reason: format!("cannot instantiate: {e:#}"),
        })?;
        let i = &self.indices;
        i.lifecycle.load(&mut store, &instance).map_err(|e| wrong(names::LIFECYCLE, e))?;
        if let Some(x) = &i.enqueue {
            x.load(&mut store, &instance).map_err(|e| wrong(names::ENQUEUE_HOOK, e))?;
        }
        if let Some(x) = &i.timer {
            x.load(&mut store, &instance).map_err(|e| wrong(names::TIMER_HOOK, e))?;
        }
        if let Some(x) = &i.server {
            x.load(&mut store, &instance).map_err(|e| wrong(names::SERVER_HOOK, e))?;
        }
        if let Some(x) = &i.state {
            x.load(&mut store, &instance).map_err(|e| wrong(names::STATE_HOOK, e))?;
        }
        if let Some(x) = &i.net {
            x.load(&mut store, &instance).map_err(|e| wrong(names::NET_HOOK, e))?;
        }
        drop(Store::into_data(store));
        Ok(())
    }
}
