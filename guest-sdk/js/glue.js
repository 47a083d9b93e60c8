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
const U64_MAX = 0xffffffffffffffffn;
// Ids and numbers from the host are u64 (BigInt in the bindings): handed to the block as Numbers,
// which JSON can carry (ids stay far below 2^53).
const num = (v) => (typeof v === "bigint" ? Number(v) : v);
// A bag's JSON text; a BigInt in it is written as a number.
const dumps = (bag) => JSON.stringify(bag, (_k, v) => (typeof v === "bigint" ? Number(v) : v));
// Seconds as whole milliseconds, saturating as the Rust SDK's durations do.
function ms(seconds) {
  const n = Number(seconds);
  if (Number.isNaN(n) || n <= 0) return 0n;
  if (!Number.isFinite(n) || n * 1000 >= 1.8e19) return U64_MAX;
  return BigInt(Math.round(n * 1000));
}
// Bytes as a Uint8Array, both ways: for the host, a string is taken as UTF-8; from the host, the
// bindings' list<u8> (an ArrayBuffer or another view) becomes one. Anything else is the block's bug.
function bytes(data, what) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError(`${what} must be a Uint8Array or a string, not ${typeof data}`);
}

// A host call whose `result` error becomes the family's typed error.
function host(family, call) {
  try {
    return call();
  } catch (e) {
    if (e && typeof e === "object" && "payload" in e) {
      const p = e.payload;
      throw fromWit(family, p && typeof p === "object" ? { tag: p.tag, val: num(p.val) } : p);
    }
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
  /** `enqueueMany` with the bags' JSON texts as they are. */
  enqueueManyJson(to, texts) { return sent(controller.enqueueMany(to, texts)); }
  /** Sends `bags` in order in one call, stopping at the first one not taken. */
  enqueueMany(to, bags) { return sent(controller.enqueueMany(to, bags.map((b) => dumps(b)))); }
  /** A request to `to`; its answer comes to `onReply` with the id returned here. */
  call(to, bag, timeout) { return num(host(EnqueueError, () => controller.call(to, dumps(bag), ms(timeout)))); }
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
      return num(controller.setTimer(ms(delay), tag));
    } catch (e) {
      throw new BlockError(e && "payload" in e ? e.payload : String(e));
    }
  }
  cancelTimer(id) { return controller.cancelTimer(BigInt(id)); }

  send(conn, data) { host(NetError, () => net.send(conn, bytes(data, "data"))); }
  close(conn) { host(NetError, () => net.close(conn)); }
  sendDatagram(listener, peer, data) { host(NetError, () => net.sendDatagram(listener, peer, bytes(data, "data"))); }
  connect(address) { return num(host(NetError, () => net.connect(address))); }
  listeners() { return net.listeners(); }
  connections() { return net.connections().map((c) => ({ conn: num(c.conn), listener: c.listener, peer: c.peer })); }

  publish(subject, bag) { host(ServerError, () => server.publish(subject, dumps(bag))); }
  subscribe(subject) { host(ServerError, () => server.subscribe(subject)); }
  unsubscribe(subject) { return server.unsubscribe(subject); }
  request(subject, bag, timeout) {
    const answer = host(ServerError, () => server.request(subject, dumps(bag), ms(timeout)));
    try {
      return JSON.parse(answer);
    } catch (e) {
      throw new ServerError("io", `the answer is not JSON: ${e.message}`);
    }
  }
  serverConnected() { return server.connected(); }

  emit(topic, bag) { return num(host(TopicError, () => topics.emit(topic, dumps(bag)))); }
  subscribeTopic(pattern, lossy = false) { host(TopicError, () => topics.subscribe(pattern, lossy)); }
  unsubscribeTopic(pattern) { return topics.unsubscribe(pattern); }
  openStream(to, bag) { return num(host(EnqueueError, () => streams.open(to, dumps(bag)))); }
  sendStream(id, bag) { host(StreamError, () => streams.send(id, dumps(bag))); }
  endStream(id, reason) { return streams.end(id, reason); }
}

function sent(s) {
  const error = s.error === undefined || s.error === null ? undefined : fromWit(EnqueueError, { tag: s.error.tag, val: num(s.error.val) });
  return { taken: s.taken, queued: s.queued, error };
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

// A hook that returns a result: `BlockError` becomes the error (as does input that does not
// parse, as in the Rust SDK); anything else is a fault.
function returning(f) {
  try {
    settled(f());
  } catch (e) {
    if (e instanceof BlockError) throw e.message;
    if (e instanceof BadInput) throw e.message;
    fault(e);
  }
}

// Host calls are synchronous: a hook that returns a promise (an `async` method) would have its
// work and its errors lost, so it is a fault that says so.
function settled(result) {
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    throw new TypeError("a hook returned a promise: bagpipe hooks are synchronous (no async methods)");
  }
  return result;
}

