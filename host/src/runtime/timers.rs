//! A block's pending timers (`controller.set-timer`). Owned by the block's store and polled by
//! the block's task between calls, so timers need no task of their own.

use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::time::DelayQueue;

use crate::defaults::{MAX_TIMER_DELAY, MAX_TIMER_TAG_BYTES};
use tokio_util::time::delay_queue::Key;

/// One block's timers.
pub struct Timers {
    queue: DelayQueue<(u64, String)>,
    keys: HashMap<u64, Key>,
    next_id: u64,
    max: usize,
}

impl Timers {
    /// No timers; at most `max` pending at once.
    pub fn new(max: usize) -> Self {
        Self { queue: DelayQueue::new(), keys: HashMap::new(), next_id: 1, max }
    }

    /// Sets a timer; returns its id. `Err((over_budget, why))`: refused, and whether because the
    /// block spent its timer budget (too many pending, or a tag too long).
    pub fn set(&mut self, delay: Duration, tag: String) -> Result<u64, (bool, String)> {
        if self.keys.len() >= self.max {
            return Err((true, format!("too many pending timers (limit {})", self.max)));
        }
        if tag.len() > MAX_TIMER_TAG_BYTES {
            let why = format!("a timer tag of {} bytes is longer than the limit of {MAX_TIMER_TAG_BYTES}", tag.len());
            return Err((true, why));
        }
        if delay > MAX_TIMER_DELAY {
            return Err((false, format!("delay {delay:?} is longer than the limit of {MAX_TIMER_DELAY:?}")));
        }
        let id = self.next_id;
        self.next_id += 1;
        let key = self.queue.insert((id, tag), delay);
        self.keys.insert(id, key);
        Ok(id)
    }

    /// Cancels timer `id`; returns whether it was pending.
    pub fn cancel(&mut self, id: u64) -> bool {
        match self.keys.remove(&id) {
            Some(key) => self.queue.try_remove(&key).is_some(),
            None => false,
        }
    }

    /// The next due timer's tag; `Ready(None)` when none is pending.
    pub fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.queue.poll_expired(cx).map(|expired| {
            expired.map(|e| {
                let (id, tag) = e.into_inner();
                self.keys.remove(&id);
                tag
            })
        })
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Drops every pending timer.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn fire_in_order_and_cancel() {
        let mut t = Timers::new(3);
        t.set(Duration::from_millis(30), "late".into()).unwrap();
        let early = t.set(Duration::from_millis(10), "early".into()).unwrap();
        t.set(Duration::from_millis(20), "middle".into()).unwrap();
        assert!(t.set(Duration::from_millis(1), "one too many".into()).is_err());
        assert!(t.cancel(early));
        assert!(!t.cancel(early));
        assert_eq!(poll_fn(|cx| t.poll_due(cx)).await.as_deref(), Some("middle"));
        assert_eq!(poll_fn(|cx| t.poll_due(cx)).await.as_deref(), Some("late"));
        assert!(t.is_empty());
        assert_eq!(poll_fn(|cx| t.poll_due(cx)).await, None);
        assert!(t.set(MAX_TIMER_DELAY + Duration::from_secs(1), "never".into()).is_err());
        assert!(t.set(Duration::from_secs(1), "t".repeat(MAX_TIMER_TAG_BYTES + 1)).is_err());
    }
}
