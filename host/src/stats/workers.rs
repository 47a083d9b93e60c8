//! The stats of a block served by several workers (`workers` in the manifest): the pool as a
//! whole ([`Pool`]: workers now, high-water, scale-ups, retirements) and each worker
//! ([`WorkerStatus`]: its state, what it was handed and got through, its faults).
//!
//! Everything is atomic except the list of workers, whose lock is held only to change or copy
//! it, never across a wait.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Notify;

use super::{decode, encode, state_name};
use crate::bindings::BlockState;

/// One worker of a pool.
#[derive(Debug)]
pub struct WorkerStatus {
    /// The worker's number in its group (the `__worker` its config is given).
    pub id: u32,
    state: AtomicU8,
    version: Mutex<String>,
    /// Envelopes the group handed it.
    pub handed: AtomicU64,
    /// Envelopes it took from its queue.
    pub taken: AtomicU64,
    /// Of those, how many it is done with (not being delivered, nor waiting to be again).
    pub settled: AtomicU64,
    /// Faults of its instances.
    pub faults: AtomicU64,
    /// Restarts of its instances.
    pub restarts: AtomicU64,
    /// Whether its instance has a timer pending (as of its last step): it is not idle then.
    pub timers: AtomicBool,
    /// Woken when it settles: the group waits on it for room.
    progress: Arc<Notify>,
}

impl WorkerStatus {
    /// Worker `id`, running `version`; `progress` is woken whenever it gets through something.
    pub fn new(id: u32, version: String, progress: Arc<Notify>) -> Self {
        Self {
            id,
            state: AtomicU8::new(encode(BlockState::Starting)),
            version: Mutex::new(version),
            handed: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            timers: AtomicBool::new(false),
            progress,
        }
    }

    /// Where the worker is in its life.
    pub fn state(&self) -> BlockState {
        decode(self.state.load(Ordering::Acquire))
    }

    /// Moves the worker to `state`.
    pub fn set_state(&self, state: BlockState) {
        self.state.store(encode(state), Ordering::Release);
    }

    /// Records the version the worker runs.
    pub fn set_version(&self, version: String) {
        *self.version.lock().unwrap_or_else(|p| p.into_inner()) = version;
    }

    /// Everything it took is done with (called between two of its steps, when nothing waits to
    /// be delivered again).
    pub fn settle(&self) {
        let taken = self.taken.load(Ordering::Acquire);
        if self.settled.swap(taken, Ordering::AcqRel) != taken {
            self.progress.notify_one();
        }
    }

    /// Something reached its queue that does not count as handed (a call's outcome, a stream's
    /// end): taking it frees a place the group may be waiting for.
    pub fn took_uncounted(&self) {
        self.progress.notify_one();
    }

    /// Handed to it and not yet done with.
    pub fn in_flight(&self) -> u64 {
        self.handed.load(Ordering::Acquire).saturating_sub(self.settled.load(Ordering::Acquire))
    }

    fn snapshot(&self) -> WorkerSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerSnapshot {
            id: self.id,
            state: state_name(self.state()).to_owned(),
            version: self.version.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            handed: get(&self.handed),
            in_flight: self.in_flight(),
            faults: get(&self.faults),
            restarts: get(&self.restarts),
        }
    }
}

/// A block's pool of workers.
#[derive(Debug, Default)]
pub struct Pool {
    /// `workers.min` and `workers.max`.
    pub min: u64,
    /// See [`Pool::min`].
    pub max: u64,
    /// The most workers that ran at once.
    pub high_water: AtomicU64,
    /// Workers added because bags waited.
    pub scale_ups: AtomicU64,
    /// Workers retired because they were idle.
    pub retirements: AtomicU64,
    workers: Mutex<Vec<Arc<WorkerStatus>>>,
}

impl Pool {
    /// A pool of `min` to `max` workers.
    pub fn new(min: usize, max: usize) -> Self {
        Self { min: min as u64, max: max as u64, ..Self::default() }
    }

    /// A worker joins.
    pub fn add(&self, worker: Arc<WorkerStatus>) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.push(worker);
        self.high_water.fetch_max(workers.len() as u64, Ordering::Relaxed);
    }

    /// Worker `id` is gone.
    pub fn remove(&self, id: u32) {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).retain(|w| w.id != id);
    }

    /// A copy of the pool's stats.
    pub fn snapshot(&self) -> PoolSnapshot {
        let workers: Vec<WorkerSnapshot> =
            self.workers.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|w| w.snapshot()).collect();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolSnapshot {
            now: workers.len() as u64,
            min: self.min,
            max: self.max,
            high_water: get(&self.high_water),
            scale_ups: get(&self.scale_ups),
            retirements: get(&self.retirements),
            workers,
        }
    }
}

/// A pool's stats at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PoolSnapshot {
    /// Workers now.
    pub now: u64,
    /// `workers.min`.
    pub min: u64,
    /// `workers.max`.
    pub max: u64,
    /// The most workers that ran at once.
    pub high_water: u64,
    /// Workers added because bags waited.
    pub scale_ups: u64,
    /// Workers retired because they were idle.
    pub retirements: u64,
    /// Each worker.
    pub workers: Vec<WorkerSnapshot>,
}

/// One worker's stats at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct WorkerSnapshot {
    /// Its number in the group.
    pub id: u32,
    /// Its state.
    pub state: String,
    /// The version it runs.
    pub version: String,
    /// Envelopes the group handed it.
    pub handed: u64,
    /// Handed and not yet done with.
    pub in_flight: u64,
    /// Faults of its instances.
    pub faults: u64,
    /// Restarts of its instances.
    pub restarts: u64,
}
