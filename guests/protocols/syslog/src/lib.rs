//! Receives syslog and sends every message on as one bag.
//!
//! Listens on whatever the manifest's `listen` grants: over UDP each datagram is one message;
//! over TCP the stream is framed as RFC 6587 says, frame by frame: a frame that starts with digits
//! and a space is octet-counted (`LEN SP MSG`), any other ends at a newline (empty lines are
//! skipped; a last frame without its newline is taken when the connection closes). Messages are
//! read as RFC 5424 or RFC 3164 by `syslog_loose`.
//!
//! Config: `to` (where the bags go, default `"sink"`; `""` for nowhere), `publish` (a message
//! server subject each bag is also published to, e.g. `"logs.syslog"`; the manifest must grant
//! it), `max_frame` (the longest message in bytes, default 65536; a longer one is skipped and
//! reported with its first `max_frame` bytes, the same however the stream was cut).
//!
//! A message becomes `{"facility": "local0", "severity": "err", "timestamp": "2024-05-01T12:00:00+00:00",
//! "host", "app", "procid", "msgid", "msg", "protocol": "rfc5424" | "rfc3164", "transport": "udp" |
//! "tcp", "peer": "ip:port", "structured_data": {"id": {"name": "value"}}}`. `timestamp` and
//! `structured_data` are there only when the message has them; `host`, `app`, `procid` and `msgid`
//! are `null` when it has none; dates without a zone are UTC. A message with a valid `<PRI>` but
//! no header is kept whole in `msg`. Anything else (no `<PRI>`, not UTF-8, empty, longer than
//! `max_frame`, cut off by the connection closing) becomes `{"unparsed": true, "reason": ..,
//! "raw": <the first 1024 characters>, "transport", "peer"}`: never dropped. For a frame longer
//! than `max_frame` (`"reason": "frame too long"`), `raw` is read from its first `max_frame` bytes
//! only (of the datagram, of an octet-counted frame's message after `LEN SP`, of the line), the
//! same however the TCP stream was cut; fewer only if the connection closed before they came.
//!
//! A hot swap carries each connection's peer and unfinished frame over to the new version
//! (`state` hook), so no byte is lost; after a restart, `peer` is `null` on a connection opened
//! before the new instance started.
//!
//! The code is in modules so that a second crate can build the same block with one more field
//! (see `guests/fixtures/syslog_v2`).
mod block;
mod frame;
mod parse;

use bagpipe_guest::export_block;

struct Plain;

impl block::Flavor for Plain {}

export_block!(block::Syslog<Plain>, hooks = [net, state, on_timer]);
