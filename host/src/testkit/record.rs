//! What the test kit saw a block do besides sending bags: its log lines and its faults, in
//! order. A [`Tap`] on the host's links feeds it (what it prints comes through a channel).

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::bindings::Level;
use crate::error::CallError;
use crate::stats::Tap;

/// A line the block logged (`controller.log`, within its log rate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// What it said.
    pub message: String,
}

/// A fault of one of the block's instances: a trap, a panic, a deadline or a limit.
#[derive(Debug, Clone)]
pub struct Fault {
    /// How it faulted.
    pub error: CallError,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// The names of the levels, as scenario files and test output write them.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// What was seen so far (taken by the test as it reads it).
#[derive(Debug, Default)]
pub struct Record {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    logs: Vec<LogLine>,
    faults: Vec<Fault>,
}

impl Record {
    /// An empty record, to tap.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log lines seen since the last call.
    pub fn take_logs(&self) -> Vec<LogLine> {
        std::mem::take(&mut self.lock().logs)
    }

    /// The faults seen since the last call.
    pub fn take_faults(&self) -> Vec<Fault> {
        std::mem::take(&mut self.lock().faults)
    }
}

impl Tap for Record {
    fn log(&self, _responsibility: &str, level: Level, message: &str) {
        self.lock().logs.push(LogLine { level: level_name(level).to_owned(), message: message.to_owned() });
    }

    fn fault(&self, _responsibility: &str, error: &CallError) {
        self.lock().faults.push(Fault { error: error.clone() });
    }
}
