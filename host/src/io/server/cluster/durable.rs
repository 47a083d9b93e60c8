//! Durable blocks: their bags wait in a JetStream work-queue stream and are acknowledged only
//! once the block is done with them, so they survive the crash of a host (at-least-once).
//!
//! Each durable responsibility has a stream ([`stream_name`], on [`durable_subject`]) with one
//! durable pull consumer that every host running the block shares. A bag taken from it is held
//! with its [`Receipt`] (kept alive with progress acks while it waits in the block's queue) and
//! settled when the receipt is: done → acknowledged; dead → published to the cluster's
//! dead-letter stream, recorded with this host's dead letters, and acknowledged only once that
//! stream stored it (when it did not, the bag stays unacknowledged and is delivered again; see
//! [`super::dead`]); dropped unsettled → left to its stream, which delivers it again after
//! `durable_ack_wait`.
//!
//! A message that can never be a bag here (not UTF-8, not a JSON object, too large, ...) is
//! terminated (`term`: never delivered again), counted by the queue as a refusal. Deliveries
//! after the first are counted (`redelivered`). The consumer's `max_deliver` is
//! [`max_deliver`]: a bag delivered that many times without being settled (its hosts kept
//! crashing, or gave it back) is not handed to the block again but goes to the dead-letter
//! stream, rather than stay in its stream undelivered for ever.
//!
//! Whether a responsibility has a durable stream is remembered both ways ([`Known`]); a durable
//! block of this host has its stream made by whichever comes first, its consumer or a sender of
//! this host, so that bags sent to it while it starts are never told `unknown-target`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::dead::{HostDeadLetters, dead_stream};
use super::{dead_stream_name, durable_subject, stream_name, token};
use crate::bindings::EnqueueError;
use crate::defaults::{DURABLE_ABSENT_CACHE, DURABLE_DELIVERIES_PER_ATTEMPT, DURABLE_RETRY, STREAM_LOOKUP_TIMEOUT};
use crate::io::server::{BlockServer, ServerLink, bounded};
use crate::routing::queue::{BlockQueue, Envelope, Receipt, Refusal, Settled};
use crate::stats::Counters;

/// What this host knows of a responsibility's durable stream.
#[derive(Debug, Clone, Copy)]
pub enum Known {
    /// The stream exists.
    Exists,
    /// A durable block of this host: its stream is made when missing.
    Here,
    /// The server said there was no such stream at that moment (asked again after
    /// [`DURABLE_ABSENT_CACHE`]).
    Absent(Instant),
}

/// The consumer's `max_deliver` for a block with `max_attempts`: [`DURABLE_DELIVERIES_PER_ATTEMPT`]
/// deliveries per attempt (one that faults is given to the block again on the same delivery; a
/// host that crashes or gives its queued bags back spends a delivery without settling it), and one
/// last delivery, which goes straight to the dead letters.
pub fn max_deliver(max_attempts: u32) -> i64 {
    i64::from(max_attempts.max(1)) * i64::from(DURABLE_DELIVERIES_PER_ATTEMPT) + 1
}

/// The stream of a durable responsibility. Every host makes it with this same configuration
/// (creating a stream that exists with the same configuration succeeds).
fn durable_stream(cluster: &str, responsibility: &str) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: stream_name(cluster, responsibility),
        subjects: vec![durable_subject(cluster, responsibility)],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    }
}

