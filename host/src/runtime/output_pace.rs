//! How fast a block may print: a token bucket of bytes a second (a second's worth of burst) for
//! each of its output streams, `stdout_bytes_per_sec` and `stderr_bytes_per_sec`, kept across the
//! block's instances. A write past it is not dropped: the stream is not ready until the bucket refills, so
//! the guest waits, as a program waits on a full pipe. That wait is the host waiting on the
//! guest's behalf (the call's clock is stopped for it, within the call's wait budget); once one
//! call's waits have run out, its later writes are taken without pacing (the stream's own rules
//! then apply: stderr's line rate, stdout's bounded channel). A block that floods its output thus
//! spends its time asleep rather than taking the neighbours' CPU.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::defaults::{Limits, OUTPUT_PACE_STEP};
use crate::runtime::clock::CallClock;
use crate::runtime::token_bucket::TokenBucket;
use crate::stats::{BlockStatus, Counters};

/// One block's budgets for its stdout and its stderr.
#[derive(Clone)]
pub struct Paces {
    /// `stdout_bytes_per_sec`.
    pub stdout: Arc<OutputPace>,
    /// `stderr_bytes_per_sec`.
    pub stderr: Arc<OutputPace>,
}

impl Paces {
    /// The budgets `limits` give the block `status`.
    pub fn new(limits: &Limits, status: &Arc<BlockStatus>) -> Self {
        Self {
            stdout: Arc::new(OutputPace::new(limits.stdout_bytes_per_sec, status.clone())),
            stderr: Arc::new(OutputPace::new(limits.stderr_bytes_per_sec, status.clone())),
        }
    }
}

/// One output stream's budget.
pub struct OutputPace {
    per_sec: f64,
    status: Arc<BlockStatus>,
    /// Bytes the block may write now (negative: written ahead of the rate).
    bucket: Mutex<TokenBucket>,
}

impl OutputPace {
    /// A budget of `per_sec` bytes a second for the block `status`.
    pub fn new(per_sec: u64, status: Arc<BlockStatus>) -> Self {
        let per_sec = per_sec.max(1) as f64;
        Self { per_sec, status, bucket: Mutex::new(TokenBucket::full(per_sec)) }
    }

    /// Runs `f` on the bucket, refilled up to now.
    fn with<T>(&self, f: impl FnOnce(&mut TokenBucket) -> T) -> T {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.refill();
        f(&mut bucket)
    }

    /// How many bytes (at most `most`) the block may write now without waiting; 0 when it must
    /// wait.
    pub fn available(&self, most: usize) -> usize {
        self.with(|b| if b.tokens < 1.0 { 0 } else { (b.tokens as usize).min(most) })
    }

    /// Counts `bytes` written. What was written unpaced (a call whose waits ran out) is owed for
    /// at most a second: the next call is paced again, not left unpaced for as long as the debt.
    pub fn spend(&self, bytes: usize) {
        self.with(|b| b.tokens = (b.tokens - bytes as f64).max(-self.per_sec));
    }

    /// How long until a step's worth of bytes may be written (zero: now).
    fn until_step(&self) -> Duration {
        let step = OUTPUT_PACE_STEP.min(self.per_sec);
        self.with(|b| {
            let short = step - b.tokens;
            if short <= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(short / self.per_sec) }
        })
    }

    /// Waits, on the clock of the call in progress, until the block may write again. Returns at
    /// once when the call's waits have run out; when this wait would not fit in what is left of
    /// its wait budget, notes that and returns (the writes that follow are not paced). A wait is
    /// not guest time: it is weighed against the wait budget only.
    pub async fn ready(&self, clock: &CallClock) {
        if clock.waited_in_vain() {
            return;
        }
        let wait = self.until_step();
        if wait.is_zero() {
            return;
        }
        if wait > clock.wait_left() {
            clock.note_wait_in_vain();
            return;
        }
        Counters::bump(&self.status.counters.output_paced);
        clock.waiting(tokio::time::sleep(wait)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_rate_must_wait() {
        let status = Arc::new(BlockStatus::new("b", "b", false));
        let pace = OutputPace::new(10_000, status);
        assert_eq!(pace.available(64 * 1024), 10_000, "a second's worth of burst");
        pace.spend(10_000);
        assert_eq!(pace.available(64 * 1024), 0, "spent");
        assert!(pace.until_step() > Duration::ZERO, "it must wait for a step");
        assert!(pace.until_step() <= Duration::from_secs(1), "a step refills within a second");
        pace.spend(100_000_000);
        assert!(
            pace.until_step() <= Duration::from_millis(2_500),
            "a flood written unpaced is owed for a second, not for hours: {:?}",
            pace.until_step()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_the_call_timeout_still_paces() {
        // A second's debt at 10 KB/s, in a call of 10 ms guest time: the wait is not guest time,
        // so it is weighed against the wait budget and taken.
        let status = Arc::new(BlockStatus::new("b", "b", false));
        let pace = OutputPace::new(10_000, status.clone());
        pace.spend(20_000);
        let clock = CallClock::new(Duration::from_millis(10));
        clock.start();
        pace.ready(&clock).await;
        assert!(!clock.waited_in_vain(), "the wait fitted the wait budget");
        assert_eq!(status.counters.output_paced.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_call_whose_waits_ran_out_is_not_paced() {
        let status = Arc::new(BlockStatus::new("b", "b", false));
        let pace = OutputPace::new(1, status.clone());
        pace.spend(1_000_000);
        let clock = CallClock::new(Duration::from_secs(1));
        clock.start();
        clock.note_wait_in_vain();
        pace.ready(&clock).await;
        assert_eq!(status.counters.output_paced.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
