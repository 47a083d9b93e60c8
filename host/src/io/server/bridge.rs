//! Topics bridged to the server (`[host] bridge_topics`): what a block emits on a bridged topic
//! also goes into its outbox, to the NATS subject of the topic's name (the block's
//! [`TopicOutbox`]); and what arrives on those subjects from other hosts is given to this host's
//! subscribers, as if emitted here.
//!
//! Invariants: a bridged bag carries `__host` first, and a host never takes its own bags back
//! (their first bytes say so); a message on a bridged subject that no host stamped becomes a bag
//! as a server subscription's message does (`__from = "server"`, `__subject`, `__topic`); an arriving bag is checked against each subscriber's limits like
//! any bag from the server; a subscriber that is not lossy is waited for up to the enqueue
//! timeout, then the bag is refused for it (counted in its `refused_full`): core NATS keeps no
//! message for later.

use std::sync::Arc;
use std::time::Duration;

use super::subscribing::next_message;
use super::{BlockServer, ServerLink, bounded, message_bag};
use crate::manifest::subject::covers;
use crate::routing::bag;
use crate::routing::queue::{Envelope, Refusal};
use crate::routing::topics::{Bridge, HOST_KEY, TopicOutbox, Topics};

impl TopicOutbox for BlockServer {
    fn push(&self, subject: &str, payload: Vec<u8>) -> Result<(), String> {
        self.outbox().push(subject.to_owned(), payload.into()).map_err(|busy| busy.to_string())
    }
}

impl ServerLink {
    /// Gives what other hosts emit on the bridged topics to this host's subscribers, one task
    /// per pattern, the link's, ending with it. Returns once each pattern is subscribed (and
    /// the server confirmed it), or is being retried in its task: a host connected at start
    /// bridges before any block runs.
    pub async fn serve_topics(self: &Arc<Self>, topics: Arc<Topics>, bridge: Arc<Bridge>, enqueue_timeout: Duration) {
        for pattern in bridge.patterns.clone() {
            let first = self.subscribe_confirmed(&pattern).await;
            let bridging = |pattern: &str| {
                tracing::info!(event = "bridging_topic", topic = %pattern, "bridging topic `{pattern}` to the server");
            };
            let retried = first.is_err();
            if !retried {
                bridging(&pattern);
            }
            let me = self.clone();
            let cancel = self.cancel.clone();
            let (topics, own) = (topics.clone(), bridge.own_prefix());
            let patterns = bridge.patterns.clone();
            let from_a_host = format!("{{\"{HOST_KEY}\":");
            let mut seq = 0u64;
            self.tasks.spawn(async move {
                let Some(mut subscriber) =
                    me.subscribe_retrying(&pattern, Some(first), "bridge a topic", &cancel).await
                else {
                    return;
                };
                if retried {
                    bridging(&pattern);
                }
                while let Some(message) = next_message(&mut subscriber, &cancel).await {
                    let topic = message.subject.as_str();
                    // A subject several bridged patterns cover comes to each of their
                    // subscriptions: the first pattern's task gives it, the others skip it.
                    if patterns.iter().find(|p| covers(p, topic)) != Some(&pattern) {
                        continue;
                    }
                    let text = String::from_utf8_lossy(&message.payload);
                    if text.starts_with(&own) {
                        continue;
                    }
                    // Another host's bag is stamped already; a message from anyone else is made
                    // a bag the way a server subscription's are, with `__topic`.
                    let bag = if text.starts_with(&from_a_host) {
                        text.into_owned()
                    } else {
                        seq += 1;
                        bag::with_key(&message_bag(&message.payload, topic, None, seq), "__topic", topic)
                    };
                    give(&topics, topic, &bag, enqueue_timeout).await;
                }
                let _ = bounded(subscriber.unsubscribe()).await;
            });
        }
    }
}

/// Gives a bag another host emitted on `topic` to each subscriber here.
async fn give(topics: &Topics, topic: &str, text: &str, timeout: Duration) {
    for target in topics.targets(topic) {
        if target.queue.check(text).is_err() {
            continue;
        }
        if target.lossy {
            target.queue.offer_lossy(Envelope::Bag(text.to_owned()));
            continue;
        }
        match target.queue.reserve_within(text.len(), timeout).await {
            Ok(r) => r.send(Envelope::Bag(text.to_owned())),
            Err(Refusal::Closed) => {}
            Err(why) => tracing::warn!(
                event = "bridge_refused",
                block = %target.block,
                "a bag from topic `{topic}` was refused for `{}`: {why}",
                target.block
            ),
        }
    }
}
