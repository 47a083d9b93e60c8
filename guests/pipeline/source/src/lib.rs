//! Emits `count` bags, one every `interval_ms`, to the responsibility `to`. The last one says
//! `"last": true`.
use std::time::Duration;

use bagpipe_guest::{Bag, Block, Config, Controller, export_block};

struct Source {
    to: String,
    count: u64,
    interval: Duration,
    sent: u64,
}

impl Block for Source {
    fn init(_ctl: &Controller, config: Config) -> Result<Self, String> {
        let count = config.u64_or("count", 10);
        if count == 0 {
            return Err("`count` must be at least 1".into());
        }
        Ok(Source {
            to: config.str_or("to", "sink"),
            count,
            interval: Duration::from_millis(config.u64_or("interval_ms", 100)),
            sent: 0,
        })
    }

    fn run(&mut self, ctl: &Controller) {
        ctl.info(&format!("sending {} bags to `{}`", self.count, self.to));
        self.tick(ctl);
    }

    fn on_timer(&mut self, ctl: &Controller, _tag: String) {
        self.tick(ctl);
    }
}

impl Source {
    fn tick(&mut self, ctl: &Controller) {
        self.sent += 1;
        let last = self.sent == self.count;
        let bag =
            Bag::new().with("n", self.sent).with("text", format!("hello number {}", self.sent)).with("last", last);
        if let Err(e) = ctl.enqueue(&self.to, &bag) {
            ctl.error(&format!("bag {} not sent: {e}", self.sent));
        }
        if !last && let Err(e) = ctl.set_timer(self.interval, "next") {
            ctl.error(&format!("cannot set timer: {e}"));
        }
    }
}

export_block!(Source, hooks = [on_timer]);
