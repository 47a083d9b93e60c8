//! The supervisor: starts the blocks in manifest order, runs them, and finishes them in reverse
//! order. It owns every block task.
//!
//! Invariants: every task is in the supervisor's `JoinSet` and is joined before `run` returns (no
//! detached tasks); `run` is called on a block only after every `init` succeeded; `finish` is
//! called at most once per block, in reverse start order on shutdown; a block whose `init` did not
//! succeed is never finished.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument;
use wasmtime::Engine;

use crate::bag::BagLimits;
use crate::component::BlockComponent;
use crate::defaults::{BUILTIN_RESPONSIBILITIES, FINISH_REQUESTS};
use crate::error::{CallError, RunError};
use crate::instance::BlockInstance;
use crate::manifest::{BlockSpec, Manifest};
use crate::router::{Route, Router};
use crate::state::{BlockCtx, Links, Request};
use crate::stats::{BlockStatus, StatsSnapshot};
use crate::task::{BlockTask, Command, Outcome};

/// How a run ended, when it ended without a start-up error.
#[derive(Debug)]
pub struct RunReport {
    /// Blocks whose `finish` returned an error or trapped.
    pub finish_errors: Vec<(String, CallError)>,
    /// Blocks that failed while running.
    pub failed: Vec<(String, CallError)>,
    /// Every block's stats at the end.
    pub stats: Vec<StatsSnapshot>,
}

/// One block, as the supervisor tracks it.
struct Slot {
    spec: BlockSpec,
    /// `None` once the task has ended or been told to finish.
    control: Option<mpsc::Sender<Command>>,
    /// `init` succeeded, so `finish` is owed.
    inited: bool,
}

/// Runs one manifest's blocks.
pub struct Supervisor {
    slots: Vec<Slot>,
    tasks: JoinSet<(usize, Outcome)>,
    requests: mpsc::Receiver<Request>,
    router: Arc<Router>,
    report: RunReport,
}

impl Supervisor {
    /// Instantiates every block and spawns its task; nothing is called yet.
    pub async fn start(
        engine: &Engine,
        manifest: &Manifest,
        components: &[Arc<BlockComponent>],
    ) -> Result<Self, RunError> {
        let router = Arc::new(Router::new());
        let (request_tx, requests) = mpsc::channel(FINISH_REQUESTS);
        let links =
            Links { router: router.clone(), requests: request_tx, settings: Arc::new(manifest.settings.clone()) };
        let mut sup = Supervisor {
            slots: Vec::new(),
            tasks: JoinSet::new(),
            requests,
            router: router.clone(),
            report: RunReport { finish_errors: Vec::new(), failed: Vec::new(), stats: Vec::new() },
        };
        for (index, (spec, component)) in manifest.blocks.iter().zip(components).enumerate() {
            let status = Arc::new(BlockStatus::new(&spec.name, &spec.responsibility, component.hooks.enqueue));
            status.set_version(component.hash.short());
            let (queue_tx, queue_rx) = if component.hooks.enqueue {
                let (tx, rx) = mpsc::channel(spec.limits.queue);
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            router.insert(Route {
                status: status.clone(),
                queue: queue_tx,
                limits: BagLimits { max_bytes: spec.limits.max_bag_bytes, max_depth: spec.limits.max_bag_depth },
            });
            let ctx = BlockCtx::new(status.clone(), component.hooks, &spec.limits, links.clone());
            let instance = match BlockInstance::new(engine, component, ctx).await {
                Ok(i) => i,
                Err(error) => {
                    let responsibility = spec.responsibility.clone();
                    sup.shutdown().await;
                    return Err(RunError::Init { responsibility, error });
                }
            };
            let (control_tx, control) = mpsc::channel(4);
            let task = BlockTask {
                instance,
                config: serde_json::Value::Object(spec.config.clone()).to_string(),
                status: status.clone(),
                control,
                queue: queue_rx,
                settings: links.settings.clone(),
            };
            let span = tracing::info_span!("block", responsibility = %spec.responsibility);
            sup.tasks.spawn(async move { (index, task.run().await) }.instrument(span));
            sup.slots.push(Slot { spec: spec.clone(), control: Some(control_tx), inited: false });
        }
        Ok(sup)
    }

    /// Initialises every block in order, runs them all, and serves until `shutdown` resolves or
    /// a block finishes `initiator`; then finishes every block in reverse order.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<RunReport, RunError> {
        let mut signal = Signal { future: Box::pin(shutdown), fired: false };
        for i in 0..self.slots.len() {
            let responsibility = self.slots[i].spec.responsibility.clone();
            let Some(control) = self.slots[i].control.clone() else { continue };
            let init = command(control, |reply| Command::Init { reply });
            tokio::pin!(init);
            let outcome = tokio::select! {
                r = &mut init => r,
                () = signal.wait() => {
                    // Let the init in progress end (its deadline bounds it), so that a block
                    // that did initialise is also finished.
                    tracing::info!("shutdown requested during start-up; letting `{responsibility}` end its init");
                    init.await
                }
            };
            match outcome {
                Ok(()) => self.slots[i].inited = true,
                Err(error) => {
                    tracing::error!(block = %responsibility, "init failed: {error}; finishing the blocks started so far");
                    self.slots[i].control = None;
                    self.shutdown().await;
                    return Err(RunError::Init { responsibility, error });
                }
            }
            if signal.fired {
                self.shutdown().await;
                return Ok(self.into_report());
            }
        }
        // Every init succeeded: run them all. Each block's run happens in its own task, so the
        // commands go out together and a block's early bags wait in the queues of the others.
        let mut replies = Vec::new();
        for slot in &self.slots {
            let (reply, rx) = oneshot::channel();
            if let Some(control) = &slot.control
                && control.send(Command::Run { reply }).await.is_ok()
            {
                replies.push((slot.spec.responsibility.clone(), rx));
            }
        }
        for (responsibility, rx) in replies {
            if let Ok(Err(e)) = rx.await {
                tracing::error!(block = %responsibility, "run failed: {e}");
            }
        }
        tracing::info!(blocks = self.slots.len(), "all blocks running");
        self.serve(&mut signal).await;
        self.shutdown().await;
        Ok(self.into_report())
    }

