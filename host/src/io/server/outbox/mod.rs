//! A block's outbox: what it published, held until the server confirmed it. `publish` only puts
//! a message here (it never waits for the server inside a guest call); the block's [`flusher`]
//! task sends the messages in order and takes them out once the server confirmed them: a flush
//! round trip for core NATS (the server has processed them), or the stream's acknowledgement of
//! each with `publish_to_stream`. What was not confirmed (a timeout, a lost connection, a stream
//! that did not answer) is sent again, in order, once the server is back.
//!
//! With `outbox = "memory"` (the default) the messages wait in memory; with `outbox = "disk"`
//! they wait in the block's [`spill`] directory (memory holds only the ones in flight), outlive
//! the host, and are sent first when it starts again.
//!
//! Invariants: the outbox never holds more than `outbox_bytes` (in memory, or in its files; a
//! publish past it is refused `busy`, and so is one the disk could not take); messages leave only
//! when confirmed, or when the block ends with the server away (in memory they are then counted
//! `publish_dropped` and logged, on disk they stay for the next start), never silently; order per
//! block is kept, also across resends and restarts; a failing server or disk is logged at most
//! once a second per block, with counts; every wait on the server has a timeout.

mod flusher;
mod record;
pub mod spill;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::defaults::{OUTBOX_BATCH, OUTBOX_REPORT_EVERY, SPILL_SYNC};
use crate::io::server::ServerLink;
use crate::manifest::ToStream;
use crate::stats::{BlockStatus, Counters};
pub use flusher::flusher;
use spill::{AppendError, Spill};

/// One published message, waiting for confirmation.
#[derive(Clone)]
struct Outgoing {
    subject: String,
    payload: Bytes,
    /// Its number in this outbox, for the stream's duplicate detection.
    seq: u64,
    /// Its `Nats-Msg-Id` when it goes through a stream (on disk, kept across restarts); `None`:
    /// a core NATS publish.
    id: Option<String>,
}

impl Outgoing {
    fn bytes(&self) -> usize {
        self.subject.len() + self.payload.len()
    }
}

/// The message was not taken.
#[derive(Debug)]
pub enum Busy {
    /// The outbox is full: it holds `held` of its `max` bytes (`outbox_bytes`).
    Full {
        /// Bytes waiting in the outbox.
        held: usize,
        /// Its size (`outbox_bytes`).
        max: usize,
    },
    /// The disk did not take it (a full disk, permissions): what happened.
    Disk(String),
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full { held, max } => {
                write!(f, "the block's outbox holds {held} of its {max} bytes (outbox_bytes), waiting for the server")
            }
            Self::Disk(why) => write!(f, "the block's outbox could not write to its spill file: {why}"),
        }
    }
}

/// What the outbox holds in memory mode, behind its lock.
#[derive(Default)]
struct Pending {
    messages: VecDeque<Outgoing>,
    bytes: usize,
    /// Messages taken so far.
    taken: u64,
}

/// Where the messages wait.
enum Store {
    Memory(Pending),
    Disk(Box<Spill>),
}

/// A failure to report at most once a second: how many since the last report, and when that was.
#[derive(Default)]
struct Report(u64, Option<Instant>);

impl Report {
    /// Counts one; true when it is time to report (then the count starts again after the report).
    fn due(&mut self) -> Option<u64> {
        self.0 += 1;
        let due = self.1.is_none_or(|at| at.elapsed() >= OUTBOX_REPORT_EVERY);
        due.then(|| {
            let count = self.0;
            *self = Self(0, Some(Instant::now()));
            count
        })
    }
}

