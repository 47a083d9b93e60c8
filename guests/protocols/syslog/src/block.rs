//! The syslog block: sockets in, one bag per message out.

use std::collections::HashMap;
use std::marker::PhantomData;

use bagpipe_guest::{Bag, Block, Config, Connection, Controller, Value, json};

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

pub struct Syslog<F: Flavor> {
    out: Out,
    max_frame: usize,
    conns: HashMap<Connection, Conn>,
    flavor: PhantomData<F>,
}

impl<F: Flavor> Syslog<F> {
    /// Turns one frame into a bag and sends it on.
    fn emit(ctl: &Controller, out: &Out, transport: &str, peer: Option<&str>, frame: Frame<'_>) {
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
        if let Some(subject) = &out.publish
            && let Err(e) = ctl.publish(subject, &bag)
        {
            ctl.warn(&format!("cannot publish a syslog message to `{subject}`: {e}"));
        }
        let to = &out.to;
        if to.is_empty() {
            return;
        }
        match ctl.enqueue(to, &bag) {
            Ok(true) => {}
            Ok(false) => ctl.warn(&format!("`{to}` takes no bags: a syslog message was dropped")),
            Err(e) => ctl.warn(&format!("cannot pass a syslog message on to `{to}`: {e}")),
        }
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
        Ok(Syslog { out, max_frame, conns: HashMap::new(), flavor: PhantomData })
    }

    fn on_accept(&mut self, _ctl: &Controller, conn: Connection, _listener: String, peer: String) {
        self.conns.insert(conn, Conn { peer: Some(peer), framer: Framer::new(self.max_frame) });
    }

    fn on_data(&mut self, ctl: &Controller, conn: Connection, data: Vec<u8>) {
        let max_frame = self.max_frame;
        let Conn { peer, framer } =
            self.conns.entry(conn).or_insert_with(|| Conn { peer: None, framer: Framer::new(max_frame) });
        let out = &self.out;
        framer.push(&data, &mut |frame| Self::emit(ctl, out, "tcp", peer.as_deref(), frame));
    }

    fn on_close(&mut self, ctl: &Controller, conn: Connection) {
        if let Some(Conn { peer, framer }) = self.conns.remove(&conn)
            && let Some(frame) = framer.finish()
        {
            Self::emit(ctl, &self.out, "tcp", peer.as_deref(), frame);
        }
    }

    /// The connections, their peers and unfinished frames: a swap loses no byte.
    fn snapshot(&mut self, _ctl: &Controller) -> Vec<u8> {
        let conns: Vec<Value> = self
            .conns
            .iter()
            .map(|(id, c)| json!({ "conn": id, "peer": c.peer, "framer": c.framer.snapshot() }))
            .collect();
        json!({ "conns": conns }).to_string().into_bytes()
    }

    /// Takes over a previous version's connections; a state it cannot read is logged and dropped.
    fn restore(&mut self, ctl: &Controller, state: Vec<u8>) -> Result<(), String> {
        let read = |conn: &Value| {
            let framer = Framer::restore(self.max_frame, conn.get("framer")?)?;
            let peer = conn.get("peer")?.as_str().map(str::to_owned);
            Some((conn.get("conn")?.as_u64()?, Conn { peer, framer }))
        };
        let conns = bagpipe_guest::serde_json::from_slice::<Value>(&state)
            .ok()
            .and_then(|s| s.get("conns")?.as_array()?.iter().map(read).collect::<Option<HashMap<_, _>>>());
        match conns {
            Some(conns) => self.conns = conns,
            None => ctl.warn("cannot read the previous version's state: its connections start afresh"),
        }
        Ok(())
    }

    fn on_datagram(&mut self, ctl: &Controller, _listener: String, peer: String, data: Vec<u8>) {
        let frame = if data.len() > self.max_frame { Frame::TooLong(&data) } else { Frame::Message(&data) };
        Self::emit(ctl, &self.out, "udp", Some(&peer), frame);
    }
}
