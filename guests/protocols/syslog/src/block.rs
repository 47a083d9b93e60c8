//! The syslog block: sockets in, one bag per message out.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::Duration;

use bagpipe_guest::{Bag, Block, Config, Connection, Controller, EnqueueError, ServerError, Value, json};

use crate::frame::{Frame, Framer};
use crate::parse;

/// What sets one build of the block apart from another.
pub trait Flavor: 'static {
    /// A field (name, value) added to every parsed bag.
    const EXTRA: Option<(&'static str, &'static str)> = None;
}

/// One TCP connection.
struct Conn {
    /// `None` for a connection accepted before this instance started (after a restart).
    peer: Option<String>,
    framer: Framer,
}

/// Where each message goes.
struct Out {
    /// The responsibility it is enqueued to; empty: none.
    to: String,
    /// The server subject it is published to, if any.
    publish: Option<String>,
}

/// How soon the block tries again to publish what its outbox refused.
const RETRY: Duration = Duration::from_millis(20);

/// Messages the host's outbox refused (`busy`: the server is away or slow), published first and
/// in order as soon as it takes them again. The host hands the block no more data while its
/// outbox is that full, so this holds at most what one delivery parsed into.
#[derive(Default)]
struct Waiting {
    bags: VecDeque<Bag>,
    /// A retry timer is set.
    timer: bool,
}

impl Waiting {
    /// Publishes `bag` to `subject` after whatever waits; keeps it if the outbox is full.
    fn publish(&mut self, ctl: &Controller, subject: &str, bag: Bag) {
        self.bags.push_back(bag);
        self.flush(ctl, subject);
    }

    /// Publishes what waits, in order, until the outbox is full again (then a timer retries).
    fn flush(&mut self, ctl: &Controller, subject: &str) {
        while let Some(bag) = self.bags.front() {
            match ctl.publish(subject, bag) {
                Ok(()) => {}
                Err(ServerError::Busy(_)) => {
                    if !self.timer {
                        self.timer = ctl.set_timer(RETRY, "publish").is_ok();
                    }
                    return;
                }
                Err(e) => ctl.warn(&format!("cannot publish a syslog message to `{subject}`: {e}")),
            }
            self.bags.pop_front();
        }
    }
}

pub struct Syslog<F: Flavor> {
    out: Out,
    max_frame: usize,
    conns: HashMap<Connection, Conn>,
    waiting: Waiting,
    /// What one delivery parsed, for `to` (sent before the delivery returns).
    outgoing: Vec<Bag>,
    flavor: PhantomData<F>,
}

impl<F: Flavor> Syslog<F> {
    /// Turns one frame into a bag: published at once (when the block publishes), and kept in
    /// `outgoing` for `to`.
    fn emit(
        ctl: &Controller,
        out: &Out,
        waiting: &mut Waiting,
        outgoing: &mut Vec<Bag>,
        transport: &str,
        peer: Option<&str>,
        frame: Frame<'_>,
    ) {
        let parsed = match frame {
            Frame::Message(bytes) => parse::parse(bytes).map_err(|reason| (reason, bytes)),
            Frame::TooLong(bytes) => Err(("frame too long", bytes)),
            Frame::Truncated(bytes) => Err(("truncated frame", bytes)),
        };
        let bag = match parsed {
            Ok(fields) => {
                let mut bag = Bag::from(fields);
                if let Some((name, value)) = F::EXTRA {
                    bag.insert(name.into(), value.into());
                }
                bag
            }
            Err((reason, bytes)) => {
                Bag::new().with("unparsed", true).with("reason", reason).with("raw", parse::raw(bytes))
            }
        };
        let bag = bag.with("transport", transport).with("peer", peer.map_or(Value::Null, Value::from));
        if let Some(subject) = &out.publish {
            waiting.publish(ctl, subject, bag.clone());
        }
        if !out.to.is_empty() {
            outgoing.push(bag);
        }
    }

    /// Passes what one delivery parsed into on to `to`, in one host call where it can: a
    /// message that cannot be a bag there is skipped (and said), anything else ends the list.
    fn pass_on(ctl: &Controller, to: &str, outgoing: &mut Vec<Bag>) {
        let mut rest = &outgoing[..];
        while !rest.is_empty() {
            let sent = ctl.enqueue_many(to, rest);
            if !sent.queued {
                ctl.warn(&format!("`{to}` takes no bags: {} syslog messages were dropped", rest.len()));
                break;
            }
            rest = &rest[(sent.taken as usize).min(rest.len())..];
            match sent.error {
                None => {}
                Some(e @ (EnqueueError::TooLarge(_) | EnqueueError::InvalidBag(_))) => {
                    ctl.warn(&format!("cannot pass a syslog message on to `{to}`: {e}"));
                    rest = rest.get(1..).unwrap_or_default();
                }
                Some(e) => {
                    ctl.warn(&format!("cannot pass {} syslog messages on to `{to}`: {e}", rest.len()));
                    break;
                }
            }
        }
        outgoing.clear();
    }
}

