//! Hosts of one cluster share blocks over the server.
//!
//! Every host serves each of its blocks that takes bags on `bagpipe.<cluster>.to.<block>`, in a
//! queue group of that name: a bag for a responsibility the sender's host does not run (or one
//! marked `shared`) goes there as a request, one host that runs it takes it, puts it in the
//! block's queue and answers with what `enqueue` says, so the sender gets the same typed answer as
//! for a local block. A `durable` block takes its bags from a JetStream work-queue stream instead
//! and acknowledges each only after `on-enqueue` returned: they survive a host crash
//! (at-least-once; `__seq` tells a redelivery).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{BlockServer, ServerLink, bounded};
use crate::bindings::EnqueueError;
use crate::defaults::{DURABLE_RETRY, REMOTE_SLACK, SERVE_RETRY, STREAM_LOOKUP_TIMEOUT};
use crate::routing::controller::{Cluster, refusal};
use crate::routing::queue::{BlockQueue, Envelope, Receipt, Refusal};
use crate::stats::Counters;
use std::future::IntoFuture as _;

/// A responsibility as one subject token (and stream name part): letters, digits, `-` and `_`
/// stay, anything else becomes `_xx` (its bytes in hex).
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Where bags for `responsibility` go in `cluster`.
pub fn enqueue_subject(cluster: &str, responsibility: &str) -> String {
    format!("bagpipe.{}.to.{}", token(cluster), token(responsibility))
}

/// Where durable bags for `responsibility` go in `cluster`.
pub fn durable_subject(cluster: &str, responsibility: &str) -> String {
    format!("bagpipe.{}.durable.{}", token(cluster), token(responsibility))
}

/// The JetStream stream of a durable responsibility.
pub fn stream_name(cluster: &str, responsibility: &str) -> String {
    format!("BAGPIPE_{}_{}", token(cluster), token(responsibility))
}

impl Cluster for ServerLink {
    fn enqueue<'a>(
        &'a self,
        responsibility: &'a str,
        stamped: String,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, EnqueueError>> + Send + 'a>> {
        Box::pin(self.enqueue_remote(responsibility, stamped, timeout))
    }
}

impl ServerLink {
    /// Sends a stamped bag to `responsibility` elsewhere in the cluster; the answer is what
    /// `enqueue` on the host that took it said.
    pub async fn enqueue_remote(
        &self,
        responsibility: &str,
        stamped: String,
        enqueue_timeout: Duration,
    ) -> Result<bool, EnqueueError> {
        let Some(cluster) = &self.cluster else {
            return Err(EnqueueError::UnknownTarget(format!("no block has responsibility `{responsibility}`")));
        };
        if !self.connected() {
            return Err(EnqueueError::Unavailable(format!(
                "`{responsibility}` is not on this host, and the host is not connected to its cluster's server"
            )));
        }
        if self.durable_stream_exists(cluster, responsibility).await {
            let js = jetstream::new(self.client().clone());
            let subject = durable_subject(cluster, responsibility);
            let ack = bounded(js.publish(subject, stamped.into())).await.map_err(EnqueueError::Unavailable)?;
            bounded(ack.into_future())
                .await
                .map_err(|e| EnqueueError::Unavailable(format!("the server did not store the bag: {e}")))?;
            self.stats.published.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        let subject = enqueue_subject(cluster, responsibility);
        let asked = self.client().request(subject, stamped.into());
        let reply = match tokio::time::timeout(enqueue_timeout + REMOTE_SLACK, asked).await {
            // No answer in time: whether the far host queued the bag is unknown, so this must not
            // read as "nothing was delivered" (queue-full) and invite a duplicate.
            Err(_) => {
                return Err(EnqueueError::Unavailable(format!(
                    "no answer from the host running `{responsibility}` in time; the bag may or may not have been delivered"
                )));
            }
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(EnqueueError::UnknownTarget(format!(
                    "no block has responsibility `{responsibility}`, here or in cluster `{cluster}`"
                )));
            }
            Ok(Err(e)) => return Err(EnqueueError::Unavailable(e.to_string())),
            Ok(Ok(reply)) => reply,
        };
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        decode_answer(&reply.payload)
    }

