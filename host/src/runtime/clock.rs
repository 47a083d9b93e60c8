//! The clock of a call into a guest: how much of its computing time and of its host waits is
//! left. Shared between the store's epoch callback, the capabilities that wait on the guest's
//! behalf, and the wall-clock guard of the call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::defaults::CALL_WAIT_BUDGET;

/// The clock of the call in progress, shared between the store (the epoch callback, the
/// controller) and the task's wall-clock guard. Time the host spends waiting on the guest's behalf
/// (an `enqueue` to a full queue, being scheduled after a yield) is not the guest's computing time
/// and does not count against its deadline.
#[derive(Debug)]
pub struct CallClock {
    base: Instant,
    started_ns: AtomicU64,
    host_wait_ns: AtomicU64,
    /// When the host wait in progress began (0: none is).
    waiting_since_ns: AtomicU64,
    /// A wait in this call already ran out (a queue stayed full): later ones do not wait.
    waited_in_vain: AtomicBool,
    /// The guest's computing budget per call.
    pub timeout: Duration,
}

impl CallClock {
    /// A clock for calls of at most `timeout` guest time.
    pub fn new(timeout: Duration) -> Self {
        Self {
            base: Instant::now(),
            started_ns: AtomicU64::new(0),
            host_wait_ns: AtomicU64::new(0),
            waiting_since_ns: AtomicU64::new(0),
            waited_in_vain: AtomicBool::new(false),
            timeout,
        }
    }

    /// Starts timing a call.
    pub fn start(&self) {
        self.start_at(Instant::now());
    }

    /// Starts timing a call at `now` (for a caller that has just read the time anyway).
    pub fn start_at(&self, now: Instant) {
        self.started_ns.store(nanos(now.saturating_duration_since(self.base)), Ordering::Relaxed);
        self.host_wait_ns.store(0, Ordering::Relaxed);
        self.waiting_since_ns.store(0, Ordering::Relaxed);
        self.waited_in_vain.store(false, Ordering::Relaxed);
    }

    /// Whether a wait in this call already ran out: then a guest flooding a full queue (or a
    /// full socket) gets its refusals at once instead of waiting each time.
    pub fn waited_in_vain(&self) -> bool {
        self.waited_in_vain.load(Ordering::Relaxed)
    }

    /// Notes that a wait in this call ran out.
    pub fn note_wait_in_vain(&self) {
        self.waited_in_vain.store(true, Ordering::Relaxed);
    }

    /// Runs `wait` (the host waiting on the guest's behalf: a full queue, the network, being
    /// scheduled) with the clock stopped for the guest, the whole time it is in progress.
    pub async fn waiting<F: std::future::Future>(&self, wait: F) -> F::Output {
        self.waiting_since_ns.store(nanos(self.base.elapsed()).max(1), Ordering::Relaxed);
        let out = wait.await;
        let since = self.waiting_since_ns.swap(0, Ordering::Relaxed);
        let waited = nanos(self.base.elapsed()).saturating_sub(since);
        self.host_wait_ns.fetch_add(waited, Ordering::Relaxed);
        out
    }

    /// Time spent waiting in host calls in this call so far, the wait in progress included.
    pub fn host_wait(&self) -> Duration {
        let since = self.waiting_since_ns.load(Ordering::Relaxed);
        let current = if since == 0 { 0 } else { nanos(self.base.elapsed()).saturating_sub(since) };
        Duration::from_nanos(self.host_wait_ns.load(Ordering::Relaxed).saturating_add(current))
    }

    /// How long the guest has computed in this call.
    pub fn guest_time(&self) -> Duration {
        let now = Duration::from_nanos(nanos(self.base.elapsed()));
        let started = Duration::from_nanos(self.started_ns.load(Ordering::Relaxed));
        now.saturating_sub(started).saturating_sub(self.host_wait())
    }

    /// How much of the call's wait budget is left (waits do not spend its computing time).
    pub fn wait_left(&self) -> Duration {
        CALL_WAIT_BUDGET.saturating_sub(self.host_wait())
    }

    /// How much of the call's budgets is left: its computing time, and the host waits one call
    /// may add up ([`CALL_WAIT_BUDGET`]: a guest cannot hold its task with wait after wait).
    pub fn remaining(&self) -> Duration {
        self.timeout.saturating_sub(self.guest_time()).min(CALL_WAIT_BUDGET.saturating_sub(self.host_wait()))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
