//! Blocks' stdout: what guests print goes to the host's stdout through one bounded channel and
//! one writer thread, so a guest never waits on the pipe. When the channel is full (nobody reads
//! the host's stdout), what a guest prints is dropped and counted (`stdout_dropped`), never
//! blocking the guest call or a runtime thread.
//!
//! Invariant: the writer thread belongs to the [`StdoutWriter`], which ends it when dropped
//! (after the blocks' streams are gone), waiting at most [`STDOUT_DRAIN`] for it to write what is
//! queued.

use std::io::Write as _;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use crate::defaults::{STDOUT_CHUNKS, STDOUT_DRAIN, STDOUT_LINE_BYTES};
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
        GuestStdout { tx: self.tx.clone(), status: None, line: None }
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
/// A block's stdout hands the writer whole lines only (a line that grows past
/// `STDOUT_LINE_BYTES` goes out as it comes), so lines of blocks printing at once never mix.
#[derive(Clone)]
pub struct GuestStdout {
    tx: Option<SyncSender<Vec<u8>>>,
    status: Option<Arc<BlockStatus>>,
    /// The line being printed, for a block's stdout.
    line: Option<Arc<Line>>,
}

/// What a block printed since its last line break: sent once the line is whole, or when the
/// block's instance goes (its last stdout is dropped).
struct Line {
    tx: SyncSender<Vec<u8>>,
    status: Arc<BlockStatus>,
    pending: Mutex<Vec<u8>>,
}

impl Line {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `bytes`; sends every whole line they end (and a line that grew past the bound).
    fn put(&self, bytes: &[u8]) {
        let ready = {
            let mut pending = self.lock();
            pending.extend_from_slice(bytes);
            let whole = match pending.iter().rposition(|b| *b == b'\n') {
                Some(at) => at + 1,
                None if pending.len() >= STDOUT_LINE_BYTES => pending.len(),
                None => return,
            };
            let rest = pending.split_off(whole);
            std::mem::replace(&mut *pending, rest)
        };
        send(&self.tx, ready, Some(&self.status));
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut *self.lock());
        if !rest.is_empty() {
            send(&self.tx, rest, Some(&self.status));
        }
    }
}

/// Hands `bytes` to the writer, or drops and counts them when it is behind.
fn send(tx: &SyncSender<Vec<u8>>, bytes: Vec<u8>, status: Option<&Arc<BlockStatus>>) {
    if let Err(TrySendError::Full(_)) = tx.try_send(bytes)
        && let Some(status) = status
    {
        Counters::bump(&status.counters.stdout_dropped);
    }
}

impl GuestStdout {
    /// Prints nothing: for components being checked.
    pub fn discard() -> Self {
        Self { tx: None, status: None, line: None }
    }

    /// Prints into `tx` (the test kit reads it): what it does not take at once is dropped.
    pub fn into_channel(tx: SyncSender<Vec<u8>>) -> Self {
        Self { tx: Some(tx), status: None, line: None }
    }

    /// The same stdout, for one instance of the block `status`: counting what is dropped, and
    /// handing over whole lines.
    pub fn for_block(&self, status: Arc<BlockStatus>) -> Self {
        let line = self.tx.clone().map(|tx| Arc::new(Line { tx, status: status.clone(), pending: Mutex::default() }));
        Self { tx: self.tx.clone(), status: Some(status), line }
    }

    fn send(&self, bytes: &[u8]) {
        match (&self.line, &self.tx) {
            (Some(line), _) => line.put(bytes),
            (None, Some(tx)) => send(tx, bytes.to_vec(), self.status.as_ref()),
            (None, None) => {}
        }
    }
}

impl Put for GuestStdout {
    fn put(&self, bytes: &[u8]) {
        self.send(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_blocks_printing_at_once_never_mix() {
        let (tx, rx) = sync_channel(16);
        let prototype = GuestStdout::into_channel(tx);
        let status = || Arc::new(BlockStatus::new("b", "b", true));
        let (a, b) = (prototype.for_block(status()), prototype.for_block(status()));
        a.put(b"{\"a\":\"first ");
        b.put(b"{\"b\":1}\n{\"b\":");
        a.put(b"half\"}\n");
        b.put(b"2}");
        drop(b);
        let got: Vec<Vec<u8>> = rx.try_iter().collect();
        assert_eq!(got, vec![b"{\"b\":1}\n".to_vec(), b"{\"a\":\"first half\"}\n".to_vec(), b"{\"b\":2}".to_vec()]);

        // A line past the bound goes out as it comes, not held without end.
        a.put(&vec![b'x'; STDOUT_LINE_BYTES + 10]);
        let got: Vec<Vec<u8>> = rx.try_iter().collect();
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![STDOUT_LINE_BYTES + 10]);
        a.put(b"tail\n");
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![b"tail\n".to_vec()]);
    }
}
