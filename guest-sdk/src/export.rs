//! [`export_block!`](crate::export_block) and the glue it expands to.
//!
//! The block's state lives in one slot per component: a component is one block, and the host
//! calls into it one call at a time, so a `RefCell` is enough.

use std::any::Any;
use std::cell::RefCell;

use crate::bag::Bag;
use crate::block::{Block, Config};
use crate::controller::{CallError, CallId, Controller, ServerInfo, StreamEnd, StreamId};

thread_local! {
    static SLOT: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

const CTL: Controller = Controller::new();

fn with_block<B: Block, R>(what: &str, f: impl FnOnce(&mut B) -> R) -> R {
    SLOT.with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.as_mut().and_then(|b| b.downcast_mut::<B>()) {
            Some(block) => f(block),
            // The host calls init first and never again after an error; reaching this is a
            // host bug, and trapping is the honest answer.
            None => panic!("bagpipe: `{what}` called before a successful `init`"),
        }
    })
}

#[doc(hidden)]
pub fn init<B: Block>(config: String) -> Result<(), String> {
    let config = Config::from_json(&config)?;
    let block = B::init(&CTL, config)?;
    SLOT.with(|slot| *slot.borrow_mut() = Some(Box::new(block)));
    Ok(())
}

#[doc(hidden)]
pub fn run<B: Block>() {
    with_block::<B, _>("run", |b| b.run(&CTL))
}

#[doc(hidden)]
pub fn finish<B: Block>() -> Result<(), String> {
    let result = with_block::<B, _>("finish", |b| b.finish(&CTL));
    SLOT.with(|slot| slot.borrow_mut().take());
    result
}

#[doc(hidden)]
pub fn on_enqueue<B: Block>(bag: String) -> Result<(), String> {
    let bag = Bag::from_json(&bag).map_err(|e| e.to_string())?;
    with_block::<B, _>("on-enqueue", |b| b.on_enqueue(&CTL, bag))
}

/// `on-batch`: takes the queued items one by one and hands each to the block's own hook, telling
/// the host how each went as it takes the next (so the host knows which item a fault hit).
#[doc(hidden)]
pub fn on_batch<B: Block>() {
    use crate::bindings::block::bagpipe::block::delivery::{Item, next};
    let mut previous: Option<Result<(), String>> = None;
    while let Some(item) = next(previous.as_ref().map(|r| r.as_ref().copied().map_err(String::as_str))) {
        previous = Some(match item {
            Item::Bag(bag) => on_enqueue::<B>(bag),
            Item::Accept(a) => {
                on_accept::<B>(a.conn, a.listener, a.peer);
                Ok(())
            }
            Item::Data(d) => {
                on_data::<B>(d.conn, d.data);
                Ok(())
            }
            Item::Closed(conn) => {
                on_close::<B>(conn);
                Ok(())
            }
            Item::Datagram(d) => {
                on_datagram::<B>(d.listener, d.peer, d.data);
                Ok(())
            }
            Item::Reply(a) => {
                on_reply::<B>(a.call, a.outcome);
                Ok(())
            }
            Item::StreamOpen(o) => on_stream_open::<B>(o.id, o.from, o.bag),
            Item::StreamData(d) => {
                on_stream_data::<B>(d.id, d.bag);
                Ok(())
            }
            Item::StreamEnd(e) => {
                on_stream_end::<B>(e.id, e.end);
                Ok(())
            }
        });
    }
}

#[doc(hidden)]
pub fn on_reply<B: Block>(call: u64, outcome: Result<String, CallError>) {
    // An answer the host delivers is a stamped bag, so it parses; if it did not, the block
    // hears why instead of an answer.
    let outcome = outcome.and_then(|bag| {
        Bag::from_json(&bag).map_err(|e| CallError::Unavailable(format!("the answer is not a bag: {e}")))
    });
    with_block::<B, _>("on-reply", |b| b.on_reply(&CTL, CallId(call), outcome))
}

#[doc(hidden)]
pub fn on_stream_open<B: Block>(id: u64, from: String, bag: String) -> Result<(), String> {
    let bag = Bag::from_json(&bag).map_err(|e| e.to_string())?;
    with_block::<B, _>("on-stream-open", |b| b.on_stream_open(&CTL, StreamId(id), from, bag))
}

#[doc(hidden)]
pub fn on_stream_data<B: Block>(id: u64, bag: String) {
    // The host delivers stamped bags, which parse; one that did not would be skipped.
    if let Ok(bag) = Bag::from_json(&bag) {
        with_block::<B, _>("on-stream-data", |b| b.on_stream_data(&CTL, StreamId(id), bag))
    }
}

