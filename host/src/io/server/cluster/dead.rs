//! A durable block's dead letters: stored in the cluster's dead-letter stream
//! ([`dead_stream_name`], on [`dead_subject`]: the bag as it came, the why in headers), then
//! recorded with this host's other dead letters ([`DeadLetters`]: counted, listed, logged, sent
//! to the manifest's dead-letter block), and only then is the original acknowledged.
//!
//! A dead letter is recorded once: only when the stream stored it, and not when the stream had it
//! already (a letter stored again because the original's acknowledgement was lost, which the
//! stream keeps once by its `Nats-Msg-Id`). A letter that is not stored is left unacknowledged and
//! delivered again, at most `max_deliver` times in all.
//!
//! A dead letter always fits the server's `max_payload`: its headers are bounded (one line each,
//! at most [`DURABLE_DEAD_ERROR_BYTES`]), and a bag too big for it once wrapped is cut to fit,
//! marked (`Bagpipe-Cut`: its whole size), counted (`dead_letters_cut`) and logged; the
//! dead-letter block still gets the whole bag.

use std::future::IntoFuture as _;
use std::sync::Arc;

use async_nats::jetstream;

use super::{dead_stream_name, dead_subject, token};
use crate::defaults::DURABLE_DEAD_ERROR_BYTES;
use crate::io::server::{BlockServer, bounded};
use crate::routing::deadletter::{DeadLetter, DeadLetters, now_ms};
use crate::routing::router::Router;
use crate::stats::Counters;

/// The header carrying the error.
const ERROR: &str = "Bagpipe-Error";
/// The header of a cut dead letter: the bag's whole size in bytes.
const CUT: &str = "Bagpipe-Cut";

/// This host's dead letters, which a durable block's join once its dead-letter stream stored
/// them, and the router that takes them on to the manifest's dead-letter block.
#[derive(Clone)]
pub struct HostDeadLetters {
    /// Where they are counted and listed.
    pub letters: Arc<DeadLetters>,
    /// Routes them to the dead-letter block.
    pub router: Arc<Router>,
}

/// The cluster's dead-letter stream: kept (limits retention) until someone deals with them. An
/// operator may change its limits; an existing stream is left as it is.
pub(super) fn dead_stream(cluster: &str) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: dead_stream_name(cluster),
        subjects: vec![format!("bagpipe.{}.dead.*", token(cluster))],
        ..Default::default()
    }
}

/// A dead letter as its stream stores it.
#[derive(Debug, PartialEq, Eq)]
struct Letter {
    headers: Vec<(&'static str, String)>,
    /// The bytes of the bag it holds: all of them, unless it was cut to fit.
    kept: usize,
}

impl Letter {
    fn is_cut(&self) -> bool {
        self.headers.iter().any(|(name, _)| *name == CUT)
    }
}

impl BlockServer {
    /// Stores `message` in the cluster's dead-letter stream, records it with this host's dead
    /// letters (unless the stream had it already), and only then acknowledges it. When the
    /// stream did not store it, it is left unacknowledged (its stream delivers it again).
    pub(super) async fn store_dead(
        &self,
        cluster: &str,
        host: &HostDeadLetters,
        message: &jetstream::Message,
        error: &str,
        attempts: u32,
    ) -> Result<(), String> {
        let max_payload = self.link.client().max_payload();
        let Some(letter) = fit(self.dead_headers(message, error, attempts), &message.payload, max_payload) else {
            return Err(format!("its headers alone pass the server's max_payload of {max_payload} bytes"));
        };
        let ack = self.publish_dead(cluster, &letter, message.payload.slice(..letter.kept)).await?;
        if !ack.duplicate {
            self.record_dead(host, message, error, attempts, &letter, max_payload);
        }
        // Confirmed (a rare event); should it fail, the bag is delivered again and stored again,
        // which the dead-letter stream keeps once (`Nats-Msg-Id`).
        if let Err(e) = bounded(message.double_ack()).await {
            tracing::warn!("acknowledging a dead letter failed (it will be delivered again): {e}");
        }
        let dead = dead_stream_name(cluster);
        tracing::info!(event = "dead_letter_stored", block = %self.status.responsibility, stream = %dead, "a dead letter is in the stream `{dead}`");
        Ok(())
    }

