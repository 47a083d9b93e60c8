//! A guest's stderr: each line goes to the host's log (tagged with the block, through the
//! current tracing span) and the last few lines are kept to explain a trap, since a Rust guest's
//! panic message only ever reaches stderr.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::defaults::{STDERR_LINE_BYTES, STDERR_TAIL_LINES};
use crate::runtime::log_rate::LogRate;
use crate::runtime::output::Put;

/// The shared end: the block's store writes into it, the block's task reads the tail.
#[derive(Clone, Default)]
pub struct StderrTail {
    inner: Arc<Mutex<Tail>>,
    /// The block's log budget; lines past it are kept in the tail but not logged.
    rate: Option<Arc<LogRate>>,
}

#[derive(Default)]
struct Tail {
    partial: Vec<u8>,
    lines: VecDeque<String>,
}

impl StderrTail {
    /// A tail whose lines are logged within `rate`.
    pub fn new(rate: Arc<LogRate>) -> Self {
        Self { inner: Arc::default(), rate: Some(rate) }
    }

    /// Takes the lines kept since the last call, the unfinished one included.
    pub fn take(&self) -> Vec<String> {
        let mut tail = self.lock();
        if !tail.partial.is_empty() {
            let rest = std::mem::take(&mut tail.partial);
            push_line(&mut tail, &rest, self.rate.as_deref());
        }
        tail.lines.drain(..).collect()
    }

    /// Forgets what was kept (before a call whose trap it should explain).
    pub fn clear(&self) {
        self.lock().lines.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        // Only plain data is behind the lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, bytes: &[u8]) {
        let mut tail = self.lock();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut tail.partial);
            line.extend_from_slice(&rest[..pos]);
            push_line(&mut tail, &line, self.rate.as_deref());
            rest = &rest[pos + 1..];
        }
        let room = STDERR_LINE_BYTES.saturating_sub(tail.partial.len());
        tail.partial.extend_from_slice(&rest[..rest.len().min(room)]);
    }
}

fn push_line(tail: &mut Tail, line: &[u8], rate: Option<&LogRate>) {
    let line = String::from_utf8_lossy(&line[..line.len().min(STDERR_LINE_BYTES)]).into_owned();
    if rate.is_none_or(LogRate::admit) {
        tracing::warn!(target: "bagpipe::guest", "stderr: {line}");
    }
    if tail.lines.len() == STDERR_TAIL_LINES {
        tail.lines.pop_front();
    }
    tail.lines.push_back(line);
}

impl Put for StderrTail {
    fn put(&self, bytes: &[u8]) {
        self.write(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_and_the_unfinished_one() {
        let s = StderrTail::default();
        s.write(b"panicked at src/lib.rs:3:\nboom");
        s.write(b"!\nthird");
        assert_eq!(s.take(), ["panicked at src/lib.rs:3:", "boom!", "third"]);
        assert!(s.take().is_empty());
        for i in 0..STDERR_TAIL_LINES + 5 {
            s.write(format!("{i}\n").as_bytes());
        }
        let kept = s.take();
        assert_eq!(kept.len(), STDERR_TAIL_LINES);
        assert_eq!(kept.last().map(String::as_str), Some("24"));
    }
}