impl ServerLink {
    /// Whether bags for `responsibility` go to its durable stream. A durable block of this host
    /// has its stream made here when it is missing (its consumer may not have made it yet);
    /// for another responsibility, what the server said is remembered: "yes" for good, "no" for
    /// [`DURABLE_ABSENT_CACHE`].
    pub(super) async fn durable_target(&self, cluster: &str, responsibility: &str) -> Result<bool, EnqueueError> {
        let name = stream_name(cluster, responsibility);
        let known = self.durable_streams.lock().unwrap_or_else(|p| p.into_inner()).get(&name).copied();
        let js = jetstream::new(self.client().clone());
        match known {
            Some(Known::Exists) => return Ok(true),
            Some(Known::Absent(at)) if at.elapsed() < DURABLE_ABSENT_CACHE => return Ok(false),
            Some(Known::Here) => {
                bounded(js.get_or_create_stream(durable_stream(cluster, responsibility))).await.map_err(|e| {
                    EnqueueError::Unavailable(format!("cannot make the durable stream of `{responsibility}`: {e}"))
                })?;
                self.know(name, Known::Exists);
                return Ok(true);
            }
            Some(Known::Absent(_)) | None => {}
        }
        match tokio::time::timeout(STREAM_LOOKUP_TIMEOUT, js.get_stream(&name)).await {
            Ok(Ok(_)) => {
                self.know(name, Known::Exists);
                Ok(true)
            }
            // The server answered: no such stream (or no JetStream at all).
            Ok(Err(e)) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(_)) => {
                self.know(name, Known::Absent(Instant::now()));
                Ok(false)
            }
            // No answer: nothing learnt.
            Ok(Err(_)) | Err(_) => Ok(false),
        }
    }

    /// Remembers `known` of stream `name`; a durable block of this host stays one.
    fn know(&self, name: String, known: Known) {
        let mut streams = self.durable_streams.lock().unwrap_or_else(|p| p.into_inner());
        if !(matches!(known, Known::Absent(_)) && matches!(streams.get(&name), Some(Known::Here))) {
            streams.insert(name, known);
        }
    }
}

/// One durable block's feed: where it takes bags from and where its dead letters go.
struct Feed {
    cluster: String,
    responsibility: String,
    /// Bags held at once (the block's queue size): the consumer's `max_ack_pending`.
    capacity: usize,
    /// See [`max_deliver`].
    max_deliver: i64,
    /// Where its dead letters are recorded once their stream stored them.
    dead_letters: HostDeadLetters,
}