    /// Where the dead letter comes from and why, as headers.
    fn dead_headers(&self, message: &jetstream::Message, error: &str, attempts: u32) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Ok(info) = message.info() {
            // A dead letter stored again (its acknowledgement was lost) is kept once.
            headers.push(("Nats-Msg-Id", format!("{}:{}", info.stream, info.stream_sequence)));
            headers.push(("Bagpipe-Delivered", info.delivered.to_string()));
        }
        headers.push(("Bagpipe-Block", header_text(&self.status.responsibility)));
        headers.push(("Bagpipe-Component", header_text(&self.status.name)));
        headers.push((ERROR, header_text(error)));
        headers.push(("Bagpipe-Attempts", attempts.to_string()));
        headers
    }

    async fn publish_dead(
        &self,
        cluster: &str,
        letter: &Letter,
        payload: bytes::Bytes,
    ) -> Result<jetstream::publish::PublishAck, String> {
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &letter.headers {
            headers.insert(*name, value.as_str());
        }
        let js = jetstream::new(self.link.client().clone());
        let subject = dead_subject(cluster, &self.status.responsibility);
        let publish = || async {
            let ack = bounded(js.publish_with_headers(subject.clone(), headers.clone(), payload.clone())).await?;
            bounded(ack.into_future()).await
        };
        if let Ok(ack) = publish().await {
            return Ok(ack);
        }
        // Its stream may be gone (an operator deleted it): made again, and tried once more.
        bounded(js.get_or_create_stream(dead_stream(cluster))).await?;
        publish().await
    }

    /// Counts, lists, logs and sends on a dead letter the stream stored for the first time.
    fn record_dead(
        &self,
        host: &HostDeadLetters,
        message: &jetstream::Message,
        error: &str,
        attempts: u32,
        letter: &Letter,
        max_payload: usize,
    ) {
        let counters = &self.status.counters;
        Counters::bump(&counters.dead_letters);
        if letter.is_cut() {
            Counters::bump(&counters.dead_letters_cut);
            tracing::warn!(
                event = "dead_letter_cut",
                block = %self.status.responsibility,
                bytes = message.payload.len(),
                kept = letter.kept,
                "a dead letter's bag ({} bytes) is too big for the server's max_payload ({max_payload} bytes) once wrapped: the dead-letter stream holds its first {} bytes",
                message.payload.len(),
                letter.kept
            );
        }
        let bag = serde_json::from_slice(&message.payload)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&message.payload).into_owned()));
        let letter = DeadLetter {
            at_ms: now_ms(),
            block: self.status.responsibility.clone(),
            component: self.status.name.clone(),
            error: error.to_owned(),
            attempts,
            bag,
        };
        host.letters.add(letter, &host.router);
    }
}

