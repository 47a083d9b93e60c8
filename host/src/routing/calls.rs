//! Calls between blocks (`controller.call` and `reply`): the table of calls waiting for their
//! outcome, and the [`CallToken`] a request carries through the target's queue.
//!
//! A call is made in one step: the caller reserves a place in its own queue for the outcome
//! ([`ReplySlot`]), the table opens the call with that place, the request goes into the target's
//! queue carrying a token, and only then is the deadline armed (so a `call` that errs is never
//! followed by an outcome). From then on exactly one of these ends the call: the target's answer
//! (`reply`, by the target only), the target being done with the request without answering it
//! (no reply, refused, faulted: the token says so), the token being dropped unused (the target
//! stopped first), the deadline ([`Calls::expire`]), or the caller's task ending
//! ([`Calls::end_caller`]). A place taken to be filled and dropped unfilled still tells the
//! caller (`unavailable`).
//!
//! Invariants: every call the table opened ends exactly once, and its outcome goes into the
//! caller's queue through the place reserved for it, so an outcome is never refused for room
//! (only an answer's bytes may have to wait for room: then the caller is told `unavailable`).
//! Whoever removes a call from the table delivers its outcome; nothing else can. The table's
//! lock is never held across a wait. A call's handle names the host that made it (the
//! `prefix`), so a handle from another run or host is never taken for one of this host's calls.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::bindings::CallFailure;
use crate::routing::queue::{BlockQueue, Envelope, ReplySlot};

/// Where a handle says which call it is: `_CALL.<host>.<id>` (a valid NATS subject, so a call
/// across hosts can be answered through the server).
pub const HANDLE_PREFIX: &str = "_CALL.";

/// The outcome of a call another host made, to send to its handle (a server subject): the
/// answer (a stamped bag) or why there is none.
pub type RemoteOutcome = (String, Result<String, CallFailure>);

/// The calls of this host that wait for their outcome, and the requests of other hosts' calls
/// this host's blocks hold.
pub struct Calls {
    /// This host's name for this run.
    host: String,
    /// `_CALL.<this host>.`
    prefix: String,
    next: AtomicU64,
    table: Mutex<Table>,
    /// Woken when a call with an earlier deadline than any before is opened.
    wake: Notify,
    /// Where the outcomes of other hosts' calls go (to the server link, which publishes them);
    /// `None` on a host without a cluster.
    remote: Mutex<Option<mpsc::UnboundedSender<RemoteOutcome>>>,
}

#[derive(Default)]
struct Table {
    pending: HashMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// The handles of other hosts' calls whose requests this host took and that have not ended
    /// here yet, with the block that may answer each: each sends exactly one outcome back.
    serving: HashMap<String, String>,
    /// Once closed (the host is done), no call is opened any more.
    closed: bool,
}

struct Pending {
    slot: ReplySlot,
    /// `None` until the request was taken by its target ([`Calls::arm`]).
    deadline: Option<Instant>,
    /// Who made the call, and who may answer it.
    caller: String,
    target: String,
}

impl Calls {
    /// An empty table whose handles name this host by `host` (letters, digits, `-`).
    pub fn new(host: &str) -> Arc<Self> {
        Arc::new(Self {
            host: host.to_owned(),
            prefix: format!("{HANDLE_PREFIX}{host}."),
            next: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
            wake: Notify::new(),
            remote: Mutex::new(None),
        })
    }

    /// This host's name for this run (letters, digits, `-`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where the outcomes of this host's calls come back from other hosts: `prefix` + `>`.
    pub fn subject(&self) -> String {
        format!("{}>", self.prefix)
    }

    /// Starts sending the outcomes of other hosts' calls: what the server link publishes.
    /// Called once, by the link.
    pub fn connect_remote(&self) -> mpsc::UnboundedReceiver<RemoteOutcome> {
        // Unbounded, yet bounded by the requests this host's queues hold: each sends one.
        let (tx, rx) = mpsc::unbounded_channel();
        *self.remote.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// The token of a request from another host's call, whose handle is `handle`, for the block
    /// `target`: exactly one outcome goes back for it (the answer through
    /// [`Calls::answer_remote`], or what the token says) once it is armed, i.e. once the request
    /// was queued ([`CallToken::arm`]); a token dropped before that sends nothing (the other
    /// host was told the request was not taken).
    pub fn serve_remote(self: &Arc<Self>, handle: String, target: &str) -> CallToken {
        self.lock().serving.insert(handle.clone(), target.to_owned());
        CallToken(Arc::new(Token { calls: self.clone(), key: Key::Remote(handle), armed: AtomicBool::new(false) }))
    }

    /// Sends `outcome` to the call of another host `handle` names, if this host holds its
    /// request, it has not ended and (when `by` names a block) `by` is its target; returns
    /// whether it did.
    pub fn answer_remote(&self, handle: &str, by: Option<&str>, outcome: Result<String, CallFailure>) -> bool {
        {
            let mut table = self.lock();
            match table.serving.get(handle) {
                Some(target) if by.is_none_or(|b| b == target) => {
                    table.serving.remove(handle);
                }
                _ => return false,
            }
        }
        match &*self.remote.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send((handle.to_owned(), outcome.map_err(cut))).is_ok(),
            None => false,
        }
    }

