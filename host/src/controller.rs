//! The `controller` import: what a block can ask of the host.
//!
//! Invariant: nothing a guest passes here can panic the host or make it wait without bound. An
//! `enqueue` to a full queue waits at most the enqueue timeout (and not at all for the caller's
//! own queue, which cannot drain while the caller is inside a call).

use std::time::Duration;

use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};

use crate::bag::{self, BagError, BagLimits};
use crate::bindings::bagpipe::block::{controller, types};
use crate::bindings::{BlockInfo, EnqueueError, Level};
use crate::defaults::{BUILTIN_RESPONSIBILITIES, LOG_MESSAGE_BYTES};
use crate::router::Envelope;
use crate::state::{BlockCtx, Request};
use crate::stats::Counters;

impl types::Host for BlockCtx {}

impl controller::Host for BlockCtx {
    async fn name(&mut self) -> String {
        self.me.name.clone()
    }

    async fn responsibility(&mut self) -> String {
        self.me.responsibility.clone()
    }

    async fn enqueue(&mut self, target: String, bag: String) -> Result<bool, EnqueueError> {
        let route = self.links.router.resolve(&target);
        // Not here, or shared with the cluster / durable: through the server, when there is one.
        let cluster = self.links.server.clone().filter(|link| link.cluster.is_some());
        if let Some(link) = cluster
            && route.as_ref().is_none_or(|r| r.via_server)
        {
            return self.enqueue_remote(&link, &target, &bag).await;
        }
        let Some(route) = route else {
            return Err(EnqueueError::UnknownTarget(format!("no block has responsibility `{target}`")));
        };
        let Some(queue) = &route.queue else {
            // The target exists but takes no bags: say so, deliver nothing. The bag is still
            // checked, so a bad bag is reported wherever it was going.
            let limits = BagLimits { max_bytes: self.limits.max_bag_bytes, max_depth: self.limits.max_bag_depth };
            bag::stamp(&bag, &self.me.responsibility, self.next_seq(), limits).map_err(refusal)?;
            return Ok(false);
        };
        if !route.status.takes_bags() {
            return Err(EnqueueError::Unavailable(format!(
                "`{target}` is {} and takes no bags",
                crate::stats::state_name(route.status.state())
            )));
        }
        let seq = self.next_seq();
        let stamped = bag::stamp(&bag, &self.me.responsibility, seq, route.limits).map_err(refusal)?;
        let envelope = Envelope::Bag(stamped);
        let counters = &route.status.counters;
        let sent = match queue.try_send(envelope) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(gone(&target)),
            // The caller's own queue only drains after this call returns: waiting cannot help.
            // Nor does waiting again in a call that already waited in vain.
            Err(TrySendError::Full(_)) if route.status.responsibility == self.me.responsibility || self.refused => {
                Err(EnqueueError::QueueFull)
            }
            Err(TrySendError::Full(envelope)) => {
                let timeout = self.links.settings.enqueue_timeout;
                let waited = self.clock.waiting(queue.send_timeout(envelope, timeout)).await;
                match waited {
                    Ok(()) => Ok(()),
                    Err(SendTimeoutError::Timeout(_)) => {
                        self.refused = true;
                        Err(EnqueueError::QueueFull)
                    }
                    Err(SendTimeoutError::Closed(_)) => Err(gone(&target)),
                }
            }
        };
        match sent {
            Ok(()) => {
                self.me.seq.store(seq, std::sync::atomic::Ordering::Relaxed);
                Counters::bump(&counters.received);
                Counters::bump(&self.me.counters.sent);
                counters.queue_high_water.fetch_max(route.queue_depth(), std::sync::atomic::Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                if matches!(e, EnqueueError::QueueFull) {
                    Counters::bump(&counters.refused_full);
                }
                Err(e)
            }
        }
    }

    async fn lookup(&mut self, responsibility: String) -> Option<BlockInfo> {
        self.links.router.resolve(&responsibility).map(|r| r.status.info())
    }

    async fn list_blocks(&mut self) -> Vec<BlockInfo> {
        self.links.router.routes().iter().map(|r| r.status.info()).collect()
    }

    async fn finish(&mut self, responsibility: String) -> Result<(), String> {
        if BUILTIN_RESPONSIBILITIES.contains(&responsibility.as_str()) {
            tracing::info!("asked the host to shut down (finished `{responsibility}`)");
            self.links.shutdown.cancel();
            return Ok(());
        }
        if self.links.router.resolve(&responsibility).is_none() {
            return Err(format!("no block has responsibility `{responsibility}`"));
        }
        let request = Request::Finish { responsibility, by: self.me.responsibility.clone() };
        match self.links.requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err("the host is busy finishing other blocks; nothing was done, try again later".to_owned())
            }
            Err(TrySendError::Closed(_)) => Err("the host is shutting down".to_owned()),
        }
    }

    async fn log(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > LOG_MESSAGE_BYTES {
            let mut cut = LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        match level {
            Level::Trace => tracing::trace!(target: "bagpipe::guest", "{message}"),
            Level::Debug => tracing::debug!(target: "bagpipe::guest", "{message}"),
            Level::Info => tracing::info!(target: "bagpipe::guest", "{message}"),
            Level::Warn => tracing::warn!(target: "bagpipe::guest", "{message}"),
            Level::Error => tracing::error!(target: "bagpipe::guest", "{message}"),
        }
    }

    async fn set_timer(&mut self, delay_ms: u64, tag: String) -> Result<u64, String> {
        if !self.hooks.timer {
            return Err("this block does not export timer-hook, so a timer could never fire".to_owned());
        }
        self.timers.set(Duration::from_millis(delay_ms), tag)
    }

    async fn cancel_timer(&mut self, id: u64) -> bool {
        self.timers.cancel(id)
    }
}

impl BlockCtx {
    /// `enqueue` through the cluster: checked and stamped here, answered by the host that takes it.
    async fn enqueue_remote(
        &mut self,
        link: &crate::server::ServerLink,
        target: &str,
        bag: &str,
    ) -> Result<bool, EnqueueError> {
        let limits = BagLimits { max_bytes: self.limits.max_bag_bytes, max_depth: self.limits.max_bag_depth };
        let seq = self.next_seq();
        let stamped = bag::stamp(bag, &self.me.responsibility, seq, limits).map_err(refusal)?;
        let timeout = self.links.settings.enqueue_timeout;
        let answer = self.clock.clone().waiting(link.enqueue_remote(target, stamped, timeout)).await;
        if answer.is_ok() {
            self.me.seq.store(seq, std::sync::atomic::Ordering::Relaxed);
            Counters::bump(&self.me.counters.sent);
        }
        answer
    }

    /// The sequence number the next bag this block sends gets.
    fn next_seq(&self) -> u64 {
        self.me.seq.load(std::sync::atomic::Ordering::Relaxed) + 1
    }
}

fn refusal(e: BagError) -> EnqueueError {
    match e {
        BagError::TooLarge { limit, .. } => EnqueueError::TooLarge(limit as u64),
        other => EnqueueError::InvalidBag(other.to_string()),
    }
}

fn gone(target: &str) -> EnqueueError {
    EnqueueError::Unavailable(format!("`{target}` has stopped taking bags"))
}