    /// Whether `responsibility` is durable in `cluster` (its stream exists). Remembered once
    /// known to exist.
    async fn durable_stream_exists(&self, cluster: &str, responsibility: &str) -> bool {
        let name = stream_name(cluster, responsibility);
        if let Some(known) = self.durable_streams.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
            return *known;
        }
        let js = jetstream::new(self.client().clone());
        let exists = tokio::time::timeout(STREAM_LOOKUP_TIMEOUT, js.get_stream(&name)).await.is_ok_and(|r| r.is_ok());
        if exists {
            self.durable_streams.lock().unwrap_or_else(|p| p.into_inner()).insert(name, true);
        }
        exists
    }
}

/// The answer a serving host sends back, as JSON.
fn encode_answer(result: Result<bool, EnqueueError>) -> String {
    match result {
        Ok(delivered) => json!({"ok": delivered}),
        Err(EnqueueError::UnknownTarget(d)) => json!({"error": "unknown-target", "detail": d}),
        Err(EnqueueError::Unavailable(d)) => json!({"error": "unavailable", "detail": d}),
        Err(EnqueueError::InvalidBag(d)) => json!({"error": "invalid-bag", "detail": d}),
        Err(EnqueueError::QueueFull) => json!({"error": "queue-full"}),
        Err(EnqueueError::TooLarge(limit)) => json!({"error": "too-large", "limit": limit}),
    }
    .to_string()
}

fn decode_answer(payload: &[u8]) -> Result<bool, EnqueueError> {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| EnqueueError::Unavailable(format!("a bad answer from the cluster: {e}")))?;
    let detail = || v["detail"].as_str().unwrap_or_default().to_owned();
    match (v["ok"].as_bool(), v["error"].as_str()) {
        (Some(delivered), _) => Ok(delivered),
        (_, Some("unknown-target")) => Err(EnqueueError::UnknownTarget(detail())),
        (_, Some("invalid-bag")) => Err(EnqueueError::InvalidBag(detail())),
        (_, Some("queue-full")) => Err(EnqueueError::QueueFull),
        (_, Some("too-large")) => Err(EnqueueError::TooLarge(v["limit"].as_u64().unwrap_or(0))),
        _ => Err(EnqueueError::Unavailable(detail())),
    }
}

