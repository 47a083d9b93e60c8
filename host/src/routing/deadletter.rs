//! Dead letters: bags a block could not process without faulting, even after retries. Each is
//! kept (the last [`DEAD_LETTERS_KEPT`] of them, with a total count) with the error and the block
//! attached, and, when the manifest names a dead-letter block, sent to it as a bag.
//!
//! Invariant: a bag is never dropped without a count: every dead letter is counted, listed while
//! it is among the last [`DEAD_LETTERS_KEPT`], and logged.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::defaults::{DEAD_LETTER_BAG_BYTES, DEAD_LETTERS_KEPT};
use crate::routing::queue::{Envelope, Refusal};
use crate::routing::router::Router;
use serde::Serialize;

/// The responsibility dead letters come from, as `__from`.
pub const SENDER: &str = "finisher";

/// One bag that could not be processed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Milliseconds since the Unix epoch when it was given up on.
    pub at_ms: u64,
    /// The block's responsibility.
    pub block: String,
    /// The block's component.
    pub component: String,
    /// The last error.
    pub error: String,
    /// How many times the block was given it.
    pub attempts: u32,
    /// The bag, as the block received it.
    pub bag: serde_json::Value,
}

/// Every dead letter of one host run.
#[derive(Debug, Default)]
pub struct DeadLetters {
    kept: Mutex<VecDeque<DeadLetter>>,
    total: AtomicU64,
    /// The responsibility dead letters are sent to, if any.
    route_to: Option<String>,
}

impl DeadLetters {
    /// Dead letters, sent on to `route_to` when given.
    pub fn new(route_to: Option<String>) -> Self {
        Self { route_to, ..Self::default() }
    }

    /// Records `letter` and sends it on to the dead-letter block, never waiting. A dead letter
    /// of the dead-letter block itself is only kept, so a faulting dead-letter block cannot feed
    /// itself forever.
    pub fn add(&self, mut letter: DeadLetter, router: &Router) {
        self.total.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            event = "dead_letter",
            block = %letter.block,
            attempts = letter.attempts,
            "dead letter: {} ({})",
            crate::defaults::cut_text(&letter.bag.to_string(), DEAD_LETTER_BAG_BYTES),
            letter.error
        );
        if let Some(to) = &self.route_to
            && *to != letter.block
        {
            self.forward(&letter, to, router);
        }
        let text = letter.bag.to_string();
        if text.len() > DEAD_LETTER_BAG_BYTES {
            let mut cut = DEAD_LETTER_BAG_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            letter.bag = serde_json::Value::String(format!("{} [cut: {} bytes in all]", &text[..cut], text.len()));
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == DEAD_LETTERS_KEPT {
            kept.pop_front();
        }
        kept.push_back(letter);
    }

    fn forward(&self, letter: &DeadLetter, to: &str, router: &Router) {
        let Some(route) = router.resolve(to) else {
            tracing::error!("dead-letter block `{to}` does not exist");
            return;
        };
        let Some(queue) = &route.queue else {
            tracing::error!("dead-letter block `{to}` takes no bags");
            return;
        };
        let seq = self.total.load(Ordering::Relaxed);
        let body = serde_json::json!({
            "block": letter.block,
            "component": letter.component,
            "error": letter.error,
            "attempts": letter.attempts,
            "bag": letter.bag,
        });
        // Checked and counted like any bag: the dead-letter block's limits hold for dead letters too.
        let sent = queue
            .stamp(&body.to_string(), SENDER, seq)
            .and_then(|bag| queue.try_push(Envelope::Bag(bag)).map_err(|(refusal, _)| refusal));
        match sent {
            Ok(()) => {}
            Err(Refusal::Full) => {
                tracing::error!("dead-letter block `{to}` has a full queue; the dead letter is only kept here")
            }
            Err(Refusal::Closed) => {
                tracing::error!("dead-letter block `{to}` takes no more bags; the dead letter is only kept here")
            }
            Err(e) => tracing::error!("dead letter not sent to `{to}`: {e}; it is only kept here"),
        }
    }

    /// How many dead letters there have been.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The last [`DEAD_LETTERS_KEPT`] dead letters, oldest first.
    pub fn list(&self) -> Vec<DeadLetter> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
