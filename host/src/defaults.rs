//! Every default and limit of the host, in one place.
//!
//! The manifest can override the per-block limits ([`Limits`]) and the host settings
//! ([`Settings`]); whatever it does not set comes from here.

use std::path::PathBuf;
use std::time::Duration;

use crate::restart::{Backoff, GiveUp, Restart};

/// How often the engine's epoch advances. Call deadlines are measured in these ticks, so this is
/// also the precision of a deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Responsibilities built into the host. No block may take these names.
pub const BUILTIN_RESPONSIBILITIES: [&str; 2] = ["initiator", "finisher"];

/// The name the built-in blocks report as their component.
pub const BUILTIN_NAME: &str = "bagpipe";

/// Compiled components kept in memory (the most recently used).
pub const COMPILED_IN_MEMORY: usize = 64;

/// Bytes of compiled components kept on disk (the least recently used go first).
pub const DISK_CACHE_BYTES: u64 = 1 << 30;

/// The largest component file the host reads (a Python block, CPython included, is ~40 MB).
pub const MAX_COMPONENT_BYTES: u64 = 48 << 20;

/// The manifest's file name inside a component directory.
pub const MANIFEST_FILE: &str = "bagpipe.toml";

/// Most items (bags, socket events) one batch takes from a block's queue: one `on-batch` call,
/// or, for a block without `batch-hook`, one wake-up of its task. Due timers wait behind a
/// batch; a lifecycle command (swap, finish) ends one early.
pub const BATCH_ITEMS: usize = 256;

/// A batch takes no further item once it holds this many bytes (a larger item still goes, alone).
pub const BATCH_BYTES: usize = 1 << 20;

/// Most lines of a guest's stderr kept to explain a trap.
pub const STDERR_TAIL_LINES: usize = 20;

/// Longest guest stderr line kept (longer lines are cut).
pub const STDERR_LINE_BYTES: usize = 4096;

/// Most bytes a guest may write to stderr in one write.
pub const STDERR_WRITE_BYTES: usize = 64 * 1024;

/// Longest line of a block's stdout the host holds to hand it to the writer whole: a longer one
/// goes out as it comes (and lines of other blocks may come between its pieces).
pub const STDOUT_LINE_BYTES: usize = 64 * 1024;

/// Writes of blocks' stdout the host holds while its own stdout is slow (past them, what blocks
/// print is dropped and counted).
pub const STDOUT_CHUNKS: usize = 4096;

/// Bytes a block past its output budget waits for before it writes again (or its whole budget
/// a second, when that is smaller): pacing in steps, not byte by byte.
pub const OUTPUT_PACE_STEP: f64 = 4096.0;

/// How long a host that stops waits for what blocks printed to be written out.
pub const STDOUT_DRAIN: Duration = Duration::from_secs(2);

/// Longest guest log message passed to the logger (longer ones are cut).
pub const LOG_MESSAGE_BYTES: usize = 16 * 1024;

/// Memory mappings one idle block holds (its linear memory's reservation, accessible part and
/// initial image, its fiber stack and guard), measured by the `many` benchmark; and what the
/// rest of the host needs. Against `vm.max_map_count`, to warn before blocks fail to start.
pub const MAPPINGS_PER_BLOCK: usize = 6;
/// See [`MAPPINGS_PER_BLOCK`].
pub const MAPPINGS_SPARE: usize = 2_000;

/// Most host-side resources (pollables, streams, ...) one block instance may hold at once.
pub const MAX_RESOURCES: usize = 10_000;

/// The most the host's keys (`__from`, `__seq`) add to a bag: a queue must hold its largest bag
/// with them.
pub const STAMP_BYTES: usize = 1024;

/// The largest `memory_mb` a manifest may give a block, in bytes.
pub const MAX_MEMORY_BYTES: usize = 4096 << 20;

/// Most elements a guest's table may grow to.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// What one table element counts for against a block's `memory_mb` (a reference the host holds).
pub const TABLE_ELEMENT_BYTES: usize = 16;

/// Most core instances, tables and linear memories one block's store may hold (a component made
/// by the usual toolchains has a handful of each; wasmtime's own defaults allow thousands).
pub const MAX_INSTANCES: usize = 64;
/// See [`MAX_INSTANCES`].
pub const MAX_TABLES: usize = 64;
/// See [`MAX_INSTANCES`].
pub const MAX_MEMORIES: usize = 16;