    /// Serves requests and watches tasks until it is time to shut down.
    async fn serve<F: Future<Output = ()>>(&mut self, signal: &mut Signal<F>) {
        loop {
            if self.slots.iter().all(|s| s.control.is_none()) {
                tracing::info!("every block has ended");
                return;
            }
            tokio::select! {
                () = signal.wait() => {
                    tracing::info!("shutdown requested");
                    return;
                }
                Some(request) = self.requests.recv() => {
                    let Request::Finish { responsibility, by } = request;
                    if BUILTIN_RESPONSIBILITIES.contains(&responsibility.as_str()) {
                        tracing::info!("`{by}` finished `{responsibility}`: shutting down");
                        return;
                    }
                    if let Some(i) = self.slots.iter().position(|s| s.spec.responsibility == responsibility) {
                        tracing::info!("`{by}` asked to finish `{responsibility}`");
                        self.finish(i).await;
                    }
                }
                Some(joined) = self.tasks.join_next() => self.reap(joined),
            }
        }
    }

    /// Records a task that ended on its own (a fault, or a finish it was asked for).
    fn reap(&mut self, joined: Result<(usize, Outcome), tokio::task::JoinError>) {
        match joined {
            Ok((i, outcome)) => {
                let slot = &mut self.slots[i];
                slot.control = None;
                if let Outcome::Failed(e) = outcome {
                    slot.inited = false;
                    self.report.failed.push((slot.spec.responsibility.clone(), e));
                }
            }
            // A panic in a task is a host bug; the block is gone, the host carries on.
            Err(e) => tracing::error!("a block task ended abnormally: {e}"),
        }
    }

    /// Asks block `i` to finish and waits for it.
    async fn finish(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(control) = slot.control.take() else { return };
        if !slot.inited {
            return;
        }
        slot.inited = false;
        let responsibility = slot.spec.responsibility.clone();
        let (reply, rx) = oneshot::channel();
        if control.send(Command::Finish { reply }).await.is_err() {
            return;
        }
        match rx.await {
            Ok(Ok(())) => tracing::info!(block = %responsibility, "finished"),
            Ok(Err(e)) => self.report.finish_errors.push((responsibility, e)),
            Err(_) => tracing::warn!(block = %responsibility, "ended before finishing"),
        }
    }

    /// Finishes every initialised block in reverse order, then joins every task.
    async fn shutdown(&mut self) {
        for i in (0..self.slots.len()).rev() {
            self.finish(i).await;
        }
        for slot in &mut self.slots {
            slot.control = None;
        }
        while let Some(joined) = self.tasks.join_next().await {
            self.reap(joined);
        }
    }

    fn into_report(mut self) -> RunReport {
        self.report.stats = self
            .router
            .routes()
            .iter()
            .filter(|r| !r.status.builtin)
            .map(|r| r.status.snapshot(r.queue_depth()))
            .collect();
        self.report
    }
}

/// Sends a command and waits for its answer.
async fn command(
    control: mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<Result<(), CallError>>) -> Command,
) -> Result<(), CallError> {
    let (reply, rx) = oneshot::channel();
    control.send(make(reply)).await.map_err(|_| CallError::Gone)?;
    rx.await.unwrap_or(Err(CallError::Gone))
}

/// The shutdown signal, awaitable any number of times: once it fired, it stays fired.
struct Signal<F> {
    future: std::pin::Pin<Box<F>>,
    fired: bool,
}

impl<F: Future<Output = ()>> Signal<F> {
    async fn wait(&mut self) {
        if !self.fired {
            self.future.as_mut().await;
            self.fired = true;
        }
    }
}
