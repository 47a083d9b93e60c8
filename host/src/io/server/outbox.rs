//! A block's outbox: what it published, held until the server confirmed it. `publish` only puts
//! a message here (it never waits for the server inside a guest call); the block's flusher task
//! sends the messages in order and takes them out once the server confirmed them: a flush round
//! trip for core NATS (the server has processed them), or the stream's acknowledgement of each with
//! `publish_to_stream`. What was not confirmed (a timeout, a lost connection, a stream that did
//! not answer) is sent again, in order, once the server is back.
//!
//! Invariants: the outbox never holds more than `outbox_bytes` (a publish past it is refused
//! `busy`); messages leave only when confirmed, or when the block ends with the server away
//! (then they are counted `publish_dropped` and logged), never silently; order per block is
//! kept, also across resends; a failing server is logged at most once a second per block, with
//! counts; every wait on the server has a timeout.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::defaults::{OUTBOX_BATCH, OUTBOX_RETRY, SERVER_CALL_TIMEOUT};
use crate::io::server::ServerLink;
use crate::stats::{BlockStatus, Counters};

/// One published message, waiting for confirmation.
#[derive(Clone)]
struct Outgoing {
    subject: String,
    payload: Bytes,
    /// Its number in this outbox, for the stream's duplicate detection.
    seq: u64,
}

impl Outgoing {
    fn bytes(&self) -> usize {
        self.subject.len() + self.payload.len()
    }
}

/// The outbox is full: the message was not taken.
#[derive(Debug)]
pub struct Busy {
    /// Bytes waiting in the outbox.
    pub held: usize,
    /// Its size (`outbox_bytes`).
    pub max: usize,
}

/// What the outbox holds, behind its lock.
#[derive(Default)]
struct Pending {
    messages: VecDeque<Outgoing>,
    bytes: usize,
    /// Messages taken so far.
    taken: u64,
}

/// One block's outbox. Shared by the block's instances (it outlives swaps and restarts) and its
/// flusher.
pub struct Outbox {
    pending: Mutex<Pending>,
    max_bytes: usize,
    /// Bytes held, to wait on (the flusher for work, the block task for room).
    level: watch::Sender<usize>,
    /// Publish through JetStream and count a message done only when its stream acknowledged it.
    to_stream: bool,
    /// Unique to this outbox (the block and a NUID): with a message's number, its
    /// `Nats-Msg-Id`, so that a stream stores a message sent again only once (within the
    /// stream's duplicate window, two minutes by default).
    id_prefix: String,
    status: Arc<BlockStatus>,
    /// The failures since the last warning, and when that was.
    failures: Mutex<(u64, Option<Instant>)>,
}

impl Outbox {
    /// An empty outbox of `max_bytes` for the block `status`.
    pub fn new(max_bytes: usize, to_stream: bool, status: Arc<BlockStatus>, nuid: &str) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Pending::default()),
            max_bytes: max_bytes.max(1),
            level: watch::Sender::new(0),
            to_stream,
            id_prefix: format!("{}.{nuid}", status.responsibility),
            status,
            failures: Mutex::new((0, None)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a message to publish, or refuses it when it would make the outbox hold more than
    /// its size.
    pub fn push(&self, subject: String, payload: Bytes) -> Result<(), Busy> {
        let mut pending = self.lock();
        let message = Outgoing { subject, payload, seq: pending.taken + 1 };
        if pending.bytes + message.bytes() > self.max_bytes {
            Counters::bump(&self.status.counters.publish_busy);
            return Err(Busy { held: pending.bytes, max: self.max_bytes });
        }
        pending.taken += 1;
        pending.bytes += message.bytes();
        pending.messages.push_back(message);
        self.changed(&pending);
        Ok(())
    }

    fn changed(&self, pending: &Pending) {
        self.status.counters.outbox_messages.store(pending.messages.len() as u64, Ordering::Relaxed);
        self.status.counters.outbox_bytes.store(pending.bytes as u64, Ordering::Relaxed);
        self.level.send_replace(pending.bytes);
    }

    /// Whether the block may be handed more work: the outbox is at most half full, so what one
    /// call publishes fits in the other half. While it is not, the block's task leaves its queue
    /// alone, the queue fills, and its clients are pushed back.
    pub fn has_room(&self) -> bool {
        *self.level.borrow() <= self.max_bytes / 2
    }

    /// Returns once [`Outbox::has_room`].
    pub async fn room(&self) {
        let half = self.max_bytes / 2;
        let mut level = self.level.subscribe();
        let _ = level.wait_for(|held| *held <= half).await;
    }

    /// Up to [`OUTBOX_BATCH`] messages from the front, still held.
    fn front(&self) -> Vec<Outgoing> {
        self.lock().messages.iter().take(OUTBOX_BATCH).cloned().collect()
    }

    /// The first `n` messages were confirmed: they leave.
    fn confirmed(&self, n: usize, link: &ServerLink) {
        if n == 0 {
            return;
        }
        let mut pending = self.lock();
        let n = n.min(pending.messages.len());
        let freed: usize = pending.messages.drain(..n).map(|m| m.bytes()).sum();
        pending.bytes -= freed;
        self.changed(&pending);
        drop(pending);
        self.status.counters.published.fetch_add(n as u64, Ordering::Relaxed);
        link.stats.published.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `unconfirmed` messages will be sent again; says so at most once a second.
    fn failed(&self, unconfirmed: usize, why: &str) {
        self.status.counters.publish_retries.fetch_add(unconfirmed as u64, Ordering::Relaxed);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.0 += 1;
        if failures.1.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            let held = self.lock().messages.len();
            tracing::warn!(
                event = "publish_failing",
                failures = failures.0,
                waiting = held,
                "publishing to the server failed {} times since the last report ({why}); {held} messages wait in the outbox and will be sent again",
                failures.0
            );
            *failures = (0, Some(Instant::now()));
        }
    }

    /// Counts and logs what is left when the block ends; returns how many.
    fn drop_left(&self) -> usize {
        let mut pending = self.lock();
        let left = pending.messages.len();
        pending.messages.clear();
        pending.bytes = 0;
        self.changed(&pending);
        if left > 0 {
            self.status.counters.publish_dropped.fetch_add(left as u64, Ordering::Relaxed);
            tracing::error!(
                event = "publish_dropped",
                messages = left,
                "{left} published messages were never confirmed by the server"
            );
        }
        left
    }

    fn is_empty(&self) -> bool {
        *self.level.borrow() == 0
    }
}