/// How much longer than its remaining budget a call may run before the wall-clock guard stops
/// it. The epoch deadline stops a computing guest within a tick; the guard is for a guest blocked
/// inside a host call (a WASI sleep), where epochs are never checked.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(50);

/// How long a changed component file or manifest must stay quiet before the host acts on it
/// (writers copy in chunks, cargo removes and links, editors rename).
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(150);

/// The most time one call into a guest may spend waiting in host calls (full queues, the
/// network), all waits together; past it the call is stopped like one past its timeout.
pub const CALL_WAIT_BUDGET: Duration = Duration::from_secs(30);

/// The longest a call between blocks (`controller.call`) may wait for its outcome, whatever
/// timeout the caller asked for.
pub const CALL_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// The most text a call's failure or a stream's end carries (what a guest says there is cut):
/// such outcomes go into places reserved in a queue without counting against its bytes.
pub const OUTCOME_DETAIL_BYTES: usize = 1024;

/// Bags of one stream sent and not yet handled by its target, at most (`send` waits past it).
pub const STREAM_WINDOW: usize = 64;

/// The most streams one block may have open as their opener (each holds a place in its
/// target's queue for its end).
pub const MAX_OPEN_STREAMS: usize = 64;

/// Most workers one block may run (`workers.max`).
pub const MAX_WORKERS: usize = 64;

/// Envelopes handed to one worker of a group and not yet done with, at most (the one being
/// delivered and the next ones, ready in the worker's own queue). The rest wait in the block's
/// queue, where whichever worker is free next takes them: a slow bag holds up at most this many
/// behind it, and bags that wait there for `scale_ms` add a worker.
pub const WORKER_QUEUE: usize = 4;

/// After a worker added to a pool failed to start, how long before another is tried.
pub const SCALE_RETRY: Duration = Duration::from_secs(1);

/// A block's worker pool (`workers = { min, max, idle_ms, scale_ms }`): one worker unless the
/// manifest says more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workers {
    /// Workers started with the block, and kept however idle.
    pub min: usize,
    /// The most workers the block runs at once.
    pub max: usize,
    /// A worker above `min` with nothing to do for this long is retired.
    pub idle: Duration,
    /// A worker is added (up to `max`) once a bag has waited this long for one.
    pub scale_after: Duration,
}

impl Workers {
    /// Whether the block runs as a group of workers (more than one may run).
    pub fn pooled(&self) -> bool {
        self.max > 1
    }
}

impl Default for Workers {
    fn default() -> Self {
        Self { min: 1, max: 1, idle: Duration::from_secs(60), scale_after: Duration::from_millis(100) }
    }
}

/// Pending `finish` requests from blocks the supervisor buffers.
pub const FINISH_REQUESTS: usize = 64;

/// The longest a block's server `request` may wait for its answer.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a sender waits for a remote host's answer beyond the enqueue timeout itself.
pub const REMOTE_SLACK: Duration = Duration::from_secs(2);

/// How long the host asks the server whether a durable responsibility's stream exists.
pub const STREAM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Between attempts to serve a block to the cluster when subscribing failed.
pub const SERVE_RETRY: Duration = Duration::from_secs(1);

/// Between attempts to consume a durable block's stream when it failed.
pub const DURABLE_RETRY: Duration = Duration::from_millis(500);

/// How long the host remembers that a responsibility has no durable stream (asking costs a
/// round trip; a stream made meanwhile is seen at most this much later).
pub const DURABLE_ABSENT_CACHE: Duration = Duration::from_secs(1);

/// Server deliveries of a durable bag allowed per `max_attempts` (a host that crashes, or gives
/// queued bags back at shutdown, spends one without settling it): the consumer's `max_deliver`
/// is `max_attempts` times this, plus one last delivery that goes straight to the dead letters.
pub const DURABLE_DELIVERIES_PER_ATTEMPT: u32 = 4;

/// Longest error a durable dead letter carries in its `Bagpipe-Error` header (cut past it).
pub const DURABLE_DEAD_ERROR_BYTES: usize = 1024;

// Sockets a block is granted (`io::net`).

/// Most connections a block may hold at once; more are accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 4096;

/// Writes a connection may have waiting before `send` waits, then fails with `would-block`.
pub const WRITE_QUEUE: usize = 64;

/// The most bytes one read hands to the block.
pub const READ_CHUNK: usize = 64 * 1024;

