//! Restart policy arithmetic: how long to wait before the next restart (exponential backoff with
//! jitter) and when to give up (restart intensity, OTP style: more than `max` restarts within
//! `window` means the block is broken, not unlucky). Pure: the caller owns the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What to do when a block faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// Start a fresh instance of this block only; its queue is kept.
    One,
    /// Finish every block in reverse order and start them all again.
    All,
    /// Shut the whole host down, exiting non-zero.
    Escalate,
    /// Leave the block failed; bags sent to it are refused.
    None,
}

/// What to do when a block has restarted too often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GiveUp {
    /// Leave the block failed; the rest of the host runs on.
    Finish,
    /// Shut the whole host down, exiting non-zero.
    Escalate,
}

/// Backoff between restarts of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the second consecutive restart (the first is immediate).
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before the `n`-th consecutive restart (1-based): none for the first, then
    /// `base`, `2 base`, `4 base`, ... up to `max`, each scaled by `jitter` in `[0.8, 1.2)`.
    pub fn delay(&self, n: u32, jitter: f64) -> Duration {
        if n <= 1 {
            return Duration::ZERO;
        }
        let exp = (n - 2).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        raw.mul_f64(jitter.clamp(0.8, 1.2))
    }
}

/// Counts restarts in a sliding window.
#[derive(Debug, Clone)]
pub struct Intensity {
    max: u32,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl Intensity {
    /// At most `max` restarts within any `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self { max, window, recent: VecDeque::new() }
    }

    /// Records a restart at `now`; returns `false` when it is one too many (give up).
    pub fn allow(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

/// A jitter factor in `[0.8, 1.2)` from a cheap per-process generator (xorshift seeded from the
/// clock): backoff needs spread, not cryptographic randomness.
pub fn jitter() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9e37_79b9, |d| d.as_nanos() as u64) | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        0.8 + (x >> 11) as f64 / (1u64 << 53) as f64 * 0.4
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_first_then_doubles_up_to_the_cap() {
        let b = Backoff { base: Duration::from_millis(10), max: Duration::from_millis(100) };
        let plain: Vec<_> = (1..=7).map(|n| b.delay(n, 1.0).as_millis()).collect();
        assert_eq!(plain, [0, 10, 20, 40, 80, 100, 100]);
        assert_eq!(b.delay(3, 1.2), Duration::from_millis(24));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(16), "jitter is clamped");
        assert_eq!(b.delay(400, 1.0), Duration::from_millis(100), "no overflow");
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let xs: Vec<f64> = (0..1000).map(|_| jitter()).collect();
        assert!(xs.iter().all(|x| (0.8..1.2).contains(x)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn intensity_gives_up_past_max_in_window_and_forgets_old_restarts() {
        let t0 = Instant::now();
        let mut i = Intensity::new(3, Duration::from_secs(10));
        assert!(i.allow(t0));
        assert!(i.allow(t0 + Duration::from_secs(1)));
        assert!(i.allow(t0 + Duration::from_secs(2)));
        assert!(!i.allow(t0 + Duration::from_secs(3)), "a fourth within 10 s is too many");
        assert!(i.allow(t0 + Duration::from_millis(10_500)), "the first restart left the window");
        assert!(!i.allow(t0 + Duration::from_millis(10_600)), "three are in the window again");
    }
}