    /// Forgets the request of another host's call without an outcome (it was never queued).
    fn forget_remote(&self, handle: &str) {
        self.lock().serving.remove(handle);
    }

    /// An outcome another host sent for call `id` of this host: delivered if the call still
    /// waits. An answer is checked against what the caller takes, and must find room for its
    /// bytes at once (this never waits: it serves every call's answers); otherwise the caller
    /// is told `unavailable`.
    pub async fn settle_from_remote(&self, id: u64, outcome: Result<String, CallFailure>) {
        let answer = match outcome {
            Err(failure) => {
                self.fail(id, failure);
                return;
            }
            Ok(answer) => answer,
        };
        // The far host checked that its target answered.
        let Some(caller) = self.lock().pending.get(&id).map(|p| p.slot.queue().clone()) else { return };
        if let Err(r) = caller.check(&answer) {
            self.fail(id, CallFailure::Unavailable(format!("the caller does not take the answer: {r}")));
            return;
        }
        let Some(slot) = self.take(id) else { return };
        if let Err((r, slot)) =
            slot.fill_within(Envelope::Reply { call: id, outcome: Ok(answer) }, Duration::ZERO).await
        {
            let why = format!("the answer found no room in the caller's queue: {r}");
            slot.fill(Envelope::Reply { call: id, outcome: Err(CallFailure::Unavailable(why)) });
        }
    }

