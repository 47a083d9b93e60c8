//! `listen` and `connect` grants changed by a manifest edit while the block runs.
//!
//! The supervisor widens first and narrows once it knows whether the block took the change:
//! [`NetHub::prepare`] binds the listeners that are new (and fails when one cannot be bound,
//! before anything changed); [`NetHub::widen`] serves them and adds the new `connect` grants to
//! the old ones, so a new instance finds its grants in force from `init` on; [`NetHub::restrict`]
//! then keeps exactly the grants that stay (the new ones, or the old ones when the block refused
//! the change). Connections already accepted or opened stay open throughout: a grant decides what
//! the block may start, not what it already holds.

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

    /// Serves the listeners of `regrant` and grants `connect` on top of what is granted.
    pub fn widen(self: &Arc<Self>, regrant: Regrant, connect: &[String]) {
        self.serve(regrant.opened);
        let mut grants = lock(&self.connect_grants);
        for address in connect {
            if !grants.contains(address) {
                grants.push(address.clone());
            }
        }
    }

    /// Keeps exactly `listen` and `connect`: listeners for other grants stop, and are closed
    /// when this returns.
    pub async fn restrict(&self, listen: &[Listen], connect: &[String]) {
        *lock(&self.connect_grants) = connect.to_vec();
        let stopped: Vec<Bound> = {
            let mut bound = lock(&self.bound);
            let (kept, stopped) = std::mem::take(&mut *bound).into_iter().partition(|b| listen.contains(&b.grant));
            *bound = kept;
            stopped
        };
        for Bound { url, udp, cancel, task, .. } in stopped {
            cancel.cancel();
            drop(udp);
            let _ = task.await;
            tracing::info!(block = %self.responsibility, "no longer granted: stopped listening on {url}");
        }
    }
}
