//! The hooks a block may export, listed once: which ones a component has ([`Hooks`]), where they
//! live in it ([`Indices`], looked up once at load) and their functions in one instance
//! ([`Exports`]).
//!
//! Architecture invariant: whether a block has a hook is read from its exports, never learned by
//! calling it. Adding a hook to the WIT world means adding one line to the `hooks!` list below.

use wasmtime::component::{Instance, InstancePre};
use wasmtime::{AsContextMut, Error};

use crate::bindings::{
    batch_hook, enqueue_hook, lifecycle, net_hook, reply_hook, server_hook, state_hook, stream_hook, timer_hook,
};

/// The mandatory lifecycle export, as the component model spells it.
pub const LIFECYCLE: &str = "bagpipe:block/lifecycle@0.1.0";

macro_rules! hooks {
    ($($(#[$doc:meta])* $field:ident: $module:ident = $interface:literal, $label:literal;)*) => {
        /// Which optional hooks a block exports.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Hooks {
            $($(#[$doc])* pub $field: bool,)*
        }

        /// The interface names of the optional hooks, as the component model spells them, for
        /// messages that name one.
        #[allow(dead_code)]
        pub mod interface {
            $(#[doc = concat!("The `", $label, "` hook.")] #[allow(non_upper_case_globals)] pub const $field: &str = $interface;)*
        }

        impl Hooks {
            /// The hooks' short names, for reports: the ones a block author lists (`batch` is
            /// how the SDK takes the queue for every block, not a hook of the block's own).
            pub fn names(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(if self.$field && stringify!($field) != "batch" { names.push($label); })*
                names
            }
        }

        /// Where each export lives in a component, looked up once at load.
        pub(crate) struct Indices {
            pub lifecycle: lifecycle::GuestIndices,
            $(pub $field: Option<$module::GuestIndices>,)*
        }

        /// The guest functions of one instance.
        #[derive(Clone)]
        pub(crate) struct Exports {
            pub lifecycle: lifecycle::Guest,
            $(pub $field: Option<$module::Guest>,)*
        }

        impl Indices {
            /// Looks every export of `exports` (the component's export names) up in `pre`; an
            /// error names the interface whose types do not match the world.
            pub fn new<T: 'static>(pre: &InstancePre<T>, exports: &[String]) -> Result<Self, (&'static str, Error)> {
                let has = |name: &str| exports.iter().any(|e| e == name);
                Ok(Self {
                    lifecycle: lifecycle::GuestIndices::new(pre).map_err(|e| (LIFECYCLE, e))?,
                    $($field: has($interface)
                        .then(|| $module::GuestIndices::new(pre))
                        .transpose()
                        .map_err(|e| ($interface, e))?,)*
                })
            }

            /// The hooks present.
            pub fn hooks(&self) -> Hooks {
                Hooks { $($field: self.$field.is_some(),)* }
            }

            /// Loads every export from `instance`, which checks each one's types.
            pub fn load(&self, mut store: impl AsContextMut, instance: &Instance) -> Result<Exports, (&'static str, Error)> {
                Ok(Exports {
                    lifecycle: self.lifecycle.load(&mut store, instance).map_err(|e| (LIFECYCLE, e))?,
                    $($field: self.$field
                        .as_ref()
                        .map(|x| x.load(&mut store, instance))
                        .transpose()
                        .map_err(|e| ($interface, e))?,)*
                })
            }
        }
    };
}

hooks! {
    /// `enqueue-hook`: it receives bags.
    enqueue: enqueue_hook = "bagpipe:block/enqueue-hook@0.1.0", "on-enqueue";
    /// `batch-hook`: it takes its queue several items a call.
    batch: batch_hook = "bagpipe:block/batch-hook@0.1.0", "batch";
    /// `reply-hook`: it receives the outcomes of its calls.
    reply: reply_hook = "bagpipe:block/reply-hook@0.1.0", "on-reply";
    /// `stream-hook`: it takes part in streams.
    stream: stream_hook = "bagpipe:block/stream-hook@0.1.0", "streams";
    /// `timer-hook`: it receives timers.
    timer: timer_hook = "bagpipe:block/timer-hook@0.1.0", "on-timer";
    /// `server-hook`: it follows the server connection.
    server: server_hook = "bagpipe:block/server-hook@0.1.0", "on-server";
    /// `state-hook`: it carries its state across a swap.
    state: state_hook = "bagpipe:block/state-hook@0.1.0", "state";
    /// `net-hook`: it hears about its sockets.
    net: net_hook = "bagpipe:block/net-hook@0.1.0", "net";
}
