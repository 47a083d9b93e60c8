//! `bagpipe-test`: unit tests for bagpipe blocks.
//!
//! A test loads a block's component, starts it with a config of its own, gives it bags, socket
//! bytes, datagrams, server messages and time, and reads what it did: the bags it sent (to
//! *stand-ins*, the other blocks of the test), what it wrote back, published, logged and
//! printed, the timers it set and how it faulted. The block runs in the real host: the same
//! checks, limits, queue, sockets and server side as in `bagpipe run`. Every call returns once
//! the block has done everything the action caused, so a test never sleeps; time is virtual and
//! moves only with [`Block::advance`].
//!
//! ```no_run
//! use bagpipe_test::{block, build, json};
//!
//! let wasm = build(env!("CARGO_MANIFEST_DIR")).unwrap();
//! let mut b = block(&wasm).config(json!({"to": "sink"})).stand_in("sink").start().unwrap();
//! b.enqueue(json!({"text": "hi"})).unwrap();
//! assert_eq!(b.bags_to("sink"), vec![json!({"text": "HI"})]);
//! b.finish().unwrap();
//! ```

#![deny(missing_docs)]

mod build;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use bagpipe::testkit::{
    Arrived, Conn, Fault, Finished, LogLine, PendingTimer, Published, TEST_SENDER, TestError, without_host_keys,
};
use bagpipe::testkit::{Bench, Setup};
pub use build::{BuildError, build};
pub use serde_json::{Value, json};

/// How a call to the block ended when it did not answer: `timeout`, `faulted`, `refused`,
/// `no-reply` or `unavailable`, as the block's callers see it.
pub use bagpipe::testkit::CallFailure;

/// Starts describing the block in the component file `component` (a `.wasm` built for
/// `wasm32-wasip2`, e.g. by [`build`]).
pub fn block(component: impl AsRef<Path>) -> Builder {
    Builder {
        component: component.as_ref().to_path_buf(),
        entry: String::new(),
        config: None,
        stand_ins: Vec::new(),
        server: false,
    }
}

/// How a stand-in answers a call made to it: `Some(Ok(answer))`, `Some(Err(why))` to refuse the
/// request, `None` to handle it without answering.
pub type Answer = bagpipe::testkit::Answer;

/// A block to start, and what it reaches.
pub struct Builder {
    component: PathBuf,
    entry: String,
    config: Option<Value>,
    stand_ins: Vec<(String, Option<Answer>)>,
    server: bool,
}

impl Builder {
    /// The config `init` is handed (a JSON object; without it, the entry's `[block.config]`,
    /// or none).
    pub fn config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// More of the block's manifest entry, in TOML as under `[[block]]`: grants
    /// (`listen = ["tcp://127.0.0.1:0"]`, `publish = ["logs.>"]`...), limits, its restart policy.
    pub fn entry(mut self, toml: &str) -> Self {
        self.entry.push_str(toml);
        self.entry.push('\n');
        self
    }

    /// A stand-in called `name`: a target the block may send bags to, which records them.
    pub fn stand_in(mut self, name: &str) -> Self {
        self.stand_ins.push((name.to_owned(), None));
        self
    }

    /// A stand-in called `name` that answers the calls made to it with `answer`.
    pub fn answering(
        mut self,
        name: &str,
        answer: impl FnMut(&Value) -> Option<Result<Value, String>> + Send + 'static,
    ) -> Self {
        self.stand_ins.push((name.to_owned(), Some(Box::new(answer))));
        self
    }

    /// Gives the block a message server (a NATS-protocol server in the test's process).
    pub fn with_server(mut self) -> Self {
        self.server = true;
        self
    }

    /// Loads and checks the component, calls `init` and `run`.
    pub fn start(self) -> Result<Block, TestError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut setup = Setup::component(&self.component, &self.entry)?;
        if let Some(config) = self.config {
            setup = setup.config(config)?;
        }
        setup.stand_ins = self.stand_ins;
        setup.server = self.server;
        let bench = runtime.block_on(Bench::start(setup))?;
        Ok(Block { runtime, bench: Some(bench) })
    }
}

/// A running block under test. Dropped without [`Block::finish`], it is let go (not finished).
pub struct Block {
    runtime: tokio::runtime::Runtime,
    bench: Option<Bench>,
}

impl Block {
    fn bench(&mut self) -> &mut Bench {
        // Only `finish` takes it, and that consumes the block.
        self.bench.as_mut().expect("the bench lives as long as the block")
    }

    fn run<T>(&mut self, f: impl AsyncFnOnce(&mut Bench) -> T) -> T {
        let bench = self.bench.as_mut().expect("the bench lives as long as the block");
        self.runtime.block_on(f(bench))
    }

    /// Gives the block `bag` (from `test`), and returns once it has done everything that caused.
    pub fn enqueue(&mut self, bag: Value) -> Result<(), TestError> {
        self.run(async |b| b.enqueue(&bag).await)
    }

    /// Gives the block the JSON text `bag`, checked as any bag is (too large, too deep, not an
    /// object: refused).
    pub fn enqueue_text(&mut self, bag: &str) -> Result<(), TestError> {
        self.run(async |b| b.enqueue_text(bag).await)
    }

    /// Calls the block with `bag`; the outcome of the call (its answer, or why there is none).
    pub fn call(&mut self, bag: Value) -> Result<Result<Value, CallFailure>, TestError> {
        self.run(async |b| b.call(&bag).await)
    }

    /// Moves the clock `by` forward: the block's timers it passes fire, in order, each when it
    /// is due (a timer its handler sets again fires again within `by`).
    pub fn advance(&mut self, by: Duration) -> Result<(), TestError> {
        self.run(async |b| b.advance(by).await)
    }

