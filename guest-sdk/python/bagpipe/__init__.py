"""bagpipe: write a bagpipe block in Python.

A block is a class deriving from `Block`, handed to `export`. It gets the host's `Controller` in
every hook; bags are dicts. Optional hooks are the methods it defines: the builder
(`python -m bagpipe.build`) exports a WIT interface only for those, so the host sees the same
hooks it would see on a Rust block with the same methods.

    import bagpipe

    class Upper(bagpipe.Block):
        def init(self, ctl, config):
            self.to = config.get("to", "sink")

        def on_enqueue(self, ctl, bag):
            bag["text"] = bag.get("text", "").upper()
            ctl.enqueue(self.to, bag)

    bagpipe.export(Upper)

Raising `BlockError` from a hook that returns a result (`init`, `finish`, `on_enqueue`,
`on_stream_open`, `restore`) returns that error to the host; any other exception is a fault, as
a panic is in Rust: the instance ends and the block's restart policy applies.
"""

from dataclasses import dataclass
from typing import Optional

from .controller import INITIATOR, BlockInfo, ConnectionInfo, Controller, Sent, dumps
from .errors import *  # noqa: F401,F403  (the typed errors are part of the API)
from .errors import BlockError, CallError, EnqueueError, HostError

__all__ = ["Block", "export", "Controller", "BlockError", "HostError", "EnqueueError", "CallError",
           "Sent", "BlockInfo", "ConnectionInfo", "StreamEnd", "INITIATOR", "dumps", "payload"]


class Block:
    """A block. Override `init`, `run`, `finish` as needed, and define only the optional hooks
    the block uses:

    - `on_enqueue(ctl, bag)`: a bag sent to this block;
    - `on_reply(ctl, call, outcome)`: a call ended: `outcome` is the answer (a dict) or a
      `CallError`;
    - `on_stream_open(ctl, stream, sender, bag)`, `on_stream_data(ctl, stream, bag)`,
      `on_stream_end(ctl, stream, end)`;
    - `on_timer(ctl, tag)`;
    - `on_server_connect(ctl, info)` (`info.url`, `info.server_id`), `on_server_disconnect(ctl)`;
    - `on_accept(ctl, conn, listener, peer)`, `on_data(ctl, conn, data)`, `on_close(ctl, conn)`,
      `on_datagram(ctl, listener, peer, data)`;
    - `snapshot(ctl) -> bytes` and `restore(ctl, state)`: carry state across a hot swap.
    """

    def init(self, ctl: Controller, config: dict) -> None:
        """Called once per instance with the manifest's `config` table."""

    def run(self, ctl: Controller) -> None:
        """Called once every block's `init` succeeded: start work here (first bags, timers)."""

    def finish(self, ctl: Controller) -> None:
        """Called once when the instance is finished."""


@dataclass
class StreamEnd:
    """Why a stream ended: `kind` is `ended`, `refused`, `faulted` or `finished`; `detail` says
    why (`None` for `finished`)."""

    kind: str
    detail: Optional[str]


_exported = None


def export(cls):
    """Makes `cls` the component's block. Once per component; usable as a class decorator."""
    global _exported
    if not (isinstance(cls, type) and issubclass(cls, Block)):
        raise TypeError(f"bagpipe.export takes a subclass of bagpipe.Block, not {cls!r}")
    if _exported is not None and _exported is not cls:
        raise RuntimeError(f"bagpipe.export called twice ({_exported.__name__}, {cls.__name__}): one block per component")
    _exported = cls
    return cls


def exported():
    """The class given to `export`, or `None`."""
    return _exported


def payload(bag: dict) -> dict:
    """A copy of `bag` without the host's keys (`__from`, `__seq`, ...): what a block may send on."""
    return {k: v for k, v in bag.items() if not k.startswith("__")}
