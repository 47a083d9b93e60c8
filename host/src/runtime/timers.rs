//! A block's pending timers (`controller.set-timer`). Owned by the block's store and polled by
//! the block's task between calls, so timers need no task of their own. They run on the
//! runtime's clock, or (for the test kit) on a [`VirtualClock`] a test moves.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::time::DelayQueue;

use super::virtual_time::VirtualClock;
use crate::defaults::{MAX_TIMER_DELAY, MAX_TIMER_TAG_BYTES};
use tokio_util::time::delay_queue::Key;

/// One block's timers.
pub struct Timers {
    clock: Clock,
    next_id: u64,
    max: usize,
}

/// Where the timers wait: each pending timer's id → its key there.
enum Clock {
    Real { queue: DelayQueue<(u64, String)>, keys: HashMap<u64, Key> },
    Virtual { clock: Arc<VirtualClock>, owner: u64, due: HashMap<u64, Duration> },
}

impl Timers {
    /// No timers; at most `max` pending at once; on the runtime's clock, or on `clock`.
    pub fn new(max: usize, clock: Option<&Arc<VirtualClock>>) -> Self {
        let clock = match clock {
            Some(clock) => Clock::Virtual { clock: clock.clone(), owner: clock.owner(), due: HashMap::new() },
            None => Clock::Real { queue: DelayQueue::new(), keys: HashMap::new() },
        };
        Self { clock, next_id: 1, max }
    }

    fn len(&self) -> usize {
        match &self.clock {
            Clock::Real { keys, .. } => keys.len(),
            Clock::Virtual { due, .. } => due.len(),
        }
    }

    /// Sets a timer; returns its id. `Err((over_budget, why))`: refused, and whether because the
    /// block spent its timer budget (too many pending, or a tag too long).
    pub fn set(&mut self, delay: Duration, tag: String) -> Result<u64, (bool, String)> {
        if self.len() >= self.max {
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
        match &mut self.clock {
            Clock::Real { queue, keys } => {
                keys.insert(id, queue.insert((id, tag), delay));
            }
            Clock::Virtual { clock, owner, due } => {
                due.insert(id, clock.set(*owner, id, delay, tag));
            }
        }
        Ok(id)
    }

    /// Cancels timer `id`; returns whether it was pending.
    pub fn cancel(&mut self, id: u64) -> bool {
        match &mut self.clock {
            Clock::Real { queue, keys } => keys.remove(&id).is_some_and(|key| queue.try_remove(&key).is_some()),
            Clock::Virtual { clock, owner, due } => due.remove(&id).is_some_and(|at| clock.remove(*owner, id, at)),
        }
    }

    /// The next due timer's tag; `Ready(None)` when none is pending.
    pub fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        match &mut self.clock {
            Clock::Real { queue, keys } => queue.poll_expired(cx).map(|expired| {
                expired.map(|e| {
                    let (id, tag) = e.into_inner();
                    keys.remove(&id);
                    tag
                })
            }),
            Clock::Virtual { clock, owner, due } => clock.poll_due(*owner, cx).map(|fired| {
                fired.map(|(id, tag)| {
                    due.remove(&id);
                    tag
                })
            }),
        }
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every pending timer.
    pub fn clear(&mut self) {
        match &mut self.clock {
            Clock::Real { queue, keys } => {
                queue.clear();
                keys.clear();
            }
            Clock::Virtual { clock, owner, due } => {
                for (id, at) in due.drain() {
                    clock.remove(*owner, id, at);
                }
            }
        }
    }
}

impl Drop for Timers {
    /// A virtual clock forgets the timers of an instance that is gone.
    fn drop(&mut self) {
        if matches!(self.clock, Clock::Virtual { .. }) {
            self.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn fire_in_order_and_cancel() {
        let mut t = Timers::new(3, None);
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

    #[test]
    fn virtual_timers_fire_only_when_the_clock_passes_them() {
        let clock = Arc::new(VirtualClock::new());
        let mut t = Timers::new(4, Some(&clock));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        t.set(Duration::from_secs(5), "five".into()).unwrap();
        let one = t.set(Duration::from_secs(1), "one".into()).unwrap();
        t.set(Duration::from_secs(2), "two".into()).unwrap();
        assert!(t.poll_due(&mut cx).is_pending(), "nothing is due before the clock moves");
        assert!(t.cancel(one));
        clock.advance_to(Duration::from_secs(2));
        assert_eq!(t.poll_due(&mut cx), Poll::Ready(Some("two".to_owned())));
        assert!(t.poll_due(&mut cx).is_pending());
        assert_eq!(
            clock.pending(),
            vec![super::super::virtual_time::PendingTimer { due: Duration::from_secs(5), tag: "five".into() }]
        );
        drop(t);
        assert!(clock.pending().is_empty(), "dropped with their instance");
        let mut t = Timers::new(4, Some(&clock));
        assert_eq!(t.poll_due(&mut cx), Poll::Ready(None), "none pending");
    }
}
