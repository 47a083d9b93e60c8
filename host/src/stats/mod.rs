//! What the host knows about each block while it runs: its state and its counters.
//!
//! One [`BlockStatus`] per block, shared (through `Arc`) by the router, the block's task and the
//! supervisor. Everything in it is atomic: reading stats never waits for a block.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;

use crate::bindings::{BlockInfo, BlockState};
mod histogram;
mod tap;
mod workers;

pub(crate) use histogram::Histogram;
pub use tap::Tap;
pub use workers::{Pool, PoolSnapshot, WorkerSnapshot, WorkerStatus};

fn micros(d: Option<std::time::Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e6)
}

/// A value on a cache line of its own (128 bytes: two lines, as adjacent lines are fetched
/// together). What the senders to a block write or read with each bag sits away from what the
/// block's own task writes on another core, so neither waits for the other's line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct OwnLine<T>(pub T);

impl<T> std::ops::Deref for OwnLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A block's identity, state and counters.
#[derive(Debug)]
pub struct BlockStatus {
    /// The component's name.
    pub name: String,
    /// The instance's responsibility.
    pub responsibility: String,
    /// Built into the host (`initiator`, `finisher`).
    pub builtin: bool,
    /// Exports `enqueue-hook`.
    pub accepts_bags: bool,
    /// Read by every block that sends to this one, with every bag: on a line of its own.
    state: OwnLine<AtomicU8>,
    version: Mutex<String>,
    /// The last `__seq` this block sent: it counts on across restarts of the block, so a receiver
    /// can tell a redelivery from a new bag.
    pub seq: AtomicU64,
    /// The block's counters.
    pub counters: Counters,
    /// How long `on-enqueue` calls take.
    pub processing: Histogram,
    /// From a fault to the fresh instance having processed its next bag.
    pub recovery: Histogram,
    /// How long swaps paused the block.
    pub swap_pause: Histogram,
    /// Its workers, when several serve it.
    pub pool: std::sync::OnceLock<Pool>,
}

