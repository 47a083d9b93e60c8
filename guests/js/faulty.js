// faulty: a test fixture for faults in a JavaScript block. A bag with `throw` makes it throw a
// TypeError (a fault), one with `async` makes its hook return a promise (a fault that says so),
// one with `refuse` makes it throw BlockError (a refusal); any other bag goes on to `config.to`.

import { Block, BlockError, payload } from "./bagpipe.js";

export default class Faulty extends Block {
  init(ctl, config) {
    this.to = config.to ?? "sink";
  }

  onEnqueue(ctl, bag) {
    if (bag.throw) return bag.no.such.thing;
    if (bag.async) return Promise.resolve(1);
    if (bag.refuse) throw new BlockError("refused by faulty.js");
    ctl.enqueue(this.to, payload(bag));
  }
}
