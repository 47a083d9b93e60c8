// tag: a transform written in JavaScript.
//
// Tags every bag with the manifest's `tag`, names a syslog facility, and counts what it has seen.
// A bag the next block refuses (its queue stayed full, say) is logged and dropped.

import { Block, EnqueueError, payload } from "./bagpipe.js";

const FACILITIES = [
  "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
  "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
  "local5", "local6", "local7",
];

export default class Tag extends Block {
  init(ctl, config) {
    this.to = config.to ?? "sink";
    this.tag = config.tag ?? "polyglot";
    this.seen = 0;
  }

  onEnqueue(ctl, bag) {
    const out = payload(bag);
    this.seen += 1;
    out.tag = this.tag;
    out.js_seen = this.seen;
    if (Number.isInteger(out.facility)) out.facility_name = FACILITIES[out.facility] ?? "unknown";
    try {
      ctl.enqueue(this.to, out);
    } catch (e) {
      if (!(e instanceof EnqueueError)) throw e;
      ctl.warn(`bag ${this.seen} not passed on: ${e.message}`);
    }
  }
}
