//! The feed's layer in a subscriber of the test's own: events with their block, JSON lines, the
//! log sink's rate per block and its bounded queue.

use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt as _;

use super::feed::{Feed, JsonLines};

/// Where the JSON lines of the test's subscriber go.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Held by each test: attaching or detaching a sink asks every callsite again, process-wide,
/// which would race with another test's records.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` with a subscriber of `feed`'s layer and a JSON-lines writer; returns the lines.
fn with_feed(feed: &Feed, f: impl FnOnce()) -> Vec<serde_json::Value> {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().event_format(JsonLines).with_writer(move || writer.clone()))
        .with(feed.layer());
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"))).collect()
}

#[test]
fn events_keep_their_block_kind_and_fields_and_lines_are_json_with_the_block() {
    let _one = one_at_a_time();
    let feed = Feed::new();
    let lines = with_feed(&feed, || {
        tracing::info!(event = "running", blocks = 2, "all blocks running");
        let span = tracing::info_span!("block", responsibility = "faulty");
        let _in = span.enter();
        tracing::warn!(event = "fault", attempt = 1u64, "trapped: unreachable");
        tracing::info!("a plain line, no event");
        let worker = tracing::info_span!("worker", worker = 3u64);
        let _in = worker.enter();
        tracing::info!(event = "swapped", version = "abc", "swapped");
    });
    let (kept, _live) = feed.subscribe(0);
    let got: Vec<_> = kept.iter().map(|e| (e.seq, e.kind.as_str(), e.block.as_deref(), e.level)).collect();
    assert_eq!(
        got,
        [(1, "running", None, "INFO"), (2, "fault", Some("faulty"), "WARN"), (3, "swapped", Some("faulty"), "INFO")]
    );
    assert_eq!(kept[1].message, "trapped: unreachable");
    assert_eq!(kept[1].fields["attempt"], 1);
    assert!(!kept[1].fields.contains_key("event"), "the kind is not repeated in the fields");
    assert_eq!(feed.subscribe(2).0.len(), 1, "only the events after the one given");
    // The JSON lines: every record, with its block (and worker) at the top.
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["event"], "running");
    assert!(lines[0].get("block").is_none());
    assert_eq!((lines[1]["block"].as_str(), lines[1]["level"].as_str()), (Some("faulty"), Some("WARN")));
    assert_eq!(lines[1]["message"], "trapped: unreachable");
    assert_eq!(lines[2]["block"], "faulty");
    assert_eq!((lines[3]["block"].as_str(), lines[3]["worker"].as_u64()), (Some("faulty"), Some(3)));
    assert!(lines.iter().all(|l| l["timestamp"].as_str().is_some_and(|t| t.ends_with('Z'))));
}

#[test]
fn the_feed_keeps_the_last_events_and_a_late_reader_gets_them_first() {
    let _one = one_at_a_time();
    let feed = Feed::new();
    let total = crate::defaults::FEED_RECENT as u64 + 10;
    with_feed(&feed, || {
        for i in 0..total {
            tracing::info!(event = "tick", i, "tick");
        }
    });
    let (kept, _live) = feed.subscribe(0);
    assert_eq!(kept.len(), crate::defaults::FEED_RECENT);
    assert_eq!(kept.first().map(|e| e.seq), Some(11), "the oldest went first");
    assert_eq!(kept.last().map(|e| e.seq), Some(total));
}

#[test]
fn the_log_sink_takes_each_block_within_its_rate_and_counts_the_rest() {
    let _one = one_at_a_time();
    let feed = Feed::new();
    let (sink, mut rx) = feed.attach_logs(tracing::Level::INFO, 3);
    with_feed(&feed, || {
        let span = tracing::info_span!("block", responsibility = "loud");
        let entered = span.enter();
        for i in 0..50 {
            tracing::info!("loud line {i}");
        }
        drop(entered);
        let span = tracing::info_span!("block", responsibility = "quiet");
        let _in = span.enter();
        tracing::warn!("quiet line");
        tracing::debug!("below the sink's level");
        tracing::info!(target: super::feed::LOG_PUBLISHER_TARGET, "the publisher's own line");
    });
    let mut taken = Vec::new();
    while let Ok(line) = rx.try_recv() {
        taken.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    let from = |block: &str| taken.iter().filter(|l| l["block"] == block).count();
    // A second's burst of 3, and what the rate gave back while the loop ran (little: it is quick).
    let loud = from("loud");
    assert!((3..10).contains(&loud), "{taken:?}");
    assert_eq!(from("quiet"), 1, "another block's rate is its own");
    assert_eq!(taken.len(), loud + 1, "nothing below the level, nothing of the publisher: {taken:?}");
    assert_eq!((sink.dropped(), sink.taken()), (50 - loud as u64, loud as u64 + 1));
    feed.detach_logs();
    with_feed(&feed, || tracing::info!("after the sink was detached"));
    assert!(rx.try_recv().is_err(), "a detached sink takes nothing");
}

#[test]
fn the_log_sink_never_waits_when_its_queue_is_full() {
    let _one = one_at_a_time();
    let feed = Feed::new();
    let (sink, rx) = feed.attach_logs(tracing::Level::INFO, 1_000_000);
    let lines = crate::defaults::LOG_SINK_QUEUE as u64 + 100;
    with_feed(&feed, || {
        for i in 0..lines {
            tracing::info!("line {i}");
        }
    });
    assert_eq!(sink.taken(), crate::defaults::LOG_SINK_QUEUE as u64, "dropped {}", sink.dropped());
    assert_eq!(sink.dropped(), 100, "the lines past the queue are dropped and counted");
    drop(rx);
}