#[doc(hidden)]
pub fn on_stream_end<B: Block>(id: u64, end: StreamEnd) {
    with_block::<B, _>("on-stream-end", |b| b.on_stream_end(&CTL, StreamId(id), end))
}

#[doc(hidden)]
pub fn on_timer<B: Block>(tag: String) {
    with_block::<B, _>("on-timer", |b| b.on_timer(&CTL, tag))
}

#[doc(hidden)]
pub fn on_server_connect<B: Block>(info: ServerInfo) {
    with_block::<B, _>("on-server-connect", |b| b.on_server_connect(&CTL, info))
}

#[doc(hidden)]
pub fn on_accept<B: Block>(conn: u64, listener: String, peer: String) {
    with_block::<B, _>("on-accept", |b| b.on_accept(&CTL, conn, listener, peer))
}

#[doc(hidden)]
pub fn on_data<B: Block>(conn: u64, data: Vec<u8>) {
    with_block::<B, _>("on-data", |b| b.on_data(&CTL, conn, data))
}

#[doc(hidden)]
pub fn on_close<B: Block>(conn: u64) {
    with_block::<B, _>("on-close", |b| b.on_close(&CTL, conn))
}

#[doc(hidden)]
pub fn on_datagram<B: Block>(listener: String, peer: String, data: Vec<u8>) {
    with_block::<B, _>("on-datagram", |b| b.on_datagram(&CTL, listener, peer, data))
}

#[doc(hidden)]
pub fn snapshot<B: Block>() -> Vec<u8> {
    with_block::<B, _>("snapshot", |b| b.snapshot(&CTL))
}

#[doc(hidden)]
pub fn restore<B: Block>(state: Vec<u8>) -> Result<(), String> {
    with_block::<B, _>("restore", |b| b.restore(&CTL, state))
}

#[doc(hidden)]
pub fn on_server_disconnect<B: Block>() {
    with_block::<B, _>("on-server-disconnect", |b| b.on_server_disconnect(&CTL))
}

