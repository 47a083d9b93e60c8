//! What an embedder may watch a block do besides its counters: its log lines and its faults, as
//! they happen. The test kit taps them to show a test what a block logged and how it faulted;
//! a host without a tap pays nothing.

use crate::bindings::Level;
use crate::error::CallError;

/// Told of a block's log lines (those within its log rate) and faults.
pub trait Tap: Send + Sync {
    /// Block `responsibility` logged `message` at `level`.
    fn log(&self, responsibility: &str, level: Level, message: &str);
    /// An instance of block `responsibility` faulted with `error` (its policy applies next).
    fn fault(&self, responsibility: &str, error: &CallError);
}
