// The component's side of the WIT world: the host's imports wrapped as a controller, and every
// export interface implemented by calling the block. The builder's entry module imports it and
// re-exports the interfaces the block's world has; it is the only module that touches the
// generated bindings.

import * as controller from "bagpipe:block/controller@0.1.0";
import * as delivery from "bagpipe:block/delivery@0.1.0";
import * as net from "bagpipe:block/net@0.1.0";
import * as server from "bagpipe:block/server@0.1.0";
import * as streams from "bagpipe:block/streams@0.1.0";
import * as topics from "bagpipe:block/topics@0.1.0";

import {
  BlockError, CallError, EnqueueError, INITIATOR, NetError, ServerError, StreamEnd, StreamError,
  TopicError, fromWit,
} from "./bagpipe.js";

const CALL_HANDLE_PREFIX = "_CALL.";
const dumps = JSON.stringify;
const ms = (seconds) => BigInt(Math.max(0, Math.round(seconds * 1000)));

// A host call whose `result` error becomes the family's typed error.
function host(family, call) {
  try {
    return call();
  } catch (e) {
    if (e && typeof e === "object" && "payload" in e) throw fromWit(family, e.payload);
    throw e;
  }
}

function info(i) {
  return {
    name: i.name, responsibility: i.responsibility, state: i.state, acceptsBags: i.acceptsBags,
    builtin: i.builtin, version: i.version, queued: Number(i.queued), processed: Number(i.processed),
    faults: Number(i.faults),
  };
}

/** A handle on the host, passed to every hook. Durations are seconds. */
class Controller {
  name() { return controller.name(); }
  responsibility() { return controller.responsibility(); }

  /** Sends `bag` to `to`: true when queued, false when `to` takes no bags; throws an
   * `EnqueueError` (`QueueFull`, `UnknownTarget`, ...). */
  enqueue(to, bag) { return host(EnqueueError, () => controller.enqueue(to, dumps(bag))); }
  enqueueJson(to, text) { return host(EnqueueError, () => controller.enqueue(to, text)); }
  /** Sends `bags` in order in one call, stopping at the first one not taken. */
  enqueueMany(to, bags) {
    const sent = controller.enqueueMany(to, bags.map((b) => dumps(b)));
    const error = sent.error === undefined || sent.error === null ? undefined : fromWit(EnqueueError, sent.error);
    return { taken: sent.taken, queued: sent.queued, error };
  }
  /** A request to `to`; its answer comes to `onReply` with the id returned here. */
  call(to, bag, timeout) { return host(EnqueueError, () => controller.call(to, dumps(bag), ms(timeout))); }
  /** Answers a bag that came with `__reply`; false when it wants no reply. */
  reply(to, bag) {
    const handle = to.__reply;
    if (typeof handle !== "string") return false;
    if (handle.startsWith(CALL_HANDLE_PREFIX)) host(EnqueueError, () => controller.reply(handle, dumps(bag)));
    else host(ServerError, () => server.publish(handle, dumps(bag)));
    return true;
  }

  lookup(responsibility) {
    const found = controller.lookup(responsibility);
    return found === undefined || found === null ? undefined : info(found);
  }
  list() { return controller.listBlocks().map(info); }
  finish(responsibility) {
    try {
      controller.finish(responsibility);
    } catch (e) {
      throw new BlockError(e && "payload" in e ? e.payload : String(e));
    }
  }
  shutdown() { this.finish(INITIATOR); }

  /** A line in the host's log; `level` is trace, debug, info, warn or error. */
  log(level, message) { controller.log(level, String(message)); }
  debug(message) { this.log("debug", message); }
  info(message) { this.log("info", message); }
  warn(message) { this.log("warn", message); }
  error(message) { this.log("error", message); }
  /** `onTimer(tag)` in `delay` seconds; returns the timer's id. */
  setTimer(delay, tag) {
    try {
      return controller.setTimer(ms(delay), tag);
    } catch (e) {
      throw new BlockError(e && "payload" in e ? e.payload : String(e));
    }
  }
  cancelTimer(id) { return controller.cancelTimer(BigInt(id)); }

  send(conn, data) { host(NetError, () => net.send(conn, data)); }
  close(conn) { host(NetError, () => net.close(conn)); }
  sendDatagram(listener, peer, data) { host(NetError, () => net.sendDatagram(listener, peer, data)); }
  connect(address) { return host(NetError, () => net.connect(address)); }
  listeners() { return net.listeners(); }
  connections() { return net.connections(); }

  publish(subject, bag) { host(ServerError, () => server.publish(subject, dumps(bag))); }
  subscribe(subject) { host(ServerError, () => server.subscribe(subject)); }
  unsubscribe(subject) { return server.unsubscribe(subject); }
  request(subject, bag, timeout) { return JSON.parse(host(ServerError, () => server.request(subject, dumps(bag), ms(timeout)))); }
  serverConnected() { return server.connected(); }

