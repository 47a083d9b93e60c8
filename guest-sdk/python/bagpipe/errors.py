"""Typed errors: what the host's calls can fail with, as Python exceptions.

Each WIT error variant is one exception class; each case of it is a subclass, so a block can catch
the family (`except EnqueueError`) or one case (`except QueueFull`). `kind` is the case's WIT name
and `detail` what it carries (a string, a number or `None`).
"""


class BlockError(Exception):
    """Raise it from `init`, `finish`, `on_enqueue`, `on_stream_open` or `restore` to return an
    error to the host (the Rust SDK's `Err(String)`): logged and counted, the block carries on.

    Any other exception escaping a hook is a fault, like a Rust panic: this instance ends, its
    traceback goes to the host's log, and the supervisor applies the block's restart policy."""


class HostError(Exception):
    """An error a host call returned."""

    kind = "error"

    def __init__(self, detail=None):
        self.detail = detail
        super().__init__(self.kind if detail is None else f"{self.kind}: {detail}")


def _family(base, doc, cases):
    """Makes one subclass of `base` per `(ClassName, wit-kind)` in `cases`."""
    made = {}
    for class_name, kind in cases:
        made[class_name] = type(class_name, (base,), {"kind": kind, "__doc__": f"{doc}: `{kind}`."})
    return made


class EnqueueError(HostError):
    """Why `enqueue`, `call`, `reply` or `open_stream` did not deliver a bag."""


class CallError(HostError):
    """How a call ended without an answer (what `on_reply` is given instead of a bag)."""


class NetError(HostError):
    """Why a socket call failed."""


class ServerError(HostError):
    """Why a message-server call failed."""


class TopicError(HostError):
    """Why a topic call failed."""


class StreamError(HostError):
    """Why a stream call failed."""


_CASES = {
    "EnqueueError": (EnqueueError, [
        ("UnknownTarget", "unknown-target"), ("Unavailable", "unavailable"),
        ("InvalidBag", "invalid-bag"), ("QueueFull", "queue-full"), ("TooLarge", "too-large")]),
    "CallError": (CallError, [
        ("Timeout", "timeout"), ("Faulted", "faulted"), ("Refused", "refused"),
        ("NoReply", "no-reply"), ("CallUnavailable", "unavailable")]),
    "NetError": (NetError, [
        ("NotGranted", "not-granted"), ("UnknownConnection", "unknown-connection"),
        ("WouldBlock", "would-block"), ("Io", "io")]),
    "ServerError": (ServerError, [
        ("NoServer", "no-server"), ("NotConnected", "not-connected"),
        ("ServerNotGranted", "not-granted"), ("InvalidSubject", "invalid-subject"),
        ("ServerInvalidBag", "invalid-bag"), ("ServerTimeout", "timeout"), ("ServerIo", "io"),
        ("Busy", "busy")]),
    "TopicError": (TopicError, [
        ("TopicNotGranted", "not-granted"), ("InvalidTopic", "invalid-topic"),
        ("TopicInvalidBag", "invalid-bag"), ("TopicTooLarge", "too-large"),
        ("TopicBusy", "busy"), ("TopicUnavailable", "unavailable")]),
    "StreamError": (StreamError, [
        ("NotOpen", "not-open"), ("NotSender", "not-sender"), ("StreamInvalidBag", "invalid-bag"),
        ("StreamTooLarge", "too-large"), ("StreamBusy", "busy")]),
}

_BY_KIND = {}
for _family_name, (_base, _cases) in _CASES.items():
    for _name, _cls in _family(_base, _base.__doc__.split(".")[0], _cases).items():
        globals()[_name] = _cls
        _BY_KIND[(_base, _cls.kind)] = _cls


def _kebab(camel):
    out = []
    for i, ch in enumerate(camel):
        if ch.isupper() and i:
            out.append("-")
        out.append(ch.lower())
    return "".join(out)


def from_wit(base, case):
    """The exception for a WIT variant value `case` (e.g. `EnqueueError_QueueFull()`) of the
    family `base`."""
    kind = _kebab(type(case).__name__.rsplit("_", 1)[-1])
    cls = _BY_KIND.get((base, kind), base)
    return cls(getattr(case, "value", None))