/// One block's outbox. Shared by the block's instances (it outlives swaps and restarts) and its
/// flusher.
pub struct Outbox {
    store: Mutex<Store>,
    max_bytes: usize,
    /// Bytes held, to wait on (the flusher for work, the block task for room).
    level: watch::Sender<usize>,
    /// Which messages go through JetStream, each done only when its stream acknowledged it.
    to_stream: ToStream,
    /// Unique to this outbox (the block and a NUID): with a message's number, its
    /// `Nats-Msg-Id`, so that a stream stores a message sent again only once (within the
    /// stream's duplicate window, two minutes by default).
    id_prefix: String,
    status: Arc<BlockStatus>,
    /// The server's failures since the last warning.
    failures: Mutex<Report>,
    /// The disk's failures since the last warning.
    disk_failures: Mutex<Report>,
    /// Something was spilled that is not synced yet (wakes the syncer).
    written: Notify,
    /// The outbox is closed (its flusher ended).
    closed: CancellationToken,
}

impl Outbox {
    /// An empty outbox of `max_bytes` for the block `status`, in memory.
    pub fn new(max_bytes: usize, to_stream: ToStream, status: Arc<BlockStatus>, nuid: &str) -> Arc<Self> {
        Self::with_store(Store::Memory(Pending::default()), max_bytes, to_stream, status, nuid)
    }

    /// An outbox of `max_bytes` for the block `status` in its spill directory `dir`, holding what
    /// an earlier run left there. Fails when the directory cannot be used or another host holds
    /// it.
    async fn spilled(
        dir: std::path::PathBuf,
        max_bytes: usize,
        to_stream: ToStream,
        status: Arc<BlockStatus>,
        nuid: &str,
    ) -> anyhow::Result<Arc<Self>> {
        let (spill, recovery) = tokio::task::spawn_blocking(move || Spill::open(&dir, max_bytes)).await??;
        for why in &recovery.torn {
            tracing::warn!(
                event = "outbox_torn",
                "a spill file was torn (the host or the machine stopped while writing it): {why}"
            );
        }
        if recovery.messages > 0 {
            status.counters.outbox_recovered.fetch_add(recovery.messages, Ordering::Relaxed);
            tracing::info!(
                event = "outbox_recovered",
                messages = recovery.messages,
                dir = %spill.dir().display(),
                "{} messages an earlier run published were never confirmed; they are sent first",
                recovery.messages
            );
        }
        Ok(Self::with_store(Store::Disk(Box::new(spill)), max_bytes, to_stream, status, nuid))
    }

    /// The outbox of the block `spec` with `outbox = "disk"`: its spill directory under the
    /// host's state directory, opened, locked, and holding what an earlier run left unconfirmed.
    /// Fails (naming the directory) when there is no state directory, when the directory cannot
    /// be used, or when another host holds it.
    pub async fn for_block(
        link: &ServerLink,
        settings: &crate::defaults::Settings,
        spec: &crate::manifest::BlockSpec,
        status: &Arc<BlockStatus>,
    ) -> anyhow::Result<Arc<Self>> {
        let Some(state_dir) = settings.state_dir() else {
            anyhow::bail!(
                "block `{}` spills its outbox to disk, but the host has no state directory: \
                 set [host] state_dir or BAGPIPE_STATE_DIR",
                spec.responsibility
            );
        };
        let dir = spill::spill_dir(&state_dir, &spec.responsibility);
        let nuid = link.client().new_inbox();
        let nuid = nuid.rsplit('.').next().unwrap_or_default();
        Self::spilled(dir, spec.limits.outbox_bytes, spec.publish_to_stream.clone(), status.clone(), nuid)
            .await
            .with_context(|| format!("block `{}`'s outbox", spec.responsibility))
    }

