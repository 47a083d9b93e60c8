//! Virtual time for blocks' timers, as the test kit runs them: a timer is due when the test has
//! moved the clock past it, never by itself, so a test of a timer never sleeps.
//!
//! Invariant: the clock only moves forward, and only when told to ([`VirtualClock::advance_to`]);
//! a timer in it belongs to one block's [`Timers`](super::timers::Timers) and leaves it when
//! fired, cancelled or dropped with them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A clock that moves when told to, and the timers set on it.
#[derive(Debug, Default)]
pub struct VirtualClock {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    now: Duration,
    /// (due at, owner, id) → tag.
    pending: BTreeMap<(Duration, u64, u64), String>,
    next_owner: u64,
    /// Who waits for the clock to move: one waker per owner.
    wakers: std::collections::HashMap<u64, Waker>,
}

/// A timer set on the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTimer {
    /// When it is due, from the clock's start.
    pub due: Duration,
    /// Its tag.
    pub tag: String,
}

impl VirtualClock {
    /// A clock at zero with no timers.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How far the clock has moved since its start.
    pub fn now(&self) -> Duration {
        self.lock().now
    }

    /// When the first timer set is due, if any is set.
    pub fn next_due(&self) -> Option<Duration> {
        self.lock().pending.keys().next().map(|(due, ..)| *due)
    }

    /// Moves the clock to `to` (never back): the timers it passes become due.
    pub fn advance_to(&self, to: Duration) {
        let wakers = {
            let mut inner = self.lock();
            inner.now = inner.now.max(to);
            std::mem::take(&mut inner.wakers)
        };
        wakers.into_values().for_each(Waker::wake);
    }

    /// The timers set and not fired yet, soonest first.
    pub fn pending(&self) -> Vec<PendingTimer> {
        self.lock().pending.iter().map(|((due, ..), tag)| PendingTimer { due: *due, tag: tag.clone() }).collect()
    }

    /// A new owner of timers (one block's `Timers`).
    pub(super) fn owner(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_owner += 1;
        inner.next_owner
    }

    /// Sets timer `id` of `owner`, `delay` from now; returns when it is due.
    pub(super) fn set(&self, owner: u64, id: u64, delay: Duration, tag: String) -> Duration {
        let mut inner = self.lock();
        let due = inner.now.saturating_add(delay);
        inner.pending.insert((due, owner, id), tag);
        due
    }

    /// Removes timer `id` of `owner`, due at `due`; whether it was there.
    pub(super) fn remove(&self, owner: u64, id: u64, due: Duration) -> bool {
        self.lock().pending.remove(&(due, owner, id)).is_some()
    }

    /// The first due timer of `owner` (its id and tag), taken out; `Ready(None)` when it has none
    /// pending, `Pending` (woken when the clock moves) when none is due yet.
    pub(super) fn poll_due(&self, owner: u64, cx: &mut Context<'_>) -> Poll<Option<(u64, String)>> {
        let mut inner = self.lock();
        let now = inner.now;
        let mut any = false;
        let mut due = None;
        for &(at, o, id) in inner.pending.keys() {
            if o != owner {
                continue;
            }
            any = true;
            if at <= now {
                due = Some((at, o, id));
            }
            break;
        }
        match due {
            Some(key) => Poll::Ready(inner.pending.remove(&key).map(|tag| (key.2, tag))),
            None if !any => Poll::Ready(None),
            None => {
                match inner.wakers.get_mut(&owner) {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => {
                        inner.wakers.insert(owner, cx.waker().clone());
                    }
                }
                Poll::Pending
            }
        }
    }
}
