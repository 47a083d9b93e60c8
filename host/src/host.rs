//! [`Host`]: the embedding API. Load a manifest's blocks, check them, run them.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::FutureExt as _;
use futures_util::future::FusedFuture as _;
use wasmtime::Engine;

use crate::block::component::{BlockComponent, Loader};
use crate::error::{LoadError, RunError};
use crate::io::server::ServerLink;
use crate::manifest::{BlockSpec, Manifest};
use crate::ops::admin::{AdminListener, AdminView};
use crate::ops::feed::Feed;
use crate::runtime::cache::ComponentCache;
use crate::runtime::engine::{EpochTicker, new_engine};
use crate::runtime::guest_stdout::StdoutWriter;
use crate::supervision::reload::Reloader;
use crate::supervision::supervisor::{RunReport, Supervisor};

/// How to build a [`Host`].
#[derive(Clone, Debug, Default)]
pub struct HostConfig {
    /// Where compiled components are cached on disk; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Where to serve the admin endpoint during runs (port 0 picks one); `None` for none.
    pub admin: Option<std::net::SocketAddr>,
    /// Watch the component directory and hot-swap blocks whose component file or manifest
    /// entry changes.
    pub watch: bool,
    /// The message server to use instead of the manifest's `[host] server`.
    pub server: Option<String>,
    /// The feed the process's `tracing` subscriber fills ([`Feed::layer`]): what the admin
    /// endpoint's `/events` streams, and how `[host] log_subject` gets its lines. `None`: a feed
    /// of the host's own, which no layer fills (`/events` stays empty, no log is published).
    pub feed: Option<Feed>,
}

/// A bagpipe host: one engine, its epoch ticker and its component loader.
pub struct Host {
    config: HostConfig,
    engine: Engine,
    loader: Loader,
    _ticker: EpochTicker,
    /// Where blocks' stdout goes; dropped last, after every block, to write out what is queued.
    stdout: StdoutWriter,
}