impl<F: Flavor> Block for Syslog<F> {
    fn init(_ctl: &Controller, config: Config) -> Result<Self, String> {
        let max_frame = match config.get("max_frame") {
            None => 65536,
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("max_frame must be a positive number of bytes, not {v}"))?,
        };
        let publish = config.get("publish").and_then(|v| v.as_str()).map(str::to_owned);
        let out = Out { to: config.str_or("to", "sink"), publish };
        Ok(Syslog {
            out,
            max_frame,
            conns: HashMap::new(),
            waiting: Waiting::default(),
            outgoing: Vec::new(),
            flavor: PhantomData,
        })
    }

    fn on_accept(&mut self, _ctl: &Controller, conn: Connection, _listener: String, peer: String) {
        self.conns.insert(conn, Conn { peer: Some(peer), framer: Framer::new(self.max_frame) });
    }

    fn on_data(&mut self, ctl: &Controller, conn: Connection, data: Vec<u8>) {
        let max_frame = self.max_frame;
        let Conn { peer, framer } =
            self.conns.entry(conn).or_insert_with(|| Conn { peer: None, framer: Framer::new(max_frame) });
        let (out, waiting, outgoing) = (&self.out, &mut self.waiting, &mut self.outgoing);
        framer.push(&data, &mut |frame| Self::emit(ctl, out, waiting, outgoing, "tcp", peer.as_deref(), frame));
        Self::pass_on(ctl, &self.out.to, &mut self.outgoing);
    }

    /// Publishes what still waits, if the outbox takes it; says what it could not.
    fn finish(&mut self, ctl: &Controller) -> Result<(), String> {
        if let Some(subject) = &self.out.publish {
            self.waiting.flush(ctl, subject);
        }
        if !self.waiting.bags.is_empty() {
            ctl.warn(&format!(
                "{} syslog messages were never published: the outbox stayed full",
                self.waiting.bags.len()
            ));
        }
        Ok(())
    }

    fn on_timer(&mut self, ctl: &Controller, tag: String) {
        if tag == "publish" {
            self.waiting.timer = false;
            if let Some(subject) = &self.out.publish {
                self.waiting.flush(ctl, subject);
            }
        }
    }

    fn on_close(&mut self, ctl: &Controller, conn: Connection) {
        if let Some(Conn { peer, framer }) = self.conns.remove(&conn)
            && let Some(frame) = framer.finish()
        {
            Self::emit(ctl, &self.out, &mut self.waiting, &mut self.outgoing, "tcp", peer.as_deref(), frame);
            Self::pass_on(ctl, &self.out.to, &mut self.outgoing);
        }
    }

    /// The connections, their peers and unfinished frames, and the messages waiting to be
    /// published: a swap loses no byte.
    fn snapshot(&mut self, _ctl: &Controller) -> Vec<u8> {
        let conns: Vec<Value> = self
            .conns
            .iter()
            .map(|(id, c)| json!({ "conn": id, "peer": c.peer, "framer": c.framer.snapshot() }))
            .collect();
        let waiting: Vec<&Bag> = self.waiting.bags.iter().collect();
        json!({ "conns": conns, "waiting": waiting }).to_string().into_bytes()
    }

    /// Takes over a previous version's connections; a state it cannot read is logged and dropped.
    fn restore(&mut self, ctl: &Controller, state: Vec<u8>) -> Result<(), String> {
        let read = |conn: &Value| {
            let framer = Framer::restore(self.max_frame, conn.get("framer")?)?;
            let peer = conn.get("peer")?.as_str().map(str::to_owned);
            Some((conn.get("conn")?.as_u64()?, Conn { peer, framer }))
        };
        let state = bagpipe_guest::serde_json::from_slice::<Value>(&state).ok();
        if let Some(waiting) = state.as_ref().and_then(|s| s.get("waiting")?.as_array().cloned()) {
            self.waiting.bags = waiting.into_iter().filter_map(|b| Bag::from_json(&b.to_string()).ok()).collect();
            if !self.waiting.bags.is_empty() {
                self.waiting.timer = ctl.set_timer(RETRY, "publish").is_ok();
            }
        }
        let conns = state
            .as_ref()
            .and_then(|s| s.get("conns")?.as_array()?.iter().map(read).collect::<Option<HashMap<_, _>>>());
        match conns {
            Some(conns) => self.conns = conns,
            None => ctl.warn("cannot read the previous version's state: its connections start afresh"),
        }
        Ok(())
    }

    fn on_datagram(&mut self, ctl: &Controller, _listener: String, peer: String, data: Vec<u8>) {
        // Reported as the framer reports a TCP frame that is too long: its first `max_frame` bytes.
        let frame =
            if data.len() > self.max_frame { Frame::TooLong(&data[..self.max_frame]) } else { Frame::Message(&data) };
        Self::emit(ctl, &self.out, &mut self.waiting, &mut self.outgoing, "udp", Some(&peer), frame);
        Self::pass_on(ctl, &self.out.to, &mut self.outgoing);
    }
}
