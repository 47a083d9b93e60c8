//! The feed: what happens in a running host, as it happens. A `tracing` layer ([`Feed::layer`])
//! reads every log record once and
//! - keeps the records that carry an `event` field (`fault`, `swapped`, `swap_refused`,
//!   `restarted`, `gave_up`, `server_connected`, ...) as [`Event`]s: the last
//!   [`FEED_RECENT`] in order, and live to every subscriber (the admin endpoint's `/events`);
//! - when a log sink is attached ([`Feed::attach_logs`], the host does it for `[host]
//!   log_subject`), hands each record at or above the sink's level to it as one JSON line,
//!   within a rate per block, never waiting: lines past the rate or past the sink's queue are
//!   dropped and counted.
//!
//! The same JSON line is what `--log-format json` writes ([`JsonLines`]), so a line read from the
//! server and a line read from stderr look alike: `timestamp`, `level`, `block` (the
//! responsibility whose span the record is in, if any), `worker`, `message`, then the record's
//! own fields.
//!
//! Invariants: recording never blocks and never waits for a reader (a slow `/events` reader
//! misses events and is told how many; the sink's queue is bounded); the feed keeps at most
//! `FEED_RECENT` events; records of the message server's client and of the log publisher itself
//! never go to the sink (publishing them would log again).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};
use tracing::field::{Field, Visit};
use tracing::{Event as TracingEvent, Level, Metadata, Subscriber, span};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::defaults::{FEED_LIVE, FEED_RECENT, LOG_MESSAGE_BYTES, LOG_SINK_BLOCKS, LOG_SINK_QUEUE, cut_text};
use crate::runtime::token_bucket::TokenBucket;

/// Whether a record of `target` may go to the log sink: the host's and its blocks' records, not
/// other crates' (the server's client, wasmtime, ...), and not the publisher's own.
fn to_sink(target: &str) -> bool {
    (target == "bagpipe" || target.starts_with("bagpipe::")) && !target.starts_with(LOG_PUBLISHER_TARGET)
}

/// The target of the log publisher's own records.
pub const LOG_PUBLISHER_TARGET: &str = "bagpipe::log_publisher";

/// Something that happened, as `/events` sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Its number in this host's feed, from 1.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The record's `event` field: `fault`, `swapped`, ...
    pub kind: String,
    /// The block it is about, if any.
    pub block: Option<String>,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: &'static str,
    /// The record's message.
    pub message: String,
    /// The record's other fields.
    pub fields: Map<String, Value>,
}

/// The feed of one host; clones share it.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    started_at_ms: u64,
    next_seq: AtomicU64,
    recent: Mutex<VecDeque<Arc<Event>>>,
    live: broadcast::Sender<Arc<Event>>,
    logs: RwLock<Option<Arc<LogSink>>>,
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed").field("started_at_ms", &self.inner.started_at_ms).finish_non_exhaustive()
    }
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