    /// A table whose handles name this process and the time it was made: unique per run.
    pub fn for_this_run() -> Arc<Self> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self::new(&format!("{:x}-{:x}", std::process::id(), nanos))
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a call of `caller` to `target` whose outcome goes into `slot`; it has no deadline
    /// until [`Calls::arm`]. Returns its id; `None` once the table is closed.
    pub fn open(&self, slot: ReplySlot, caller: &str, target: &str) -> Option<u64> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Should whoever fills it be stopped halfway, the caller is still told.
        let lost = CallFailure::Unavailable("the call's outcome was lost on its way".to_owned());
        let slot = slot.leaving(Envelope::Reply { call: id, outcome: Err(lost) });
        let mut table = self.lock();
        if table.closed {
            drop(table);
            slot.free();
            return None;
        }
        table
            .pending
            .insert(id, Pending { slot, deadline: None, caller: caller.to_owned(), target: target.to_owned() });
        Some(id)
    }

    /// Starts the deadline of call `id`, once its request was taken: `timeout` from now. Before,
    /// a call that may still be refused cannot time out (a `call` that errs is never followed by
    /// an outcome).
    pub fn arm(&self, id: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout.min(crate::defaults::CALL_TIMEOUT_MAX);
        let mut table = self.lock();
        let earliest = table.deadlines.first().is_none_or(|(first, _)| deadline < *first);
        let Some(pending) = table.pending.get_mut(&id) else { return };
        pending.deadline = Some(deadline);
        table.deadlines.insert((deadline, id));
        drop(table);
        if earliest {
            self.wake.notify_one();
        }
    }

    /// The handle of call `id`: what the request carries as `__reply`.
    pub fn handle(&self, id: u64) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The call a handle names, when it is one of this host's.
    pub fn id_of(&self, handle: &str) -> Option<u64> {
        handle.strip_prefix(&self.prefix)?.parse().ok()
    }

    /// Forgets call `id` without an outcome: its request was never sent (the caller was told
    /// why by `call` itself).
    pub fn cancel(&self, id: u64) {
        if let Some(slot) = self.remove(id) {
            slot.free();
        }
    }

    /// Ends call `id` with `failure`, if it is still waiting; returns whether it was.
    pub fn fail(&self, id: u64, failure: CallFailure) -> bool {
        match self.remove(id) {
            Some(slot) => {
                slot.fill(Envelope::Reply { call: id, outcome: Err(cut(failure)) });
                true
            }
            None => false,
        }
    }

    /// Ends every call `caller` made with `unavailable`: the caller's task is ending, and its
    /// queue must not wait for their outcomes.
    pub fn end_caller(&self, caller: &str, why: &str) {
        let ids: Vec<u64> = self.lock().pending.iter().filter(|(_, p)| p.caller == caller).map(|(id, _)| *id).collect();
        for id in ids {
            self.fail(id, CallFailure::Unavailable(why.to_owned()));
        }
    }

    /// The queue of the caller of `id`, while the call waits and if `answerer` is its target
    /// (to check an answer against).
    pub fn caller_queue(&self, id: u64, answerer: &str) -> Option<BlockQueue> {
        self.lock().pending.get(&id).filter(|p| p.target == answerer).map(|p| p.slot.queue().clone())
    }

    /// Takes call `id` out of the table to answer it: the one who takes it delivers its outcome.
    pub fn take(&self, id: u64) -> Option<ReplySlot> {
        self.remove(id)
    }

    fn remove(&self, id: u64) -> Option<ReplySlot> {
        let mut table = self.lock();
        let pending = table.pending.remove(&id)?;
        if let Some(deadline) = pending.deadline {
            table.deadlines.remove(&(deadline, id));
        }
        Some(pending.slot)
    }

    /// How many calls wait for their outcome.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().pending.len()
    }

    /// Ends every call whose deadline passed with `timeout`, as deadlines come; never returns
    /// (it runs beside the blocks and is dropped with them).
    pub async fn expire(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (due, next) = {
                let mut table = self.lock();
                let mut due = Vec::new();
                while let Some(&(at, id)) = table.deadlines.first()
                    && at <= now
                {
                    table.deadlines.pop_first();
                    if let Some(p) = table.pending.remove(&id) {
                        due.push((id, p.slot));
                    }
                }
                (due, table.deadlines.first().map(|(at, _)| *at))
            };
            for (id, slot) in due {
                slot.fill(Envelope::Reply { call: id, outcome: Err(CallFailure::Timeout) });
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Ends every waiting call with `unavailable` and opens no more: the host is done. (The
    /// requests of other hosts' calls it still holds end as their tokens go.)
    pub fn close(&self, why: &str) {
        let drained: Vec<(u64, Pending)> = {
            let mut table = self.lock();
            table.closed = true;
            table.deadlines.clear();
            table.pending.drain().collect()
        };
        for (id, p) in drained {
            p.slot.fill(Envelope::Reply { call: id, outcome: Err(cut(CallFailure::Unavailable(why.to_owned()))) });
        }
    }
}

/// What a request carries through its target's queue: which call it is. Clones share one
/// token; the call ends with `unavailable` when the last clone is dropped while it still waits
/// (the target never handled the request).
#[derive(Clone)]
pub struct CallToken(Arc<Token>);

struct Token {
    calls: Arc<Calls>,
    key: Key,
    /// Whether its request was queued: only then does it end its call.
    armed: AtomicBool,
}

/// Whose call a request is.
enum Key {
    /// This host's call `id`.
    Local(u64),
    /// Another host's call, by its handle.
    Remote(String),
}

impl CallToken {
    /// The token of call `id` of `calls`.
    pub fn new(calls: Arc<Calls>, id: u64) -> Self {
        Self(Arc::new(Token { calls, key: Key::Local(id), armed: AtomicBool::new(true) }))
    }

    /// The request was queued: from now on the token ends its call.
    pub fn arm(&self) {
        self.0.armed.store(true, Ordering::Relaxed);
    }

    /// Ends the call with `failure`, if it still waits (an answer may have ended it already).
    pub fn end(&self, failure: CallFailure) {
        self.0.end(failure);
    }
}

impl Token {
    fn end(&self, failure: CallFailure) {
        let armed = self.armed.load(Ordering::Relaxed);
        match &self.key {
            Key::Local(id) if armed => {
                self.calls.fail(*id, failure);
            }
            Key::Remote(handle) if armed => {
                self.calls.answer_remote(handle, None, Err(failure));
            }
            Key::Remote(handle) => self.calls.forget_remote(handle),
            Key::Local(_) => {}
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.end(CallFailure::Unavailable("the target stopped before it handled the request".to_owned()));
    }
}

impl std::fmt::Debug for CallToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.key {
            Key::Local(id) => write!(f, "CallToken({id})"),
            Key::Remote(handle) => write!(f, "CallToken({handle})"),
        }
    }
}

impl PartialEq for CallToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CallToken {}

/// A failure with its detail cut to what an outcome may carry.
fn cut(failure: CallFailure) -> CallFailure {
    use crate::defaults::detail;
    match failure {
        CallFailure::Faulted(d) => CallFailure::Faulted(detail(&d)),
        CallFailure::Refused(d) => CallFailure::Refused(detail(&d)),
        CallFailure::Unavailable(d) => CallFailure::Unavailable(detail(&d)),
        other => other,
    }
}

#[cfg(test)]
#[path = "calls_tests.rs"]
mod tests;
