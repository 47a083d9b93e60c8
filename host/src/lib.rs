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
//! - [`manifest`]: reading and checking `bagpipe.toml`.
//! - [`host`]: the embedding API, [`Host`].
//! - [`component`]: loading a component and checking it against the world.
//! - [`supervisor`], [`task`], [`instance`]: running blocks.
//! - [`router`], [`bag`], [`controller`]: bags and how they travel.
#![deny(missing_docs)]

pub mod admin;
pub mod bag;
#[allow(missing_docs)]
pub mod bindings;
pub mod cache;
pub mod component;
pub mod controller;
pub mod deadletter;
pub mod defaults;
pub mod deps;
pub mod engine;
pub mod error;
pub mod guest_build;
pub mod guest_io;
pub mod histogram;
pub mod host;
pub mod instance;
pub mod manifest;
pub mod net;
pub mod reload;
pub mod restart;
pub mod router;
pub mod server;
pub mod state;
pub mod stats;
pub mod supervisor;
pub mod task;
pub mod timers;

pub use error::{CallError, LoadError, ManifestError, RunError};
pub use host::{Host, HostConfig};
pub use manifest::Manifest;
pub use supervisor::RunReport;
