//! A block's store and instances: its sandbox with one context per capability (`ctx`), loading
//! and checking a component file (`component`), and an instance with every guest call under its
//! deadline (`instance`), and the batches it takes its queue in (`delivery`).

pub(crate) mod component;
pub(crate) mod ctx;
pub(crate) mod delivery;
pub(crate) mod instance;
