"""echo_py: a test fixture for sockets in a Python block. Echoes TCP data and UDP datagrams back
to where they came from and prints each socket event as a JSON line ({"probe": "python", ...}),
after printing its listeners in `run`."""

import json

import bagpipe


def say(**fields):
    print(json.dumps({"probe": "python", **fields}, sort_keys=True), flush=True)


class Echo(bagpipe.Block):
    def run(self, ctl):
        say(event="listeners", listeners=ctl.listeners(), connections=len(ctl.connections()))

    def on_accept(self, ctl, conn, listener, peer):
        open_ = [c.conn for c in ctl.connections()]
        say(event="accept", conn=conn, listener=listener, peer=peer, listed=conn in open_)

    def on_data(self, ctl, conn, data):
        say(event="data", conn=conn, text=data.decode(), is_bytes=isinstance(data, bytes))
        ctl.send(conn, data)

    def on_close(self, ctl, conn):
        say(event="close", conn=conn)
        try:
            ctl.send(conn, b"late")
        except bagpipe.NetError as e:
            say(event="send_after_close", kind=e.kind, cls=type(e).__name__)

    def on_datagram(self, ctl, listener, peer, data):
        say(event="datagram", listener=listener, text=data.decode())
        ctl.send_datagram(listener, peer, data)


bagpipe.export(Echo)