impl Host {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: HostConfig) -> anyhow::Result<Self> {
        let engine = new_engine()?;
        let loader = Loader::new(&engine, ComponentCache::new(&engine, config.cache_dir.clone()))?;
        let ticker = EpochTicker::start(&engine)?;
        let stdout = StdoutWriter::start().map_err(|e| anyhow::anyhow!("starting the stdout writer: {e}"))?;
        Ok(Self { config, engine, loader, _ticker: ticker, stdout })
    }

    /// Loads and checks every component of `manifest` (each file once), reporting each block's
    /// outcome in manifest order. Runs no guest function.
    pub async fn check(&self, manifest: &Manifest) -> Vec<(BlockSpec, Result<Arc<BlockComponent>, Arc<LoadError>>)> {
        let mut loaded: HashMap<PathBuf, Result<Arc<BlockComponent>, Arc<LoadError>>> = HashMap::new();
        let mut out = Vec::with_capacity(manifest.blocks.len());
        for spec in &manifest.blocks {
            let result = match loaded.get(&spec.component) {
                Some(r) => r.clone(),
                None => {
                    let r = self.loader.load(&spec.component).await.map_err(Arc::new);
                    loaded.insert(spec.component.clone(), r.clone());
                    r
                }
            };
            let result = result.and_then(|c| c.fits(spec).map(|()| c).map_err(Arc::new));
            out.push((spec.clone(), result));
        }
        out
    }

    /// Runs `manifest` until `shutdown` resolves or a block finishes `initiator`, then finishes
    /// every block in reverse order.
    pub async fn run(&self, manifest: &Manifest, shutdown: impl Future<Output = ()>) -> Result<RunReport, RunError> {
        let mut components = Vec::with_capacity(manifest.blocks.len());
        for (spec, result) in self.check(manifest).await {
            match result {
                Ok(c) => {
                    tracing::info!(
                        block = %spec.responsibility,
                        component = %spec.name,
                        version = %c.hash,
                        hooks = ?c.hooks.names(),
                        "loaded"
                    );
                    components.push(c);
                }
                Err(e) => {
                    let source = Arc::try_unwrap(e)
                        .unwrap_or_else(|e| LoadError::Invalid { path: spec.component.clone(), reason: e.to_string() });
                    return Err(RunError::Load { responsibility: spec.responsibility, source });
                }
            }
        }
        warn_if_mappings_run_short(manifest.blocks.len());
        let server_url = self.config.server.as_ref().or(manifest.settings.server.as_ref());
        if server_url.is_none() && manifest.settings.cluster.is_some() {
            return Err(RunError::Host(anyhow::anyhow!(
                "{}: [host] cluster needs a server: set [host] server or --server",
                manifest.path.display()
            )));
        }
        if server_url.is_none() && manifest.settings.logs.is_some() {
            return Err(RunError::Host(anyhow::anyhow!(
                "{}: [host] log_subject needs a server: set [host] server or --server",
                manifest.path.display()
            )));
        }
        if server_url.is_none() && !manifest.settings.bridge_topics.is_empty() {
            return Err(RunError::Host(anyhow::anyhow!(
                "{}: [host] bridge_topics needs a server: set [host] server or --server",
                manifest.path.display()
            )));
        }
        // What can fail without anything to undo goes first: the admin address is bound before a
        // single block or connection exists.
        let admin = match self.config.admin {
            Some(addr) => Some(AdminListener::bind(addr).await?),
            None => None,
        };
        let server = match server_url {
            Some(url) => Some(ServerLink::connect(url, &manifest.settings).await?),
            None => None,
        };
        let feed = self.config.feed.clone().unwrap_or_default();
        if manifest.settings.logs.is_some() && self.config.feed.is_none() {
            tracing::warn!(
                "[host] log_subject: this host was given no feed (HostConfig::feed), so no log line reaches the server"
            );
        }
        // The log goes to the server from here on, the blocks' start included; lines before this
        // went only to stderr. Whatever happens next, the sink is detached when `run` ends.
        let logs = match (&manifest.settings.logs, &server) {
            (Some(logs), Some(server)) => {
                let (sink, lines) = feed.attach_logs(logs.level, logs.lines_per_sec);
                Some((logs.subject.clone(), sink, lines, server.clone()))
            }
            _ => None,
        };
        let detach = DetachLogs(logs.is_some().then_some(&feed));
        let published = logs.as_ref().map(|(subject, sink, ..)| (subject.clone(), sink.clone()));
        let stop_logs = tokio_util::sync::CancellationToken::new();
        let mut publisher = std::pin::pin!(
            async {
                if let Some((subject, sink, lines, server)) = logs {
                    crate::ops::log_publisher::run(lines, sink, server, subject, stop_logs.clone()).await;
                }
            }
            .fuse()
        );
        let router = Arc::new(crate::routing::router::Router::new());
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        let start = Supervisor::start(
            &self.engine,
            manifest,
            &components,
            router.clone(),
            reload_rx,
            server.clone(),
            self.stdout.streams(),
        );
        tokio::pin!(start);
        let started = loop {
            tokio::select! {
                started = &mut start => break started,
                // Publishes while the blocks start (and ends only once stopped).
                () = &mut publisher => {}
            }
        };
        let supervisor = match started {
            Ok(supervisor) => supervisor,
            Err(e) => {
                // The blocks started so far were stopped by the supervisor; their last lines are
                // published, then the connection goes too.
                stop_logs.cancel();
                if !publisher.is_terminated() {
                    publisher.await;
                }
                drop(detach);
                if let Some(server) = &server {
                    server.close().await;
                }
                return Err(e);
            }
        };
        let reloader =
            self.config.watch.then(|| Reloader::new(&self.loader, manifest, &components, reload_tx, router.clone()));
        let view = AdminView::new(router, supervisor.dead_letters(), server.clone(), feed.clone()).with_logs(published);
        let admin = admin.map(|listener| listener.serve(view));
        let publisher = async {
            if !publisher.is_terminated() {
                publisher.await;
            }
        };
        // The reloader and the calls' deadlines run beside the supervisor in this task; they end
        // with it.
        let calls = supervisor.calls();
        let run = supervisor.run(shutdown);
        tokio::pin!(run);
        let with_deadlines = async {
            tokio::select! {
                r = &mut run => r,
                // It never returns; if it did, the blocks would still run to their end.
                () = calls.expire() => run.await,
            }
        };
        let supervised = async {
            let result = match reloader {
                Some(reloader) => {
                    tokio::pin!(with_deadlines);
                    tokio::select! {
                        r = &mut with_deadlines => r,
                        () = reloader.run() => with_deadlines.await,
                    }
                }
                None => with_deadlines.await,
            };
            // The blocks' last lines are taken: the publisher sends them and ends.
            stop_logs.cancel();
            result
        };
        let (result, ()) = tokio::join!(supervised, publisher);
        drop(detach);
        // What still waits is told the host is done (and lets go of the queues it holds).
        calls.close("the host has shut down");
        if let Some(admin) = admin {
            admin.shutdown().await;
        }
        if let Some(server) = &server {
            server.close().await;
        }
        result.map(|mut report| {
            report.server = server.map(|s| s.snapshot());
            report
        })
    }
}

/// Detaches the feed's log sink when dropped: however `run` ends, no line waits for a publisher
/// that is gone.
struct DetachLogs<'a>(Option<&'a Feed>);

impl Drop for DetachLogs<'_> {
    fn drop(&mut self) {
        if let Some(feed) = self.0 {
            feed.detach_logs();
        }
    }
}

/// Says so when `blocks` blocks would need about as many memory mappings as the kernel allows a
/// process (`vm.max_map_count`): past it, instantiating a block fails with "Cannot allocate
/// memory", which does not say why.
fn warn_if_mappings_run_short(blocks: usize) {
    let Some(max) =
        std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse::<usize>().ok())
    else {
        return;
    };
    let needed =
        blocks.saturating_mul(crate::defaults::MAPPINGS_PER_BLOCK).saturating_add(crate::defaults::MAPPINGS_SPARE);
    if needed > max {
        tracing::warn!(
            event = "max_map_count",
            blocks,
            needed,
            max,
            "{blocks} blocks need about {needed} memory mappings and the kernel allows {max} \
             (vm.max_map_count): blocks past that fail to start; raise it with \
             `sysctl -w vm.max_map_count={}`",
            needed.saturating_mul(2)
        );
    }
}
