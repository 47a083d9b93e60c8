//! How bags travel: checking and stamping them, the block queues, the router, dead letters, and
//! the `controller` import blocks send them with.

pub(crate) mod bag;
#[cfg(test)]
mod bag_props;
mod bag_scan;
pub(crate) mod calls;
pub(crate) mod controller;
pub(crate) mod deadletter;
pub(crate) mod envelope;
pub(crate) mod queue;
pub(crate) mod router;
pub(crate) mod streams;
pub(crate) mod topics;
