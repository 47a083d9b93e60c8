//! bagpipe: a WebAssembly-sandboxed adapter host.
//!
//! A *block* is a WebAssembly component (built for `wasm32-wasip2`) that exports the lifecycle of
//! `wit/block.wit`: `init(config)`, `run`, `finish`, and optional hooks. Blocks exchange *bags*
//! (JSON objects) only through the host, which routes them through one bounded queue per block.
//! The host initialises blocks in manifest order, runs them once all are initialised, and
//! finishes them in reverse order on shutdown.
//!
//! Each block instance has its own store, its own instance, its own task and its own queue:
//! nothing a guest can poison is shared with another block.
//!
//! The crate's layers, bottom up; a module imports only from layers below its own (ARCHITECTURE.md
//! has the code map):
//! - the shared vocabulary: `bindings`, `defaults`, `error`, `stats`, `restart`, `deps`;
//! - `manifest`: reading and checking `bagpipe.toml`;
//! - `runtime`: the engine, compiled components, the call clock, a block's sandbox, its timers;
//! - `routing`: bags, the block queue, the router, dead letters, the `controller` capability;
//! - `io`: the sockets (`net`) and the message server (`server`) capabilities;
//! - `block`: a block's store (sandbox plus capabilities), components and instances;
//! - `supervision`: the supervisor, one task per block, live reload;
//! - `ops`, `testkit`, `host`: the admin endpoint, guest builds, the test kit for block authors,
//!   and the embedding API.
//!
//! What embedders use is re-exported here: [`Host`] and [`HostConfig`], the [`manifest`], the
//! errors, and what a run reports.
#![deny(missing_docs)]

#[allow(missing_docs)]
mod bindings;
mod defaults;
mod deps;
mod error;
mod restart;
mod stats;

pub(crate) mod block;
mod host;
pub(crate) mod io;
#[cfg(test)]
mod layers;
pub mod manifest;
mod ops;
pub(crate) mod routing;
pub(crate) mod runtime;
pub(crate) mod supervision;
pub mod testkit;

pub use block::component::BlockComponent;
pub use error::{CallError, LoadError, ManifestError, RunError};
pub use host::{Host, HostConfig};
pub use io::server::ServerSnapshot;
pub use manifest::Manifest;
pub use ops::admin::get as admin_get;
pub use ops::feed::{Feed, JsonLines};
pub use ops::guest_build::{build_into, rebuild_on_change};
pub use routing::deadletter::DeadLetter;
pub use runtime::cache::ComponentCache;
pub use stats::{PoolSnapshot, StatsSnapshot, WorkerSnapshot};
pub use supervision::supervisor::RunReport;

/// The pure functions that read what the outside hands the host, for the fuzz targets (`fuzz/`):
/// the bag checker and stamper and the admin endpoint's router (hyper reads the requests). (The manifest reader is
/// [`Manifest::parse`].) Not part of the embedding API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::ops::admin::{Page, Refused, route};
    pub use crate::routing::bag::{BagError, BagLimits, check_inbound, stamp};
}
