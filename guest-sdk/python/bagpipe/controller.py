"""The controller: the host's calls, with bags as dicts and typed errors.

Mirrors the Rust SDK's `Controller`. Durations are seconds (floats). Every call goes straight to
the host; none blocks for long (`enqueue` waits at most the host's enqueue timeout when the
target's queue is full).
"""

import json
from dataclasses import dataclass
from typing import List, Optional

from . import errors

#: The host's built-in initiator: finishing it shuts the host down.
INITIATOR = "initiator"

#: Where the host's call handles start (a `__reply` naming a call, not a server subject).
_CALL_HANDLE_PREFIX = "_CALL."

# The generated bindings, set by the glue inside the component (`bind`); a native import of this
# module (the builder's) never touches them.
_w = None


def bind(wit):
    """Called once by the glue with the generated import modules."""
    global _w
    _w = wit


def dumps(bag) -> str:
    """A bag's JSON text, compact."""
    return json.dumps(bag, separators=(",", ":"), ensure_ascii=False)


_U64_MAX = 2**64 - 1


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, saturating as the Rust SDK's durations do."""
    try:
        return min(_U64_MAX, max(0, int(round(seconds * 1000))))
    except (OverflowError, ValueError):  # inf, nan
        return _U64_MAX if seconds > 0 else 0


def _host(call, family, *args):
    try:
        return call(*args)
    except _w.Err as e:
        raise errors.from_wit(family, e.value) from None


@dataclass
class Sent:
    """What `enqueue_many` did: how many bags, from the first, were taken; whether they were
    queued (`False` when the target takes no bags); why the next one was not (`None` when all
    were)."""

    taken: int
    queued: bool
    error: Optional[errors.EnqueueError]


@dataclass
class BlockInfo:
    """What a block can learn about another block."""

    name: str
    responsibility: str
    state: str
    accepts_bags: bool
    builtin: bool
    version: str
    queued: int
    processed: int
    faults: int


@dataclass
class ConnectionInfo:
    """An open connection of this block."""

    conn: int
    listener: Optional[str]
    peer: str


def _info(i) -> BlockInfo:
    return BlockInfo(i.name, i.responsibility, i.state.name.lower(), i.accepts_bags, i.builtin,
                     i.version, i.queued, i.processed, i.faults)


