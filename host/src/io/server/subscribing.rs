//! The loop every long-lived subscription of the host runs: subscribe (again, until it works or
//! the link closes), then take messages until the link closes or the subscription ends.

use async_nats::{Message, Subscriber};
use tokio_util::sync::CancellationToken;

use super::{ServerLink, bounded};
use crate::defaults::SERVE_RETRY;

impl ServerLink {
    /// Subscribes to `subject` once and, when that worked, waits until the server confirmed it
    /// (what anyone publishes from then on reaches the subscription).
    pub(crate) async fn subscribe_confirmed(&self, subject: &str) -> Result<Subscriber, String> {
        let subscribed = bounded(self.client().subscribe(subject.to_owned())).await;
        if subscribed.is_ok() {
            self.barrier().await;
        }
        subscribed
    }

    /// A subscription to `subject`: `first` when it is one already made, otherwise made here,
    /// tried again every [`SERVE_RETRY`] (saying so, as `what`) until it works; `None` once
    /// `cancel` fires.
    pub(crate) async fn subscribe_retrying(
        &self,
        subject: &str,
        first: Option<Result<Subscriber, String>>,
        what: &str,
        cancel: &CancellationToken,
    ) -> Option<Subscriber> {
        let mut first = first;
        loop {
            let attempt = match first.take() {
                Some(attempt) => attempt,
                None => bounded(self.client().subscribe(subject.to_owned())).await,
            };
            match attempt {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!("cannot {what} on `{subject}`: {e}; trying again");
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(SERVE_RETRY) => {}
                    }
                }
            }
        }
    }
}

/// The next message of `subscriber`; `None` once `cancel` fires or the subscription ended.
pub(crate) async fn next_message(subscriber: &mut Subscriber, cancel: &CancellationToken) -> Option<Message> {
    use futures_util::StreamExt as _;
    tokio::select! {
        () = cancel.cancelled() => None,
        m = subscriber.next() => m,
    }
}
