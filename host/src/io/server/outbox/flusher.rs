//! The outbox's flusher: sends the messages to the server in order, and takes them out of the
//! outbox once it confirmed them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Outbox, Outgoing};
use crate::defaults::{OUTBOX_RETRY, SERVER_CALL_TIMEOUT};
use crate::io::server::ServerLink;

/// Sends the outbox's messages to the server, in order, until `stop`; then, until `give_up`,
/// only what is left (the block is ending), and closes the outbox (in memory, the rest is counted
/// as dropped; on disk, it stays for the next start).
pub async fn flusher(outbox: Arc<Outbox>, link: Arc<ServerLink>, stop: CancellationToken, give_up: CancellationToken) {
    let mut js = async_nats::jetstream::new(link.client().clone());
    js.set_timeout(SERVER_CALL_TIMEOUT);
    let ids = outbox.id_prefix.clone();
    let mut level = outbox.level.subscribe();
    let mut state = link.state();
    loop {
        let ending = stop.is_cancelled();
        if ending && outbox.is_empty() {
            break;
        }
        tokio::select! {
            () = give_up.cancelled() => break,
            () = stop.cancelled(), if !ending => continue,
            r = level.wait_for(|held| *held > 0) => if r.is_err() { break },
        }
        tokio::select! {
            () = give_up.cancelled() => break,
            () = stop.cancelled(), if !ending => continue,
            r = state.wait_for(|s| s.connected) => if r.is_err() { break },
        }
        let (batch, failure) = match outbox.front() {
            Ok(batch) if batch.is_empty() => (batch, Some("nothing in the outbox could be read".to_owned())),
            Ok(batch) => (one_kind(batch), None),
            Err(why) => (Vec::new(), Some(why)),
        };
        let (confirmed, failure) = if failure.is_some() {
            (0, failure)
        } else {
            let sent = async {
                if batch[0].id.is_some() { to_stream(&js, &ids, &batch).await } else { to_server(&link, &batch).await }
            };
            // Giving up mid-batch leaves the batch in the outbox (counted as dropped, or kept on
            // disk, when it closes).
            tokio::select! {
                () = give_up.cancelled() => break,
                sent = sent => sent,
            }
        };
        outbox.confirmed(confirmed, &link);
        if let Some(why) = failure {
            outbox.failed(batch.len() - confirmed, &why);
            // Not at once again: the server (or the disk) is away or slow.
            tokio::select! {
                () = give_up.cancelled() => break,
                () = tokio::time::sleep(OUTBOX_RETRY) => {}
            }
        }
    }
    outbox.close().await;
}

/// The messages at the front of `batch` that are sent the same way (all through a stream, or all
/// core NATS): the rest follows in the next round, so order is kept across the two.
fn one_kind(mut batch: Vec<Outgoing>) -> Vec<Outgoing> {
    let stream = batch.first().is_some_and(|m| m.id.is_some());
    let same = batch.iter().take_while(|m| m.id.is_some() == stream).count();
    batch.truncate(same);
    batch
}

/// Core NATS: writes the batch, then a round trip confirms the server processed all of it.
async fn to_server(link: &ServerLink, batch: &[Outgoing]) -> (usize, Option<String>) {
    let client = link.client();
    for message in batch {
        let sent =
            tokio::time::timeout(SERVER_CALL_TIMEOUT, client.publish(message.subject.clone(), message.payload.clone()));
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return (0, Some(e.to_string())),
            Err(_) => return (0, Some("the server did not take the message in time".to_owned())),
        }
    }
    match link.confirm().await {
        Ok(()) => (batch.len(), None),
        Err(why) => (0, Some(why)),
    }
}

/// JetStream: publishes the batch, then waits for each acknowledgement in order; the confirmed
/// prefix leaves. A message's id is the one stored with it, or made from its number.
async fn to_stream(js: &async_nats::jetstream::Context, ids: &str, batch: &[Outgoing]) -> (usize, Option<String>) {
    use async_nats::jetstream::message::PublishMessage;
    let mut acks = Vec::with_capacity(batch.len());
    let mut failure = None;
    for message in batch {
        let id = message.id.clone().unwrap_or_else(|| format!("{ids}.{}", message.seq));
        let publish = PublishMessage::build().payload(message.payload.clone()).message_id(id);
        let sent = tokio::time::timeout(SERVER_CALL_TIMEOUT, js.send_publish(message.subject.clone(), publish));
        match sent.await {
            Ok(Ok(ack)) => acks.push(ack),
            Ok(Err(e)) => {
                failure = Some(e.to_string());
                break;
            }
            Err(_) => {
                failure = Some("the server did not take the message in time".to_owned());
                break;
            }
        }
    }
    let mut confirmed = 0;
    for ack in acks {
        // The context's timeout bounds each wait.
        match ack.await {
            Ok(_) => confirmed += 1,
            Err(e) => return (confirmed, Some(format!("the stream did not acknowledge: {e}"))),
        }
    }
    (confirmed, failure)
}