impl BlockServer {
    /// Feeds a durable block from its JetStream stream (made if missing), one bag at a time in
    /// flight per queue slot; each is settled once its receipt is (the block is done with it).
    /// What is held outlives a consumer that failed or a queue that closed: it is still kept
    /// alive and settled until the block's server side shuts down. From now on, senders of this
    /// host make the block's stream if it is missing. Its dead letters join `dead_letters` once
    /// the dead-letter stream stored them.
    pub fn serve_durable(
        self: &Arc<Self>,
        cluster: &str,
        capacity: usize,
        max_attempts: u32,
        dead_letters: HostDeadLetters,
    ) {
        let Some(queue) = self.queue.clone() else { return };
        let responsibility = self.status.responsibility.clone();
        self.link.know(stream_name(cluster, &responsibility), Known::Here);
        let feed = Feed {
            cluster: cluster.to_owned(),
            responsibility,
            capacity,
            max_deliver: max_deliver(max_attempts),
            dead_letters,
        };
        let me = self.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let stream = stream_name(&feed.cluster, &feed.responsibility);
            let mut held = Held::default();
            let mut progress = tokio::time::interval(me.link.durable_ack_wait / 3);
            progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let taking = match me.consume(&feed, &queue, &cancel, &mut held, &mut progress).await {
                    Ok(Consumed::Cancelled) => break,
                    Ok(Consumed::QueueClosed) => false,
                    Err(e) => {
                        tracing::warn!("durable stream `{stream}`: {e}; trying again");
                        true
                    }
                };
                // Between two consumers, and once the block takes no more bags, what is held is
                // still kept alive and settled.
                let retry = tokio::time::sleep(DURABLE_RETRY);
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        _ = progress.tick() => me.keep_alive(&held).await,
                        Some(settled) = held.next_settled() => me.settle(&feed, &mut held, settled).await,
                        () = &mut retry, if taking => break,
                    }
                }
                if cancel.is_cancelled() {
                    break;
                }
            }
            me.settle_ready(&feed, &mut held).await;
        });
    }

    async fn consume(
        &self,
        feed: &Feed,
        queue: &BlockQueue,
        cancel: &CancellationToken,
        held: &mut Held,
        progress: &mut tokio::time::Interval,
    ) -> anyhow::Result<Consumed> {
        let js = jetstream::new(self.link.client().clone());
        let stream = bounded(js.get_or_create_stream(durable_stream(&feed.cluster, &feed.responsibility)))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Made before the first dead letter (and again, should it be gone, when one is stored).
        bounded(js.get_or_create_stream(dead_stream(&feed.cluster))).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = token(&feed.responsibility);
        // Created, or updated to this host's settings.
        let consumer: jetstream::consumer::PullConsumer =
            bounded(stream.create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                // Bags waiting their turn are kept with progress acks (`keep_alive`) every third of
                // it; the bags of a host that crashed are delivered again this long after.
                ack_wait: self.link.durable_ack_wait,
                max_ack_pending: feed.capacity.max(1) as i64,
                max_deliver: feed.max_deliver,
                ..Default::default()
            }))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut messages = bounded(consumer.messages()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(event = "consuming_stream", block = %self.status.responsibility, max_deliver = feed.max_deliver, "taking bags from the durable stream `{}`", stream.cached_info().config.name);
        loop {
            let message = tokio::select! {
                () = cancel.cancelled() => return Ok(Consumed::Cancelled),
                _ = progress.tick() => {
                    self.keep_alive(held).await;
                    continue;
                }
                Some(settled) = held.next_settled() => {
                    self.settle(feed, held, settled).await;
                    continue;
                }
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(anyhow::anyhow!("{e}")),
                    None => return Err(anyhow::anyhow!("the consumer ended")),
                },
            };
            self.link.stats.received.fetch_add(1, Ordering::Relaxed);
            let delivered = message.info().map_or(1, |info| info.delivered);
            if delivered > 1 {
                Counters::bump(&self.status.counters.redelivered);
            }
            // Never going to be a bag: terminated, so that it is not delivered again and again.
            let bag = match std::str::from_utf8(&message.payload) {
                Ok(text) => text.to_owned(),
                Err(_) => {
                    let why = queue.refuse(Refusal::Invalid("not UTF-8".into()));
                    self.terminate(&message, &why).await;
                    continue;
                }
            };
            if let Err(why) = queue.check(&bag) {
                self.terminate(&message, &why).await;
                continue;
            }
            if delivered >= feed.max_deliver {
                self.last_delivery(feed, message, delivered).await;
                continue;
            }
            let (id, receipt) = held.hold(message);
            let send = queue.push(Envelope::Durable { bag, receipt });
            tokio::pin!(send);
            // Waits while the block's queue is full, keeping what waits alive and settling what
            // the block is done with.
            let sent = loop {
                tokio::select! {
                    () = cancel.cancelled() => return Ok(Consumed::Cancelled),
                    _ = progress.tick() => self.keep_alive(held).await,
                    Some(settled) = held.next_settled() => self.settle(feed, held, settled).await,
                    sent = &mut send => break sent,
                }
            };
            match sent {
                Ok(()) => {}
                Err(Refusal::Closed) => return Ok(Consumed::QueueClosed),
                // Larger than the queue may ever hold (its limits were raised past its bytes):
                // never going to be a bag here either; counted by the queue.
                Err(why) => {
                    if let Some(message) = held.messages.remove(&id) {
                        self.terminate(&message, &why).await;
                    }
                    continue;
                }
            }
            Counters::bump(&self.status.counters.from_server);
        }
    }

    /// Tells the server to deliver `message` no more: it can never be a bag here.
    async fn terminate(&self, message: &jetstream::Message, why: &Refusal) {
        tracing::warn!(event = "terminated", block = %self.status.responsibility, "a message on the durable stream can never be a bag here ({why}): terminated");
        // Confirmed (a rare event): once this returns, the server holds it no more.
        if let Err(e) = bounded(message.double_ack_with(AckKind::Term)).await {
            tracing::warn!("terminating a durable message failed (it will be delivered again): {e}");
        }
    }

    /// The server's last delivery of `message`: a dead letter, not handed to the block again.
    async fn last_delivery(&self, feed: &Feed, message: jetstream::Message, delivered: i64) {
        let error = format!(
            "delivered {delivered} times without being settled (the hosts that took it crashed or gave it back)"
        );
        // Counted, listed and logged as a dead letter once its stream stored it.
        if let Err(e) = self.store_dead(&feed.cluster, &feed.dead_letters, &message, &error, 0).await {
            tracing::error!(
                event = "dead_letter_not_stored",
                block = %self.status.responsibility,
                "a dead letter was not stored in the stream `{}` ({e}); its stream delivers it no more, it stays there unacknowledged",
                dead_stream_name(&feed.cluster)
            );
        }
    }

    /// Tells the server that the bags still queued or being delivered are being worked on, so
    /// that it does not deliver them again.
    async fn keep_alive(&self, held: &Held) {
        for message in held.messages.values() {
            if let Some(reply) = &message.reply {
                let _ = bounded(self.link.client().publish(reply.clone(), bytes::Bytes::from_static(b"+WPI"))).await;
            }
        }
    }

    /// Settles every receipt already settled or dropped (before the consumer ends: a dead
    /// letter's receipt is settled just before the block's server side shuts down).
    async fn settle_ready(&self, feed: &Feed, held: &mut Held) {
        use futures_util::FutureExt as _;
        while let Some(Some(settled)) = held.next_settled().now_or_never() {
            self.settle(feed, held, settled).await;
        }
    }

    /// A held bag's receipt was settled, or dropped unsettled (then it is forgotten: the stream
    /// delivers it again).
    async fn settle(&self, feed: &Feed, held: &mut Held, (id, settled): (u64, Option<Settled>)) {
        let Some(message) = held.messages.remove(&id) else { return };
        match settled {
            None => {}
            Some(Settled::Done) => {
                if let Err(e) = bounded(message.ack()).await {
                    tracing::warn!("acknowledging a durable bag failed (it will be delivered again): {e}");
                }
            }
            Some(Settled::Dead { error, attempts }) => {
                if let Err(e) = self.store_dead(&feed.cluster, &feed.dead_letters, &message, &error, attempts).await {
                    tracing::warn!(
                        event = "dead_letter_not_stored",
                        block = %self.status.responsibility,
                        "a dead letter was not stored in the stream `{}` ({e}); left unacknowledged, it will be delivered again",
                        dead_stream_name(&feed.cluster)
                    );
                }
            }
        }
    }
}

