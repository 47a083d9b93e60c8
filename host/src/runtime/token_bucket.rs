//! A token bucket: `per_sec` tokens a second, at most a second's worth held (the burst). The
//! log rate and the output pacing are both one.

use std::time::Instant;

/// Tokens refilled at a rate, up to a second's worth.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens a second, and the most held.
    pub per_sec: f64,
    /// Tokens held now (negative: spent ahead of the rate).
    pub tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `per_sec` tokens a second.
    pub fn full(per_sec: f64) -> Self {
        Self { per_sec, tokens: per_sec, last: Instant::now() }
    }

    /// Adds what the time since the last refill earned, up to a second's worth.
    pub fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec).min(self.per_sec);
        self.last = now;
    }
}
