//! `/events`: the feed's events as server-sent events. First the events kept after the reader's
//! last one, then each as it comes: `id: RUN-SEQ` (`RUN` is the host's start time in
//! milliseconds, so that a reader's `Last-Event-ID` from an earlier run of the host is not taken
//! for one of this run) and `data: {json}`. A reader that falls more than
//! `FEED_LIVE` events behind gets an `event: missed` saying how many it missed; an idle stream
//! sends a comment every `ADMIN_EVENTS_KEEP_ALIVE`. The stream ends when the server stops, or
//! when its reader has not taken anything for `ADMIN_EVENTS_STALLED` (the connection does that).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::route::Body;
use super::{AdminView, Streaming};
use crate::defaults::{ADMIN_EVENTS_KEEP_ALIVE, ADMIN_MAX_EVENT_STREAMS};
use crate::ops::feed::Event;

/// The stream of events after `after`, or `None` when `ADMIN_MAX_EVENT_STREAMS` are open.
/// `streaming` is told each time the stream is asked for more.
pub(crate) fn stream(
    view: &AdminView,
    after: u64,
    cancel: &CancellationToken,
    streaming: Arc<Streaming>,
) -> Option<Body> {
    let open = Open::take(&view.streams)?;
    let (kept, live) = view.feed.subscribe(after);
    let run = view.feed.started_at_ms();
    let state = State { first: true, run, kept: kept.into(), live, cancel: cancel.clone(), streaming, _open: open };
    let frames = futures_util::stream::unfold(state, |mut state| async move {
        let bytes = state.next().await?;
        Some((Ok(Frame::data(bytes)), state))
    });
    Some(StreamBody::new(frames).boxed_unsync())
}

struct State {
    first: bool,
    run: u64,
    kept: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    cancel: CancellationToken,
    streaming: Arc<Streaming>,
    _open: Open,
}

impl State {
    /// The next bytes to send, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        self.streaming.asked();
        if std::mem::take(&mut self.first) {
            // How long a reader waits before it connects again.
            return Some(Bytes::from_static(b"retry: 2000\n\n"));
        }
        if let Some(event) = self.kept.pop_front() {
            return Some(message(self.run, &event));
        }
        tokio::select! {
            () = self.cancel.cancelled() => None,
            received = self.live.recv() => match received {
                Ok(event) => Some(message(self.run, &event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some(Bytes::from(format!("event: missed\ndata: {{\"missed\":{missed}}}\n\n")))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            () = tokio::time::sleep(ADMIN_EVENTS_KEEP_ALIVE) => Some(Bytes::from_static(b": keep-alive\n\n")),
        }
    }
}

/// One event of the host's run `run` as a server-sent event.
pub fn message(run: u64, event: &Event) -> Bytes {
    // JSON text has no line breaks outside strings, and escapes those inside.
    let json = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("id: {run}-{}\ndata: {json}\n\n", event.seq))
}

/// The event after which a reader that sent `Last-Event-ID: id` goes on, in the host's run
/// `run`: the id's number when the id is of this run, else 0 (every event kept).
pub fn after_id(id: &str, run: u64) -> u64 {
    match id.trim().split_once('-') {
        Some((of, seq)) if of.parse() == Ok(run) => seq.parse().unwrap_or(0),
        _ => 0,
    }
}

/// One of the open streams: counted while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn take(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < ADMIN_MAX_EVENT_STREAMS).then_some(n + 1))
            .ok()
            .map(|_| Self(open.clone()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