    /// The block's pending timers, soonest first.
    pub fn timers(&mut self) -> Vec<PendingTimer> {
        self.bench().timers()
    }

    /// Takes what reached stand-in `target` since the last call, host keys and all.
    pub fn sent_to(&mut self, target: &str) -> Vec<Arrived> {
        self.bench().sent_to(target).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Takes the bags that reached stand-in `target` since the last call, without the host's
    /// keys. Panics when there is no such stand-in.
    pub fn bags_to(&mut self, target: &str) -> Vec<Value> {
        self.sent_to(target).iter().map(|a| without_host_keys(&a.bag)).collect()
    }

    /// Makes stand-in `target` refuse every bag with `queue-full` until [`Block::reopen`].
    pub fn fill(&mut self, target: &str) -> Result<(), TestError> {
        self.bench().fill(target)
    }

    /// Lets stand-in `target` take bags again.
    pub fn reopen(&mut self, target: &str) -> Result<(), TestError> {
        self.bench().reopen(target)
    }

    /// Takes the lines the block logged since the last call.
    pub fn logs(&mut self) -> Vec<LogLine> {
        self.bench().logs()
    }

    /// Takes the faults of the block's instances since the last call.
    pub fn faults(&mut self) -> Vec<Fault> {
        self.bench().faults()
    }

    /// Takes what the block printed since the last call.
    pub fn printed(&mut self) -> String {
        self.bench().printed()
    }

    /// How the block ended, once it has (it failed for good).
    pub fn ended(&mut self) -> Option<String> {
        self.bench().ended().map(str::to_owned)
    }

    /// The block's counters and state.
    pub fn stats(&mut self) -> bagpipe::StatsSnapshot {
        self.bench().stats()
    }

    /// The block's listeners as bound (`tcp://127.0.0.1:40123`).
    pub fn listeners(&mut self) -> Vec<String> {
        self.bench().listeners()
    }

    /// Connects to the block's TCP listener (the first, or the one whose URL contains `which`).
    pub fn connect(&mut self, which: Option<&str>) -> Result<Conn, TestError> {
        self.run(async |b| b.connect(which).await)
    }

    /// The test's end of `conn`: the peer address the block sees.
    pub fn local_addr(&mut self, conn: Conn) -> Result<std::net::SocketAddr, TestError> {
        self.bench().local_addr(conn)
    }

    /// The test's UDP socket address (the peer the block sees), once it sent a datagram.
    pub fn udp_addr(&mut self) -> Option<std::net::SocketAddr> {
        self.bench().udp_addr()
    }

    /// Writes `bytes` on `conn`.
    pub fn send(&mut self, conn: Conn, bytes: &[u8]) -> Result<(), TestError> {
        self.run(async |b| b.send(conn, bytes).await)
    }

    /// What the block wrote on `conn` since the last call.
    pub fn received(&mut self, conn: Conn) -> Result<Vec<u8>, TestError> {
        self.run(async |b| b.received(conn).await)
    }

    /// Whether the block closed `conn`.
    pub fn closed_by_block(&mut self, conn: Conn) -> Result<bool, TestError> {
        self.run(async |b| b.closed_by_block(conn).await)
    }

    /// Closes `conn` from the test's side.
    pub fn close(&mut self, conn: Conn) -> Result<(), TestError> {
        self.run(async |b| b.close(conn).await)
    }

    /// Sends the datagram `bytes` to the block's UDP listener.
    pub fn datagram(&mut self, which: Option<&str>, bytes: &[u8]) -> Result<(), TestError> {
        self.run(async |b| b.datagram(which, bytes).await)
    }

    /// The datagrams the block sent back to the test since the last call.
    pub fn datagrams(&mut self) -> Result<Vec<Vec<u8>>, TestError> {
        self.run(async |b| b.datagrams().await)
    }

    /// Takes what the block published since the last call, as the server received it (a bag's
    /// payload carries its host keys: compare it with [`without_host_keys`]). Its answers to
    /// the test's messages are among them.
    pub fn published(&mut self) -> Result<Vec<Published>, TestError> {
        self.bench().published()
    }

    /// The subjects subscribed on the server (the block's subscriptions).
    pub fn subscriptions(&mut self) -> Result<Vec<String>, TestError> {
        self.bench().subscriptions()
    }

    /// Sends a server message on `subject` to the block's subscription.
    pub fn message(&mut self, subject: &str, payload: &[u8], reply: Option<&str>) -> Result<(), TestError> {
        self.run(async |b| b.message(subject, payload, reply).await)
    }

    /// Takes the server away: the block hears `on-server-disconnect`.
    pub fn server_disconnect(&mut self) -> Result<(), TestError> {
        self.run(async |b| b.server_disconnect().await)
    }

    /// Brings the server back: the block hears `on-server-connect`.
    pub fn server_reconnect(&mut self) -> Result<(), TestError> {
        self.run(async |b| b.server_reconnect().await)
    }

    /// Swaps the block to the component in `component`, its state carried by its snapshot.
    pub fn swap(&mut self, component: impl AsRef<Path>) -> Result<(), TestError> {
        self.run(async |b| b.swap(component.as_ref()).await)
    }

    /// Finishes the block: what is queued is delivered, then `finish`; gives what it did while
    /// finishing.
    pub fn finish(mut self) -> Result<Finished, TestError> {
        let bench = self.bench.take().expect("the bench lives as long as the block");
        self.runtime.block_on(bench.finish())
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("bench", &self.bench).finish()
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(bench) = self.bench.take() {
            self.runtime.block_on(bench.abandon());
        }
    }
}
