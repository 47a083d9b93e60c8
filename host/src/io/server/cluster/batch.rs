//! Many bags to another host in one round trip (`enqueue-many` across the cluster).
//!
//! A batch is one request on the block's cluster subject with the header `Bagpipe-Batch` (its
//! number of bags) and the bags framed in the payload (each a 4-byte big-endian length, then its
//! bytes). The host that serves the block queues them in order, each checked as a single bag is,
//! within one enqueue timeout for the whole batch, stops at the first it cannot take, and answers
//! once: how many it took and, if not all, why the next was not (the same typed answer a single
//! bag gets). A sender's list larger than the server's `max_payload` goes as several batches, one
//! after the other, stopping at the first that was not taken whole.
//!
//! Invariant: no bytes a batch carries can panic the serving host; a malformed batch is refused
//! whole, nothing of it queued. Bags to a durable block go to its stream, published one after
//! the other and acknowledged together (the first not stored ends the list; ones after it the
//! stream may already hold come again with the same `__seq` when the sender retries).

use std::future::IntoFuture as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::Value;

use super::{decode_value, durable_subject, enqueue_subject, json_answer};
use crate::bindings::EnqueueError;
use crate::defaults::REMOTE_SLACK;
use crate::io::server::{BlockServer, ServerLink, bounded};
use crate::routing::controller::ManyTaken;
use crate::routing::queue::BlockQueue;

/// The header that marks a batch, with its number of bags.
pub(super) const BATCH_HEADER: &str = "Bagpipe-Batch";

/// Room a batch leaves in `max_payload` for its headers.
const HEADROOM: usize = 256;

/// The bags of a batch's payload, or what is wrong with it.
pub(super) fn frames(mut payload: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut bags = Vec::new();
    while !payload.is_empty() {
        let Some((len, rest)) = payload.split_first_chunk::<4>() else {
            return Err("a batch ends inside a length".to_owned());
        };
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!("a batch's bag says {len} bytes but {} are left", rest.len()));
        }
        let (bag, rest) = rest.split_at(len);
        bags.push(bag);
        payload = rest;
    }
    Ok(bags)
}

/// Frames `bags` into payloads of at most `max` bytes each (a bag larger than that alone).
fn framed(bags: &[String], max: usize) -> Vec<(usize, Vec<u8>)> {
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    for bag in bags {
        let size = 4 + bag.len();
        match out.last_mut() {
            Some((n, payload)) if payload.len() + size <= max => {
                *n += 1;
                payload.extend_from_slice(&(bag.len() as u32).to_be_bytes());
                payload.extend_from_slice(bag.as_bytes());
            }
            _ => {
                let mut payload = Vec::with_capacity(size.max(max.min(1 << 16)));
                payload.extend_from_slice(&(bag.len() as u32).to_be_bytes());
                payload.extend_from_slice(bag.as_bytes());
                out.push((1, payload));
            }
        }
    }
    out
}

impl ServerLink {
    /// Sends stamped bags to `responsibility` elsewhere in the cluster, in order: how many the
    /// far host took, and why the next one was not taken, if one was not.
    pub async fn enqueue_many_remote(
        &self,
        responsibility: &str,
        stamped: Vec<String>,
        enqueue_timeout: Duration,
    ) -> ManyTaken {
        let cluster = match self.cluster_target(responsibility).await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => return self.publish_durable(responsibility, stamped).await,
            Err(e) => return (0, Err(e)),
        };
        let subject = enqueue_subject(&cluster, responsibility);
        let max = self.client().max_payload().saturating_sub(HEADROOM).max(1);
        let mut taken = 0u32;
        let mut queued = true;
        for (n, payload) in framed(&stamped, max) {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(BATCH_HEADER, n.to_string().as_str());
            let asked = self.client().request_with_headers(subject.clone(), headers, payload.into());
            let reply = match tokio::time::timeout(enqueue_timeout + REMOTE_SLACK, asked).await {
                Err(_) => {
                    return (
                        taken,
                        Err(EnqueueError::Unavailable(format!(
                            "no answer from the host running `{responsibility}` in time; the next {n} bags may or may not have been delivered"
                        ))),
                    );
                }
                Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    return (
                        taken,
                        Err(EnqueueError::UnknownTarget(format!(
                            "no block has responsibility `{responsibility}`, here or in cluster `{cluster}`"
                        ))),
                    );
                }
                Ok(Err(e)) => return (taken, Err(EnqueueError::Unavailable(e.to_string()))),
                Ok(Ok(reply)) => reply,
            };
            self.stats.published.fetch_add(1, Ordering::Relaxed);
            let (took, answer) = decode_batch_answer(&reply.payload);
            taken += took.min(n as u32);
            match answer {
                Ok(q) if took as usize >= n => queued = q,
                Ok(_) => {
                    return (
                        taken,
                        Err(EnqueueError::Unavailable("the far host took only part of a batch".to_owned())),
                    );
                }
                Err(e) => return (taken, Err(e)),
            }
        }
        (taken, Ok(queued))
    }

    /// Bags for a durable block, into its stream: published in order, then their acks awaited.
    pub(super) async fn publish_durable(&self, responsibility: &str, stamped: Vec<String>) -> ManyTaken {
        let Some(cluster) = &self.cluster else { return (0, Ok(true)) };
        let js = jetstream::new(self.client().clone());
        let subject = durable_subject(cluster, responsibility);
        let mut acks = Vec::with_capacity(stamped.len());
        let mut failed = None;
        for bag in stamped {
            match bounded(js.publish(subject.clone(), bag.into())).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    failed = Some(EnqueueError::Unavailable(e));
                    break;
                }
            }
        }
        let mut taken = 0u32;
        for ack in acks {
            if let Err(e) = bounded(ack.into_future()).await {
                return (taken, Err(EnqueueError::Unavailable(format!("the server did not store the bag: {e}"))));
            }
            taken += 1;
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
        (taken, failed.map_or(Ok(true), Err))
    }
}