/// How many targets a block's `RouteCache` remembers; a block sending to more looks the others
/// up in the router each time (same answers, a shared lock taken).
pub const ROUTE_CACHE_ENTRIES: usize = 8;

/// The largest datagram a UDP listener receives whole.
pub const DATAGRAM_BYTES: usize = 64 * 1024;

/// Peers a UDP listener remembers having heard from (the ones `send-datagram` may answer).
pub const MAX_UDP_PEERS: usize = 4096;

/// How long `connect` may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// After a failed `accept` (out of file descriptors, say), before the next: no spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

// The message server (`io::server`).

/// How long start-up waits for the first connection to the server.
pub const INITIAL_WAIT: Duration = Duration::from_secs(3);

/// Between reconnection attempts to the server: 50 ms, doubling to 1 s.
pub const RECONNECT_BACKOFF: Backoff = Backoff { base: Duration::from_millis(50), max: Duration::from_secs(1) };

/// Messages a subscription buffers while its block is slow (past it the server reports a slow
/// consumer).
pub const SUBSCRIPTION_BUFFER: usize = 1024;

/// Reply subjects a block may answer on, at most (the oldest are forgotten first).
pub const REPLY_SUBJECTS: usize = 1024;

/// The longest a subscription waits for the server to confirm it (a round trip).
pub const BARRIER_WAIT: Duration = Duration::from_secs(1);

/// How long closing the connection waits to flush what blocks published.
pub const SERVER_CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// Longest the host waits on any one call to the message server (a publish taken, a flush
/// round trip, a stream's acknowledgement) before it counts the call as failed.
pub const SERVER_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages an outbox's flusher sends before it waits for one confirmation of them all.
pub const OUTBOX_BATCH: usize = 256;

/// How long an outbox's flusher waits after a failure before it sends again.
pub const OUTBOX_RETRY: Duration = Duration::from_millis(100);

/// How often, at most, an outbox says that the server or its spill files keep failing.
pub const OUTBOX_REPORT_EVERY: Duration = Duration::from_secs(1);

/// How soon what a block spilled (`outbox = "disk"`) is synced to the disk after it was written:
/// what a machine crash can lose (a host that is killed loses nothing it spilled).
pub const SPILL_SYNC: Duration = Duration::from_millis(100);

/// The largest spill segment file: a segment is removed once all of its messages were confirmed
/// (a segment is at most an eighth of `outbox_bytes`, and at least 1 KiB).
pub const SPILL_SEGMENT_BYTES: u64 = 4 << 20;

/// About the most bytes of spilled messages held in memory to be sent (at least one message,
/// at most `OUTBOX_BATCH`).
pub const SPILL_WINDOW_BYTES: usize = 1 << 20;

// Dead letters (`routing::deadletter`) and timers (`runtime::timers`).

/// How many dead letters are kept for listing.
pub const DEAD_LETTERS_KEPT: usize = 1000;

/// Largest bag kept whole in a listed dead letter; a larger one is kept cut, as text.
pub const DEAD_LETTER_BAG_BYTES: usize = 16 * 1024;

/// The longest delay a timer may have (tokio's timer wheel tops out near two years).
pub const MAX_TIMER_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest tag a timer may carry: with `max_timers`, what a block's timers can make the host
/// hold.
pub const MAX_TIMER_TAG_BYTES: usize = 1024;

// The admin endpoint (`ops::admin`).

/// Largest request head the admin endpoint reads.
pub const ADMIN_MAX_REQUEST: usize = 8 * 1024;

/// How long the admin endpoint (and `bagpipe status`) waits for a request or an answer.
pub const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections served at once.
pub const ADMIN_MAX_CONNECTIONS: usize = 32;

/// Of those, `/events` streams open at once: the rest of the connections stay for the pages.
pub const ADMIN_MAX_EVENT_STREAMS: usize = 16;

/// How often an idle `/events` stream says it is still there (a comment line), so that proxies
/// and the reader's own timeouts keep it open, and a reader that is gone is noticed.
pub const ADMIN_EVENTS_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// An `/events` stream whose reader has not taken anything for this long (so the stream could
/// not even send its keep-alive) is closed: its place is for a reader that reads.
pub const ADMIN_EVENTS_STALLED: Duration = Duration::from_secs(15);

// The feed (`ops::feed`) and the log publisher (`ops::log_publisher`).