/// How a consumer of a durable stream ended without an error.
enum Consumed {
    /// The block's server side is shutting down.
    Cancelled,
    /// The block takes no more bags (its task is ending).
    QueueClosed,
}

/// Bags taken from a durable stream and not yet settled, with their receipts.
#[derive(Default)]
struct Held {
    next_id: u64,
    messages: std::collections::HashMap<u64, jetstream::Message>,
    receipts: FuturesUnordered<ReceiptWait>,
}

type ReceiptWait = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Option<Settled>)> + Send + Sync>>;

impl Held {
    /// Holds `message` until its receipt is settled or dropped.
    fn hold(&mut self, message: jetstream::Message) -> (u64, Receipt) {
        let (receipt, settled) = Receipt::new();
        self.next_id += 1;
        let id = self.next_id;
        self.messages.insert(id, message);
        self.receipts.push(Box::pin(wait_receipt(id, settled)));
        (id, receipt)
    }

    /// The next receipt settled (`Some`) or dropped (`None`); pending while none is held.
    async fn next_settled(&mut self) -> Option<(u64, Option<Settled>)> {
        if self.receipts.is_empty() {
            return std::future::pending().await;
        }
        self.receipts.next().await
    }
}

async fn wait_receipt(id: u64, settled: oneshot::Receiver<Settled>) -> (u64, Option<Settled>) {
    (id, settled.await.ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_deliver_grows_with_max_attempts_and_keeps_a_last_delivery() {
        assert_eq!(max_deliver(0), max_deliver(1));
        assert_eq!(max_deliver(1), i64::from(DURABLE_DELIVERIES_PER_ATTEMPT) + 1);
        assert_eq!(max_deliver(1000), 1000 * i64::from(DURABLE_DELIVERIES_PER_ATTEMPT) + 1);
    }

    #[test]
    fn stream_names_cannot_meet() {
        // A durable stream's name starts `BAGPIPE_`, the dead letters' `BAGPIPE-DEAD_`.
        assert_ne!(durable_stream("DEAD", "x").name, dead_stream("x").name);
        assert!(dead_stream("prod").subjects == ["bagpipe.prod.dead.*"]);
        assert_eq!(durable_stream("prod", "store").subjects, ["bagpipe.prod.durable.store"]);
    }
}
