//! A small HTTP/1.1 gateway: bags in over HTTP, parsed with `httparse`.
//!
//! - `POST /bags/<responsibility>` with a JSON object as its body (`content-length` required)
//!   sends the body, as it is, to that responsibility: 202 `{"queued":true}`, or 202
//!   `{"queued":false}` when the target takes no bags; 404 for an unknown target, 400 for a body
//!   that is not a JSON object or sets a key starting with `__`, 411 without `content-length`,
//!   413 for a body over `max_body` (answered before it is read) or over the target's bag limit,
//!   503 when the target's queue is full or it is unavailable.
//! - `GET /health`: 200 `{"ok":true}`.
//! - Any other path: 404; another method on these paths: 405 with `allow`.
//!
//! Every answer is JSON (`{"error": ".."}` for errors) with `content-type` and `content-length`.
//! Connections are kept alive (HTTP/1.1's default; `connection: close` and HTTP/1.0 without
//! `connection: keep-alive` close after the answer), requests may be pipelined, and a request
//! that arrives in pieces waits for the rest. `expect: 100-continue` is answered. A request head
//! over 16 KiB gets 431, a malformed one 400, a body over `max_body` 413, a chunked one 411; each
//! then closes the connection. A hot swap carries unanswered bytes over to the new version
//! (`state` hook).
//!
//! Config: `max_body` (the largest body in bytes, default 1048576).
mod request;

use std::collections::HashMap;

use bagpipe_guest::serde_json::from_slice;
use bagpipe_guest::{Block, Config, Connection, Controller, EnqueueError, Value, export_block, json};

use request::{Client, Event, Head, Response, reason};

/// Answers one whole request.
fn route(ctl: &Controller, head: &Head, body: &[u8]) -> Response {
    let path = head.path.split('?').next().unwrap_or_default();
    if path == "/health" {
        return match head.method.as_str() {
            "GET" => Response::ok(200, json!({ "ok": true })),
            _ => Response::not_allowed("GET"),
        };
    }
    let Some(target) = path.strip_prefix("/bags/").filter(|t| !t.is_empty()) else {
        return Response::error(404, format!("no such path: {path}"));
    };
    if head.method != "POST" {
        return Response::not_allowed("POST");
    }
    if !head.has_length {
        return Response::error(411, "content-length required");
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Response::error(400, "the body is not UTF-8");
    };
    match bagpipe_guest::serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            if let Some(key) = map.keys().find(|k| k.starts_with("__")) {
                return Response::error(400, format!("`{key}`: keys starting with `__` belong to the host"));
            }
        }
        Ok(_) => return Response::error(400, "the body must be one JSON object"),
        Err(e) => return Response::error(400, format!("the body is not JSON: {e}")),
    }
    match ctl.enqueue_json(target, text) {
        Ok(queued) => Response::ok(202, json!({ "queued": queued })),
        Err(EnqueueError::UnknownTarget(_)) => Response::error(404, format!("no block `{target}`")),
        Err(EnqueueError::InvalidBag(why)) => Response::error(400, why),
        Err(EnqueueError::TooLarge(limit)) => {
            Response::error(413, format!("`{target}` takes bags of at most {limit} bytes"))
        }
        Err(EnqueueError::QueueFull) => Response::error(503, format!("the queue of `{target}` is full")),
        Err(EnqueueError::Unavailable(why)) => Response::error(503, why),
    }
}

fn send(ctl: &Controller, conn: Connection, response: &Response, keep_alive: bool) {
    let body = response.body.to_string();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        response.status,
        reason(response.status),
        body.len()
    );
    if let Some(allow) = response.allow {
        out.push_str(&format!("allow: {allow}\r\n"));
    }
    if !keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    if let Err(e) = ctl.send(conn, out.as_bytes()) {
        ctl.debug(&format!("cannot answer connection {conn}: {e}"));
    }
}

struct Http {
    max_body: usize,
    clients: HashMap<Connection, Client>,
}

impl Block for Http {
    fn init(_ctl: &Controller, config: Config) -> Result<Self, String> {
        let max_body = match config.get("max_body") {
            None => 1 << 20,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("max_body must be a number of bytes, not {v}"))?,
        };
        Ok(Http { max_body, clients: HashMap::new() })
    }

    /// The connections and their unanswered bytes: a swap loses no request.
    fn snapshot(&mut self, _ctl: &Controller) -> Vec<u8> {
        let clients: Vec<Value> =
            self.clients.iter().map(|(id, c)| json!({ "conn": id, "buf": c.buf, "closing": c.closing })).collect();
        json!({ "clients": clients }).to_string().into_bytes()
    }

    /// Takes over a previous version's connections (a pending head is read again from its
    /// bytes); a state it cannot read is logged and dropped.
    fn restore(&mut self, ctl: &Controller, state: Vec<u8>) -> Result<(), String> {
        let read = |c: &Value| {
            let buf =
                c.get("buf")?.as_array()?.iter().map(|b| u8::try_from(b.as_u64()?).ok()).collect::<Option<_>>()?;
            let client = Client { buf, pending: None, closing: c.get("closing")?.as_bool()? };
            Some((c.get("conn")?.as_u64()?, client))
        };
        let clients = from_slice::<Value>(&state)
            .ok()
            .and_then(|s| s.get("clients")?.as_array()?.iter().map(read).collect::<Option<_>>());
        match clients {
            Some(clients) => self.clients = clients,
            None => ctl.warn("cannot read the previous version's state: its connections start afresh"),
        }
        Ok(())
    }

    fn on_accept(&mut self, _ctl: &Controller, conn: Connection, _listener: String, _peer: String) {
        self.clients.insert(conn, Client::default());
    }

    fn on_data(&mut self, ctl: &Controller, conn: Connection, data: Vec<u8>) {
        let client = self.clients.entry(conn).or_default();
        let close = client.push(&data, self.max_body, &mut |event| match event {
            Event::Continue => {
                if let Err(e) = ctl.send(conn, b"HTTP/1.1 100 Continue\r\n\r\n") {
                    ctl.debug(&format!("cannot answer connection {conn}: {e}"));
                }
            }
            Event::Request(head, body) => send(ctl, conn, &route(ctl, head, body), head.keep_alive),
            Event::Fail(response) => send(ctl, conn, &response, false),
        });
        if close {
            let _ = ctl.close(conn);
        }
    }

    fn on_close(&mut self, _ctl: &Controller, conn: Connection) {
        self.clients.remove(&conn);
    }
}

export_block!(Http, hooks = [net, state]);
