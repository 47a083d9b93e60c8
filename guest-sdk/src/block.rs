//! [`Block`]: the trait a block implements, and its [`Config`].

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::bag::Bag;
use crate::controller::{CallError, CallId, Connection, Controller, ServerInfo, StreamEnd, StreamId};

/// A block's `config` table from the manifest, as JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config(Map<String, Value>);

impl Config {
    pub(crate) fn from_json(text: &str) -> Result<Self, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(Value::Null) => Ok(Self::default()),
            Ok(other) => Err(format!("config must be a table, got {other}")),
            Err(e) => Err(format!("config is not JSON: {e}")),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The string at `key`, or `default`.
    pub fn str_or(&self, key: &str, default: &str) -> String {
        self.get(key).and_then(Value::as_str).unwrap_or(default).to_owned()
    }

    /// The unsigned integer at `key`, or `default`.
    pub fn u64_or(&self, key: &str, default: u64) -> u64 {
        self.get(key).and_then(Value::as_u64).unwrap_or(default)
    }

    /// The boolean at `key`, or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or(default)
    }

    /// Reads the whole table into a type of the block's own; the error names what did not fit.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(Value::Object(self.0.clone())).map_err(|e| format!("config: {e}"))
    }

    /// The table as a JSON map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// A block: one protocol adapter, transform or sink.
///
/// `init` builds the block's state from its config; every other method runs on that state. The
/// optional hooks do nothing by default, and the host calls a hook only when the block lists it in
/// [`export_block!`](crate::export_block): a block that does not list `on_enqueue` receives no
/// bags (`enqueue` to it returns `Ok(false)`).
///
/// A panic in any method ends this block instance only (the host logs the panic message); the
/// host and the other blocks carry on.
pub trait Block: Sized + 'static {
    /// Called once before any block runs. An error stops the host's start-up.
    fn init(ctl: &Controller, config: Config) -> Result<Self, String>;

    /// Called once after every block's `init` succeeded: send first bags, set timers. Must return.
    fn run(&mut self, ctl: &Controller) {
        let _ = ctl;
    }

    /// Called once when the block is finished; bags already queued were delivered before.
    fn finish(&mut self, ctl: &Controller) -> Result<(), String> {
        let _ = ctl;
        Ok(())
    }

    /// A bag sent to this block (list `on_enqueue`). An error is logged and counted; the block
    /// carries on.
    fn on_enqueue(&mut self, ctl: &Controller, bag: Bag) -> Result<(), String> {
        let _ = (ctl, bag);
        Ok(())
    }

    /// A call made with [`Controller::call`] has ended (list `on_reply`): with the target's
    /// answer, or with why there is none. Each call the host accepted ends here exactly once.
    fn on_reply(&mut self, ctl: &Controller, call: CallId, outcome: Result<Bag, CallError>) {
        let _ = (ctl, call, outcome);
    }

    /// Another block opened a stream to this one (list `streams`): `from` is its
    /// responsibility, `bag` what it sent with it. An error refuses the stream (the opener
    /// hears [`StreamEnd::Refused`]).
    fn on_stream_open(&mut self, ctl: &Controller, stream: StreamId, from: String, bag: Bag) -> Result<(), String> {
        let _ = (ctl, stream, from, bag);
        Ok(())
    }

    /// The next bag of a stream opened to this block (list `streams`).
    fn on_stream_data(&mut self, ctl: &Controller, stream: StreamId, bag: Bag) {
        let _ = (ctl, stream, bag);
    }

    /// A stream of this block ended (list `streams`): the other side ended it, refused it,
    /// faulted or finished. After its last bag; its id is gone.
    fn on_stream_end(&mut self, ctl: &Controller, stream: StreamId, end: StreamEnd) {
        let _ = (ctl, stream, end);
    }

    /// A timer set with [`Controller::set_timer`] is due (list `on_timer`).
    fn on_timer(&mut self, ctl: &Controller, tag: String) {
        let _ = (ctl, tag);
    }

    /// The host connected to its message server (list `on_server`).
    fn on_server_connect(&mut self, ctl: &Controller, info: ServerInfo) {
        let _ = (ctl, info);
    }

    /// The host lost its message server (list `on_server`).
    fn on_server_disconnect(&mut self, ctl: &Controller) {
        let _ = ctl;
    }

    /// A client connected to one of the block's listeners (list `net`).
    fn on_accept(&mut self, ctl: &Controller, conn: Connection, listener: String, peer: String) {
        let _ = (ctl, conn, listener, peer);
    }

    /// Bytes arrived on a connection (list `net`). Framing is the block's business: a message
    /// may arrive in pieces, or several in one piece.
    fn on_data(&mut self, ctl: &Controller, conn: Connection, data: Vec<u8>) {
        let _ = (ctl, conn, data);
    }

    /// A connection closed; its id is gone (list `net`).
    fn on_close(&mut self, ctl: &Controller, conn: Connection) {
        let _ = (ctl, conn);
    }

    /// A datagram arrived on one of the block's UDP listeners (list `net`).
    fn on_datagram(&mut self, ctl: &Controller, listener: String, peer: String, data: Vec<u8>) {
        let _ = (ctl, listener, peer, data);
    }

    /// The block's state, for the next version of this block when the host swaps it (list
    /// `state`). Called between bags, on the old version.
    fn snapshot(&mut self, ctl: &Controller) -> Vec<u8> {
        let _ = ctl;
        Vec::new()
    }

    /// Takes over a previous version's [`Block::snapshot`], after `init` (list `state`). An
    /// error rejects this version and the old one keeps running.
    fn restore(&mut self, ctl: &Controller, state: Vec<u8>) -> Result<(), String> {
        let _ = (ctl, state);
        Ok(())
    }
}