/// Fits a dead letter of `bag` with `headers` within `max_payload` (headers and payload, as the
/// server counts them): whole when it fits; otherwise marked `Bagpipe-Cut` and its bag cut to
/// fit; when even the headers alone do not fit, the error text is cut too, and the bag left out.
/// `None` when nothing can make it fit.
fn fit(mut headers: Vec<(&'static str, String)>, bag: &[u8], max_payload: usize) -> Option<Letter> {
    if wire_len(&headers) + bag.len() <= max_payload {
        return Some(Letter { headers, kept: bag.len() });
    }
    headers.push((CUT, bag.len().to_string()));
    let wire = wire_len(&headers);
    if wire <= max_payload {
        return Some(Letter { kept: floor_boundary(bag, max_payload - wire), headers });
    }
    let over = wire - max_payload;
    let (_, error) = headers.iter_mut().find(|(name, _)| *name == ERROR)?;
    if error.len() < over {
        return None;
    }
    let keep = floor_boundary(error.as_bytes(), error.len() - over);
    error.truncate(keep);
    Some(Letter { headers, kept: 0 })
}

/// The size of `headers` on the wire: `NATS/1.0\r\n`, a `name: value\r\n` line each, `\r\n`.
fn wire_len(headers: &[(&str, String)]) -> usize {
    "NATS/1.0\r\n\r\n".len() + headers.iter().map(|(name, value)| name.len() + value.len() + 4).sum::<usize>()
}

/// The largest cut of UTF-8 `text` at most `at` bytes long that does not split a character.
fn floor_boundary(text: &[u8], at: usize) -> usize {
    let mut at = at.min(text.len());
    while at > 0 && at < text.len() && text[at] & 0xC0 == 0x80 {
        at -= 1;
    }
    at
}

/// `text` as a header value: one line, at most [`DURABLE_DEAD_ERROR_BYTES`].
fn header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(DURABLE_DEAD_ERROR_BYTES));
    for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if out.len() + c.len_utf8() > DURABLE_DEAD_ERROR_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(error: &str) -> Vec<(&'static str, String)> {
        vec![("Bagpipe-Block", "store".into()), (ERROR, error.into())]
    }

    #[test]
    fn header_text_is_one_line_within_its_limit() {
        assert_eq!(header_text("trap:\nline 2\r\n"), "trap: line 2  ");
        let long = "é".repeat(DURABLE_DEAD_ERROR_BYTES);
        let cut = header_text(&long);
        assert!(cut.len() <= DURABLE_DEAD_ERROR_BYTES && cut.len() > DURABLE_DEAD_ERROR_BYTES - 2);
    }

    #[test]
    fn wire_len_is_what_the_server_counts() {
        // "NATS/1.0\r\nBagpipe-Block: store\r\nBagpipe-Error: x\r\n\r\n"
        assert_eq!(wire_len(&headers("x")), 10 + 22 + 18 + 2);
    }

    #[test]
    fn a_letter_that_fits_is_whole() {
        let bag = br#"{"n":1}"#;
        let max = wire_len(&headers("why")) + bag.len();
        assert_eq!(fit(headers("why"), bag, max), Some(Letter { headers: headers("why"), kept: bag.len() }));
    }

    #[test]
    fn a_bag_too_big_once_wrapped_is_cut_to_fit_and_marked() {
        let bag = "é".repeat(600);
        for max in [1000, 1001, 1002, 1003] {
            let letter = fit(headers("why"), bag.as_bytes(), max).expect("fits");
            assert!(letter.is_cut());
            assert!(letter.headers.contains(&(CUT, "1200".into())), "{letter:?}");
            assert!(wire_len(&letter.headers) + letter.kept <= max);
            assert!(wire_len(&letter.headers) + letter.kept >= max - 1, "no more cut than needed");
            assert!(std::str::from_utf8(&bag.as_bytes()[..letter.kept]).is_ok(), "cut between characters");
        }
    }

    #[test]
    fn headers_too_big_lose_their_error_text_then_the_letter_does_not_fit() {
        let error = "e".repeat(DURABLE_DEAD_ERROR_BYTES);
        let bag = br#"{"n":1}"#;
        let max = 200;
        let letter = fit(headers(&error), bag, max).expect("fits without most of its error");
        assert_eq!((letter.kept, wire_len(&letter.headers)), (0, max));
        assert!(fit(headers("why"), bag, 20).is_none());
    }

    #[test]
    fn any_sizes_give_a_letter_within_max_payload_or_none() {
        for max in (0..400).step_by(7) {
            for bag_len in [0, 1, 50, 300, 1000] {
                let bag = "x".repeat(bag_len);
                if let Some(letter) = fit(headers("a reason"), bag.as_bytes(), max) {
                    assert!(wire_len(&letter.headers) + letter.kept <= max, "{max} {bag_len}");
                    assert!(letter.kept == bag_len || letter.is_cut(), "{max} {bag_len}");
                }
            }
        }
    }
}