impl BlockServer {
    /// Takes a batch from another host: its bags in order, within one `timeout` for all, up to
    /// the first that cannot be taken. The answer says how many were taken.
    pub(super) async fn take_batch(&self, queue: &BlockQueue, payload: &[u8], timeout: Duration) -> Value {
        let bags = match frames(payload) {
            Ok(bags) => bags,
            Err(why) => {
                let mut v = json_answer(Err(EnqueueError::InvalidBag(format!("a malformed batch: {why}"))));
                v["taken"] = 0.into();
                return v;
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut taken = 0u64;
        let mut answer = Ok(true);
        for bag in bags {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.take_remote(queue, bag, left, None).await {
                Ok(_) => taken += 1,
                Err(e) => {
                    answer = Err(e);
                    break;
                }
            }
        }
        let mut v = json_answer(answer);
        v["taken"] = taken.into();
        v
    }
}

/// How many bags a batch's answer says were taken, and the answer for the rest.
fn decode_batch_answer(payload: &[u8]) -> ManyTaken {
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) => (v["taken"].as_u64().map_or(0, |n| n.min(u64::from(u32::MAX)) as u32), decode_value(&v)),
        Err(e) => (0, Err(EnqueueError::Unavailable(format!("a bad answer from the cluster: {e}")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bags_frame_and_unframe_within_the_payload_bound() {
        let bags: Vec<String> = (0..10).map(|i| format!(r#"{{"i":{i}}}"#)).collect();
        let batches = framed(&bags, 40);
        assert!(batches.iter().all(|(_, p)| p.len() <= 40), "each payload within the bound");
        let back: Vec<String> = batches
            .iter()
            .flat_map(|(n, p)| {
                let f = frames(p).expect("well framed");
                assert_eq!(f.len(), *n);
                f.into_iter().map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
            })
            .collect();
        assert_eq!(back, bags, "every bag, in order");
        let big = vec!["x".repeat(100)];
        assert_eq!(framed(&big, 40).len(), 1, "a bag past the bound goes alone");
    }

    #[test]
    fn a_malformed_batch_is_refused_with_what_is_wrong() {
        assert!(frames(&[0, 0]).unwrap_err().contains("inside a length"));
        assert!(frames(&[0, 0, 0, 9, b'{']).unwrap_err().contains("says 9 bytes but 1"));
        assert_eq!(frames(&[]).expect("empty is no bags"), Vec::<&[u8]>::new());
    }

    #[test]
    fn a_batch_answer_says_how_many_and_why_not_the_next() {
        let mut v = json_answer(Err(EnqueueError::QueueFull));
        v["taken"] = 3.into();
        let (taken, answer) = decode_batch_answer(v.to_string().as_bytes());
        assert_eq!(taken, 3);
        assert!(matches!(answer, Err(EnqueueError::QueueFull)));
        let (taken, answer) = decode_batch_answer(b"not json");
        assert_eq!(taken, 0);
        assert!(matches!(answer, Err(EnqueueError::Unavailable(_))));
    }
}
