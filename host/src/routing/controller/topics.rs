//! The `topics` import: emitting bags on topics and subscribing to them at run time (the
//! subscription table is [`crate::routing::topics`]).
//!
//! Invariants: a block emits only to topics its `emit` grants cover and subscribes at run time
//! only within `subscribe_topics`; a bag is checked and stamped once (`__from`, `__seq`,
//! `__topic`) and every subscriber gets the same text. Subscribers that are not lossy get the
//! bag all or none: room is reserved in each (each wait bounded by the enqueue timeout, none
//! for the emitter's own queue, none again in a call whose earlier wait ran out) before any is
//! sent; a lossy subscriber gets it only if its queue has room now. A bag on a bridged topic
//! also goes into the block's outbox to the server (with `__host`), before any subscriber here
//! is sent it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ControllerCtx;
use crate::bindings::bagpipe::block::topics::{self, TopicError};
use crate::manifest::TopicSub;
use crate::manifest::subject::{covers, valid_publish, valid_subscribe};
use crate::routing::bag::{self, BagError};
use crate::routing::queue::{Envelope, Refusal};
use crate::routing::topics::HOST_KEY;
use crate::stats::Counters;

impl topics::Host for ControllerCtx {
    async fn emit(&mut self, topic: String, bag: String) -> Result<u32, TopicError> {
        if !valid_publish(&topic) {
            return Err(TopicError::InvalidTopic(format!(
                "`{topic}` is not a topic: tokens separated by dots, no wildcards"
            )));
        }
        if !self.topic_grants.emit.iter().any(|grant| covers(grant, &topic)) {
            return Err(TopicError::NotGranted(format!("emitting to `{topic}`; grant it with emit = [\"{topic}\"]")));
        }
        let seq = self.next_seq();
        let stamped = bag::stamp(&bag, &self.me.responsibility, seq, self.limits).map_err(|e| match e {
            BagError::TooLarge { limit, .. } => TopicError::TooLarge(limit as u64),
            other => TopicError::InvalidBag(other.to_string()),
        })?;
        let stamped = bag::with_key(&stamped, "__topic", &topic);
        let bytes = stamped.len();
        let targets = self.links.topics.targets(&topic);
        // A subscriber whose limits the bag breaks does not get it (its queue counts why).
        let takes = |queue: &crate::routing::queue::BlockQueue| {
            let limits = queue.limits();
            if limits.max_bytes >= bytes && limits.max_depth >= self.limits.max_depth {
                true
            } else {
                queue.check(&stamped).is_ok()
            }
        };
        let mut targets: Vec<_> = targets.into_iter().filter(|t| takes(&t.queue)).collect();
        // Reserved in one order whatever the topic, so two emitters never each hold what the
        // other waits for; all the waits of one emit together last at most the enqueue timeout.
        targets.sort_by(|a, b| a.block.cmp(&b.block));
        let timeout = if self.clock.waited_in_vain() { Duration::ZERO } else { self.links.settings.enqueue_timeout };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reserved = Vec::new();
        for target in targets.iter().filter(|t| !t.lossy) {
            let own = target.block == self.me.responsibility;
            let wait =
                if own { Duration::ZERO } else { deadline.saturating_duration_since(tokio::time::Instant::now()) };
            match self.clock.waiting(target.queue.reserve_within(bytes, wait)).await {
                Ok(r) => reserved.push(r),
                // A subscriber that has stopped takes nothing: it is not waited for.
                Err(Refusal::Closed) => {}
                Err(why) => {
                    if !wait.is_zero() {
                        self.clock.note_wait_in_vain();
                    }
                    return Err(TopicError::Busy(format!(
                        "`{}` had no room for the bag ({why}); no subscriber was sent it",
                        target.block
                    )));
                }
            }
        }
        // A bridged topic goes to the server too, through the block's outbox, before any
        // subscriber here is sent it: a full outbox is `busy` for all.
        let bridge = &self.links.bridge;
        if bridge.covers(&topic)
            && let Some(outbox) = &self.topic_outbox
        {
            let payload = bag::with_key(&stamped, HOST_KEY, &bridge.host);
            if let Err(full) = outbox.push(&topic, payload.into_bytes()) {
                return Err(TopicError::Busy(format!(
                    "the outbox to the server, where `{topic}` is bridged, is full ({full}); no subscriber was sent it"
                )));
            }
        }
        let mut delivered = 0u32;
        for r in reserved {
            r.send(Envelope::Bag(stamped.clone()));
            delivered += 1;
        }
        for target in targets.iter().filter(|t| t.lossy) {
            if target.queue.offer_lossy(Envelope::Bag(stamped.clone())) {
                delivered += 1;
            }
        }
        self.me.seq.fetch_max(seq, Ordering::Relaxed);
        Counters::bump(&self.me.counters.emitted);
        Ok(delivered)
    }

    fn subscribe(&mut self, pattern: String, lossy: bool) -> Result<(), TopicError> {
        if !valid_subscribe(&pattern) {
            return Err(TopicError::InvalidTopic(format!(
                "`{pattern}` is not a topic pattern: tokens separated by dots; * and > as wildcards"
            )));
        }
        if !self.topic_grants.subscribe.iter().any(|grant| covers(grant, &pattern)) {
            return Err(TopicError::NotGranted(format!(
                "subscribing to `{pattern}`; grant it with subscribe_topics = [\"{pattern}\"]"
            )));
        }
        let me = &self.me.responsibility;
        let Some(queue) = self.links.router.resolve(me).and_then(|r| r.queue.clone()) else {
            return Err(TopicError::Unavailable(
                "this block takes no bags (list `on_enqueue`), so a topic's bags could not reach it".to_owned(),
            ));
        };
        let topics = &self.links.topics;
        let already = topics.count(me);
        let sub = TopicSub { pattern, lossy };
        if already >= self.max_subscriptions && !topics.targets_pattern(me, &sub.pattern) {
            Counters::bump(&self.me.counters.budget_refusals);
            return Err(TopicError::Unavailable(format!(
                "this block holds {already} topic subscriptions, as many as it may (max_subscriptions)"
            )));
        }
        topics.subscribe(me, &queue, &sub);
        Ok(())
    }

    fn unsubscribe(&mut self, pattern: String) -> bool {
        self.links.topics.unsubscribe(&self.me.responsibility, &pattern)
    }
}
