//! Reading requests off a connection's bytes (with `httparse`) and the answers to those that
//! cannot be read. Pure: no controller, no I/O, so that the same source file also runs natively,
//! in the property tests and fuzz targets of `tests/protocol-props` and `fuzz/`.

use bagpipe_guest::{Value, json};

/// The largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 64;

/// The head of a request whose body is still to come or just came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    /// Bytes of the request line and headers, the blank line included.
    pub head_len: usize,
    pub body_len: usize,
    /// `content-length` was given.
    pub has_length: bool,
    pub keep_alive: bool,
    /// `expect: 100-continue` and `100 Continue` not sent yet.
    pub wants_continue: bool,
}

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Value,
    /// The methods a 405 names.
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn ok(status: u16, body: Value) -> Self {
        Response { status, body, allow: None }
    }

    pub fn error(status: u16, why: impl Into<String>) -> Self {
        Response { status, body: json!({ "error": why.into() }), allow: None }
    }

    pub fn not_allowed(allow: &'static str) -> Self {
        Response { allow: Some(allow), ..Self::error(405, format!("use {allow}")) }
    }
}

/// What the bytes at the start of a buffer are.
pub enum Step {
    /// Part of a head: wait for more.
    Wait,
    /// A whole head.
    Head(Head),
    /// Not a request we can read: answer, then close.
    Fail(Response),
}

pub fn reason(status: u16) -> &'static str {
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
///
/// Only the first `MAX_HEAD` bytes are read: what a head over the limit holds after them does
/// not change the answer, so the answer is the same however the bytes arrive.
pub fn read_head(buf: &[u8], max_body: usize) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(&buf[..buf.len().min(MAX_HEAD)]) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Step::Fail(too_big_head()),
        Ok(httparse::Status::Partial) => return Step::Wait,
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

/// What a connection's bytes ask for, in the order they ask it.
#[derive(Debug)]
pub enum Event<'a> {
    /// The request whose head was just read waits for `100 Continue` before sending its body.
    Continue,
    /// A whole request: answer it (then close unless `keep_alive`).
    Request(&'a Head, &'a [u8]),
    /// Bytes that are not a request we can read: answer this, then close.
    Fail(Response),
}

/// One connection's unanswered bytes.
#[derive(Default)]
pub struct Client {
    /// Bytes not answered yet: the start of a request, or several.
    pub buf: Vec<u8>,
    /// The head of the request at the start of `buf`, when its body is still to come.
    pub pending: Option<Head>,
    /// Answered for the last time; the connection is closing and later bytes are ignored.
    pub closing: bool,
}

impl Client {
    /// Takes the next bytes of the connection and hands `emit` what they complete, in order:
    /// requests may be pipelined, and one that arrives in pieces waits for the rest. True when
    /// the connection is to be closed now (after a request without keep-alive, or a `Fail`).
    pub fn push(&mut self, data: &[u8], max_body: usize, emit: &mut impl FnMut(Event<'_>)) -> bool {
        if self.closing {
            return false;
        }
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        while pos < self.buf.len() {
            let mut head = match self.pending.take() {
                Some(head) => head,
                None => match read_head(&self.buf[pos..], max_body) {
                    Step::Wait => break,
                    Step::Head(head) => head,
                    Step::Fail(response) => {
                        emit(Event::Fail(response));
                        self.closing = true;
                        break;
                    }
                },
            };
            let start = pos + head.head_len;
            if self.buf.len() - start < head.body_len {
                if head.wants_continue {
                    head.wants_continue = false;
                    emit(Event::Continue);
                }
                self.pending = Some(head);
                break;
            }
            emit(Event::Request(&head, &self.buf[start..start + head.body_len]));
            pos = start + head.body_len;
            if !head.keep_alive {
                self.closing = true;
                break;
            }
        }
        if self.closing {
            self.buf = Vec::new();
            self.pending = None;
        } else {
            self.buf.drain(..pos);
        }
        self.closing
    }
}
