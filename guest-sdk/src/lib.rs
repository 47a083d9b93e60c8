//! Write [bagpipe](https://github.com/) blocks in Rust.
//!
//! A block is a WebAssembly component that the bagpipe host loads, initialises, runs and finishes.
//! Blocks exchange [`Bag`]s (JSON objects) through queues the host owns. This crate is all a block
//! author depends on: implement [`Block`], export it with [`export_block!`], and build the crate
//! as a `cdylib` for `wasm32-wasip2`.
//!
//! # A complete block
//!
//! A counter that numbers the bags it receives and passes them on to the responsibility named in
//! its config:
//!
//! ```
//! use bagpipe_guest::{export_block, Bag, Block, Config, Controller};
//!
//! struct Counter {
//!     next: String,
//!     count: u64,
//! }
//!
//! impl Block for Counter {
//!     fn init(_ctl: &Controller, config: Config) -> Result<Self, String> {
//!         Ok(Counter { next: config.str_or("next", "sink"), count: 0 })
//!     }
//!
//!     fn on_enqueue(&mut self, ctl: &Controller, bag: Bag) -> Result<(), String> {
//!         self.count += 1;
//!         let out = bag.payload().with("count", self.count);
//!         ctl.enqueue(&self.next, &out).map_err(|e| e.to_string())?;
//!         Ok(())
//!     }
//! }
//!
//! export_block!(Counter, hooks = [on_enqueue]);
//! # fn main() {}
//! ```
//!
//! with this `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "counter"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! bagpipe-guest = { path = "../../guest-sdk" }
//! ```
//!
//! `cargo build --target wasm32-wasip2 --release` writes
//! `target/wasm32-wasip2/release/counter.wasm`, a component ready for a component directory.
//!
//! # Hooks
//!
//! `init`, `run` and `finish` are always exported. The optional hooks (`on_enqueue`, `on_reply`,
//! `streams`, `on_timer`, `on_server`, `net`, `state`) have no-op defaults in [`Block`]; list the ones the block implements in
//! [`export_block!`] and only those are exported. The host reads a component's exports when it
//! loads it, so it knows which hooks a block has without calling them.
#![deny(missing_docs)]

extern crate self as bagpipe_guest;

// The allocator's logic is tested natively; it is the global allocator only in a block.
#[cfg_attr(not(all(feature = "talc", target_family = "wasm")), allow(dead_code))]
mod alloc;
mod bag;
#[doc(hidden)]
pub mod bindings;
mod block;
mod controller;
mod export;
// Tested natively; the block's `memcmp` and `bcmp` only in a block.
#[cfg_attr(not(all(feature = "fast-mem", target_family = "wasm")), allow(dead_code))]
mod mem;

pub use bag::{Bag, BagError};
pub use block::{Block, Config};
pub use controller::{
    BlockInfo, BlockState, CallError, CallId, Connection, ConnectionInfo, Controller, EnqueueError, INITIATOR, Level,
    NetError, ReplyError, Sent, ServerError, ServerInfo, StreamEnd, StreamError, StreamId, TimerId, TopicError,
};
pub use serde_json::{self, Value, json};

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::export::*;
    pub use wit_bindgen::rt;
}
