//! The `server` import: what a block can do with the host's message server, and [`ServerCtx`],
//! the part of a block's store it works on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::bindings::bagpipe::block::server::{self, ServerError};
use crate::defaults::{Limits, MAX_REQUEST_TIMEOUT};
use crate::io::server::BlockServer;
use crate::manifest::subject;
use crate::routing::bag::{self, BagLimits};
use crate::runtime::clock::CallClock;
use crate::stats::{BlockStatus, Counters};

/// The `server` capability's part of a block's store.
pub struct ServerCtx {
    /// The block's side of the server; `None` when the host has no server.
    server: Option<Arc<BlockServer>>,
    me: Arc<BlockStatus>,
    /// What the bags it publishes must keep to.
    limits: BagLimits,
    clock: Arc<CallClock>,
}

impl ServerCtx {
    /// The `server` capability of an instance of the block `me`.
    pub fn new(server: Option<Arc<BlockServer>>, me: Arc<BlockStatus>, limits: &Limits, clock: Arc<CallClock>) -> Self {
        let limits = BagLimits { max_bytes: limits.max_bag_bytes, max_depth: limits.max_bag_depth };
        Self { server, me, limits, clock }
    }
}

impl server::Host for ServerCtx {
    /// Into the block's outbox, never waiting for the server: it is counted `published` once the
    /// server confirmed it.
    fn publish(&mut self, subject: String, bag: String) -> Result<(), ServerError> {
        let (server, text) = self.outgoing(&subject, &bag, "publish to", || format!("publishing to `{subject}` is"))?;
        server.outbox().push(subject, text.into()).map_err(|busy| ServerError::Busy(busy.to_string()))
    }

    async fn subscribe(&mut self, subject: String) -> Result<(), ServerError> {
        let server = self.server.clone().ok_or(ServerError::NoServer)?;
        if !subject::valid_subscribe(&subject) {
            return Err(ServerError::InvalidSubject(format!("`{subject}` is not a subject to subscribe to")));
        }
        if !server.may_subscribe(&subject) {
            return Err(self.server_refusal(
                &subject,
                format!(
                    "subscribing to `{subject}` is not granted to this block; grant it with subscribe = [\"{subject}\"]"
                ),
            ));
        }
        let new = server.subscribe_to(&subject).await.map_err(ServerError::Io)?;
        // So that what anyone publishes once this returns reaches the block.
        let link = server.link().clone();
        if new && !self.clock.waiting(async move { link.barrier().await }).await {
            tracing::debug!("subscribed to `{subject}`; the server did not confirm it in time");
        }
        Ok(())
    }

    fn unsubscribe(&mut self, subject: String) -> bool {
        self.server.as_ref().is_some_and(|s| s.unsubscribe_from(&subject))
    }

    async fn request(&mut self, subject: String, bag: String, timeout_ms: u64) -> Result<String, ServerError> {
        let (server, text) = self.outgoing(&subject, &bag, "send to", || format!("requests to `{subject}` are"))?;
        if !server.link().connected() {
            return Err(ServerError::NotConnected);
        }
        let timeout = Duration::from_millis(timeout_ms).min(MAX_REQUEST_TIMEOUT);
        let asked = tokio::time::timeout(timeout, server.link().client().request(subject, text.into()));
        let reply = self.clock.waiting(asked).await;
        Counters::bump(&self.me.counters.published);
        server.link().stats.published.fetch_add(1, Ordering::Relaxed);
        let message = match reply {
            Err(_) => return Err(ServerError::Timeout),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => return Err(ServerError::Timeout),
            Ok(Err(e)) => return Err(ServerError::Io(e.to_string())),
            Ok(Ok(message)) => message,
        };
        server.link().stats.received.fetch_add(1, Ordering::Relaxed);
        Ok(crate::io::server::message_bag(&message.payload, message.subject.as_str(), None, 1))
    }

    fn connected(&mut self) -> bool {
        self.server.as_ref().is_some_and(|s| s.link().connected())
    }
}

impl ServerCtx {
    /// What `publish` and `request` check, in this order: a server, a subject to `send` to, a
    /// grant for it (`refused` starts the refusal: "publishing to `x` is"), the bag (stamped).
    fn outgoing(
        &self,
        subject: &str,
        bag: &str,
        send: &str,
        refused: impl FnOnce() -> String,
    ) -> Result<(Arc<BlockServer>, String), ServerError> {
        let server = self.server.clone().ok_or(ServerError::NoServer)?;
        if !subject::valid_publish(subject) {
            return Err(ServerError::InvalidSubject(format!("`{subject}` is not a subject to {send}")));
        }
        if !server.may_publish(subject) {
            let why = format!("{} not granted to this block; grant it with publish = [\"{subject}\"]", refused());
            return Err(self.server_refusal(subject, why));
        }
        let text = self.server_bag(bag)?;
        Ok((server, text))
    }

    /// The bag a block publishes, checked like any bag it sends and stamped with `__from` and
    /// `__seq`.
    fn server_bag(&self, bag: &str) -> Result<String, ServerError> {
        let seq = self.me.seq.fetch_add(1, Ordering::Relaxed) + 1;
        bag::stamp(bag, &self.me.responsibility, seq, self.limits).map_err(|e| ServerError::InvalidBag(e.to_string()))
    }

    fn server_refusal(&self, subject: &str, why: String) -> ServerError {
        tracing::warn!(event = "not_granted", target = %subject, "refused: {why}");
        ServerError::NotGranted(why)
    }
}
