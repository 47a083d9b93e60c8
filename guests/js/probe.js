// probe: a test fixture that tries the JavaScript SDK's controller calls and hooks and prints what
// each gave, one JSON line each ({"probe": "js", "event": ...}); it finishes itself once its
// timer, its call's outcome and its two bags have come.

import { Block, BlockError, CallError, EnqueueError, HostError, ServerError, TopicError, UnknownTarget } from "./bagpipe.js";

function say(fields) {
  const out = { probe: "js", ...fields };
  const sorted = Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
  console.log(JSON.stringify(sorted));
}

function error(call, e) {
  const parent = Object.getPrototypeOf(e.constructor);
  const family = parent === HostError ? e.constructor.name : parent.name;
  say({ event: "error", call, cls: e.constructor.name, kind: e.kind, detail: e.detail ?? null, family });
}

export default class Probe extends Block {
  init(ctl, config) {
    this.target = config.target;
    this.waiting = new Set(["timer", "reply", "bag 1", "bag 2", "topic"]);
  }

  run(ctl) {
    const me = ctl.responsibility();
    say({ event: "who", name: ctl.name(), responsibility: me });
    try {
      ctl.enqueue("nobody", { x: 1 });
    } catch (e) {
      if (!(e instanceof UnknownTarget)) throw e;
      error("enqueue_unknown", e);
    }
    try {
      ctl.enqueue(me, { __x: 1 });
    } catch (e) {
      if (!(e instanceof EnqueueError)) throw e;
      error("enqueue_invalid", e);
    }
    ctl.subscribeTopic(`probe.${me}`);
    say({ event: "emitted", count: ctl.emit(`probe.${me}`, { t: 1 }) });
    try {
      ctl.emit("other.hello", { t: 2 });
    } catch (e) {
      if (!(e instanceof TopicError)) throw e;
      error("emit", e);
    }
    say({ event: "server", connected: ctl.serverConnected() });
    try {
      ctl.publish("probe.subject", { p: 1 });
    } catch (e) {
      if (!(e instanceof ServerError)) throw e;
      error("publish", e);
    }
    const sent = ctl.enqueueMany(me, [{ i: 1 }, { refuse: true }, { i: 2 }]);
    say({ event: "sent_many", taken: sent.taken, queued: sent.queued, error: sent.error !== undefined });
    const info = ctl.lookup(me);
    say({ event: "lookup", state: info.state, accepts_bags: info.acceptsBags, builtin: info.builtin });
    say({ event: "lookup_nobody", found: ctl.lookup("nobody") !== undefined });
    ctl.setTimer(0.01, "tick");
    const call = ctl.call(this.target, { question: 1 }, 5);
    say({ event: "called", id_is_int: typeof call === "bigint" || Number.isInteger(call) });
    ctl.warn("probe warns");
  }

  onEnqueue(ctl, bag) {
    if ("t" in bag) {
      say({ event: "topic", topic: bag.__topic, t: bag.t });
      this.done(ctl, "topic");
      return;
    }
    if (bag.refuse) throw new BlockError("refused by the probe");
    say({ event: "bag", i: bag.i, sender: bag.__from });
    this.done(ctl, `bag ${bag.i}`);
  }

  onTimer(ctl, tag) {
    say({ event: "timer", tag });
    this.done(ctl, "timer");
  }

  onReply(ctl, _call, outcome) {
    if (outcome instanceof CallError) error("reply", outcome);
    else say({ event: "answer", bag: outcome });
    this.done(ctl, "reply");
  }

  done(ctl, what) {
    this.waiting.delete(what);
    if (this.waiting.size === 0) {
      say({ event: "all_done" });
      ctl.finish(ctl.responsibility());
    }
  }
}
