"""probe: a test fixture that tries the Python SDK's controller calls and hooks and prints what
each gave, one JSON line each ({"probe": "python", "event": ...}); it shuts the host down once its
timer, its call's outcome and its two bags have come."""

import json

import bagpipe


def say(**fields):
    print(json.dumps({"probe": "python", **fields}, sort_keys=True), flush=True)


def error(call, e):
    say(event="error", call=call, cls=type(e).__name__, kind=e.kind, detail=e.detail,
        family=type(e).__mro__[1].__name__ if type(e).__mro__[1] is not bagpipe.HostError else type(e).__name__)


class Probe(bagpipe.Block):
    def init(self, ctl, config):
        self.target = config["target"]
        self.waiting = {"timer", "reply", "bag 1", "bag 2", "topic"}

    def run(self, ctl):
        me = ctl.responsibility()
        say(event="who", name=ctl.name(), responsibility=me)
        try:
            ctl.enqueue("nobody", {"x": 1})
        except bagpipe.UnknownTarget as e:
            error("enqueue_unknown", e)
        try:
            ctl.enqueue(me, {"__x": 1})
        except bagpipe.EnqueueError as e:
            error("enqueue_invalid", e)
        ctl.subscribe_topic(f"probe.{me}")
        say(event="emitted", count=ctl.emit(f"probe.{me}", {"t": 1}))
        try:
            ctl.emit("other.hello", {"t": 2})
        except bagpipe.TopicError as e:
            error("emit", e)
        say(event="server", connected=ctl.server_connected())
        try:
            ctl.publish("probe.subject", {"p": 1})
        except bagpipe.ServerError as e:
            error("publish", e)
        sent = ctl.enqueue_many(me, [{"i": 1}, {"refuse": True}, {"i": 2}])
        say(event="sent_many", taken=sent.taken, queued=sent.queued, error=sent.error is not None)
        info = ctl.lookup(me)
        say(event="lookup", state=info.state, accepts_bags=info.accepts_bags, builtin=info.builtin)
        say(event="lookup_nobody", found=ctl.lookup("nobody") is not None)
        ctl.set_timer(0.01, "tick")
        call = ctl.call(self.target, {"question": 1}, 5.0)
        say(event="called", id_is_int=isinstance(call, int))
        ctl.warn("probe warns")

    def on_enqueue(self, ctl, bag):
        if "t" in bag:
            say(event="topic", topic=bag["__topic"], t=bag["t"])
            self.done(ctl, "topic")
            return
        if bag.get("refuse"):
            raise bagpipe.BlockError("refused by the probe")
        say(event="bag", i=bag["i"], sender=bag["__from"])
        self.done(ctl, f"bag {bag['i']}")

    def on_timer(self, ctl, tag):
        say(event="timer", tag=tag)
        self.done(ctl, "timer")

    def on_reply(self, ctl, call, outcome):
        if isinstance(outcome, bagpipe.CallError):
            error("reply", outcome)
        else:
            say(event="answer", bag=outcome)
        self.done(ctl, "reply")

    def done(self, ctl, what):
        self.waiting.discard(what)
        if not self.waiting:
            say(event="all_done")
            ctl.finish(ctl.responsibility())


bagpipe.export(Probe)