/// Sends the outbox's messages to the server, in order, until `stop`; then, until `give_up`,
/// only what is left (the block is ending), and counts the rest as dropped.
pub async fn flusher(outbox: Arc<Outbox>, link: Arc<ServerLink>, stop: CancellationToken, give_up: CancellationToken) {
    let js = outbox.to_stream.then(|| {
        let mut js = async_nats::jetstream::new(link.client().clone());
        js.set_timeout(SERVER_CALL_TIMEOUT);
        (js, outbox.id_prefix.clone())
    });
    let mut level = outbox.level.subscribe();
    let mut state = link.state();
    loop {
        let ending = stop.is_cancelled();
        if ending && outbox.is_empty() {
            break;
        }
        tokio::select! {
            () = give_up.cancelled() => break,
            () = stop.cancelled(), if !ending => continue,
            r = level.wait_for(|held| *held > 0) => if r.is_err() { break },
        }
        tokio::select! {
            () = give_up.cancelled() => break,
            () = stop.cancelled(), if !ending => continue,
            r = state.wait_for(|s| s.connected) => if r.is_err() { break },
        }
        let batch = outbox.front();
        let sent = async {
            match &js {
                Some((js, ids)) => to_stream(js, ids, &batch).await,
                None => to_server(&link, &batch).await,
            }
        };
        // Giving up mid-batch leaves the batch in the outbox, counted as dropped below.
        let (confirmed, failure) = tokio::select! {
            () = give_up.cancelled() => break,
            sent = sent => sent,
        };
        outbox.confirmed(confirmed, &link);
        if let Some(why) = failure {
            outbox.failed(batch.len() - confirmed, &why);
            // Not at once again: the server is away or slow.
            tokio::select! {
                () = give_up.cancelled() => break,
                () = tokio::time::sleep(OUTBOX_RETRY) => {}
            }
        }
    }
    outbox.drop_left();
}

/// Core NATS: writes the batch, then a round trip confirms the server processed all of it.
async fn to_server(link: &ServerLink, batch: &[Outgoing]) -> (usize, Option<String>) {
    let client = link.client();
    for message in batch {
        let sent =
            tokio::time::timeout(SERVER_CALL_TIMEOUT, client.publish(message.subject.clone(), message.payload.clone()));
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return (0, Some(e.to_string())),
            Err(_) => return (0, Some("the server did not take the message in time".to_owned())),
        }
    }
    match link.confirm().await {
        Ok(()) => (batch.len(), None),
        Err(why) => (0, Some(why)),
    }
}

/// JetStream: publishes the batch, then waits for each acknowledgement in order; the confirmed
/// prefix leaves.
async fn to_stream(js: &async_nats::jetstream::Context, ids: &str, batch: &[Outgoing]) -> (usize, Option<String>) {
    use async_nats::jetstream::message::PublishMessage;
    let mut acks = Vec::with_capacity(batch.len());
    let mut failure = None;
    for message in batch {
        let publish =
            PublishMessage::build().payload(message.payload.clone()).message_id(format!("{ids}.{}", message.seq));
        let sent = tokio::time::timeout(SERVER_CALL_TIMEOUT, js.send_publish(message.subject.clone(), publish));
        match sent.await {
            Ok(Ok(ack)) => acks.push(ack),
            Ok(Err(e)) => {
                failure = Some(e.to_string());
                break;
            }
            Err(_) => {
                failure = Some("the server did not take the message in time".to_owned());
                break;
            }
        }
    }
    let mut confirmed = 0;
    for ack in acks {
        // The context's timeout bounds each wait.
        match ack.await {
            Ok(_) => confirmed += 1,
            Err(e) => return (confirmed, Some(format!("the stream did not acknowledge: {e}"))),
        }
    }
    (confirmed, failure)
}