/// Exports a [`Block`] type as this component's block.
///
/// List the optional hooks the block implements; only those are exported, and the host calls
/// only those:
///
/// ```
/// use bagpipe_guest::{export_block, Bag, Block, Config, Controller};
///
/// struct Quiet;
///
/// impl Block for Quiet {
///     fn init(_ctl: &Controller, _config: Config) -> Result<Self, String> {
///         Ok(Quiet)
///     }
///     fn on_enqueue(&mut self, ctl: &Controller, bag: Bag) -> Result<(), String> {
///         ctl.debug(&format!("got {bag}"));
///         Ok(())
///     }
/// }
///
/// // Lifecycle plus `on_enqueue`; `export_block!(Quiet)` would export the lifecycle only.
/// export_block!(Quiet, hooks = [on_enqueue]);
/// # fn main() {}
/// ```
///
/// Hooks: `on_enqueue` (receive bags), `on_reply` (the outcomes of [`Controller::call`]s),
/// `streams` (`on_stream_open`, `on_stream_data`, `on_stream_end`),
/// `on_timer` (timers), `on_server` (server connect and
/// disconnect), `net` (`on_accept`, `on_data`, `on_close`, `on_datagram`: the block's sockets),
/// `state` (`snapshot` and `restore`, to carry state across a hot swap). Use the macro once per crate, in a `cdylib` built for `wasm32-wasip2`.
#[macro_export]
macro_rules! export_block {
    ($block:ty) => {
        $crate::export_block!($block, hooks = []);
    };
    ($block:ty, hooks = [$($hook:ident),* $(,)?]) => {
        const _: () = {
            struct BagpipeLifecycle;
            impl $crate::__private::bindings::block::exports::bagpipe::block::lifecycle::Guest
                for BagpipeLifecycle
            {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$block>(config)
                }
                fn run() {
                    $crate::__private::run::<$block>()
                }
                fn finish() -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::finish::<$block>()
                }
            }
            $crate::__private::bindings::block::__export_bagpipe_lifecycle!(BagpipeLifecycle);
            // Every block takes its queue in batches; what it gets is only what its hooks
            // below let the host queue for it.
            struct BagpipeBatchHook;
            impl $crate::__private::bindings::batch::exports::bagpipe::block::batch_hook::Guest for BagpipeBatchHook {
                fn on_batch() {
                    $crate::__private::on_batch::<$block>()
                }
            }
            $crate::__private::bindings::batch::__export_bagpipe_batch_hook!(BagpipeBatchHook);
            $( $crate::__export_bagpipe_hook!($hook, $block); )*
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_bagpipe_hook {
    (on_enqueue, $block:ty) => {
        struct BagpipeEnqueueHook;
        impl $crate::__private::bindings::enqueue::exports::bagpipe::block::enqueue_hook::Guest for BagpipeEnqueueHook {
            fn on_enqueue(bag: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::on_enqueue::<$block>(bag)
            }
        }
        $crate::__private::bindings::enqueue::__export_bagpipe_enqueue_hook!(BagpipeEnqueueHook);
    };
    (on_reply, $block:ty) => {
        struct BagpipeReplyHook;
        impl $crate::__private::bindings::reply::exports::bagpipe::block::reply_hook::Guest for BagpipeReplyHook {
            fn on_reply(call: u64, outcome: ::std::result::Result<::std::string::String, $crate::CallError>) {
                $crate::__private::on_reply::<$block>(call, outcome)
            }
        }
        $crate::__private::bindings::reply::__export_bagpipe_reply_hook!(BagpipeReplyHook);
    };
    (streams, $block:ty) => {
        struct BagpipeStreamHook;
        impl $crate::__private::bindings::stream::exports::bagpipe::block::stream_hook::Guest for BagpipeStreamHook {
            fn on_stream_open(
                id: u64,
                from: ::std::string::String,
                bag: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::on_stream_open::<$block>(id, from, bag)
            }
            fn on_stream_data(id: u64, bag: ::std::string::String) {
                $crate::__private::on_stream_data::<$block>(id, bag)
            }
            fn on_stream_end(id: u64, end: $crate::StreamEnd) {
                $crate::__private::on_stream_end::<$block>(id, end)
            }
        }
        $crate::__private::bindings::stream::__export_bagpipe_stream_hook!(BagpipeStreamHook);
    };
    (on_timer, $block:ty) => {
        struct BagpipeTimerHook;
        impl $crate::__private::bindings::timer::exports::bagpipe::block::timer_hook::Guest for BagpipeTimerHook {
            fn on_timer(tag: ::std::string::String) {
                $crate::__private::on_timer::<$block>(tag)
            }
        }
        $crate::__private::bindings::timer::__export_bagpipe_timer_hook!(BagpipeTimerHook);
    };
    (on_server, $block:ty) => {
        struct BagpipeServerHook;
        impl $crate::__private::bindings::server::exports::bagpipe::block::server_hook::Guest for BagpipeServerHook {
            fn on_server_connect(info: $crate::ServerInfo) {
                $crate::__private::on_server_connect::<$block>(info)
            }
            fn on_server_disconnect() {
                $crate::__private::on_server_disconnect::<$block>()
            }
        }
        $crate::__private::bindings::server::__export_bagpipe_server_hook!(BagpipeServerHook);
    };
    (net, $block:ty) => {
        struct BagpipeNetHook;
        impl $crate::__private::bindings::net::exports::bagpipe::block::net_hook::Guest for BagpipeNetHook {
            fn on_accept(conn: u64, listener: ::std::string::String, peer: ::std::string::String) {
                $crate::__private::on_accept::<$block>(conn, listener, peer)
            }
            fn on_data(conn: u64, data: ::std::vec::Vec<u8>) {
                $crate::__private::on_data::<$block>(conn, data)
            }
            fn on_close(conn: u64) {
                $crate::__private::on_close::<$block>(conn)
            }
            fn on_datagram(listener: ::std::string::String, peer: ::std::string::String, data: ::std::vec::Vec<u8>) {
                $crate::__private::on_datagram::<$block>(listener, peer, data)
            }
        }
        $crate::__private::bindings::net::__export_bagpipe_net_hook!(BagpipeNetHook);
    };
    (state, $block:ty) => {
        struct BagpipeStateHook;
        impl $crate::__private::bindings::state::exports::bagpipe::block::state_hook::Guest for BagpipeStateHook {
            fn snapshot() -> ::std::vec::Vec<u8> {
                $crate::__private::snapshot::<$block>()
            }
            fn restore(state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::restore::<$block>(state)
            }
        }
        $crate::__private::bindings::state::__export_bagpipe_state_hook!(BagpipeStateHook);
    };
    ($other:ident, $block:ty) => {
        compile_error!(concat!(
            "unknown bagpipe hook `",
            stringify!($other),
            "`; the hooks are on_enqueue, on_reply, streams, on_timer, on_server, net and state"
        ));
    };
}