impl Feed {
    /// An empty feed; its host's start time is now.
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(FEED_LIVE);
        Self {
            inner: Arc::new(Inner {
                started_at_ms: now_ms(),
                next_seq: AtomicU64::new(1),
                recent: Mutex::new(VecDeque::with_capacity(FEED_RECENT)),
                live,
                logs: RwLock::new(None),
            }),
        }
    }

    /// The layer that fills this feed, for the process's `tracing` subscriber.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        FeedLayer { feed: self.clone() }.with_filter(FeedFilter { feed: self.clone() })
    }

    /// When the feed was made (the host's start), in milliseconds since the Unix epoch.
    pub fn started_at_ms(&self) -> u64 {
        self.inner.started_at_ms
    }

    /// The events kept whose number is above `after`, oldest first, and a receiver of the ones
    /// that come next (none is in both).
    pub fn subscribe(&self, after: u64) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        // Subscribing under the lock that `push` holds while it sends: nothing falls between.
        let recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.inner.live.subscribe();
        (recent.iter().filter(|e| e.seq > after).cloned().collect(), rx)
    }

    /// Records an event.
    pub fn push(
        &self,
        kind: String,
        block: Option<String>,
        level: &Level,
        message: String,
        fields: Map<String, Value>,
    ) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let event = Arc::new(Event { seq, at_ms: now_ms(), kind, block, level: level.as_str(), message, fields });
        if recent.len() == FEED_RECENT {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.inner.live.send(event);
    }

    /// From now on, hands log records at `level` or above to a sink, at most `per_block` lines
    /// a second for each block (and for the host's own lines); returns the sink's receiving end.
    /// Replaces a sink attached before.
    pub fn attach_logs(&self, level: Level, per_block: u32) -> (Arc<LogSink>, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(LOG_SINK_QUEUE);
        let sink = Arc::new(LogSink {
            level,
            per_block: f64::from(per_block.max(1)),
            buckets: Mutex::new(HashMap::new()),
            tx,
            taken: AtomicU64::new(0),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        *self.inner.logs.write().unwrap_or_else(|p| p.into_inner()) = Some(sink.clone());
        // Callsites more verbose than before are asked again.
        tracing::callsite::rebuild_interest_cache();
        (sink, rx)
    }

    /// Stops handing records to the sink (its receiver then ends once it is empty).
    pub fn detach_logs(&self) {
        *self.inner.logs.write().unwrap_or_else(|p| p.into_inner()) = None;
        tracing::callsite::rebuild_interest_cache();
    }

    fn sink(&self) -> Option<Arc<LogSink>> {
        self.inner.logs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The most verbose level the feed wants: `INFO` for events, or the sink's.
    fn max_level(&self) -> Level {
        self.sink().map_or(Level::INFO, |s| s.level.max(Level::INFO))
    }
}

/// Where log lines go when the host publishes its logs: a bounded queue that never waits.
pub struct LogSink {
    level: Level,
    per_block: f64,
    buckets: Mutex<HashMap<String, TokenBucket>>,
    tx: mpsc::Sender<String>,
    taken: AtomicU64,
    published: AtomicU64,
    dropped: AtomicU64,
}

impl LogSink {
    /// Lines taken into the queue so far.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    /// Lines dropped so far: past a block's rate, or the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines the publisher handed to the server's client.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Counts lines the publisher handed to the server's client.
    pub fn count_published(&self, lines: u64) {
        self.published.fetch_add(lines, Ordering::Relaxed);
    }

    /// Counts lines the publisher could not send.
    pub fn count_dropped(&self, lines: u64) {
        self.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    fn offer(&self, block: Option<&str>, line: impl FnOnce() -> String) {
        let admitted = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            if buckets.len() >= LOG_SINK_BLOCKS && !buckets.contains_key(block.unwrap_or("")) {
                // More names than blocks can have: start again rather than grow.
                buckets.clear();
            }
            let bucket =
                buckets.entry(block.unwrap_or("").to_owned()).or_insert_with(|| TokenBucket::full(self.per_block));
            bucket.refill();
            let admitted = bucket.tokens >= 1.0;
            if admitted {
                bucket.tokens -= 1.0;
            }
            admitted
        };
        if admitted && self.tx.try_send(line()).is_ok() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The responsibility (and worker) of the block a span is for.
struct BlockOf {
    responsibility: Option<String>,
    worker: Option<u64>,
}

struct FeedLayer {
    feed: Feed,
}

impl<S> Layer<S> for FeedLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let responsibility = fields.take_str("responsibility");
        let worker = fields.map.get("worker").and_then(Value::as_u64);
        if let (Some(span), true) = (ctx.span(id), responsibility.is_some() || worker.is_some()) {
            span.extensions_mut().insert(BlockOf { responsibility, worker });
        }
    }

    fn on_event(&self, event: &TracingEvent<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let sink = self.feed.sink().filter(|s| *meta.level() <= s.level && to_sink(meta.target()));
        let is_event = meta.fields().field("event").is_some() && *meta.level() <= Level::INFO;
        if sink.is_none() && !is_event {
            return;
        }
        let record = Record::read(
            event,
            ctx.event_scope(event).into_iter().flatten().map(|span| {
                let ext = span.extensions();
                ext.get::<BlockOf>().map(|b| (b.responsibility.clone(), b.worker))
            }),
        );
        if let Some(sink) = sink {
            sink.offer(record.block.as_deref(), || record.json_line(meta));
        }
        if is_event {
            let mut fields = record.fields.clone();
            let kind = fields.take_str("event").unwrap_or_default();
            self.feed.push(kind, record.block.clone(), meta.level(), record.message.clone(), fields.map);
        }
    }
}

/// What the feed layer is asked about: records at its level (`INFO`, or the sink's if more
/// verbose). Callsites are asked again when a sink is attached or detached.
struct FeedFilter {
    feed: Feed,
}

impl<S> Filter<S> for FeedFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        *meta.level() <= self.feed.max_level()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        match *meta.level() <= self.feed.max_level() {
            true => tracing::subscriber::Interest::always(),
            false => tracing::subscriber::Interest::never(),
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.feed.max_level().into())
    }
}

