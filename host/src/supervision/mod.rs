//! Running blocks: the supervisor that owns every block task, the task of one block, restart
//! arithmetic, the dependency graph, and live changes from the reloader.

pub(crate) mod deps;
pub(crate) mod reload;
pub(crate) mod restart;
pub(crate) mod supervisor;
pub(crate) mod task;
