"""Which optional WIT interface each hook method belongs to.

The one table the builder (to write the block's world) and the glue (to dispatch) share. A block
exports an interface only when its class defines one of that interface's methods, so the host
sees exactly the hooks the block implements, as it does for a Rust block.
"""

#: Hook method -> the optional WIT interface that exports it.
HOOKS = {
    "on_enqueue": "enqueue-hook",
    "on_reply": "reply-hook",
    "on_stream_open": "stream-hook",
    "on_stream_data": "stream-hook",
    "on_stream_end": "stream-hook",
    "on_timer": "timer-hook",
    "on_server_connect": "server-hook",
    "on_server_disconnect": "server-hook",
    "on_accept": "net-hook",
    "on_data": "net-hook",
    "on_close": "net-hook",
    "on_datagram": "net-hook",
    "snapshot": "state-hook",
    "restore": "state-hook",
}

#: Every block takes its queue in batches (`delivery.next`), as the Rust SDK does.
ALWAYS = ("batch-hook",)


def interfaces(cls):
    """The optional interfaces `cls` exports: those with a method it (or a base other than
    `bagpipe.Block`) defines, plus `batch-hook`, in a stable order."""
    from . import Block

    found = set(ALWAYS)
    for method, interface in HOOKS.items():
        impl = getattr(cls, method, None)
        if impl is not None and impl is not getattr(Block, method, None):
            found.add(interface)
    return sorted(found)