/// One log record, read: its block (from its spans), message and fields.
pub struct Record {
    /// The responsibility of the innermost block span it is in, or its own `block` field.
    pub block: Option<String>,
    /// The worker's number, in a pool.
    pub worker: Option<u64>,
    /// The message.
    pub message: String,
    /// Its other fields, in order.
    pub fields: Fields,
}

impl Record {
    /// Reads `event`; `spans` are its spans' `(responsibility, worker)`, innermost first.
    pub fn read(event: &TracingEvent<'_>, spans: impl Iterator<Item = Option<(Option<String>, Option<u64>)>>) -> Self {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // What a record carries is bounded, whatever it was given (a bag, a guest's text).
        for value in fields.map.values_mut() {
            if let Value::String(text) = value
                && text.len() > LOG_MESSAGE_BYTES
            {
                *text = cut_text(text, LOG_MESSAGE_BYTES);
            }
        }
        let message = fields.take_str("message").unwrap_or_default();
        let (mut block, mut worker) = (fields.take_str("block"), None);
        for (responsibility, w) in spans.flatten() {
            worker = worker.or(w);
            if block.is_none() {
                block = responsibility;
            }
        }
        Self { block, worker, message, fields }
    }

    /// The record as one JSON object (no line break): `timestamp`, `level`, `block`, `worker`,
    /// `message`, then its fields.
    pub fn json_line(&self, meta: &Metadata<'_>) -> String {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp()));
        line.insert("level".into(), Value::String(meta.level().as_str().to_owned()));
        if let Some(block) = &self.block {
            line.insert("block".into(), Value::String(block.clone()));
        }
        if let Some(worker) = self.worker {
            line.insert("worker".into(), worker.into());
        }
        line.insert("message".into(), Value::String(self.message.clone()));
        for (k, v) in &self.fields.map {
            line.entry(k.clone()).or_insert_with(|| v.clone());
        }
        // Where a record of another crate came from (a field of that name wins).
        if !(meta.target() == "bagpipe" || meta.target().starts_with("bagpipe::")) {
            line.entry("target").or_insert_with(|| Value::String(meta.target().to_owned()));
        }
        Value::Object(line).to_string()
    }
}

/// `--log-format json`: each record as [`Record::json_line`], one a line. The block comes from
/// the spans the feed layer marked, so the feed's layer must be in the same subscriber.
pub struct JsonLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &TracingEvent<'_>,
    ) -> fmt::Result {
        let spans = ctx.event_scope().into_iter().flatten().map(|span| {
            let ext = span.extensions();
            ext.get::<BlockOf>().map(|b| (b.responsibility.clone(), b.worker))
        });
        writeln!(writer, "{}", Record::read(event, spans).json_line(event.metadata()))
    }
}

/// A record's fields as JSON values.
#[derive(Default, Clone)]
pub struct Fields {
    /// By name.
    pub map: Map<String, Value>,
}

impl Fields {
    fn take_str(&mut self, name: &str) -> Option<String> {
        match self.map.remove(name)? {
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.map.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.map.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.map.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.map.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.map.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.map.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.map.insert(field.name().to_owned(), Value::String(format!("{value:#}")));
    }
}

pub use crate::stats::unix_ms as now_ms;

/// Now, in RFC 3339 (UTC, microseconds).
fn timestamp() -> String {
    use tracing_subscriber::fmt::time::FormatTime as _;
    let mut out = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime
        .format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut out));
    out
}
