//! Newline-delimited JSON over TCP, both ways.
//!
//! In: each line a client sends must be one JSON object; it is sent on, as it is, to `to`.
//! A line that is not a JSON object, sets a key starting with `__`, is longer than `max_line`
//! or cannot be enqueued (the target refused it, or takes no bags) is answered on its connection
//! with one line `{"error": "..."}` and counted; the connection stays open. Blank lines are
//! skipped, a `\r` before the newline is dropped, and a last line without a newline is taken when
//! the connection closes.
//!
//! Out: every bag sent to this block is written to every connected client as one JSON line,
//! without the host's `__` keys. A client whose send fails (it stopped reading, say) misses
//! that bag; after 3 failures in a row it is closed. A hot swap carries the clients and their
//! unfinished lines over to the new version (`state` hook); after a restart, the fresh instance
//! picks up the clients still connected from `ctl.connections()` (an unfinished line is lost).
//!
//! Config: `to` (where lines go, default `"sink"`), `max_line` (the longest line in bytes,
//! default 1048576; a longer one is discarded up to its newline).
use std::collections::HashMap;

use bagpipe_guest::serde_json::from_slice;
use bagpipe_guest::{Bag, Block, Config, Connection, Controller, NetError, Value, export_block, json};

/// Failed sends in a row after which a client is closed.
const MAX_FAILURES: u32 = 3;

#[derive(Default)]
struct Client {
    /// The start of a line whose newline has not come yet.
    buf: Vec<u8>,
    /// How many bytes at the start of `buf` are known to hold no newline.
    scanned: usize,
    /// Inside a line that is too long: drop bytes up to its newline.
    discarding: bool,
    /// Failed sends in a row.
    failures: u32,
    /// Closed by this block; `on_close` is to come.
    closing: bool,
}

struct Jsonl {
    to: String,
    max_line: usize,
    clients: HashMap<Connection, Client>,
    refused: u64,
}

/// Checks one line and sends it on.
fn take_line(ctl: &Controller, to: &str, line: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(line).map_err(|_| "the line is not UTF-8".to_owned())?;
    match bagpipe_guest::serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            if let Some(key) = map.keys().find(|k| k.starts_with("__")) {
                return Err(format!("`{key}`: keys starting with `__` belong to the host"));
            }
        }
        Ok(_) => return Err("a line must be one JSON object".to_owned()),
        Err(e) => return Err(format!("the line is not JSON: {e}")),
    }
    match ctl.enqueue_json(to, text) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("`{to}` takes no bags")),
        Err(e) => Err(format!("cannot enqueue to `{to}`: {e}")),
    }
}

/// Answers a refused line with `{"error": ..}`.
fn refuse(ctl: &Controller, conn: Connection, refused: &mut u64, why: &str) {
    *refused += 1;
    let line = format!("{}\n", json!({ "error": why }));
    if let Err(e) = ctl.send(conn, line.as_bytes()) {
        ctl.debug(&format!("cannot answer connection {conn}: {e}"));
    }
}

