//! The guest side of `wit/block.wit`. Every `generate!` of the SDK is here.
//!
//! One `generate!` per world: the lifecycle world carries the imports, and each optional hook is a
//! world of its own whose export macro `export_block!` invokes only when the block lists that hook.
//! wit-bindgen puts a world's export information in the custom section emitted by its export
//! macro, so a hook a block does not list is not exported and the host sees it as absent.

/// The `block` world: the controller import and the mandatory lifecycle export.
pub mod block {
    wit_bindgen::generate!({
        world: "block",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_lifecycle",
        default_bindings_module: "bagpipe_guest::__private::bindings::block",
        runtime_path: "bagpipe_guest::__private::rt",
        generate_unused_types: true,
    });
}

/// The optional `enqueue-hook` export.
pub mod enqueue {
    wit_bindgen::generate!({
        world: "enqueue-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_enqueue_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::enqueue",
        runtime_path: "bagpipe_guest::__private::rt",
        with: { "bagpipe:block/types@0.1.0": crate::bindings::block::bagpipe::block::types },
    });
}

/// The `batch-hook` export: every block has it (`export_block!` exports it with the lifecycle).
pub mod batch {
    wit_bindgen::generate!({
        world: "batch-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_batch_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::batch",
        runtime_path: "bagpipe_guest::__private::rt",
    });
}

/// The optional `reply-hook` export.
pub mod reply {
    wit_bindgen::generate!({
        world: "reply-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_reply_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::reply",
        runtime_path: "bagpipe_guest::__private::rt",
        with: { "bagpipe:block/types@0.1.0": crate::bindings::block::bagpipe::block::types },
    });
}

/// The optional `stream-hook` export.
pub mod stream {
    wit_bindgen::generate!({
        world: "stream-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_stream_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::stream",
        runtime_path: "bagpipe_guest::__private::rt",
        with: { "bagpipe:block/types@0.1.0": crate::bindings::block::bagpipe::block::types },
    });
}

/// The optional `timer-hook` export.
pub mod timer {
    wit_bindgen::generate!({
        world: "timer-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_timer_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::timer",
        runtime_path: "bagpipe_guest::__private::rt",
    });
}

/// The optional `server-hook` export.
pub mod server {
    wit_bindgen::generate!({
        world: "server-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_server_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::server",
        runtime_path: "bagpipe_guest::__private::rt",
        with: { "bagpipe:block/types@0.1.0": crate::bindings::block::bagpipe::block::types },
    });
}

/// The optional `state-hook` export.
pub mod state {
    wit_bindgen::generate!({
        world: "state-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_state_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::state",
        runtime_path: "bagpipe_guest::__private::rt",
    });
}

/// The optional `net-hook` export.
pub mod net {
    wit_bindgen::generate!({
        world: "net-hooked",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_bagpipe_net_hook",
        default_bindings_module: "bagpipe_guest::__private::bindings::net",
        runtime_path: "bagpipe_guest::__private::rt",
        with: { "bagpipe:block/net@0.1.0": crate::bindings::block::bagpipe::block::net },
    });
}