/// Events the feed keeps for a reader that comes later (`/events` sends them first).
pub const FEED_RECENT: usize = 100;

/// Events an `/events` reader may fall behind by before it misses some (and is told how many).
pub const FEED_LIVE: usize = 256;

/// Log lines waiting for the log publisher; past them lines are dropped and counted.
pub const LOG_SINK_QUEUE: usize = 1024;

/// Blocks the log sink keeps a rate for; past them it forgets every rate and starts again.
pub const LOG_SINK_BLOCKS: usize = 65_536;

/// Longest the log publisher goes on after the host's last block finished: what is still queued
/// then is counted as dropped.
pub const LOG_PUBLISH_LAST: Duration = Duration::from_secs(2);

/// Log lines a second each block (and the host itself) may publish to `[host] log_subject`,
/// unless `[host] log_lines_per_sec` says otherwise; past it lines are dropped and counted.
pub const LOG_PUBLISH_PER_BLOCK: u32 = 50;

// The test kit (`testkit`).

/// Longest the test kit waits for the world outside the block to catch up: bytes a test wrote
/// to reach the block's queue, what the block sent to be written or published, the server to
/// connect or go away. Past it the test fails, saying what it waited for.
pub const TEST_WAIT: Duration = Duration::from_secs(10);

/// Most messages of the block's stdout the test kit keeps before the test reads them.
pub const TEST_STDOUT_MESSAGES: usize = 4096;

/// Most bags a stand-in holds before the test reads them (it takes any bag, of any size).
pub const TEST_STAND_IN_QUEUE: usize = 1 << 16;

/// Most bytes a stand-in holds before the test reads them.
pub const TEST_STAND_IN_BYTES: usize = 1 << 30;

/// The largest table a scenario's line diff builds (lines expected × lines got); past it both
/// sides are shown whole.
pub const TEST_DIFF_CELLS: usize = 4_000_000;

/// Limits of one block instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bags (and socket events) the block's queue holds.
    pub queue: usize,
    /// Bytes the block's queue holds, all it holds together (bags, socket data, datagrams).
    pub queue_bytes: usize,
    /// Most bytes of linear memory and tables, all of the block's together.
    pub memory_bytes: usize,
    /// Longest a single call into the guest may compute (time spent waiting in host calls, such
    /// as an `enqueue` to a full queue, does not count).
    pub call_timeout: Duration,
    /// Largest bag the block accepts, in bytes of JSON text.
    pub max_bag_bytes: usize,
    /// Deepest nesting of arrays and objects in a bag the block accepts.
    pub max_bag_depth: usize,
    /// Most timers the block may have pending.
    pub max_timers: usize,
    /// Most server subscriptions the block may hold at once.
    pub max_subscriptions: usize,
    /// Bytes the block may have waiting to be written to its connections, all together.
    pub send_buffer_bytes: usize,
    /// Log lines a second the block may write (its `log` calls and its stderr together).
    pub log_lines_per_sec: u32,
    /// Bytes a second the block may print on stdout; past it, its writes wait.
    pub stdout_bytes_per_sec: u64,
    /// Bytes a second the block may write to stderr; past it, its writes wait.
    pub stderr_bytes_per_sec: u64,
    /// Bytes of published messages the block may have waiting for the server's confirmation.
    pub outbox_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue: 1024,
            queue_bytes: 32 << 20,
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
            max_bag_bytes: 1 << 20,
            max_bag_depth: 64,
            max_timers: 1024,
            max_subscriptions: 64,
            send_buffer_bytes: 4 << 20,
            log_lines_per_sec: 200,
            stdout_bytes_per_sec: 1 << 20,
            stderr_bytes_per_sec: 64 << 10,
            outbox_bytes: 8 << 20,
        }
    }
}

/// What the supervisor does when a block faults (traps, panics, breaks a limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The restart policy.
    pub restart: Restart,
    /// What happens when the block restarts too often.
    pub on_give_up: GiveUp,
    /// Restarts allowed within `window` before giving up.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in.
    pub window: Duration,
    /// Delay between consecutive restarts.
    pub backoff: Backoff,
    /// How many times in all a bag whose processing faulted is delivered before it becomes a
    /// dead letter.
    pub max_attempts: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            restart: Restart::One,
            on_give_up: GiveUp::Finish,
            max_restarts: 5,
            window: Duration::from_secs(10),
            backoff: Backoff { base: Duration::from_millis(10), max: Duration::from_secs(5) },
            max_attempts: 2,
        }
    }
}

