//! The sandbox primitives: the engine and its epoch ticker, compiled components (the cache), the
//! clock of a guest call, a block's sandbox (WASI, limits, stderr), its timers, and the list of
//! hooks a block may export. Nothing here knows what a block can ask of the host: that is the
//! capabilities' business (`routing::controller`, `io::net`, `io::server`), put together in
//! `block`.

pub(crate) mod cache;
pub(crate) mod clock;
pub(crate) mod engine;
pub(crate) mod guest_io;
pub(crate) mod guest_stdout;
pub(crate) mod hooks;
pub(crate) mod log_rate;
pub(crate) mod output;
pub(crate) mod output_pace;
pub(crate) mod state;
pub(crate) mod timers;
pub(crate) mod token_bucket;
pub(crate) mod virtual_time;
