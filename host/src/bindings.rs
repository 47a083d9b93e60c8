//! Host bindings for `wit/block.wit`. This is the only `bindgen!` in the host: every other module
//! uses the types generated here.
//!
//! The bindings are for the `full-block` world, which exports every hook. A component need not export
//! them all: `runtime::hooks` looks each optional interface up by name when it loads a component
//! and keeps only the ones present.

wasmtime::component::bindgen!({
    world: "full-block",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use self::bagpipe::block::types::{BlockInfo, BlockState, EnqueueError, Level, ServerInfo};
pub use self::exports::bagpipe::block::{
    batch_hook, enqueue_hook, lifecycle, net_hook, server_hook, state_hook, timer_hook,
};