/// Settings of the whole host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long `enqueue` waits for room in a full queue before it returns `queue-full`. A call
    /// that was refused once does not wait again: the rest of its enqueues to full queues fail at
    /// once, so a guest flooding a full queue cannot stall for long.
    pub enqueue_timeout: Duration,
    /// How long a finishing block may take to work through the bags already in its queue before
    /// `finish` is called anyway (the bags left are counted and logged).
    pub drain_timeout: Duration,
    /// The block that dead letters are sent to, if any.
    pub dead_letters: Option<String>,
    /// The message server (`nats://host:port`), if any.
    pub server: Option<String>,
    /// The cluster this host shares blocks with over the server, if any.
    pub cluster: Option<String>,
    /// How long the server waits for a durable bag's acknowledgement before it delivers the bag
    /// again: how soon the bags a crashed host held reach another. A live host keeps the bags it
    /// holds (queued or being delivered) with progress acknowledgements every third of it.
    pub durable_ack_wait: Duration,
    /// JetStream streams the host makes sure exist (`[[stream]]`), each time it connects.
    pub streams: Vec<StreamSpec>,
    /// The topics bridged to the NATS subjects of the same names (`[host] bridge_topics`): what
    /// blocks emit on them is also published there, and what arrives there from other hosts is
    /// given to this host's subscribers.
    pub bridge_topics: Vec<String>,
    /// Where the host keeps what outlives it (`[host] state_dir`, relative to the manifest's
    /// directory); `None`: see [`Settings::state_dir`].
    pub state_dir: Option<PathBuf>,
    /// Where the host publishes its log lines and its blocks', when it does (`[host]
    /// log_subject`, needs a server).
    pub logs: Option<LogPublishing>,
}

/// Publishing the log to the server (`[host] log_subject`, `log_level`, `log_lines_per_sec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPublishing {
    /// The subject each line is published to (`{hostname}` replaced by the machine's name).
    pub subject: String,
    /// The least severe level published.
    pub level: tracing::Level,
    /// Lines a second each block (and the host itself) may publish; past it lines are dropped
    /// and counted.
    pub lines_per_sec: u32,
}

impl Settings {
    /// The host's state directory: `[host] state_dir`, else `$BAGPIPE_STATE_DIR`, else
    /// `$XDG_STATE_HOME/bagpipe`, else `~/.local/state/bagpipe`; `None` when none of them is set.
    pub fn state_dir(&self) -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        self.state_dir
            .clone()
            .or_else(|| var("BAGPIPE_STATE_DIR"))
            .or_else(|| var("XDG_STATE_HOME").filter(|p| p.is_absolute()).map(|p| p.join("bagpipe")))
            .or_else(|| var("HOME").map(|home| home.join(".local/state/bagpipe")))
    }
}

/// Where a block's published messages wait for the server (`outbox`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxMode {
    /// In memory: lost if the host is killed.
    #[default]
    Memory,
    /// In files under the host's state directory: sent when the block starts again.
    Disk,
}

/// A JetStream stream the manifest declares (`[[stream]]`): what blocks with
/// `publish_to_stream` publish into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name.
    pub name: String,
    /// The subjects it stores (NATS wildcards).
    pub subjects: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enqueue_timeout: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(5),
            dead_letters: None,
            server: None,
            cluster: None,
            durable_ack_wait: Duration::from_secs(6),
            streams: Vec::new(),
            bridge_topics: Vec::new(),
            state_dir: None,
            logs: None,
        }
    }
}

/// The first delay between `init` retries of a block; it doubles with each retry.
pub const INIT_RETRY_BACKOFF: Backoff = Backoff { base: Duration::from_millis(50), max: Duration::from_secs(5) };

/// Largest wasm stack a guest may use; a guest recursing past it traps with a stack overflow.
/// Engine-wide: wasmtime sets it per engine, not per store.
pub const WASM_STACK_BYTES: usize = 1 << 20;

/// `text` cut to [`OUTCOME_DETAIL_BYTES`] (at a character boundary), for a failure's detail.
pub fn detail(text: &str) -> String {
    cut_text(text, OUTCOME_DETAIL_BYTES)
}

/// `text` cut to at most `max` bytes at a character boundary, ` [cut]` added when it was.
pub fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} [cut]", &text[..cut])
}
