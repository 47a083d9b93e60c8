// echo_js: a test fixture for sockets in a JavaScript block. Echoes TCP data and UDP datagrams
// back to where they came from and prints each socket event as a JSON line ({"probe": "js", ...}),
// after printing its listeners in `run`.

import { Block, NetError } from "./bagpipe.js";

function say(fields) {
  const out = { probe: "js", ...fields };
  console.log(JSON.stringify(Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]))));
}

export default class Echo extends Block {
  run(ctl) {
    say({ event: "listeners", listeners: ctl.listeners(), connections: ctl.connections().length });
  }

  onAccept(ctl, conn, listener, peer) {
    const listed = ctl.connections().some((c) => c.conn === conn);
    say({ event: "accept", conn, listener, peer, listed });
  }

  onData(ctl, conn, data) {
    say({ event: "data", conn, text: new TextDecoder().decode(data), is_bytes: data instanceof Uint8Array });
    ctl.send(conn, data);
  }

  onClose(ctl, conn) {
    say({ event: "close", conn });
    try {
      ctl.send(conn, "late");
    } catch (e) {
      if (!(e instanceof NetError)) throw e;
      say({ event: "send_after_close", kind: e.kind, cls: e.constructor.name });
    }
  }

  onDatagram(ctl, listener, peer, data) {
    say({ event: "datagram", listener, text: new TextDecoder().decode(data) });
    ctl.sendDatagram(listener, peer, data);
  }
}
