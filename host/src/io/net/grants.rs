//! `listen` and `connect` grants changed by a manifest edit while the block runs.
//!
//! In steps, so that a block refusing the change keeps what it had: [`NetHub::prepare`] binds the
//! listeners that are new (and fails when one cannot be bound, before anything changed);
//! [`NetHub::open`] serves them; [`NetHub::grant`] makes a set of grants the one in force (the
//! new one before the swap, so the new instance's `init` sees exactly it; the old one again if
//! the block refused); [`NetHub::close_ungranted`] then closes the listeners outside it. Until
//! then a listener on its way out still accepts, and what it accepted goes to the block.
//! Connections already accepted or opened stay open throughout: a grant decides what the block
//! may start, not what it already holds.

use std::sync::Arc;

use super::{Bound, NetHub, Opened, lock, open};
use crate::manifest::Listen;

/// Listeners bound for new `listen` grants, not served yet (closed when dropped).
pub struct Regrant {
    opened: Vec<Opened>,
}

impl NetHub {
    /// Binds the grants of `listen` that the hub does not serve yet.
    pub async fn prepare(&self, listen: &[Listen]) -> anyhow::Result<Regrant> {
        let new: Vec<Listen> = {
            let bound = lock(&self.bound);
            listen.iter().filter(|g| !bound.iter().any(|b| &b.grant == *g)).cloned().collect()
        };
        Ok(Regrant { opened: open(&new).await? })
    }

    /// Serves the listeners of `regrant`.
    pub fn open(self: &Arc<Self>, regrant: Regrant) {
        self.serve(regrant.opened);
    }

    /// Makes `listen` and `connect` the grants in force: `listeners` and `send-datagram` see
    /// only the listeners of `listen`, `connect` reaches only `connect`.
    pub fn grant(&self, listen: &[Listen], connect: &[String]) {
        *lock(&self.connect_grants) = connect.to_vec();
        for b in lock(&self.bound).iter_mut() {
            b.granted = listen.contains(&b.grant);
        }
    }

    /// Closes the listeners outside the grants in force; they are closed when this returns.
    pub async fn close_ungranted(&self) {
        let stopped: Vec<Bound> = {
            let mut bound = lock(&self.bound);
            let (kept, stopped) = std::mem::take(&mut *bound).into_iter().partition(|b| b.granted);
            *bound = kept;
            stopped
        };
        for Bound { url, udp, cancel, task, .. } in stopped {
            cancel.cancel();
            drop(udp);
            let _ = task.await;
            tracing::info!(event = "stopped_listening", block = %self.responsibility, url = %url, "no longer granted: stopped listening on {url}");
        }
    }
}
