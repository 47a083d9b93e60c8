//! Hosts of one cluster share blocks over the server.
//!
//! Every host serves each of its blocks that takes bags on `bagpipe.<cluster>.to.<block>`, in a
//! queue group of that name: a bag for a responsibility the sender's host does not run (or one
//! marked `shared`) goes there as a request, one host that runs it takes it, puts it in the
//! block's queue and answers with what `enqueue` says, so the sender gets the same typed answer as
//! for a local block. A `durable` block takes its bags from a JetStream work-queue stream instead
//! and acknowledges each only after `on-enqueue` returned: they survive a host crash
//! (at-least-once; `__seq` tells a redelivery); see [`durable`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::{BlockServer, ServerLink, bounded};
use crate::bindings::EnqueueError;
use crate::defaults::{REMOTE_SLACK, SERVE_RETRY};
use crate::routing::calls::Calls;
use crate::routing::controller::{Cluster, ManyTaken, refusal};
use crate::routing::queue::{BlockQueue, Envelope, Refusal};
use crate::stats::Counters;

mod batch;
mod calls;
mod dead;
pub mod durable;

pub use dead::HostDeadLetters;

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

/// Where the dead letters of durable `responsibility` go in `cluster`.
pub fn dead_subject(cluster: &str, responsibility: &str) -> String {
    format!("bagpipe.{}.dead.{}", token(cluster), token(responsibility))
}

/// The JetStream stream of `cluster`'s durable dead letters (one per cluster). No stream of a
/// durable responsibility can have this name: theirs start `BAGPIPE_`.
pub fn dead_stream_name(cluster: &str) -> String {
    format!("BAGPIPE-DEAD_{}", token(cluster))
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

    fn enqueue_many<'a>(
        &'a self,
        responsibility: &'a str,
        stamped: Vec<String>,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ManyTaken> + Send + 'a>> {
        Box::pin(self.enqueue_many_remote(responsibility, stamped, timeout))
    }

    fn call<'a>(
        &'a self,
        responsibility: &'a str,
        request: String,
        handle: &'a str,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, EnqueueError>> + Send + 'a>> {
        Box::pin(self.call_remote(responsibility, request, handle, timeout))
    }
}

impl ServerLink {
    /// Where bags for `responsibility` go through the cluster: `Some(cluster)` to its hosts (a
    /// request each), `None` into its durable stream; an error when neither can be reached.
    async fn cluster_target(&self, responsibility: &str) -> Result<Option<String>, EnqueueError> {
        let Some(cluster) = &self.cluster else {
            return Err(EnqueueError::UnknownTarget(format!("no block has responsibility `{responsibility}`")));
        };
        if !self.connected() {
            return Err(EnqueueError::Unavailable(format!(
                "`{responsibility}` is not on this host, and the host is not connected to its cluster's server"
            )));
        }
        if self.durable_target(cluster, responsibility).await? {
            return Ok(None);
        }
        Ok(Some(cluster.clone()))
    }

    /// Sends a stamped bag to `responsibility` elsewhere in the cluster; the answer is what
    /// `enqueue` on the host that took it said.
    pub async fn enqueue_remote(
        &self,
        responsibility: &str,
        stamped: String,
        enqueue_timeout: Duration,
    ) -> Result<bool, EnqueueError> {
        let Some(cluster) = self.cluster_target(responsibility).await? else {
            let (_, answer) = self.publish_durable(responsibility, vec![stamped]).await;
            return answer;
        };
        self.ask_host(&cluster, responsibility, stamped, None, enqueue_timeout).await
    }

    /// Asks the host running `responsibility` in `cluster` to take a stamped bag (a request of
    /// call `call`, when there is one); the answer is what `enqueue` said there.
    async fn ask_host(
        &self,
        cluster: &str,
        responsibility: &str,
        stamped: String,
        call: Option<&str>,
        enqueue_timeout: Duration,
    ) -> Result<bool, EnqueueError> {
        let subject = enqueue_subject(cluster, responsibility);
        use futures_util::FutureExt as _;
        // A plain bag goes without headers, as it always did.
        let asked = match call {
            Some(handle) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(calls::CALL_HEADER, handle);
                self.client().request_with_headers(subject, headers, stamped.into()).boxed()
            }
            None => self.client().request(subject, stamped.into()).boxed(),
        };
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
}

/// The answer a serving host sends back, as JSON.
fn encode_answer(result: Result<bool, EnqueueError>) -> String {
    json_answer(result).to_string()
}

/// An `enqueue` answer as a JSON object.
fn json_answer(result: Result<bool, EnqueueError>) -> serde_json::Value {
    match result {
        Ok(delivered) => json!({"ok": delivered}),
        Err(EnqueueError::UnknownTarget(d)) => json!({"error": "unknown-target", "detail": d}),
        Err(EnqueueError::Unavailable(d)) => json!({"error": "unavailable", "detail": d}),
        Err(EnqueueError::InvalidBag(d)) => json!({"error": "invalid-bag", "detail": d}),
        Err(EnqueueError::QueueFull) => json!({"error": "queue-full"}),
        Err(EnqueueError::TooLarge(limit)) => json!({"error": "too-large", "limit": limit}),
    }
}

fn decode_answer(payload: &[u8]) -> Result<bool, EnqueueError> {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| EnqueueError::Unavailable(format!("a bad answer from the cluster: {e}")))?;
    decode_value(&v)
}

/// The `enqueue` answer a JSON object carries.
fn decode_value(v: &serde_json::Value) -> Result<bool, EnqueueError> {
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
    pub fn serve_cluster(self: &Arc<Self>, cluster: &str, enqueue_timeout: Duration, host_calls: Arc<Calls>) {
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
            while let Some(message) = super::subscribing::next_message(&mut subscriber, &cancel).await {
                let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.to_string());
                let answer = if header(batch::BATCH_HEADER).is_some() {
                    me.take_batch(&queue, &message.payload, enqueue_timeout).await.to_string()
                } else {
                    let call = header(calls::CALL_HEADER).map(|handle| (host_calls.clone(), handle));
                    encode_answer(me.take_remote(&queue, &message.payload, enqueue_timeout, call).await)
                };
                if let Some(reply) = message.reply {
                    let _ = bounded(me.link.client().publish(reply, answer.into())).await;
                }
            }
            let _ = bounded(subscriber.unsubscribe()).await;
        });
    }

    /// Takes a bag from another host into the block's queue; with `call`, a request of that
    /// host's call (this host's call table, and the call's handle).
    async fn take_remote(
        &self,
        queue: &BlockQueue,
        payload: &[u8],
        timeout: Duration,
        call: Option<(Arc<Calls>, String)>,
    ) -> Result<bool, EnqueueError> {
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
        // A request's token ends its call only once the request is queued: one not taken
        // (refused, or the wait ran out) sends nothing back, the sender's host hears why here.
        let token = call.map(|(calls, handle)| calls.serve_remote(handle, to));
        let envelope = match &token {
            Some(token) => Envelope::Call { bag: text.to_owned(), call: token.clone() },
            None => Envelope::Bag(text.to_owned()),
        };
        queue.push_within(envelope, timeout).await.map_err(|r| refusal(to, r))?;
        if let Some(token) = token {
            token.arm();
        }
        Counters::bump(&self.status.counters.from_server);
        Ok(true)
    }
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
        assert_eq!(dead_subject("prod", "log.sink"), "bagpipe.prod.dead.log_2esink");
        assert_eq!(dead_stream_name("prod"), "BAGPIPE-DEAD_prod");
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
