//! Calls between blocks across the hosts of a cluster.
//!
//! A request goes to the target's host like a bag (`bagpipe.<cluster>.to.<block>`, answered
//! with what `enqueue` said), with the call's handle in the [`CALL_HEADER`]. The handle,
//! `_CALL.<host>.<id>`, is a subject the calling host subscribes to (`_CALL.<host>.>`): the host
//! holding the request publishes the call's one outcome there, the answer as the payload, or a
//! failure in the [`ERROR_HEADER`] with its detail as the payload.
//!
//! Invariant: each host sends at most one outcome per handle (`Calls::answer_remote` forgets
//! the handle as it sends), and the calling host delivers at most one (its table), so a call
//! across hosts ends exactly once; when no outcome comes back (a host crashed), its deadline
//! ends it.

use std::sync::Arc;
use std::time::Duration;

use super::super::subscribing::next_message;
use super::super::{ServerLink, bounded};
use crate::bindings::{CallFailure, EnqueueError};
use crate::routing::calls::Calls;

/// The header that makes a bag for another host a request of a call: the call's handle.
pub const CALL_HEADER: &str = "Bagpipe-Call";

/// The header of an outcome that is not an answer: which failure it is.
pub const ERROR_HEADER: &str = "Bagpipe-Call-Error";

impl ServerLink {
    /// Sends a request of call `handle` to `responsibility` on another host; the answer is what
    /// `enqueue` said there. Durable blocks take no calls: a request would outlive its call.
    pub async fn call_remote(
        &self,
        responsibility: &str,
        request: String,
        handle: &str,
        enqueue_timeout: Duration,
    ) -> Result<bool, EnqueueError> {
        let Some(cluster) = self.cluster_target(responsibility).await? else {
            return Err(EnqueueError::Unavailable(format!(
                "`{responsibility}` is durable, and durable blocks take no calls"
            )));
        };
        self.ask_host(&cluster, responsibility, request, Some(handle), enqueue_timeout).await
    }

    /// Carries the outcomes of calls across hosts for `calls`, this host's call table: it
    /// publishes the outcomes of other hosts' calls, and delivers the ones other hosts send for
    /// this host's calls. Both tasks are the link's and end with it. Returns once the
    /// subscription for this host's outcomes is in place (confirmed by the server), or is being
    /// retried: a host connected at start hears every outcome of the calls its blocks make.
    pub async fn serve_calls(self: &Arc<Self>, calls: Arc<Calls>) {
        let subject = calls.subject();
        let first = self.subscribe_confirmed(&subject).await;
        let mut outgoing = calls.connect_remote();
        let me = self.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            loop {
                let (handle, outcome) = tokio::select! {
                    () = cancel.cancelled() => break,
                    next = outgoing.recv() => match next {
                        Some(next) => next,
                        None => break,
                    },
                };
                let mut headers = async_nats::HeaderMap::new();
                let payload = match outcome {
                    Ok(answer) => answer,
                    Err(failure) => {
                        let (kind, detail) = encode(&failure);
                        headers.insert(ERROR_HEADER, kind);
                        detail
                    }
                };
                // A publish that fails (the server is away) loses this outcome: the caller's
                // deadline ends the call.
                if let Err(e) = bounded(me.client().publish_with_headers(handle.clone(), headers, payload.into())).await
                {
                    tracing::warn!("could not send the outcome of call `{handle}`: {e}");
                }
            }
        });
        let me = self.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let Some(mut subscriber) =
                me.subscribe_retrying(&subject, Some(first), "hear the outcomes of calls", &cancel).await
            else {
                return;
            };
            while let Some(message) = next_message(&mut subscriber, &cancel).await {
                let Some(id) = calls.id_of(message.subject.as_str()) else { continue };
                let detail = String::from_utf8_lossy(&message.payload).into_owned();
                let failure = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(ERROR_HEADER))
                    .map(|kind| decode(kind.as_str(), detail.clone()));
                let outcome = match failure {
                    Some(failure) => Err(failure),
                    None => Ok(detail),
                };
                calls.settle_from_remote(id, outcome).await;
            }
            let _ = bounded(subscriber.unsubscribe()).await;
        });
    }
}

/// A failure as it travels: its kind (the header) and its detail (the payload).
fn encode(failure: &CallFailure) -> (&'static str, String) {
    match failure {
        CallFailure::Timeout => ("timeout", String::new()),
        CallFailure::Faulted(d) => ("faulted", d.clone()),
        CallFailure::Refused(d) => ("refused", d.clone()),
        CallFailure::NoReply => ("no-reply", String::new()),
        CallFailure::Unavailable(d) => ("unavailable", d.clone()),
    }
}

fn decode(kind: &str, detail: String) -> CallFailure {
    match kind {
        "timeout" => CallFailure::Timeout,
        "faulted" => CallFailure::Faulted(detail),
        "refused" => CallFailure::Refused(detail),
        "no-reply" => CallFailure::NoReply,
        "unavailable" => CallFailure::Unavailable(detail),
        other => CallFailure::Unavailable(format!("an outcome of an unknown kind `{other}`: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_round_trip() {
        for failure in [
            CallFailure::Timeout,
            CallFailure::Faulted("trap".into()),
            CallFailure::Refused("no".into()),
            CallFailure::NoReply,
            CallFailure::Unavailable("gone".into()),
        ] {
            let (kind, detail) = encode(&failure);
            assert_eq!(decode(kind, detail), failure);
        }
        assert!(matches!(decode("what", "x".into()), CallFailure::Unavailable(_)));
    }
}