impl BlockServer {
    /// Serves the block to the cluster: takes bags sent to it from other hosts (or, for a shared
    /// block, from this one) and answers each sender.
    pub fn serve_cluster(self: &Arc<Self>, cluster: &str, enqueue_timeout: Duration) {
        let Some(queue) = self.queue.clone() else { return };
        let subject = enqueue_subject(cluster, &self.status.responsibility);
        let me = self.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let mut subscriber = loop {
                match bounded(me.link.client().queue_subscribe(subject.clone(), subject.clone())).await {
                    Ok(s) => {
                        // Said once the server has the subscription: then bags for the block can come.
                        me.link.barrier().await;
                        tracing::info!(event = "serving_cluster", block = %me.status.responsibility, subject = %subject, "serving the cluster on `{subject}`");
                        break s;
                    }
                    Err(e) => {
                        tracing::warn!("cannot serve `{subject}`: {e}; trying again");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(SERVE_RETRY) => {}
                        }
                    }
                }
            };
            loop {
                let message = tokio::select! {
                    () = cancel.cancelled() => break,
                    m = subscriber.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                };
                let answer = me.take_remote(&queue, &message.payload, enqueue_timeout).await;
                if let Some(reply) = message.reply {
                    let _ = bounded(me.link.client().publish(reply, encode_answer(answer).into())).await;
                }
            }
            let _ = bounded(subscriber.unsubscribe()).await;
        });
    }

    async fn take_remote(&self, queue: &BlockQueue, payload: &[u8], timeout: Duration) -> Result<bool, EnqueueError> {
        let to = &self.status.responsibility;
        let limit = queue.limits().max_bytes;
        if payload.len() > limit {
            return Err(refusal(to, queue.refuse(Refusal::TooLarge { limit })));
        }
        // Stamped by the sender's host: it must still be one JSON object within the limits.
        let Ok(text) = std::str::from_utf8(payload) else {
            return Err(refusal(to, queue.refuse(Refusal::Invalid("not UTF-8".into()))));
        };
        queue.check(text).map_err(|r| refusal(to, r))?;
        if !self.status.takes_bags() {
            return Err(EnqueueError::Unavailable(format!("`{to}` takes no bags now")));
        }
        self.link.stats.received.fetch_add(1, Ordering::Relaxed);
        queue.push_within(Envelope::Bag(text.to_owned()), timeout).await.map_err(|r| refusal(to, r))?;
        Counters::bump(&self.status.counters.from_server);
        Ok(true)
    }

    /// Feeds a durable block from its JetStream stream (created if missing), one bag at a time
    /// in flight per queue slot; each is acknowledged once its receipt is done (the block is done
    /// with it). What is held outlives a consumer that failed or a queue that closed: it is still
    /// kept alive and acknowledged until the block's server side shuts down.
    pub fn serve_durable(self: &Arc<Self>, cluster: &str, capacity: usize) {
        let Some(queue) = self.queue.clone() else { return };
        let responsibility = self.status.responsibility.clone();
        let (subject, stream) = (durable_subject(cluster, &responsibility), stream_name(cluster, &responsibility));
        let me = self.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let mut held = Held::default();
            let mut progress = tokio::time::interval(me.link.durable_ack_wait / 3);
            progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let taking =
                    match me.consume(&subject, &stream, capacity, &queue, &cancel, &mut held, &mut progress).await {
                        Ok(Consumed::Cancelled) => break,
                        Ok(Consumed::QueueClosed) => false,
                        Err(e) => {
                            tracing::warn!("durable stream `{stream}`: {e}; trying again");
                            true
                        }
                    };
                // Between two consumers, and once the block takes no more bags, what is held is
                // still kept alive and acknowledged when done.
                let retry = tokio::time::sleep(DURABLE_RETRY);
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        _ = progress.tick() => me.keep_alive(&held).await,
                        Some(done) = held.next_done() => me.settle(&mut held, done).await,
                        () = &mut retry, if taking => break,
                    }
                }
                if cancel.is_cancelled() {
                    break;
                }
            }
            me.settle_done(&mut held).await;
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn consume(
        &self,
        subject: &str,
        stream: &str,
        capacity: usize,
        queue: &BlockQueue,
        cancel: &CancellationToken,
        held: &mut Held,
        progress: &mut tokio::time::Interval,
    ) -> anyhow::Result<Consumed> {
        let js = jetstream::new(self.link.client().clone());
        let stream = bounded(js.get_or_create_stream(jetstream::stream::Config {
            name: stream.to_owned(),
            subjects: vec![subject.to_owned()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = token(&self.status.responsibility);
        let consumer: jetstream::consumer::PullConsumer = bounded(stream.get_or_create_consumer(
            &name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                // Bags waiting their turn are kept with progress acks (`keep_alive`) every third of
                // it; the bags of a host that crashed are delivered again this long after.
                ack_wait: self.link.durable_ack_wait,
                max_ack_pending: capacity.max(1) as i64,
                ..Default::default()
            },
        ))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut messages = bounded(consumer.messages()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(event = "consuming_stream", block = %self.status.responsibility, "taking bags from the durable stream `{}`", stream.cached_info().config.name);
        loop {
            let message = tokio::select! {
                () = cancel.cancelled() => return Ok(Consumed::Cancelled),
                _ = progress.tick() => {
                    self.keep_alive(held).await;
                    continue;
                }
                Some(done) = held.next_done() => {
                    self.settle(held, done).await;
                    continue;
                }
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(anyhow::anyhow!("{e}")),
                    None => return Err(anyhow::anyhow!("the consumer ended")),
                },
            };
            self.link.stats.received.fetch_add(1, Ordering::Relaxed);
            let bag = String::from_utf8_lossy(&message.payload).into_owned();
            if let Err(e) = queue.check(&bag) {
                // Never going to be a bag: acknowledge it, so it is not delivered again and again.
                tracing::warn!(block = %self.status.responsibility, "refused a durable bag: {e}");
                let _ = bounded(message.ack()).await;
                continue;
            }
            let receipt = held.hold(message);
            let refused = receipt.clone();
            let send = queue.push(Envelope::Durable { bag, receipt });
            tokio::pin!(send);
            // Waits while the block's queue is full, keeping what waits alive and acknowledging
            // what the block is done with.
            let sent = loop {
                tokio::select! {
                    () = cancel.cancelled() => return Ok(Consumed::Cancelled),
                    _ = progress.tick() => self.keep_alive(held).await,
                    Some(done) = held.next_done() => self.settle(held, done).await,
                    sent = &mut send => break sent,
                }
            };
            match sent {
                Ok(()) => {}
                Err(Refusal::Closed) => return Ok(Consumed::QueueClosed),
                // Larger than the queue may ever hold (its limits were raised past its bytes):
                // never going to be a bag here, so acknowledged (its receipt is done) rather than
                // delivered again and again; counted by the queue.
                Err(_) => {
                    tracing::warn!(block = %self.status.responsibility, "refused a durable bag: larger than the queue holds");
                    refused.done();
                    continue;
                }
            }
            Counters::bump(&self.status.counters.from_server);
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

    /// Settles every receipt already done or dropped (before the consumer ends: a dead letter's
    /// receipt is done just before the block's server side shuts down).
    async fn settle_done(&self, held: &mut Held) {
        use futures_util::FutureExt as _;
        while let Some(Some(done)) = held.next_done().now_or_never() {
            self.settle(held, done).await;
        }
    }

    /// A held bag's receipt was done (acknowledge it) or dropped undone (forget it: the stream
    /// delivers it again).
    async fn settle(&self, held: &mut Held, (id, done): (u64, bool)) {
        let Some(message) = held.messages.remove(&id) else { return };
        if done && let Err(e) = bounded(message.ack()).await {
            tracing::warn!("acknowledging a durable bag failed (it will be delivered again): {e}");
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

/// Bags taken from a durable stream and not yet acknowledged, with their receipts.
#[derive(Default)]
struct Held {
    next_id: u64,
    messages: std::collections::HashMap<u64, jetstream::Message>,
    receipts: FuturesUnordered<ReceiptWait>,
}

type ReceiptWait = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, bool)> + Send + Sync>>;

impl Held {
    /// Holds `message` until its receipt is done or dropped.
    fn hold(&mut self, message: jetstream::Message) -> Receipt {
        let (receipt, done) = Receipt::new();
        self.next_id += 1;
        let id = self.next_id;
        self.messages.insert(id, message);
        self.receipts.push(Box::pin(wait_receipt(id, done)));
        receipt
    }

    /// The next receipt done (`true`) or dropped (`false`); pending while none is held.
    async fn next_done(&mut self) -> Option<(u64, bool)> {
        if self.receipts.is_empty() {
            return std::future::pending().await;
        }
        self.receipts.next().await
    }
}

async fn wait_receipt(id: u64, done: oneshot::Receiver<()>) -> (u64, bool) {
    (id, done.await.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responsibilities_become_safe_subject_tokens() {
        assert_eq!(token("sink"), "sink");
        assert_eq!(token("a.b*c>d e"), "a_2eb_2ac_3ed_20e");
        assert_eq!(enqueue_subject("prod", "log.sink"), "bagpipe.prod.to.log_2esink");
        assert_eq!(stream_name("prod", "store"), "BAGPIPE_prod_store");
    }

    #[test]
    fn answers_round_trip() {
        for r in [
            Ok(true),
            Ok(false),
            Err(EnqueueError::QueueFull),
            Err(EnqueueError::TooLarge(10)),
            Err(EnqueueError::UnknownTarget("x".into())),
            Err(EnqueueError::InvalidBag("y".into())),
            Err(EnqueueError::Unavailable("z".into())),
        ] {
            let text = format!("{r:?}");
            assert_eq!(format!("{:?}", decode_answer(encode_answer(r).as_bytes())), text);
        }
    }
}
