//! How many log lines a block may write: a token bucket of `log_lines_per_sec` lines a second (a
//! second's worth of burst), shared by the `log` import and the guest's stderr, and kept across
//! the block's instances. Lines past it are not written; they are counted (`logs_dropped`) and
//! summarised in one line when the block may write again (or when it ends), never dropped from
//! the count.

use std::sync::{Arc, Mutex};

use crate::runtime::token_bucket::TokenBucket;
use crate::stats::{BlockStatus, Counters};

/// One block's log budget.
pub struct LogRate {
    per_sec: f64,
    status: Arc<BlockStatus>,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    lines: TokenBucket,
    /// Lines dropped since the last summary.
    dropped: u64,
}

impl LogRate {
    /// A budget of `per_sec` lines a second for the block `status`.
    pub fn new(per_sec: u32, status: Arc<BlockStatus>) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        Self { per_sec, status, bucket: Mutex::new(Bucket { lines: TokenBucket::full(per_sec), dropped: 0 }) }
    }

    /// Whether the block may write a line now. When it may and lines were dropped before it, they
    /// are summarised first; when it may not, the line is counted as dropped.
    pub fn admit(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.lines.refill();
        if bucket.lines.tokens < 1.0 {
            bucket.dropped += 1;
            Counters::bump(&self.status.counters.logs_dropped);
            return false;
        }
        bucket.lines.tokens -= 1.0;
        let dropped = std::mem::take(&mut bucket.dropped);
        drop(bucket);
        self.summarise(dropped);
        true
    }

    /// Summarises the lines dropped since the last summary, if any (when the block ends).
    pub fn flush(&self) {
        let dropped = std::mem::take(&mut self.bucket.lock().unwrap_or_else(|p| p.into_inner()).dropped);
        self.summarise(dropped);
    }

    fn summarise(&self, dropped: u64) {
        if dropped > 0 {
            tracing::warn!(
                event = "logs_dropped",
                lines = dropped,
                "{dropped} log lines of this block were over its rate ({} a second, log_lines_per_sec) and were not written",
                self.per_sec
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_rate_is_counted_not_written() {
        let status = Arc::new(BlockStatus::new("b", "b", false));
        let rate = LogRate::new(10, status.clone());
        let written = (0..25).filter(|_| rate.admit()).count();
        assert!((10..=11).contains(&written), "a second's worth of burst: {written}");
        let dropped = status.counters.logs_dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(dropped as usize + written, 25, "every line is written or counted");
        rate.flush();
        assert_eq!(rate.bucket.lock().unwrap().dropped, 0, "summarised once");
    }
}
