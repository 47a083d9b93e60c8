//! The sandbox: the engine, compiled components, a block's store and its instances, and calls
//! into the guest under deadlines and limits.

pub(crate) mod cache;
pub(crate) mod clock;
pub(crate) mod component;
pub(crate) mod ctx;
pub(crate) mod engine;
pub(crate) mod guest_io;
pub(crate) mod hooks;
pub(crate) mod instance;
pub(crate) mod state;
pub(crate) mod timers;
