//! Publishes the host's log lines, and its blocks', to `[host] log_subject` on the message
//! server: what the feed's log sink took (already within each block's rate), one JSON line a
//! message, so that a fleet's logs can be read from the broker.
//!
//! Invariants: a line is published at most once and never waits for the server longer than
//! `SERVER_CALL_TIMEOUT`; while the server is away lines are dropped and counted, not kept (the
//! log is lossy by design: the stderr log keeps every line); once stopped, it goes on for at
//! most `LOG_PUBLISH_LAST` (and the line then being published), and not at all while publishing
//! fails (what is left is counted as
//! dropped); nothing the publisher logs goes back to the sink (its records have
//! `LOG_PUBLISHER_TARGET`).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::defaults::{LOG_PUBLISH_LAST, SERVER_CALL_TIMEOUT};
use crate::io::server::ServerLink;
use crate::ops::feed::{LOG_PUBLISHER_TARGET, LogSink};

/// Publishes what `lines` brings to `subject` until `stop`, then what is still queued.
pub async fn run(
    mut lines: mpsc::Receiver<String>,
    sink: Arc<LogSink>,
    server: Arc<ServerLink>,
    subject: String,
    stop: CancellationToken,
) {
    tracing::info!(target: LOG_PUBLISHER_TARGET, event = "publishing_logs", subject = %subject, "publishing log lines to `{subject}`");
    let mut failing = false;
    loop {
        let line = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            line = lines.recv() => match line {
                Some(line) => line,
                None => return,
            },
        };
        publish(&server, &sink, &subject, line, &mut failing).await;
    }
    // What was taken before the stop still goes, within a bound; the rest is counted.
    let until = tokio::time::Instant::now() + LOG_PUBLISH_LAST;
    while !failing
        && tokio::time::Instant::now() < until
        && let Ok(line) = lines.try_recv()
    {
        publish(&server, &sink, &subject, line, &mut failing).await;
    }
    let mut left = 0;
    while lines.try_recv().is_ok() {
        left += 1;
    }
    sink.count_dropped(left);
}

async fn publish(server: &ServerLink, sink: &LogSink, subject: &str, line: String, failing: &mut bool) {
    if !server.connected() {
        sink.count_dropped(1);
        return;
    }
    let sent =
        tokio::time::timeout(SERVER_CALL_TIMEOUT, server.client().publish(subject.to_owned(), line.into())).await;
    match sent {
        Ok(Ok(())) => {
            sink.count_published(1);
            *failing = false;
        }
        Ok(Err(e)) => {
            sink.count_dropped(1);
            if !std::mem::replace(failing, true) {
                tracing::warn!(target: LOG_PUBLISHER_TARGET, "publishing a log line to `{subject}` failed: {e}; dropping lines until it works again");
            }
        }
        Err(_) => {
            sink.count_dropped(1);
            if !std::mem::replace(failing, true) {
                tracing::warn!(target: LOG_PUBLISHER_TARGET, "publishing a log line to `{subject}` took over {SERVER_CALL_TIMEOUT:?}; dropping lines until it works again");
            }
        }
    }
}
