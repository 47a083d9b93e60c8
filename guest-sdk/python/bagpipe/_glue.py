"""The component's exports: the generated WIT interfaces, implemented by calling the exported
block. Imported only inside the component (the builder's app module imports it); it is the one
place that touches the generated bindings' export side.
"""

import json
import types as _pytypes

from componentize_py_types import Err, Ok
from wit_world.imports import controller, delivery, net, server, streams, topics
from wit_world.imports import types as wit_types

import bagpipe
from bagpipe import errors
from bagpipe import controller as _controller

_controller.bind(_pytypes.SimpleNamespace(
    controller=controller, net=net, server=server, topics=topics, streams=streams,
    Err=Err, Level=wit_types.Level))

CTL = _controller.Controller()
_block = None


def _the_block():
    if _block is None:
        # The host calls init first and never again after an error: reaching this is a host bug.
        raise RuntimeError("bagpipe: a hook was called before a successful init")
    return _block


class _BadInput(Exception):
    """A bag or config from the host that does not parse: the hook's error, as in the Rust SDK."""


def _parse(text, what):
    try:
        return json.loads(text)
    except ValueError as e:
        raise _BadInput(f"{what} is not JSON: {e}") from None


def _returning(call):
    """Runs `call` (a hook that returns a result, with its arguments parsed inside): a
    `BlockError`, or input that does not parse, becomes the error; anything else is a fault."""
    try:
        call()
    except (errors.BlockError, _BadInput) as e:
        raise Err(str(e)) from None


def _hook(name):
    return getattr(_the_block(), name, None)


def _bag(text):
    return json.loads(text)


def _outcome(result):
    if not isinstance(result, Ok):
        return errors.from_wit(errors.CallError, result.value)
    try:
        return json.loads(result.value)
    except ValueError as e:
        return errors.CallUnavailable(f"the answer is not JSON: {e}")


def _stream_end(end):
    kind = errors._kebab(type(end).__name__.rsplit("_", 1)[-1])
    return bagpipe.StreamEnd(kind, getattr(end, "value", None))


class Lifecycle:
    def init(self, config: str) -> None:
        global _block
        cls = bagpipe.exported()
        if cls is None:
            raise Err("no block: the module never called bagpipe.export")
        block = cls()
        _returning(lambda: block.init(CTL, _parse(config, "config") or {}))
        _block = block

    def run(self) -> None:
        _the_block().run(CTL)

    def finish(self) -> None:
        global _block
        block, _block = _the_block(), None
        _returning(lambda: block.finish(CTL))


class EnqueueHook:
    def on_enqueue(self, bag: str) -> None:
        block = _the_block()
        _returning(lambda: block.on_enqueue(CTL, _parse(bag, "bag")))


class ReplyHook:
    def on_reply(self, call, outcome) -> None:
        _the_block().on_reply(CTL, call, _outcome(outcome))


class StreamHook:
    def on_stream_open(self, id, sender, bag) -> None:
        hook = _hook("on_stream_open")
        if hook is not None:
            _returning(lambda: hook(CTL, id, sender, _parse(bag, "bag")))

    def on_stream_data(self, id, bag) -> None:
        hook = _hook("on_stream_data")
        if hook is not None:
            hook(CTL, id, _bag(bag))

    def on_stream_end(self, id, end) -> None:
        hook = _hook("on_stream_end")
        if hook is not None:
            hook(CTL, id, _stream_end(end))


class TimerHook:
    def on_timer(self, tag: str) -> None:
        _the_block().on_timer(CTL, tag)


class ServerHook:
    def on_server_connect(self, info) -> None:
        hook = _hook("on_server_connect")
        if hook is not None:
            hook(CTL, info)

    def on_server_disconnect(self) -> None:
        hook = _hook("on_server_disconnect")
        if hook is not None:
            hook(CTL)


class NetHook:
    def on_accept(self, conn, listener, peer) -> None:
        hook = _hook("on_accept")
        if hook is not None:
            hook(CTL, conn, listener, peer)

    def on_data(self, conn, data) -> None:
        hook = _hook("on_data")
        if hook is not None:
            hook(CTL, conn, bytes(data))

    def on_close(self, conn) -> None:
        hook = _hook("on_close")
        if hook is not None:
            hook(CTL, conn)

    def on_datagram(self, listener, peer, data) -> None:
        hook = _hook("on_datagram")
        if hook is not None:
            hook(CTL, listener, peer, bytes(data))


class StateHook:
    """A block that defines only one of the two gets the Rust SDK's default for the other: an
    empty snapshot, a restore that takes nothing."""

    def snapshot(self) -> bytes:
        hook = _hook("snapshot")
        if hook is None:
            return b""
        state = hook(CTL)
        return state.encode() if isinstance(state, str) else bytes(state or b"")

    def restore(self, state) -> None:
        hook = _hook("restore")
        if hook is not None:
            _returning(lambda: hook(CTL, bytes(state)))


_NET = NetHook()
_STREAM = StreamHook()
_OK = Ok(None)


def _deliver(item):
    """Hands one queued item to its hook; returns how it went, for the next `next`."""
    if isinstance(item, delivery.Item_Bag):
        try:
            _the_block().on_enqueue(CTL, _parse(item.value, "bag"))
        except (errors.BlockError, _BadInput) as e:
            return Err(str(e))
        return _OK
    value = item.value
    if isinstance(item, delivery.Item_Data):
        _NET.on_data(value.conn, value.data)
    elif isinstance(item, delivery.Item_Accept):
        _NET.on_accept(value.conn, value.listener, value.peer)
    elif isinstance(item, delivery.Item_Closed):
        _NET.on_close(value)
    elif isinstance(item, delivery.Item_Datagram):
        _NET.on_datagram(value.listener, value.peer, value.data)
    elif isinstance(item, delivery.Item_Reply):
        _the_block().on_reply(CTL, value.call, _outcome(value.outcome))
    elif isinstance(item, delivery.Item_StreamOpen):
        try:
            _STREAM.on_stream_open(value.id, value.from_, value.bag)
        except Err as e:
            return Err(e.value)
    elif isinstance(item, delivery.Item_StreamData):
        _STREAM.on_stream_data(value.id, value.bag)
    elif isinstance(item, delivery.Item_StreamEnd):
        _STREAM.on_stream_end(value.id, value.end)
    return _OK


class BatchHook:
    def on_batch(self) -> None:
        previous = None
        while True:
            item = delivery.next(previous)
            if item is None:
                return
            previous = _deliver(item)