class BadInput extends Error {}

// A bag or config from the host, parsed; what does not parse is the hook's error, not a fault.
function parse(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadInput(`${what} is not JSON: ${e.message}`);
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
  if (typeof hook === "function") settled(hook.call(block, CTL, ...args));
}

function outcome(result) {
  if (result.tag !== "ok") return fromWit(CallError, result.val);
  try {
    return JSON.parse(result.val);
  } catch (e) {
    return new CallError("unavailable", `the answer is not JSON: ${e.message}`);
  }
}

function streamEnd(end) {
  return new StreamEnd(end.tag, end.val);
}

export const lifecycle = {
  init(config) {
    if (Cls === null) throw "no block: the module has no default export";
    const made = new Cls();
    returning(() => made.init(CTL, parse(config, "config") ?? {}));
    block = made;
  },
  run() {
    settled(theBlock().run(CTL));
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
    returning(() => b.onEnqueue(CTL, parse(bag, "bag")));
  },
};

export const replyHook = {
  onReply(call, result) { settled(theBlock().onReply(CTL, num(call), outcome(result))); },
};

export const streamHook = {
  onStreamOpen(id, from, bag) {
    const b = theBlock();
    if (typeof b.onStreamOpen === "function") returning(() => b.onStreamOpen(CTL, num(id), from, parse(bag, "bag")));
  },
  onStreamData(id, bag) { optional("onStreamData", num(id), JSON.parse(bag)); },
  onStreamEnd(id, end) { optional("onStreamEnd", num(id), streamEnd(end)); },
};

export const timerHook = {
  onTimer(tag) { settled(theBlock().onTimer(CTL, tag)); },
};

export const serverHook = {
  onServerConnect(info) { optional("onServerConnect", info); },
  onServerDisconnect() { optional("onServerDisconnect"); },
};

export const netHook = {
  onAccept(conn, listener, peer) { optional("onAccept", num(conn), listener, peer); },
  onData(conn, data) { optional("onData", num(conn), bytes(data, "data")); },
  onClose(conn) { optional("onClose", num(conn)); },
  onDatagram(listener, peer, data) { optional("onDatagram", listener, peer, bytes(data, "data")); },
};

// A block that defines only one of the two gets the Rust SDK's default for the other: an empty
// snapshot, a restore that takes nothing.
export const stateHook = {
  snapshot() {
    const b = theBlock();
    return typeof b.snapshot === "function" ? bytes(settled(b.snapshot(CTL)) ?? new Uint8Array(), "snapshot()") : new Uint8Array();
  },
  restore(state) {
    const b = theBlock();
    if (typeof b.restore === "function") returning(() => b.restore(CTL, bytes(state, "state")));
  },
};

const OK = { tag: "ok" };

// Hands one queued item to its hook; returns how it went, for the next `next`.
function deliver(item) {
  const v = item.val;
  switch (item.tag) {
    case "bag":
      try {
        settled(theBlock().onEnqueue(CTL, parse(v, "bag")));
      } catch (e) {
        if (e instanceof BlockError || e instanceof BadInput) return { tag: "err", val: e.message };
        throw e;
      }
      return OK;
    case "data": optional("onData", num(v.conn), bytes(v.data, "data")); return OK;
    case "accept": optional("onAccept", num(v.conn), v.listener, v.peer); return OK;
    case "closed": optional("onClose", num(v)); return OK;
    case "datagram": optional("onDatagram", v.listener, v.peer, bytes(v.data, "data")); return OK;
    case "reply": settled(theBlock().onReply(CTL, num(v.call), outcome(v.outcome))); return OK;
    case "stream-open": {
      const b = theBlock();
      if (typeof b.onStreamOpen !== "function") return OK;
      try {
        settled(b.onStreamOpen(CTL, num(v.id), v.from, parse(v.bag, "bag")));
      } catch (e) {
        if (e instanceof BlockError || e instanceof BadInput) return { tag: "err", val: e.message };
        throw e;
      }
      return OK;
    }
    case "stream-data": optional("onStreamData", num(v.id), JSON.parse(v.bag)); return OK;
    case "stream-end": optional("onStreamEnd", num(v.id), streamEnd(v.end)); return OK;
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