    fn with_store(
        store: Store,
        max_bytes: usize,
        to_stream: ToStream,
        status: Arc<BlockStatus>,
        nuid: &str,
    ) -> Arc<Self> {
        let outbox = Arc::new(Self {
            store: Mutex::new(store),
            max_bytes: max_bytes.max(1),
            level: watch::Sender::new(0),
            to_stream,
            id_prefix: format!("{}.{nuid}", status.responsibility),
            status,
            failures: Mutex::new(Report::default()),
            disk_failures: Mutex::new(Report::default()),
            written: Notify::new(),
            closed: CancellationToken::new(),
        });
        outbox.changed(&outbox.lock());
        outbox
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the messages wait on disk.
    pub fn spills(&self) -> bool {
        matches!(*self.lock(), Store::Disk(_))
    }

    /// Takes a message to publish, or refuses it when it would make the outbox hold more than
    /// its size, or (on disk) when the disk did not take it.
    pub fn push(&self, subject: String, payload: Bytes) -> Result<(), Busy> {
        let mut store = self.lock();
        let refused = match &mut *store {
            Store::Memory(pending) => {
                let seq = pending.taken + 1;
                let id = self.stream_id(&subject, seq);
                let message = Outgoing { subject, payload, seq, id };
                if pending.bytes + message.bytes() > self.max_bytes {
                    Some(Busy::Full { held: pending.bytes, max: self.max_bytes })
                } else {
                    pending.taken += 1;
                    pending.bytes += message.bytes();
                    pending.messages.push_back(message);
                    None
                }
            }
            Store::Disk(spill) => {
                let id = self.stream_id(&subject, spill.next_seq());
                match spill.append(subject, payload, id) {
                    Ok(()) => None,
                    Err(AppendError::Full { held }) => Some(Busy::Full { held: held as usize, max: self.max_bytes }),
                    Err(AppendError::Disk(why)) => {
                        self.disk_trouble(&why);
                        Some(Busy::Disk(why))
                    }
                    Err(AppendError::Closed) => Some(Busy::Disk("the outbox is closed".to_owned())),
                }
            }
        };
        if let Some(busy) = refused {
            Counters::bump(&self.status.counters.publish_busy);
            return Err(busy);
        }
        self.changed(&store);
        drop(store);
        self.written.notify_one();
        Ok(())
    }

    /// The `Nats-Msg-Id` of message `seq` on `subject` when it goes through a stream: whether
    /// it does is decided when it is taken, and kept with it.
    fn stream_id(&self, subject: &str, seq: u64) -> Option<String> {
        self.to_stream.covers(subject).then(|| format!("{}.{seq}", self.id_prefix))
    }

    fn changed(&self, store: &Store) {
        let (messages, bytes) = match store {
            Store::Memory(pending) => (pending.messages.len() as u64, pending.bytes),
            Store::Disk(spill) => (spill.waiting(), spill.held() as usize),
        };
        self.status.counters.outbox_messages.store(messages, Ordering::Relaxed);
        self.status.counters.outbox_bytes.store(bytes as u64, Ordering::Relaxed);
        self.level.send_replace(bytes);
    }

    /// Whether the block may be handed more work: the outbox is at most half full, so what one
    /// call publishes fits in the other half. While it is not, the block's task leaves its queue
    /// alone, the queue fills, and its clients are pushed back.
    pub fn has_room(&self) -> bool {
        *self.level.borrow() <= self.max_bytes / 2
    }

    /// Returns once everything in it was sent and confirmed (or dropped).
    pub async fn emptied(&self) {
        let mut level = self.level.subscribe();
        let _ = level.wait_for(|held| *held == 0).await;
    }

    /// Returns once [`Outbox::has_room`].
    pub async fn room(&self) {
        let half = self.max_bytes / 2;
        let mut level = self.level.subscribe();
        let _ = level.wait_for(|held| *held <= half).await;
    }

    /// Up to [`OUTBOX_BATCH`] messages from the front, still held (on disk, read as needed).
    fn front(&self) -> Result<Vec<Outgoing>, String> {
        let mut store = self.lock();
        match &mut *store {
            Store::Memory(pending) => Ok(pending.messages.iter().take(OUTBOX_BATCH).cloned().collect()),
            Store::Disk(spill) => {
                let front = spill.front(OUTBOX_BATCH);
                let lost = spill.take_lost();
                if lost > 0 {
                    self.status.counters.publish_dropped.fetch_add(lost, Ordering::Relaxed);
                    self.changed(&store);
                }
                front
            }
        }
    }

    /// The first `n` messages were confirmed: they leave.
    fn confirmed(&self, n: usize, link: &ServerLink) {
        if n == 0 {
            return;
        }
        let mut store = self.lock();
        let n = match &mut *store {
            Store::Memory(pending) => {
                let n = n.min(pending.messages.len());
                let freed: usize = pending.messages.drain(..n).map(|m| m.bytes()).sum();
                pending.bytes -= freed;
                n
            }
            Store::Disk(spill) => {
                let before = spill.waiting();
                if let Some(why) = spill.confirm(n) {
                    self.disk_trouble(&why);
                }
                (before - spill.waiting()) as usize
            }
        };
        self.changed(&store);
        drop(store);
        self.status.counters.published.fetch_add(n as u64, Ordering::Relaxed);
        link.stats.published.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `unconfirmed` messages will be sent again; says so at most once a second.
    fn failed(&self, unconfirmed: usize, why: &str) {
        self.status.counters.publish_retries.fetch_add(unconfirmed as u64, Ordering::Relaxed);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = failures.due() {
            let held = self.status.counters.outbox_messages.load(Ordering::Relaxed);
            tracing::warn!(
                event = "publish_failing",
                failures = count,
                waiting = held,
                "publishing to the server failed {count} times since the last report ({why}); {held} messages wait in the outbox and will be sent again",
            );
        }
    }

    /// The disk failed (`why`); says so at most once a second.
    fn disk_trouble(&self, why: &str) {
        let mut failures = self.disk_failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = failures.due() {
            tracing::error!(
                event = "outbox_disk_failing",
                failures = count,
                "the outbox's spill files failed {count} times since the last report ({why}); publishes that met it were refused busy"
            );
        }
    }

    /// Syncs what was spilled since the last time (off the runtime's threads).
    async fn sync(&self) {
        let job = match &mut *self.lock() {
            Store::Disk(spill) => spill.take_sync(),
            Store::Memory(_) => None,
        };
        let Some(job) = job else { return };
        let synced = tokio::task::spawn_blocking(move || job.run()).await;
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(why)) => self.disk_trouble(&why),
            Err(e) => self.disk_trouble(&format!("the sync did not finish: {e}")),
        }
    }

