"""enrich: a transform written in Python.

Adds what a reader of the bag wants at a glance: the number of words of its text, the name of a
syslog severity, which version of this block saw it and how many bags the block has seen. The
count survives a hot swap (`snapshot`/`restore`), so a new version carries on counting.

A bag whose `text` is not a string makes `split` raise: that is a fault, like a panic in a Rust
block. This instance ends, the host restarts the block, and the other blocks run on.
"""

import json

import bagpipe

VERSION = 1
SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]


class Enrich(bagpipe.Block):
    def init(self, ctl, config):
        self.to = config.get("to", "sink")
        self.seen = 0

    def on_enqueue(self, ctl, bag):
        out = bagpipe.payload(bag)
        text = out.get("message", out.get("text", ""))
        out["words"] = len(text.split())
        severity = out.get("severity")
        if isinstance(severity, int) and 0 <= severity < len(SEVERITIES):
            out["severity_name"] = SEVERITIES[severity]
        self.seen += 1
        out["py_seen"] = self.seen
        out["py_version"] = VERSION
        try:
            ctl.enqueue(self.to, out)
        except bagpipe.EnqueueError as e:
            # The next block is full for longer than the host waits, or finishing: say so and
            # go on (raising would make this bag a fault).
            ctl.warn(f"bag {self.seen} not passed on: {e}")

    def snapshot(self, ctl):
        return json.dumps({"seen": self.seen}).encode()

    def restore(self, ctl, state):
        self.seen = json.loads(state)["seen"]


bagpipe.export(Enrich)
