//! Changes each bag and passes it on to `to`. `op = "upper"` upper-cases the `text` field;
//! `op = "stamp"` adds `stamped_by`. Either way it adds its own running count, so two
//! responsibilities of this one component show that each keeps its own state.
use bagpipe_guest::{Bag, Block, Config, Controller, export_block};

enum Op {
    Upper,
    Stamp,
}

struct Transform {
    to: String,
    op: Op,
    seen: u64,
    /// This responsibility's name, and the key its count goes under: made once, not per bag.
    me: String,
    seen_key: String,
}

impl Block for Transform {
    fn init(ctl: &Controller, config: Config) -> Result<Self, String> {
        let op = match config.str_or("op", "upper").as_str() {
            "upper" => Op::Upper,
            "stamp" => Op::Stamp,
            other => return Err(format!("unknown op `{other}`: use `upper` or `stamp`")),
        };
        let me = ctl.responsibility();
        Ok(Transform { to: config.str_or("to", "sink"), op, seen: 0, seen_key: format!("seen_by_{me}"), me })
    }

    fn on_enqueue(&mut self, ctl: &Controller, bag: Bag) -> Result<(), String> {
        self.seen += 1;
        let mut out = bag;
        out.strip_host_keys();
        match self.op {
            Op::Upper => {
                if let Some(text) = out.get("text").and_then(|t| t.as_str()).map(str::to_uppercase) {
                    out.insert("text".into(), text.into());
                }
            }
            Op::Stamp => {
                out.insert("stamped_by".into(), self.me.clone().into());
            }
        }
        out.insert(self.seen_key.clone(), self.seen.into());
        ctl.enqueue(&self.to, &out).map_err(|e| format!("cannot pass bag on to `{}`: {e}", self.to))?;
        Ok(())
    }
}

export_block!(Transform, hooks = [on_enqueue]);
