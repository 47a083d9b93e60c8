//! Host bindings for `wit/block.wit`. This is the only `bindgen!` in the host: every other module
//! uses the types generated here.
//!
//! The bindings are for the `full-block` world, which exports every hook. A component need not export
//! them all: `runtime::hooks` looks each optional interface up by name when it loads a component
//! and keeps only the ones present.

wasmtime::component::bindgen!({
    world: "full-block",
    path: "../wit",
    // Calls that never wait are plain functions: they do not pay for the machinery of the ones
    // that can (a future per call, polled on the guest's fiber).
    imports: {
        "bagpipe:block/delivery.next": exact,
        "bagpipe:block/controller.name": exact,
        "bagpipe:block/controller.responsibility": exact,
        "bagpipe:block/controller.lookup": exact,
        "bagpipe:block/controller.list-blocks": exact,
        "bagpipe:block/controller.finish": exact,
        "bagpipe:block/controller.log": exact,
        "bagpipe:block/controller.set-timer": exact,
        "bagpipe:block/controller.cancel-timer": exact,
        "bagpipe:block/net.listeners": exact,
        "bagpipe:block/net.connections": exact,
        "bagpipe:block/server.publish": exact,
        "bagpipe:block/server.unsubscribe": exact,
        "bagpipe:block/server.connected": exact,
        "bagpipe:block/topics.subscribe": exact,
        "bagpipe:block/streams.open": exact,
        "bagpipe:block/streams.end": exact,
        "bagpipe:block/topics.unsubscribe": exact,
        default: async,
    },
    exports: { default: async },
    // Envelopes compare (a bag waiting to be delivered again is known by its envelope), and
    // an answer's outcome travels in one.
    additional_derives: [PartialEq, Eq],
});

/// How a call between blocks ended without an answer (the WIT's `call-error`; not to be mixed up
/// with [`crate::error::CallError`], how a call into a guest went).
pub use self::bagpipe::block::types::CallError as CallFailure;
pub use self::bagpipe::block::types::StreamEnd;
pub use self::bagpipe::block::types::{BlockInfo, BlockState, EnqueueError, Level, ServerInfo};
pub use self::exports::bagpipe::block::{
    batch_hook, enqueue_hook, lifecycle, net_hook, reply_hook, server_hook, state_hook, stream_hook, timer_hook,
};