impl Block for Jsonl {
    fn init(_ctl: &Controller, config: Config) -> Result<Self, String> {
        let max_line = match config.get("max_line") {
            None => 1 << 20,
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("max_line must be a positive number of bytes, not {v}"))?,
        };
        Ok(Jsonl { to: config.str_or("to", "sink"), max_line, clients: HashMap::new(), refused: 0 })
    }

    /// Clients stay connected when the block restarts after a fault: a fresh instance picks them
    /// up here (after a swap, `restore` has already brought them with their unfinished lines).
    fn run(&mut self, ctl: &Controller) {
        for open in ctl.connections() {
            self.clients.entry(open.conn).or_default();
        }
    }

    fn finish(&mut self, ctl: &Controller) -> Result<(), String> {
        if self.refused > 0 {
            ctl.info(&format!("{} lines refused", self.refused));
        }
        Ok(())
    }

    fn on_enqueue(&mut self, ctl: &Controller, bag: Bag) -> Result<(), String> {
        let line = format!("{}\n", bag.payload().to_json());
        let mut gone = Vec::new();
        for (&conn, client) in self.clients.iter_mut().filter(|(_, c)| !c.closing) {
            match ctl.send(conn, line.as_bytes()) {
                Ok(()) => client.failures = 0,
                Err(NetError::UnknownConnection(_)) => gone.push(conn),
                Err(e) => {
                    client.failures += 1;
                    if client.failures >= MAX_FAILURES {
                        ctl.warn(&format!("closing connection {conn} after {MAX_FAILURES} failed sends: {e}"));
                        client.closing = true;
                        let _ = ctl.close(conn);
                    }
                }
            }
        }
        for conn in gone {
            self.clients.remove(&conn);
        }
        Ok(())
    }

    /// The clients and their unfinished lines: a swap loses no client and no byte.
    fn snapshot(&mut self, _ctl: &Controller) -> Vec<u8> {
        let clients: Vec<Value> = self
            .clients
            .iter()
            .map(|(id, c)| {
                json!({ "conn": id, "buf": c.buf, "discarding": c.discarding, "failures": c.failures, "closing": c.closing })
            })
            .collect();
        json!({ "clients": clients, "refused": self.refused }).to_string().into_bytes()
    }

    /// Takes over a previous version's clients; a state it cannot read is logged and dropped.
    fn restore(&mut self, ctl: &Controller, state: Vec<u8>) -> Result<(), String> {
        let read = |c: &Value| {
            let buf =
                c.get("buf")?.as_array()?.iter().map(|b| u8::try_from(b.as_u64()?).ok()).collect::<Option<_>>()?;
            let client = Client {
                buf,
                scanned: 0,
                discarding: c.get("discarding")?.as_bool()?,
                failures: u32::try_from(c.get("failures")?.as_u64()?).ok()?,
                closing: c.get("closing")?.as_bool()?,
            };
            Some((c.get("conn")?.as_u64()?, client))
        };
        let state = from_slice::<Value>(&state).ok();
        match state.as_ref().and_then(|s| s.get("clients")?.as_array()?.iter().map(read).collect::<Option<_>>()) {
            Some(clients) => {
                self.clients = clients;
                self.refused = state.as_ref().and_then(|s| s.get("refused")?.as_u64()).unwrap_or(0);
            }
            None => ctl.warn("cannot read the previous version's state: its clients start afresh"),
        }
        Ok(())
    }

    fn on_accept(&mut self, _ctl: &Controller, conn: Connection, _listener: String, _peer: String) {
        self.clients.insert(conn, Client::default());
    }

    fn on_data(&mut self, ctl: &Controller, conn: Connection, data: Vec<u8>) {
        let Jsonl { to, max_line, clients, refused } = self;
        let client = clients.entry(conn).or_default();
        if client.closing {
            return;
        }
        client.buf.extend_from_slice(&data);
        let scanned = std::mem::take(&mut client.scanned);
        let mut pos = 0;
        while pos < client.buf.len() {
            let rest = &client.buf[pos..];
            let from = if pos == 0 { scanned.min(rest.len()) } else { 0 };
            let Some(end) = rest[from..].iter().position(|&b| b == b'\n').map(|i| from + i) else {
                // (A `\r` at the end may be the one before the newline.)
                if client.discarding || rest.strip_suffix(b"\r").unwrap_or(rest).len() > *max_line {
                    if !client.discarding {
                        refuse(ctl, conn, refused, &format!("line longer than {max_line} bytes"));
                        client.discarding = true;
                    }
                    pos = client.buf.len();
                } else {
                    // After the drain below, this line starts the buffer.
                    client.scanned = rest.len();
                }
                break;
            };
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if client.discarding {
                client.discarding = false;
            } else if line.len() > *max_line {
                refuse(ctl, conn, refused, &format!("line longer than {max_line} bytes"));
            } else if !line.trim_ascii().is_empty()
                && let Err(why) = take_line(ctl, to, line)
            {
                refuse(ctl, conn, refused, &why);
            }
            pos += end + 1;
        }
        client.buf.drain(..pos);
    }

    fn on_close(&mut self, ctl: &Controller, conn: Connection) {
        // A last line without its newline still counts; there is no one left to answer.
        if let Some(client) = self.clients.remove(&conn)
            && !client.discarding
            && client.buf.len() <= self.max_line
            && !client.buf.trim_ascii().is_empty()
            && let Err(why) = take_line(ctl, &self.to, client.buf.strip_suffix(b"\r").unwrap_or(&client.buf))
        {
            self.refused += 1;
            ctl.debug(&format!("last line of connection {conn} refused: {why}"));
        }
    }
}

export_block!(Jsonl, hooks = [net, on_enqueue, state]);
