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
use std::collections::HashMap;

use bagpipe_guest::serde_json::from_slice;
use bagpipe_guest::{Block, Config, Connection, Controller, EnqueueError, Value, export_block, json};

/// The largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have.
const MAX_HEADERS: usize = 64;

/// The head of a request whose body is still to come or just came.
struct Head {
    method: String,
    path: String,
    head_len: usize,
    body_len: usize,
    /// `content-length` was given.
    has_length: bool,
    keep_alive: bool,
    /// `expect: 100-continue` and `100 Continue` not sent yet.
    wants_continue: bool,
}

/// An answer.
struct Response {
    status: u16,
    body: Value,
    allow: Option<&'static str>,
}

impl Response {
    fn ok(status: u16, body: Value) -> Self {
        Response { status, body, allow: None }
    }

    fn error(status: u16, why: impl Into<String>) -> Self {
        Response { status, body: json!({ "error": why.into() }), allow: None }
    }

    fn not_allowed(allow: &'static str) -> Self {
        Response { allow: Some(allow), ..Self::error(405, format!("use {allow}")) }
    }
}

/// What the bytes at the start of a buffer are.
enum Step {
    /// Part of a head: wait for more.
    Wait,
    /// A whole head.
    Head(Head),
    /// Not a request we can read: answer, then close.
    Fail(Response),
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Reads the head at the start of `buf`.
fn read_head(buf: &[u8], max_body: usize) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Step::Fail(too_big_head()),
        Ok(httparse::Status::Partial) => return Step::Wait,
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Step::Fail(too_big_head()),
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Step::Fail(Response::error(431, "too many headers")),
        Err(e) => return Step::Fail(Response::error(400, format!("malformed request: {e}"))),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Step::Fail(Response::error(400, "malformed request"));
    };
    let mut length: Option<u64> = None;
    let (mut close, mut keep) = (false, false);
    let mut wants_continue = false;
    for header in req.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        let value = value.trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<u64>().ok().filter(|_| value.bytes().all(|b| b.is_ascii_digit()));
            match (n, length) {
                (None, _) => return Step::Fail(Response::error(400, "bad content-length")),
                (Some(n), Some(before)) if n != before => {
                    return Step::Fail(Response::error(400, "conflicting content-length"));
                }
                (Some(n), _) => length = Some(n),
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Step::Fail(Response::error(411, "chunked bodies are not supported: send content-length"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if header.name.eq_ignore_ascii_case("expect") {
            wants_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    let body_len = match usize::try_from(length.unwrap_or(0)) {
        Ok(n) if n <= max_body => n,
        _ => return Step::Fail(Response::error(413, format!("body larger than {max_body} bytes"))),
    };
    Step::Head(Head {
        method: method.to_owned(),
        path: path.to_owned(),
        head_len,
        body_len,
        has_length: length.is_some(),
        keep_alive: if version == 1 { !close } else { keep && !close },
        wants_continue: wants_continue && body_len > 0,
    })
}

fn too_big_head() -> Response {
    Response::error(431, format!("request head larger than {MAX_HEAD} bytes"))
}

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

#[derive(Default)]
struct Client {
    /// Bytes not answered yet: the start of a request, or several.
    buf: Vec<u8>,
    /// The head of the request at the start of `buf`, when its body is still to come.
    pending: Option<Head>,
    /// Answered for the last time; `on_close` is to come.
    closing: bool,
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
        let max_body = self.max_body;
        let client = self.clients.entry(conn).or_default();
        if client.closing {
            return;
        }
        client.buf.extend_from_slice(&data);
        let mut pos = 0;
        while pos < client.buf.len() {
            let mut head = match client.pending.take() {
                Some(head) => head,
                None => match read_head(&client.buf[pos..], max_body) {
                    Step::Wait => break,
                    Step::Head(head) => head,
                    Step::Fail(response) => {
                        send(ctl, conn, &response, false);
                        client.closing = true;
                        break;
                    }
                },
            };
            let start = pos + head.head_len;
            if client.buf.len() - start < head.body_len {
                if head.wants_continue {
                    head.wants_continue = false;
                    if let Err(e) = ctl.send(conn, b"HTTP/1.1 100 Continue\r\n\r\n") {
                        ctl.debug(&format!("cannot answer connection {conn}: {e}"));
                    }
                }
                client.pending = Some(head);
                break;
            }
            let response = route(ctl, &head, &client.buf[start..start + head.body_len]);
            send(ctl, conn, &response, head.keep_alive);
            pos = start + head.body_len;
            if !head.keep_alive {
                client.closing = true;
                break;
            }
        }
        if client.closing {
            client.buf = Vec::new();
            client.pending = None;
            let _ = ctl.close(conn);
        } else {
            client.buf.drain(..pos);
        }
    }

    fn on_close(&mut self, _ctl: &Controller, conn: Connection) {
        self.clients.remove(&conn);
    }
}

export_block!(Http, hooks = [net, state]);
