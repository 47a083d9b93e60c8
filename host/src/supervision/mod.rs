//! Running blocks: the supervisor that owns every block task, the task of one block, and live
//! changes from the reloader.

pub(crate) mod group;
pub(crate) mod reload;
pub(crate) mod supervisor;
pub(crate) mod task;
