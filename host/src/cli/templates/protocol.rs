//! A protocol block: each line a client sends over TCP becomes a bag `{"line": "..."}` for the
//! responsibility named by its config's `to`, and is answered `ok` (or `error: why`) on its
//! connection. The block listens where its manifest entry's `listen` grant says; the host owns
//! the sockets and hands the block their bytes.
use std::collections::HashMap;

use bagpipe_guest::{Bag, Block, Config, Connection, Controller, export_block};

/// The longest line taken, in bytes; a client sending a longer one is answered and closed.
const MAX_LINE: usize = 64 * 1024;

/// The block's state; each responsibility running this component has its own.
struct Protocol {
    /// Where bags go.
    to: String,
    /// Each open connection's unfinished line: bytes arrive in pieces of any size.
    lines: HashMap<Connection, Vec<u8>>,
}

impl Protocol {
    /// Sends `line` on as a bag; what to answer the client.
    fn take(&self, ctl: &Controller, line: &[u8]) -> String {
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        match ctl.enqueue(&self.to, &Bag::new().with("line", line.into_owned())) {
            Ok(true) => "ok\n".to_owned(),
            Ok(false) => format!("error: `{}` takes no bags\n", self.to),
            Err(e) => format!("error: {e}\n"),
        }
    }
}

impl Block for Protocol {
    fn init(_ctl: &Controller, config: Config) -> Result<Self, String> {
        let to = config.get("to").and_then(|v| v.as_str());
        let to = to.ok_or("config `to` (the responsibility bags go to) is missing")?;
        Ok(Protocol {
            to: to.to_owned(),
            lines: HashMap::new(),
        })
    }

    fn on_accept(&mut self, _ctl: &Controller, conn: Connection, _listener: String, _peer: String) {
        self.lines.insert(conn, Vec::new());
    }

    fn on_data(&mut self, ctl: &Controller, conn: Connection, data: Vec<u8>) {
        let mut buf = self.lines.remove(&conn).unwrap_or_default();
        buf.extend_from_slice(&data);
        let mut answers = String::new();
        let mut start = 0;
        while let Some(end) = buf[start..].iter().position(|&b| b == b'\n') {
            answers.push_str(&self.take(ctl, &buf[start..start + end]));
            start += end + 1;
        }
        buf.drain(..start);
        if buf.len() > MAX_LINE {
            answers.push_str(&format!("error: line longer than {MAX_LINE} bytes\n"));
        }
        if !answers.is_empty()
            && let Err(e) = ctl.send(conn, answers.as_bytes())
        {
            ctl.warn(&format!("cannot answer connection {conn}: {e}"));
        }
        if buf.len() > MAX_LINE {
            let _ = ctl.close(conn);
        } else {
            self.lines.insert(conn, buf);
        }
    }

    fn on_close(&mut self, _ctl: &Controller, conn: Connection) {
        self.lines.remove(&conn);
    }
}

export_block!(Protocol, hooks = [net]);