/// Counters of one block. "Bags" are bags addressed to this block unless said otherwise.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bags put into the block's queue. Written by the senders, on their cores: on a line of its
    /// own, away from the counters the block's own task writes.
    pub received: OwnLine<AtomicU64>,
    /// Bags `on-enqueue` accepted.
    pub processed: AtomicU64,
    /// Bags `on-enqueue` returned an error for.
    pub failed: AtomicU64,
    /// `on-batch` calls: each delivered one or more queued items (bags and socket events).
    pub batches: AtomicU64,
    /// Calls this block made (`controller.call`) that were sent.
    pub calls: AtomicU64,
    /// Bags this block emitted on topics (`topics.emit`).
    pub emitted: AtomicU64,
    /// Copies of topics' bags a lossy subscription of this block missed: its queue was full.
    pub topic_dropped: AtomicU64,
    /// Calls of this block that ended without an answer (timeout, the target faulted, refused,
    /// did not answer, or stopped).
    pub calls_failed: AtomicU64,
    /// Senders told `queue-full` because this block's queue stayed full.
    pub refused_full: AtomicU64,
    /// Bags refused because they were larger than the block accepts.
    pub refused_too_large: AtomicU64,
    /// Bags refused because they were not bags the block accepts (not one JSON object, nested
    /// too deep, host keys set by a guest).
    pub refused_invalid: AtomicU64,
    /// Calls refused because the block had spent one of its budgets (timers, subscriptions, send
    /// buffers).
    pub budget_refusals: AtomicU64,
    /// Log and stderr lines past the block's rate (counted, summarised in the log, not written).
    pub logs_dropped: AtomicU64,
    /// Writes to stdout dropped because the host's stdout was not keeping up.
    pub stdout_dropped: AtomicU64,
    /// Times the block's stdout or stderr made it wait: it printed past `stdout_bytes_per_sec` or
    /// `stderr_bytes_per_sec`.
    pub output_paced: AtomicU64,
    /// Bags still queued when the block ended, never delivered (counted, and logged).
    pub lost: AtomicU64,
    /// Bags this block sent that were queued somewhere.
    pub sent: AtomicU64,
    /// Timers that fired.
    pub timers_fired: AtomicU64,
    /// Traps, deadlines and limit breaches.
    pub faults: AtomicU64,
    /// Fresh instances started after a fault.
    pub restarts: AtomicU64,
    /// Bags given up on after faulting `max_attempts` times.
    pub dead_letters: AtomicU64,
    /// Hot swaps to a new version (or config) done.
    pub swaps: AtomicU64,
    /// Hot swaps refused because the new version failed (the old one kept running).
    pub swaps_failed: AtomicU64,
    /// The pause of the last swap (bags not processed), in microseconds.
    pub last_swap_pause_us: AtomicU64,
    /// When the last swap was done, in milliseconds since the Unix epoch (0: never).
    pub last_swap_at_ms: AtomicU64,
    /// When the last fault was, in milliseconds since the Unix epoch (0: never).
    pub last_fault_at_ms: AtomicU64,
    /// TCP connections accepted or opened.
    pub connections: AtomicU64,
    /// Connections closed at once because the block held too many.
    pub refused_connections: AtomicU64,
    /// UDP datagrams that found the queue full.
    pub udp_dropped: AtomicU64,
    /// Messages the block published to the server (requests included).
    pub published: AtomicU64,
    /// Bags that came from the server: subscriptions, other hosts, its durable stream.
    pub from_server: AtomicU64,
    /// The most bags the queue has held at once (written by the senders: on a line of its own).
    pub queue_high_water: OwnLine<AtomicU64>,
    /// Durable bags still queued when the block ended, left to their stream (delivered again).
    pub returned: AtomicU64,
    /// Durable bags its stream delivered again (a host crashed, or gave them back, before they
    /// were settled): the block may see them twice.
    pub redelivered: AtomicU64,
    /// Durable dead letters whose bag, with the dead letter's headers, passed the server's
    /// `max_payload`: the dead-letter stream holds the first bytes that fit.
    pub dead_letters_cut: AtomicU64,
    /// Publishes refused because the outbox was full (`busy`).
    pub publish_busy: AtomicU64,
    /// Published messages sent again because the server had not confirmed them.
    pub publish_retries: AtomicU64,
    /// Published messages the server never confirmed, left when the block ended.
    pub publish_dropped: AtomicU64,
    /// Messages in the outbox now (a gauge).
    pub outbox_messages: AtomicU64,
    /// Bytes in the outbox now (a gauge).
    pub outbox_bytes: AtomicU64,
    /// Messages an earlier run left unconfirmed in the block's spill directory, found at start
    /// and sent first (`outbox = "disk"`).
    pub outbox_recovered: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Milliseconds since the Unix epoch, now (0 on a clock before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl BlockStatus {
    /// A block that is starting.
    pub fn new(name: &str, responsibility: &str, accepts_bags: bool) -> Self {
        Self {
            name: name.to_owned(),
            responsibility: responsibility.to_owned(),
            builtin: false,
            accepts_bags,
            state: OwnLine(AtomicU8::new(encode(BlockState::Starting))),
            version: Mutex::new(String::new()),
            seq: AtomicU64::new(0),
            counters: Counters::default(),
            processing: Histogram::default(),
            recovery: Histogram::default(),
            swap_pause: Histogram::default(),
            pool: std::sync::OnceLock::new(),
        }
    }

    /// A built-in block: always running, takes no bags.
    pub fn builtin(responsibility: &str) -> Self {
        let status = Self { builtin: true, ..Self::new(crate::defaults::BUILTIN_NAME, responsibility, false) };
        status.set_state(BlockState::Running);
        status
    }

    /// Where the block is in its life.
    pub fn state(&self) -> BlockState {
        decode(self.state.load(Ordering::Acquire))
    }

    /// Moves the block to `state`.
    pub fn set_state(&self, state: BlockState) {
        self.state.store(encode(state), Ordering::Release);
    }

    /// Whether bags sent now are queued (starting and running blocks queue them).
    pub fn takes_bags(&self) -> bool {
        matches!(self.state(), BlockState::Starting | BlockState::Running | BlockState::Restarting)
    }

    /// Records the component version (hash) the block runs.
    pub fn set_version(&self, version: String) {
        *self.version.lock().unwrap_or_else(|p| p.into_inner()) = version;
    }

    /// The component version the block runs.
    pub fn version(&self) -> String {
        self.version.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The block as the WIT `block-info` describes it.
    pub fn info(&self) -> BlockInfo {
        BlockInfo {
            name: self.name.clone(),
            responsibility: self.responsibility.clone(),
            state: self.state(),
            accepts_bags: self.accepts_bags,
            builtin: self.builtin,
            version: self.version(),
            // The status does not see the queue: the route fills it in.
            queued: 0,
            processed: self.counters.processed.load(Ordering::Relaxed),
            faults: self.counters.faults.load(Ordering::Relaxed),
        }
    }

    /// Counts a fault, now.
    pub fn note_fault(&self) {
        Counters::bump(&self.counters.faults);
        self.counters.last_fault_at_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// A copy of everything, for reports; the queue holds `queue_depth` of `queue_capacity` bags.
    pub fn snapshot(&self, queue_depth: u64, queue_capacity: u64) -> StatsSnapshot {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            name: self.name.clone(),
            responsibility: self.responsibility.clone(),
            state: state_name(self.state()).to_owned(),
            version: self.version(),
            received: get(&c.received),
            processed: get(&c.processed),
            failed: get(&c.failed),
            refused_full: get(&c.refused_full),
            refused_too_large: get(&c.refused_too_large),
            refused_invalid: get(&c.refused_invalid),
            budget_refusals: get(&c.budget_refusals),
            logs_dropped: get(&c.logs_dropped),
            stdout_dropped: get(&c.stdout_dropped),
            output_paced: get(&c.output_paced),
            batches: get(&c.batches),
            calls: get(&c.calls),
            emitted: get(&c.emitted),
            topic_dropped: get(&c.topic_dropped),
            calls_failed: get(&c.calls_failed),
            lost: get(&c.lost),
            sent: get(&c.sent),
            timers_fired: get(&c.timers_fired),
            faults: get(&c.faults),
            restarts: get(&c.restarts),
            dead_letters: get(&c.dead_letters),
            processing_p50_us: micros(self.processing.percentile(50.0)),
            processing_p99_us: micros(self.processing.percentile(99.0)),
            recovery_p50_us: micros(self.recovery.percentile(50.0)),
            recovery_p99_us: micros(self.recovery.percentile(99.0)),
            connections: get(&c.connections),
            refused_connections: get(&c.refused_connections),
            udp_dropped: get(&c.udp_dropped),
            published: get(&c.published),
            from_server: get(&c.from_server),
            swaps: get(&c.swaps),
            swaps_failed: get(&c.swaps_failed),
            last_swap_pause_us: (get(&c.swaps) > 0).then(|| get(&c.last_swap_pause_us)),
            last_swap_at_ms: Some(get(&c.last_swap_at_ms)).filter(|&at| at > 0),
            last_fault_at_ms: Some(get(&c.last_fault_at_ms)).filter(|&at| at > 0),
            swap_pause_p50_us: micros(self.swap_pause.percentile(50.0)),
            swap_pause_p99_us: micros(self.swap_pause.percentile(99.0)),
            queue_depth,
            queue_capacity,
            queue_high_water: get(&c.queue_high_water),
            returned: get(&c.returned),
            redelivered: get(&c.redelivered),
            dead_letters_cut: get(&c.dead_letters_cut),
            publish_busy: get(&c.publish_busy),
            publish_retries: get(&c.publish_retries),
            publish_dropped: get(&c.publish_dropped),
            outbox_messages: get(&c.outbox_messages),
            outbox_bytes: get(&c.outbox_bytes),
            outbox_recovered: get(&c.outbox_recovered),
            workers: self.pool.get().map(Pool::snapshot),
        }
    }
}

/// A block's stats at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// The component's name.
    pub name: String,
    /// The instance's responsibility.
    pub responsibility: String,
    /// Its state, in WIT spelling.
    pub state: String,
    /// The component version (short hash).
    pub version: String,
    /// See [`Counters::received`].
    pub received: u64,
    /// See [`Counters::processed`].
    pub processed: u64,
    /// See [`Counters::failed`].
    pub failed: u64,
    /// See [`Counters::refused_full`].
    pub refused_full: u64,
    /// See [`Counters::refused_too_large`].
    #[serde(default)]
    pub refused_too_large: u64,
    /// See [`Counters::refused_invalid`].
    #[serde(default)]
    pub refused_invalid: u64,
    /// See [`Counters::budget_refusals`].
    #[serde(default)]
    pub budget_refusals: u64,
    /// See [`Counters::logs_dropped`].
    #[serde(default)]
    pub logs_dropped: u64,
    /// See [`Counters::stdout_dropped`].
    #[serde(default)]
    pub stdout_dropped: u64,
    /// See [`Counters::batches`].
    pub batches: u64,
    /// See [`Counters::calls`].
    #[serde(default)]
    pub calls: u64,
    /// See [`Counters::emitted`].
    #[serde(default)]
    pub emitted: u64,
    /// See [`Counters::topic_dropped`].
    #[serde(default)]
    pub topic_dropped: u64,
    /// See [`Counters::calls_failed`].
    #[serde(default)]
    pub calls_failed: u64,
    /// See [`Counters::output_paced`].
    #[serde(default)]
    pub output_paced: u64,
    /// See [`Counters::lost`].
    pub lost: u64,
    /// See [`Counters::sent`].
    pub sent: u64,
    /// See [`Counters::timers_fired`].
    pub timers_fired: u64,
    /// See [`Counters::faults`].
    pub faults: u64,
    /// See [`Counters::restarts`].
    pub restarts: u64,
    /// See [`Counters::dead_letters`].
    pub dead_letters: u64,
    /// Median `on-enqueue` time, in microseconds.
    pub processing_p50_us: Option<f64>,
    /// 99th percentile `on-enqueue` time, in microseconds.
    pub processing_p99_us: Option<f64>,
    /// Median time from a fault to the next bag processed, in microseconds.
    pub recovery_p50_us: Option<f64>,
    /// 99th percentile time from a fault to the next bag processed, in microseconds.
    pub recovery_p99_us: Option<f64>,
    /// See [`Counters::connections`].
    pub connections: u64,
    /// See [`Counters::refused_connections`].
    pub refused_connections: u64,
    /// See [`Counters::udp_dropped`].
    pub udp_dropped: u64,
    /// See [`Counters::published`].
    pub published: u64,
    /// See [`Counters::from_server`].
    pub from_server: u64,
    /// See [`Counters::swaps`].
    pub swaps: u64,
    /// See [`Counters::swaps_failed`].
    pub swaps_failed: u64,
    /// See [`Counters::last_swap_pause_us`]; `None` before the first swap.
    pub last_swap_pause_us: Option<u64>,
    /// Median swap pause, in microseconds.
    pub swap_pause_p50_us: Option<f64>,
    /// 99th percentile swap pause, in microseconds.
    pub swap_pause_p99_us: Option<f64>,
    /// When the last swap was done, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub last_swap_at_ms: Option<u64>,
    /// When the last fault was, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub last_fault_at_ms: Option<u64>,
    /// Bags in the queue now.
    pub queue_depth: u64,
    /// The most bags the queue holds (0: the block takes no bags).
    #[serde(default)]
    pub queue_capacity: u64,
    /// See [`Counters::queue_high_water`].
    pub queue_high_water: u64,
    /// See [`Counters::returned`].
    #[serde(default)]
    pub returned: u64,
    /// See [`Counters::redelivered`].
    #[serde(default)]
    pub redelivered: u64,
    /// See [`Counters::dead_letters_cut`].
    #[serde(default)]
    pub dead_letters_cut: u64,
    /// See [`Counters::publish_busy`].
    #[serde(default)]
    pub publish_busy: u64,
    /// See [`Counters::publish_retries`].
    #[serde(default)]
    pub publish_retries: u64,
    /// See [`Counters::publish_dropped`].
    #[serde(default)]
    pub publish_dropped: u64,
    /// See [`Counters::outbox_messages`].
    #[serde(default)]
    pub outbox_messages: u64,
    /// See [`Counters::outbox_bytes`].
    #[serde(default)]
    pub outbox_bytes: u64,
    /// See [`Counters::outbox_recovered`].
    #[serde(default)]
    pub outbox_recovered: u64,
    /// Its pool of workers, when several serve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<PoolSnapshot>,
}

/// The WIT spelling of a state.
pub fn state_name(state: BlockState) -> &'static str {
    match state {
        BlockState::Starting => "starting",
        BlockState::Running => "running",
        BlockState::Restarting => "restarting",
        BlockState::Finishing => "finishing",
        BlockState::Finished => "finished",
        BlockState::Failed => "failed",
    }
}

fn encode(state: BlockState) -> u8 {
    match state {
        BlockState::Starting => 0,
        BlockState::Running => 1,
        BlockState::Restarting => 2,
        BlockState::Finishing => 3,
        BlockState::Finished => 4,
        BlockState::Failed => 5,
    }
}

fn decode(v: u8) -> BlockState {
    match v {
        0 => BlockState::Starting,
        1 => BlockState::Running,
        2 => BlockState::Restarting,
        3 => BlockState::Finishing,
        4 => BlockState::Finished,
        _ => BlockState::Failed,
    }
}
