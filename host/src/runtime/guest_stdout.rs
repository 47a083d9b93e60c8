//! Blocks' stdout: what guests print goes to the host's stdout through one bounded channel and
//! one writer thread, so a guest never waits on the pipe. When the channel is full (nobody reads
//! the host's stdout), what a guest prints is dropped and counted (`stdout_dropped`), never
//! blocking the guest call or a runtime thread.
//!
//! Invariant: the writer thread belongs to the [`StdoutWriter`], which ends it when dropped
//! (after the blocks' streams are gone), waiting at most [`STDOUT_DRAIN`] for it to write what is
//! queued.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};

use crate::defaults::{STDOUT_CHUNKS, STDOUT_DRAIN};
use crate::runtime::output::Put;
use crate::stats::{BlockStatus, Counters};

/// The host's stdout for its blocks: a bounded channel and the thread that writes it out.
pub struct StdoutWriter {
    tx: Option<SyncSender<Vec<u8>>>,
    /// Closed when the thread has written everything and ended.
    done: Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StdoutWriter {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<u8>>(STDOUT_CHUNKS);
        let (done_tx, done) = sync_channel::<()>(0);
        let thread = std::thread::Builder::new().name("bagpipe-stdout".into()).spawn(move || {
            let stdout = std::io::stdout();
            for chunk in rx {
                let mut out = stdout.lock();
                if out.write_all(&chunk).and_then(|()| out.flush()).is_err() {
                    // Stdout is gone (closed pipe): what blocks print has nowhere to go.
                    break;
                }
            }
            drop(done_tx);
        })?;
        Ok(Self { tx: Some(tx), done, thread: Some(thread) })
    }

    /// A stream for blocks, not yet tied to one (see [`GuestStdout::for_block`]).
    pub fn streams(&self) -> GuestStdout {
        GuestStdout { tx: self.tx.clone(), status: None }
    }
}

impl Drop for StdoutWriter {
    fn drop(&mut self) {
        self.tx = None;
        // Every stream is gone once the blocks are: the thread then writes what is queued and
        // ends. If some are still alive (a forced stop), it is left to the process's exit.
        if let Err(RecvTimeoutError::Disconnected) = self.done.recv_timeout(STDOUT_DRAIN)
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

/// One block's stdout (or, without a block, the prototype that [`GuestStdout::for_block`] ties).
#[derive(Clone)]
pub struct GuestStdout {
    tx: Option<SyncSender<Vec<u8>>>,
    status: Option<Arc<BlockStatus>>,
}

impl GuestStdout {
    /// Prints nothing: for components being checked.
    pub fn discard() -> Self {
        Self { tx: None, status: None }
    }

    /// Prints into `tx` (the test kit reads it): what it does not take at once is dropped.
    pub fn into_channel(tx: SyncSender<Vec<u8>>) -> Self {
        Self { tx: Some(tx), status: None }
    }

    /// The same stdout, counting what is dropped for the block `status`.
    pub fn for_block(&self, status: Arc<BlockStatus>) -> Self {
        Self { tx: self.tx.clone(), status: Some(status) }
    }

    fn send(&self, bytes: &[u8]) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_)) = tx.try_send(bytes.to_vec())
            && let Some(status) = &self.status
        {
            Counters::bump(&status.counters.stdout_dropped);
        }
    }
}

impl Put for GuestStdout {
    fn put(&self, bytes: &[u8]) {
        self.send(bytes);
    }
}
