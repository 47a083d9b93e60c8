//! How bags travel: checking and stamping them, the block queues, the router, dead letters, and
//! the `controller` import blocks send them with.

pub(crate) mod bag;
pub(crate) mod controller;
pub(crate) mod deadletter;
pub(crate) mod queue;
pub(crate) mod router;
