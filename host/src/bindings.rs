//! Host bindings for `wit/block.wit`. This is the only `bindgen!` in the host: every other module
//! uses the types generated here.
//!
//! The bindings are for the `full-block` world, which exports every hook. A component need not export
//! them all: [`crate::component`] looks each optional interface up by name when it loads a
//! component and keeps only the ones present.

wasmtime::component::bindgen!({
    world: "full-block",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use self::bagpipe::block::types::{BlockInfo, BlockState, EnqueueError, Level, ServerInfo};
pub use self::exports::bagpipe::block::{enqueue_hook, lifecycle, net_hook, server_hook, state_hook, timer_hook};

/// The interface names a component is checked for, as the component model spells them.
pub mod names {
    /// The mandatory lifecycle export.
    pub const LIFECYCLE: &str = "bagpipe:block/lifecycle@0.1.0";
    /// The optional bag hook.
    pub const ENQUEUE_HOOK: &str = "bagpipe:block/enqueue-hook@0.1.0";
    /// The optional timer hook.
    pub const TIMER_HOOK: &str = "bagpipe:block/timer-hook@0.1.0";
    /// The optional server hook.
    pub const SERVER_HOOK: &str = "bagpipe:block/server-hook@0.1.0";
    /// The optional socket hook.
    pub const NET_HOOK: &str = "bagpipe:block/net-hook@0.1.0";
    /// The optional state hook (snapshot and restore across a swap).
    pub const STATE_HOOK: &str = "bagpipe:block/state-hook@0.1.0";
}