  emit(topic, bag) { return host(TopicError, () => topics.emit(topic, dumps(bag))); }
  subscribeTopic(pattern, lossy = false) { host(TopicError, () => topics.subscribe(pattern, lossy)); }
  unsubscribeTopic(pattern) { return topics.unsubscribe(pattern); }
  openStream(to, bag) { return host(EnqueueError, () => streams.open(to, dumps(bag))); }
  sendStream(id, bag) { host(StreamError, () => streams.send(id, dumps(bag))); }
  endStream(id, reason) { return streams.end(id, reason); }
}

const CTL = new Controller();
let Cls = null;
let block = null;

/** Called once by the entry module with the block's class. */
export function bind(cls) {
  Cls = cls;
}

function theBlock() {
  // The host calls init first and never again after an error: reaching this is a host bug.
  if (block === null) throw new Error("bagpipe: a hook was called before a successful init");
  return block;
}

// A hook that returns a result: `BlockError` becomes the error; anything else is a fault.
function returning(f) {
  try {
    f();
  } catch (e) {
    if (e instanceof BlockError) throw e.message;
    fault(e);
  }
}

// Ends the instance the way a Rust panic does: what went wrong goes to stderr, then a trap.
function fault(e) {
  console.error(`bagpipe: the block threw ${e}${e && e.stack ? `\n${e.stack}` : ""}`);
  // Thrown out of a result-returning export, an object that is not the error string cannot be
  // lowered: the component aborts (a trap), which is the fault wanted. Its own complaint
  // ("expected a string") follows the line above in stderr.
  throw FAULT;
}

const FAULT = Object.freeze({ bagpipe: "fault" });

function optional(name, ...args) {
  const hook = theBlock()[name];
  if (typeof hook === "function") hook.call(block, CTL, ...args);
}

function outcome(result) {
  return result.tag === "ok" ? JSON.parse(result.val) : fromWit(CallError, result.val);
}

function streamEnd(end) {
  return new StreamEnd(end.tag, end.val);
}

export const lifecycle = {
  init(config) {
    if (Cls === null) throw "no block: the module has no default export";
    const made = new Cls();
    returning(() => made.init(CTL, JSON.parse(config)));
    block = made;
  },
  run() {
    theBlock().run(CTL);
  },
  finish() {
    const ending = theBlock();
    block = null;
    returning(() => ending.finish(CTL));
  },
};

export const enqueueHook = {
  onEnqueue(bag) {
    const b = theBlock();
    returning(() => b.onEnqueue(CTL, JSON.parse(bag)));
  },
};

export const replyHook = {
  onReply(call, result) { theBlock().onReply(CTL, call, outcome(result)); },
};

export const streamHook = {
  onStreamOpen(id, from, bag) {
    const b = theBlock();
    if (typeof b.onStreamOpen === "function") returning(() => b.onStreamOpen(CTL, id, from, JSON.parse(bag)));
  },
  onStreamData(id, bag) { optional("onStreamData", id, JSON.parse(bag)); },
  onStreamEnd(id, end) { optional("onStreamEnd", id, streamEnd(end)); },
};

export const timerHook = {
  onTimer(tag) { theBlock().onTimer(CTL, tag); },
};

export const serverHook = {
  onServerConnect(info) { optional("onServerConnect", info); },
  onServerDisconnect() { optional("onServerDisconnect"); },
};

export const netHook = {
  onAccept(conn, listener, peer) { optional("onAccept", conn, listener, peer); },
  onData(conn, data) { optional("onData", conn, data); },
  onClose(conn) { optional("onClose", conn); },
  onDatagram(listener, peer, data) { optional("onDatagram", listener, peer, data); },
};

export const stateHook = {
  snapshot() { return theBlock().snapshot(CTL); },
  restore(state) {
    const b = theBlock();
    returning(() => b.restore(CTL, state));
  },
};

const OK = { tag: "ok" };

// Hands one queued item to its hook; returns how it went, for the next `next`.
function deliver(item) {
  const v = item.val;
  switch (item.tag) {
    case "bag":
      try {
        theBlock().onEnqueue(CTL, JSON.parse(v));
      } catch (e) {
        if (e instanceof BlockError) return { tag: "err", val: e.message };
        throw e;
      }
      return OK;
    case "data": optional("onData", v.conn, v.data); return OK;
    case "accept": optional("onAccept", v.conn, v.listener, v.peer); return OK;
    case "closed": optional("onClose", v); return OK;
    case "datagram": optional("onDatagram", v.listener, v.peer, v.data); return OK;
    case "reply": theBlock().onReply(CTL, v.call, outcome(v.outcome)); return OK;
    case "stream-open": {
      const b = theBlock();
      if (typeof b.onStreamOpen !== "function") return OK;
      try {
        b.onStreamOpen(CTL, v.id, v.from, JSON.parse(v.bag));
      } catch (e) {
        if (e instanceof BlockError) return { tag: "err", val: e.message };
        throw e;
      }
      return OK;
    }
    case "stream-data": optional("onStreamData", v.id, JSON.parse(v.bag)); return OK;
    case "stream-end": optional("onStreamEnd", v.id, streamEnd(v.end)); return OK;
    default: return OK;
  }
}

export const batchHook = {
  onBatch() {
    let previous;
    for (;;) {
      const item = delivery.next(previous);
      if (item === undefined || item === null) return;
      previous = deliver(item);
    }
  },
};
