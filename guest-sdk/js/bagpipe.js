// bagpipe: write a bagpipe block in JavaScript.
//
// A block is a class (the default export of its module) deriving from `Block`. It gets the host's
// controller in every hook; bags are plain objects. Optional hooks are the methods it defines:
// the builder (`node build.mjs`) exports a WIT interface only for those, so the host sees the same
// hooks it would see on a Rust block with the same methods.
//
//     import { Block } from "./bagpipe.js";
//
//     export default class Upper extends Block {
//       init(ctl, config) { this.to = config.to ?? "sink"; }
//       onEnqueue(ctl, bag) {
//         bag.text = String(bag.text ?? "").toUpperCase();
//         ctl.enqueue(this.to, bag);
//       }
//     }
//
// Throwing `BlockError` from a hook that returns a result (`init`, `finish`, `onEnqueue`,
// `onStreamOpen`, `restore`) returns that error to the host; any other exception is a fault, as a
// panic is in Rust: the instance ends and the block's restart policy applies.
//
// This module imports nothing from the host, so the builder can load it in Node.js to read which
// hooks a block defines. The builder puts it beside the block's module as `bagpipe.js`.

/** A block: override `init`, `run`, `finish` as needed; define only the optional hooks it uses. */
export class Block {
  /** Called once per instance with the manifest's `config` table. */
  init(_ctl, _config) {}
  /** Called once every block's `init` succeeded: start work here. */
  run(_ctl) {}
  /** Called once when the instance is finished. */
  finish(_ctl) {}
}

/** Hook method -> the optional WIT interface (its JS export name) that carries it. */
export const HOOKS = {
  onEnqueue: "enqueue-hook",
  onReply: "reply-hook",
  onStreamOpen: "stream-hook",
  onStreamData: "stream-hook",
  onStreamEnd: "stream-hook",
  onTimer: "timer-hook",
  onServerConnect: "server-hook",
  onServerDisconnect: "server-hook",
  onAccept: "net-hook",
  onData: "net-hook",
  onClose: "net-hook",
  onDatagram: "net-hook",
  snapshot: "state-hook",
  restore: "state-hook",
};

/** The optional interfaces a block class exports: those with a method it defines, plus
 * `batch-hook` (every block takes its queue in batches, as with the Rust SDK). Sorted. */
export function interfaces(cls) {
  const found = new Set(["batch-hook"]);
  for (const [method, iface] of Object.entries(HOOKS)) {
    const impl = cls.prototype[method];
    if (typeof impl === "function" && impl !== Block.prototype[method]) found.add(iface);
  }
  return [...found].sort();
}

/** Throw it from a hook that returns a result to return an error to the host (logged, counted;
 * the block carries on). */
export class BlockError extends Error {
  constructor(message) {
    super(message);
    this.name = "BlockError";
  }
}

/** An error a host call returned: `kind` is the WIT case (`queue-full`, ...), `detail` what it
 * carries (a string, a number, or undefined). */
export class HostError extends Error {
  constructor(kind, detail) {
    super(detail === undefined ? kind : `${kind}: ${detail}`);
    this.name = this.constructor.name;
    this.kind = kind;
    this.detail = detail;
  }
}

/** Why `enqueue`, `call`, `reply` or `openStream` did not deliver a bag. */
export class EnqueueError extends HostError {}
/** How a call ended without an answer (what `onReply` gets instead of a bag). */
export class CallError extends HostError {}
/** Why a socket call failed. */
export class NetError extends HostError {}
/** Why a message-server call failed. */
export class ServerError extends HostError {}
/** Why a topic call failed. */
export class TopicError extends HostError {}
/** Why a stream call failed. */
export class StreamError extends HostError {}

/** The enqueue cases, as classes to catch one by one (`instanceof QueueFull`). */
export class UnknownTarget extends EnqueueError {}
export class Unavailable extends EnqueueError {}
export class InvalidBag extends EnqueueError {}
export class QueueFull extends EnqueueError {}
export class TooLarge extends EnqueueError {}

const ENQUEUE_CASES = {
  "unknown-target": UnknownTarget,
  unavailable: Unavailable,
  "invalid-bag": InvalidBag,
  "queue-full": QueueFull,
  "too-large": TooLarge,
};

/** The error for a WIT variant value `{ tag, val }` of the family `family`. */
export function fromWit(family, value) {
  const cls = family === EnqueueError ? (ENQUEUE_CASES[value.tag] ?? EnqueueError) : family;
  return new cls(value.tag, value.val === undefined ? undefined : value.val);
}

/** Why a stream ended: `kind` is `ended`, `refused`, `faulted` or `finished`. */
export class StreamEnd {
  constructor(kind, detail) {
    this.kind = kind;
    this.detail = detail;
  }
}

/** The host's built-in initiator: finishing it shuts the host down. */
export const INITIATOR = "initiator";

/** A copy of `bag` without the host's keys (`__from`, `__seq`, ...): what a block may send on. */
export function payload(bag) {
  const out = {};
  for (const [k, v] of Object.entries(bag)) if (!k.startsWith("__")) out[k] = v;
  return out;
}
