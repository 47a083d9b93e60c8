//! The block authors' test kit: one block, run by the host's own machinery (its component
//! loaded and checked, its store, capabilities, queue, sockets and server side made as the
//! supervisor makes them, its task taking the same steps), driven by a test instead of a
//! supervisor. Whatever the block reaches is real: other blocks are *stand-ins* the test plays
//! (routes with a queue the test reads, `stand_in.rs`), sockets are real loopback sockets
//! (`sockets.rs`), the server is a real NATS-protocol server in the test's process
//! (`broker/`, `server.rs`). The block's timers run on virtual time: one fires when the test
//! moves the clock past it.
//!
//! [`Bench`] (`bench.rs`) is the async core (`bagpipe test` runs scenarios on it); the
//! `bagpipe-test` crate wraps it for a block's own `cargo test`.
//!
//! Invariant: after every action the bench *settles*: the block's task takes steps until none is
//! ready, stand-ins answer what reached them, and what the block sent has left the host (written
//! to its sockets, confirmed by the server). So what a test reads after an action is everything
//! that action caused, and a test never sleeps.

mod bags;
mod bench;
pub mod broker;
mod diff;
mod record;
pub mod scenario;
mod server;
mod sockets;
mod stand_in;

use std::path::Path;

use serde_json::Value;

use crate::error::{CallError, LoadError, ManifestError};
use crate::manifest::{BlockSpec, Manifest};

pub use crate::bindings::CallFailure;
pub use crate::runtime::virtual_time::PendingTimer;
pub use bench::{Bench, Finished};
pub use broker::Published;
pub use record::{Fault, LogLine};
pub use sockets::Conn;
pub use stand_in::{Answer, Arrived};

/// The name the test's own bags and calls come from (`__from`): bags the block sends to it
/// are the test's to read, under this name.
pub const TEST_SENDER: &str = "test";

/// Why a test kit action did not do what the test asked.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The block's manifest entry is wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component could not be loaded, or is not a block.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `init` or `run` failed.
    #[error("the block did not start: {0}")]
    Start(CallError),
    /// `finish` failed.
    #[error("the block's finish failed: {0}")]
    Finish(CallError),
    /// The block (its queue, its subscription) refused what the test sent.
    #[error("the block refused it: {0}")]
    Refused(String),
    /// The block has ended (it failed for good, or finished).
    #[error("the block has ended: {0}")]
    Ended(String),
    /// The test asked for something this block or bench does not have.
    #[error("{0}")]
    Misuse(String),
    /// The block, or the world outside it, did not get there within the test kit's wait.
    #[error("waited {wait:?} for {0}", wait = crate::defaults::TEST_WAIT)]
    Timeout(String),
    /// The host could not be set up.
    #[error("setting up the host: {0:#}")]
    Setup(anyhow::Error),
    /// A socket of the test failed.
    #[error("a socket of the test: {0}")]
    Io(#[from] std::io::Error),
}

/// What to run: a block's manifest entry, the blocks it talks to, and whether it has a server.
pub struct Setup {
    /// The block's entry as the host would read it from a manifest.
    pub spec: BlockSpec,
    /// The stand-ins, by name, and how each answers calls (`None`: it does not).
    pub stand_ins: Vec<(String, Option<Answer>)>,
    /// Whether the block gets a message server (a [`broker::Broker`] in this process).
    pub server: bool,
}

impl Setup {
    /// The block in the component file `component`, with the manifest keys `entry` (TOML, as
    /// under `[[block]]`: `listen = [...]`, `restart = "none"`, limits, a `[block.config]`...).
    pub fn component(component: &Path, entry: &str) -> Result<Self, TestError> {
        Ok(Self::from_spec(spec_for(component, entry)?))
    }

    /// The block `spec` describes (e.g. one of a manifest's).
    pub fn from_spec(spec: BlockSpec) -> Self {
        Self { spec, stand_ins: Vec::new(), server: false }
    }

    /// The same, with `config` as its config (a JSON object).
    pub fn config(mut self, config: Value) -> Result<Self, TestError> {
        match config {
            Value::Object(map) => self.spec.config = map,
            Value::Null => self.spec.config.clear(),
            other => return Err(TestError::Misuse(format!("a block's config is a JSON object, not `{other}`"))),
        }
        Ok(self)
    }

    /// What the kit cannot run the way a host would, said rather than ignored.
    fn unsupported(&self) -> Option<String> {
        let spec = &self.spec;
        let what = [
            (spec.workers.pooled(), "`workers` (a pool)"),
            (spec.durable, "`durable`"),
            (spec.shared, "`shared`"),
            (spec.outbox == crate::defaults::OutboxMode::Disk, "`outbox = \"disk\"`"),
            (spec.publish_to_stream.any(), "`publish_to_stream` (JetStream)"),
        ];
        let what: Vec<&str> = what.iter().filter(|(set, _)| *set).map(|(_, name)| *name).collect();
        (!what.is_empty()).then(|| {
            format!(
                "the test kit runs one instance of `{}` without a cluster or JetStream: it cannot run {} \
                 (test those through `bagpipe run`)",
                spec.responsibility,
                what.join(", ")
            )
        })
    }
}

/// The manifest entry `entry` for the component file `component` (named for its file).
fn spec_for(component: &Path, entry: &str) -> Result<BlockSpec, TestError> {
    let name = component.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let dir = component.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let manifest_path = dir.join("bagpipe-test.toml");
    let text = format!("[[block]]\nname = {}\n{entry}\n", Value::String(name.to_owned()));
    let manifest = Manifest::parse(&manifest_path, &text)?;
    manifest.blocks.into_iter().next().ok_or_else(|| TestError::Misuse("the entry holds no block".to_owned()))
}

/// `bag` without the host's keys (`__from`, `__seq`...).
pub fn without_host_keys(bag: &Value) -> Value {
    match bag {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(k, _)| !k.starts_with("__")).map(|(k, v)| (k.clone(), v.clone())).collect(),
        ),
        other => other.clone(),
    }
}
