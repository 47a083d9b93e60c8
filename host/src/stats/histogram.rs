//! A lock-free latency histogram for per-block processing times: log-linear buckets (8 per power
//! of two, so a percentile is within 12.5% of the truth), recorded by the block's task and read by
//! anyone without waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB: usize = 8;
const POWERS: usize = 40;

/// Durations in nanoseconds, bucketed.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram(p50={:?}, p99={:?})", self.percentile(50.0), self.percentile(99.0))
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self { buckets: (0..SUB * POWERS).map(|_| AtomicU64::new(0)).collect() }
    }
}

fn bucket(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let power = 63 - ns.leading_zeros() as usize; // >= 3
    let sub = ((ns >> (power - 3)) & (SUB as u64 - 1)) as usize;
    ((power - 2) * SUB + sub).min(SUB * POWERS - 1)
}

/// The smallest value in bucket `i`.
fn lower(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let power = i / SUB + 2;
    let sub = (i % SUB) as u64;
    (SUB as u64 + sub) << (power - 3)
}

impl Histogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `p`-th percentile (0..=100) as the lower bound of its bucket; `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(lower(i)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [0u64, 1, 7, 8, 9, 15, 16, 100, 1_000, 123_456, 10_000_000_000] {
            let b = bucket(ns);
            assert!(b >= last, "bucket order at {ns}");
            last = b;
            assert!(lower(b) <= ns, "{ns} below its bucket");
            assert!(ns - lower(b) <= ns / 8, "{ns} within 12.5% of its bucket ({})", lower(b));
        }
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 100);
        let p50 = h.percentile(50.0).unwrap().as_micros();
        let p99 = h.percentile(99.0).unwrap().as_micros();
        assert!((44..=50).contains(&p50), "p50 {p50}");
        assert!((87..=99).contains(&p99), "p99 {p99}");
    }
}