    /// Ends the outbox when its flusher ends. In memory, counts and logs what is left as dropped
    /// and returns how many; on disk, syncs, lets go of the spill directory and logs what stays
    /// in it for the next start.
    async fn close(&self) -> usize {
        self.sync().await;
        let mut store = self.lock();
        let dropped = match &mut *store {
            Store::Memory(pending) => {
                let left = pending.messages.len();
                pending.messages.clear();
                pending.bytes = 0;
                left
            }
            Store::Disk(spill) => {
                let kept = spill.close();
                if kept > 0 {
                    tracing::warn!(
                        event = "outbox_kept",
                        messages = kept,
                        dir = %spill.dir().display(),
                        "{kept} published messages were not confirmed by the server; they stay in {} and are sent when the block starts again",
                        spill.dir().display()
                    );
                }
                0
            }
        };
        if matches!(*store, Store::Memory(_)) {
            self.changed(&store);
        }
        drop(store);
        self.closed.cancel();
        if dropped > 0 {
            self.status.counters.publish_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::error!(
                event = "publish_dropped",
                messages = dropped,
                "{dropped} published messages were never confirmed by the server"
            );
        }
        dropped
    }

    fn is_empty(&self) -> bool {
        *self.level.borrow() == 0
    }
}

/// Syncs a spilled outbox's files every [`SPILL_SYNC`] while messages are written to them, until
/// the outbox is closed.
pub async fn syncer(outbox: Arc<Outbox>) {
    loop {
        tokio::select! {
            () = outbox.closed.cancelled() => break,
            () = outbox.written.notified() => {}
        }
        tokio::select! {
            () = outbox.closed.cancelled() => break,
            () = tokio::time::sleep(SPILL_SYNC) => {}
        }
        outbox.sync().await;
    }
}
