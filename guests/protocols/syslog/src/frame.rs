//! RFC 6587 framing of one syslog TCP stream.
//!
//! Each frame is either octet-counted (`LEN SP MSG`, told apart by a leading digit run followed by
//! a space) or ends at a newline (a `\r` before it is dropped); the choice is made frame by frame.
//!
//! A frame longer than `max_frame` (octet-counted: its count is over it; newline-framed: its line,
//! without the newline and a `\r` before it, is) is reported once, as [`Frame::TooLong`] with
//! exactly its first `max_frame` bytes (of the message after `LEN SP`; of the line), and the rest
//! of it is skipped (up to the count; up to and including the newline); framing goes on with the
//! next frame. The framer holds those bytes back until it has them all, so the report is the same
//! however the stream was cut; only a stream that ends first reports fewer: what it had.
//!
//! The buffer never holds more than one frame's header and at most `max_frame` bytes of it plus
//! one chunk: what is skipped is never kept.

use bagpipe_guest::{Value, json};

/// A `LEN` prefix longer than this is not taken for octet counting.
const MAX_LEN_DIGITS: usize = 10;

/// What the framer found.
pub enum Frame<'a> {
    /// One whole message.
    Message(&'a [u8]),
    /// A frame longer than `max_frame`, skipped; these are its first `max_frame` bytes (fewer
    /// only if the stream ended before they all came).
    TooLong(&'a [u8]),
    /// The stream ended inside an octet-counted frame; these are the bytes it had.
    Truncated(&'a [u8]),
}

/// What is being discarded.
enum Skip {
    Nothing,
    /// The rest of an octet-counted frame that is too long: this many bytes.
    Bytes(u64),
    /// The rest of a newline-framed frame that is too long: up to the next newline.
    Line,
}

/// How the frame at the start of the buffer is framed.
enum Header {
    /// Only digits so far: wait for more.
    Wait,
    /// `LEN SP`: the message is `len` bytes from `at`.
    Counted { len: u64, at: usize },
    /// Up to the next newline.
    Line,
}

fn header(rest: &[u8]) -> Header {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > MAX_LEN_DIGITS {
        return Header::Line;
    }
    match rest.get(digits) {
        None => Header::Wait,
        Some(b' ') => {
            let len = rest[..digits].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            Header::Counted { len, at: digits + 1 }
        }
        Some(_) => Header::Line,
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The framing state of one connection.
pub struct Framer {
    max_frame: usize,
    buf: Vec<u8>,
    skip: Skip,
    /// How many bytes at the start of `buf` are known to hold no newline.
    scanned: usize,
}

impl Framer {
    pub fn new(max_frame: usize) -> Self {
        Framer { max_frame, buf: Vec::new(), skip: Skip::Nothing, scanned: 0 }
    }

    /// Takes the next bytes of the stream and hands every frame they complete to `emit`, in order.
    pub fn push(&mut self, data: &[u8], emit: &mut impl FnMut(Frame<'_>)) {
        self.buf.extend_from_slice(data);
        let scanned = std::mem::take(&mut self.scanned);
        let mut pos = 0;
        while pos < self.buf.len() {
            let rest = &self.buf[pos..];
            match self.skip {
                Skip::Nothing => {}
                Skip::Bytes(n) => {
                    let k = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
                    pos += k;
                    let left = n - k as u64;
                    self.skip = if left == 0 { Skip::Nothing } else { Skip::Bytes(left) };
                    continue;
                }
                Skip::Line => {
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            pos += i + 1;
                            self.skip = Skip::Nothing;
                        }
                        None => pos = self.buf.len(),
                    }
                    continue;
                }
            }
            match header(rest) {
                Header::Wait => break,
                Header::Counted { len, at } => {
                    let body = &rest[at..];
                    if len > self.max_frame as u64 {
                        // Reported with its first `max_frame` bytes once they are all here.
                        if body.len() < self.max_frame {
                            break;
                        }
                        emit(Frame::TooLong(&body[..self.max_frame]));
                        pos += at;
                        self.skip = Skip::Bytes(len);
                    } else if body.len() as u64 >= len {
                        let len = len as usize;
                        emit(Frame::Message(&body[..len]));
                        pos += at + len;
                    } else {
                        break;
                    }
                }
                Header::Line => {
                    let from = if pos == 0 { scanned.min(rest.len()) } else { 0 };
                    match rest[from..].iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            let line = trim_cr(&rest[..from + i]);
                            if line.len() > self.max_frame {
                                emit(Frame::TooLong(&line[..self.max_frame]));
                            } else if !line.is_empty() {
                                emit(Frame::Message(line));
                            }
                            pos += from + i + 1;
                        }
                        // Too long whatever follows. (A `\r` at the end may be the one before
                        // the newline.)
                        None if trim_cr(rest).len() > self.max_frame => {
                            emit(Frame::TooLong(&rest[..self.max_frame]));
                            pos = self.buf.len();
                            self.skip = Skip::Line;
                        }
                        None => {
                            // After the drain below, this frame starts the buffer.
                            self.scanned = rest.len();
                            break;
                        }
                    }
                }
            }
        }
        self.buf.drain(..pos);
    }

    /// The framer's state as JSON, for the next version of the block.
    pub fn snapshot(&self) -> Value {
        let skip = match self.skip {
            Skip::Nothing => Value::Null,
            Skip::Bytes(n) => n.into(),
            Skip::Line => "line".into(),
        };
        json!({ "buf": self.buf, "skip": skip })
    }

    /// A framer in the state [`Framer::snapshot`] gave; `None` if `state` is not one.
    pub fn restore(max_frame: usize, state: &Value) -> Option<Self> {
        let buf =
            state.get("buf")?.as_array()?.iter().map(|b| u8::try_from(b.as_u64()?).ok()).collect::<Option<_>>()?;
        let skip = match state.get("skip")? {
            Value::Null => Skip::Nothing,
            Value::String(s) if s == "line" => Skip::Line,
            n => Skip::Bytes(n.as_u64()?),
        };
        Some(Framer { max_frame, buf, skip, scanned: 0 })
    }

    /// The stream ended: what is left of an unfinished frame, if anything. An octet-counted
    /// frame cut off is [`Frame::Truncated`] with every byte it had, `LEN SP` too; one whose
    /// count is over `max_frame` is still [`Frame::TooLong`], with the bytes of its message it
    /// had (fewer than `max_frame`, or it would have been reported already).
    pub fn finish(&self) -> Option<Frame<'_>> {
        if !matches!(self.skip, Skip::Nothing) || self.buf.is_empty() {
            return None;
        }
        match header(&self.buf) {
            Header::Counted { len, at } if len > self.max_frame as u64 => Some(Frame::TooLong(&self.buf[at..])),
            Header::Counted { .. } => Some(Frame::Truncated(&self.buf)),
            // (Only digits, `Wait`, may be longer than a small `max_frame`.)
            Header::Wait | Header::Line if trim_cr(&self.buf).len() > self.max_frame => {
                Some(Frame::TooLong(&self.buf[..self.max_frame]))
            }
            Header::Wait | Header::Line => {
                let line = trim_cr(&self.buf);
                (!line.is_empty()).then_some(Frame::Message(line))
            }
        }
    }
}
