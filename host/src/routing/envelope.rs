//! What travels through a block's queue ([`Envelope`]), and the receipt a durable bag carries
//! ([`Receipt`]) until the block is done with it.
//!
//! Invariant: no I/O. An envelope says what it holds (`bytes`, for the queue's budget), how to
//! describe it (dead letters, logs), and how the block was done with it: a durable bag's
//! receipt is settled, a request ends its call, a stream's open is refused; what a stream's
//! target no longer wants is `stale`.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::bindings::{CallFailure, StreamEnd};
use crate::routing::calls::CallToken;
use crate::routing::streams::{StreamsRef, Wanted, WindowPermit};

/// What travels through a block's queue: bags, and the events of the sockets the host holds
/// for the block, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// A checked and stamped bag, as JSON text.
    Bag(String),
    /// A bag from the block's durable stream; its receipt is done once the block is done with it.
    Durable {
        /// The bag, as JSON text.
        bag: String,
        /// Tells the stream's consumer that the bag may be acknowledged.
        receipt: Receipt,
    },
    /// A request from another block's `call`: a checked and stamped bag (with `__reply`), and
    /// the call it belongs to, which ends once the block is done with it.
    Call {
        /// The bag, as JSON text.
        bag: String,
        /// Which call it is.
        call: CallToken,
    },
    /// The outcome of a call this block made.
    Reply {
        /// The call's id.
        call: u64,
        /// The answer (a stamped bag), or why there is none.
        outcome: Result<String, CallFailure>,
    },
    /// Another block opened a stream to this one.
    StreamOpen {
        /// The stream's id.
        stream: u64,
        /// The opener's responsibility.
        from: String,
        /// What it sent with it (a stamped bag).
        bag: String,
        /// The stream table, to refuse the stream.
        streams: StreamsRef,
    },
    /// The next bag of a stream to this block.
    StreamData {
        /// The stream's id.
        stream: u64,
        /// The bag (stamped).
        bag: String,
        /// Whether its target still wants it.
        wanted: Wanted,
        /// Its place in the stream's window, given back once it is handled.
        window: WindowPermit,
    },
    /// A stream of this block ended.
    StreamEnd {
        /// The stream's id.
        stream: u64,
        /// Why.
        end: StreamEnd,
    },
    /// A client connected to one of the block's listeners.
    Accept {
        /// The connection's id.
        conn: u64,
        /// The listener, as bound.
        listener: String,
        /// The client's `ip:port`.
        peer: String,
    },
    /// Bytes arrived on a connection.
    Data {
        /// The connection's id.
        conn: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A connection closed.
    Closed {
        /// The connection's id.
        conn: u64,
    },
    /// A datagram arrived.
    Datagram {
        /// The UDP listener, as bound.
        listener: String,
        /// The sender's `ip:port`.
        peer: String,
        /// The datagram.
        data: Vec<u8>,
    },
}

impl Envelope {
    /// A JSON description, for dead letters and logs (a bag is itself).
    pub fn describe(&self) -> serde_json::Value {
        let text = |d: &[u8]| String::from_utf8_lossy(&d[..d.len().min(1024)]).into_owned();
        match self {
            Envelope::Bag(bag) | Envelope::Durable { bag, .. } | Envelope::Call { bag, .. } => {
                serde_json::from_str(bag).unwrap_or_else(|_| serde_json::Value::String(bag.clone()))
            }
            Envelope::Reply { call, outcome } => match outcome {
                Ok(bag) => {
                    serde_json::json!({"reply": call, "answer": serde_json::from_str::<serde_json::Value>(bag).ok()})
                }
                Err(failure) => serde_json::json!({"reply": call, "error": format!("{failure:?}")}),
            },
            Envelope::StreamOpen { stream, from, .. } => serde_json::json!({"stream": stream, "open_from": from}),
            Envelope::StreamData { stream, bag, .. } => {
                serde_json::json!({"stream": stream, "bag": serde_json::from_str::<serde_json::Value>(bag).ok()})
            }
            Envelope::StreamEnd { stream, end } => serde_json::json!({"stream": stream, "end": format!("{end:?}")}),
            Envelope::Accept { conn, listener, peer } => {
                serde_json::json!({"net": "accept", "conn": conn, "listener": listener, "peer": peer})
            }
            Envelope::Data { conn, data } => {
                serde_json::json!({"net": "data", "conn": conn, "bytes": data.len(), "text": text(data)})
            }
            Envelope::Closed { conn } => serde_json::json!({"net": "close", "conn": conn}),
            Envelope::Datagram { listener, peer, data } => serde_json::json!({
                "net": "datagram", "listener": listener, "peer": peer, "bytes": data.len(), "text": text(data)
            }),
        }
    }