class Controller:
    """A handle on the host, passed to every hook."""

    # -- who am I -------------------------------------------------------------------------------
    def name(self) -> str:
        """The block's name: its component."""
        return _w.controller.name()

    def responsibility(self) -> str:
        """This running instance's name: the address bags to it are sent to."""
        return _w.controller.responsibility()

    # -- bags -----------------------------------------------------------------------------------
    def enqueue(self, to: str, bag: dict) -> bool:
        """Sends `bag` to `to`. `True` when queued, `False` when `to` takes no bags. Raises an
        `EnqueueError` (`QueueFull`, `UnknownTarget`, ...)."""
        return _host(_w.controller.enqueue, errors.EnqueueError, to, dumps(bag))

    def enqueue_json(self, to: str, text: str) -> bool:
        """`enqueue` with the bag's JSON text as it is."""
        return _host(_w.controller.enqueue, errors.EnqueueError, to, text)

    def enqueue_many(self, to: str, bags: List[dict]) -> Sent:
        """Sends `bags` in order in one call, stopping at the first one not taken."""
        return self.enqueue_many_json(to, [dumps(b) for b in bags])

    def enqueue_many_json(self, to: str, texts: List[str]) -> Sent:
        """`enqueue_many` with the bags' JSON texts as they are."""
        sent = _w.controller.enqueue_many(to, texts)
        error = None if sent.error is None else errors.from_wit(errors.EnqueueError, sent.error)
        return Sent(sent.taken, sent.queued, error)

    def call(self, to: str, bag: dict, timeout: float) -> int:
        """Sends `bag` to `to` as a request; its answer (or why there is none) comes to
        `on_reply` with the id returned here."""
        return _host(_w.controller.call, errors.EnqueueError, to, dumps(bag), _ms(timeout))

    def reply(self, to: dict, bag: dict) -> bool:
        """Answers a bag that came with `__reply` (a block's call or a server request).
        `False` when `to` wants no reply."""
        handle = to.get("__reply")
        if not isinstance(handle, str):
            return False
        if handle.startswith(_CALL_HANDLE_PREFIX):
            _host(_w.controller.reply, errors.EnqueueError, handle, dumps(bag))
        else:
            _host(_w.server.publish, errors.ServerError, handle, dumps(bag))
        return True

    # -- other blocks ---------------------------------------------------------------------------
    def lookup(self, responsibility: str) -> Optional[BlockInfo]:
        """What the host knows of `responsibility`, or `None`."""
        found = _w.controller.lookup(responsibility)
        return None if found is None else _info(found)

    def list(self) -> List[BlockInfo]:
        """Every block of the host."""
        return [_info(i) for i in _w.controller.list_blocks()]

    def finish(self, responsibility: str) -> None:
        """Asks the host to finish `responsibility` after this call returns."""
        try:
            _w.controller.finish(responsibility)
        except _w.Err as e:
            raise errors.BlockError(e.value) from None

    def shutdown(self) -> None:
        """Asks the host to shut down gracefully."""
        self.finish(INITIATOR)

    # -- logs and timers ------------------------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        """A line in the host's log, tagged with this block; `level` is trace, debug, info,
        warn or error."""
        _w.controller.log(_w.Level[level.upper()], message)

    def debug(self, message: str) -> None:
        self.log("debug", message)

    def info(self, message: str) -> None:
        self.log("info", message)

    def warn(self, message: str) -> None:
        self.log("warn", message)

    def error(self, message: str) -> None:
        self.log("error", message)

    def set_timer(self, delay: float, tag: str) -> int:
        """`on_timer(tag)` in `delay` seconds; returns the timer's id."""
        try:
            return _w.controller.set_timer(_ms(delay), tag)
        except _w.Err as e:
            raise errors.BlockError(e.value) from None

    def cancel_timer(self, timer: int) -> bool:
        return _w.controller.cancel_timer(timer)

    # -- sockets --------------------------------------------------------------------------------
    def send(self, conn: int, data: bytes) -> None:
        _host(_w.net.send, errors.NetError, conn, bytes(data))

    def close(self, conn: int) -> None:
        _host(_w.net.close, errors.NetError, conn)

    def send_datagram(self, listener: str, peer: str, data: bytes) -> None:
        _host(_w.net.send_datagram, errors.NetError, listener, peer, bytes(data))

    def connect(self, address: str) -> int:
        return _host(_w.net.connect, errors.NetError, address)

    def listeners(self) -> List[str]:
        return _w.net.listeners()

    def connections(self) -> List[ConnectionInfo]:
        return [ConnectionInfo(c.conn, c.listener, c.peer) for c in _w.net.connections()]

    # -- the message server ---------------------------------------------------------------------
    def publish(self, subject: str, bag: dict) -> None:
        _host(_w.server.publish, errors.ServerError, subject, dumps(bag))

    def subscribe(self, subject: str) -> None:
        _host(_w.server.subscribe, errors.ServerError, subject)

    def unsubscribe(self, subject: str) -> bool:
        return _w.server.unsubscribe(subject)

    def request(self, subject: str, bag: dict, timeout: float) -> dict:
        answer = _host(_w.server.request, errors.ServerError, subject, dumps(bag), _ms(timeout))
        try:
            return json.loads(answer)
        except ValueError as e:
            raise errors.ServerIo(f"the answer is not JSON: {e}") from None

    def server_connected(self) -> bool:
        return _w.server.connected()

    # -- topics and streams ---------------------------------------------------------------------
    def emit(self, topic: str, bag: dict) -> int:
        return _host(_w.topics.emit, errors.TopicError, topic, dumps(bag))

    def subscribe_topic(self, pattern: str, lossy: bool = False) -> None:
        _host(_w.topics.subscribe, errors.TopicError, pattern, lossy)

    def unsubscribe_topic(self, pattern: str) -> bool:
        return _w.topics.unsubscribe(pattern)

    def open_stream(self, to: str, bag: dict) -> int:
        return _host(_w.streams.open, errors.EnqueueError, to, dumps(bag))

    def send_stream(self, stream: int, bag: dict) -> None:
        _host(_w.streams.send, errors.StreamError, stream, dumps(bag))

    def end_stream(self, stream: int, reason: str) -> bool:
        return _w.streams.end(stream, reason)