    /// Whether it counts in a worker's progress (what its group handed it, took, settled): not
    /// a call's outcome nor a stream's end, which may reach a worker's queue through a place
    /// held there rather than from its group.
    pub fn counts_for_worker(&self) -> bool {
        !matches!(self, Envelope::Reply { .. } | Envelope::StreamEnd { .. })
    }

    /// The bytes it holds the host to (what counts against `queue_bytes`).
    pub fn bytes(&self) -> usize {
        match self {
            Envelope::Bag(bag) | Envelope::Durable { bag, .. } | Envelope::Call { bag, .. } => bag.len(),
            Envelope::Reply { outcome: Ok(bag), .. } => bag.len(),
            // A failure says little (a timeout, or a line of text): it goes into the place its
            // call reserved without bytes.
            Envelope::Reply { outcome: Err(_), .. } => 0,
            Envelope::StreamOpen { from, bag, .. } => from.len() + bag.len(),
            Envelope::StreamData { bag, .. } => bag.len(),
            // An end goes into the place reserved for it when the stream opened.
            Envelope::StreamEnd { .. } => 0,
            Envelope::Accept { listener, peer, .. } => listener.len() + peer.len(),
            Envelope::Data { data, .. } => data.len(),
            Envelope::Closed { .. } => 0,
            Envelope::Datagram { listener, peer, data } => listener.len() + peer.len() + data.len(),
        }
    }

    /// The block processed it: a durable bag is done with, so that its stream does not deliver
    /// it again; a request that was not answered ends its call with `no-reply`. Other envelopes
    /// need nothing.
    pub fn done(&self) {
        match self {
            Envelope::Durable { receipt, .. } => receipt.settle(Settled::Done),
            Envelope::Call { call, .. } => call.end(CallFailure::NoReply),
            _ => {}
        }
    }

    /// The block refused it (`on-enqueue` returned `why`): a durable bag is done with (the task
    /// decides whether it is delivered again first); a request that was not answered ends its
    /// call with `refused`.
    pub fn refused(&self, why: &str) {
        match self {
            Envelope::Durable { receipt, .. } => receipt.settle(Settled::Done),
            Envelope::Call { call, .. } => call.end(CallFailure::Refused(why.to_owned())),
            Envelope::StreamOpen { stream, streams, .. } => streams.0.refuse(*stream, why),
            _ => {}
        }
    }

    /// A bag of a stream its target's side has ended since it was sent, or the open of a stream
    /// that ended before it was delivered: not delivered.
    pub fn stale(&self) -> bool {
        match self {
            Envelope::StreamData { wanted, .. } => !wanted.get(),
            // A stream that ended before its target heard it open (the target faulted first).
            Envelope::StreamOpen { stream, streams, .. } => !streams.0.is_open(*stream),
            _ => false,
        }
    }

    /// Whether it belongs to a stream: never delivered again after a fault, nor a dead letter
    /// (a fault ends the stream, and its other side is told).
    pub fn of_stream(&self) -> bool {
        matches!(self, Envelope::StreamOpen { .. } | Envelope::StreamData { .. } | Envelope::StreamEnd { .. })
    }

    /// Whether it is a bag (plain, durable or a request), as opposed to a socket event or an
    /// answer.
    pub fn is_bag(&self) -> bool {
        matches!(self, Envelope::Bag(_) | Envelope::Durable { .. } | Envelope::Call { .. })
    }

    /// Marks a durable bag as a dead letter: the consumer stores it in the cluster's dead-letter
    /// stream, then counts and records it with the host's dead letters, and only then
    /// acknowledges it. Other envelopes need nothing.
    pub fn dead(&self, error: &str, attempts: u32) {
        if let Envelope::Durable { receipt, .. } = self {
            receipt.settle(Settled::Dead { error: error.to_owned(), attempts });
        }
    }
}

/// How the block was done with a durable bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Processed, or refused by the block: acknowledge it.
    Done,
    /// Given up on: a dead letter, acknowledged once its dead-letter stream stored it.
    Dead {
        /// The last error.
        error: String,
        /// How many times the block was given it.
        attempts: u32,
    },
}

/// The block is done with a durable bag. Clones share one receipt; it is settled at most once,
/// and when every clone is dropped unsettled, the consumer learns that too (the bag was never
/// finished with here, so its stream delivers it again).
#[derive(Clone)]
pub struct Receipt(Arc<Mutex<Option<oneshot::Sender<Settled>>>>);

impl Receipt {
    /// A receipt, and what its consumer waits on: `Ok` once settled, an error once dropped
    /// unsettled.
    pub fn new() -> (Self, oneshot::Receiver<Settled>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Says how the block is done with the bag (only the first call does anything).
    pub fn settle(&self, how: Settled) {
        if let Some(tx) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(how);
        }
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

impl PartialEq for Receipt {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Receipt {}
