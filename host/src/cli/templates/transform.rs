//! A transform block: every bag it takes goes on to the responsibility named by its config's
//! `to`, with `"seen": true` added. Change `on_enqueue` to change bags your way.
use bagpipe_guest::{Bag, Block, Config, Controller, export_block};

/// The block's state; each responsibility running this component has its own.
struct Transform {
    /// Where bags go.
    to: String,
    /// Bags passed on so far.
    passed: u64,
}

impl Block for Transform {
    fn init(_ctl: &Controller, config: Config) -> Result<Self, String> {
        let to = config.get("to").and_then(|v| v.as_str());
        let to = to.ok_or("config `to` (the responsibility bags go to) is missing")?;
        Ok(Transform {
            to: to.to_owned(),
            passed: 0,
        })
    }

    fn on_enqueue(&mut self, ctl: &Controller, bag: Bag) -> Result<(), String> {
        // `payload` leaves out the keys the host adds (`__from`, `__seq`...).
        let out = bag.payload().with("seen", true);
        match ctl.enqueue(&self.to, &out) {
            Ok(true) => {
                self.passed += 1;
                Ok(())
            }
            Ok(false) => Err(format!("`{}` takes no bags", self.to)),
            Err(e) => Err(format!("cannot pass the bag on to `{}`: {e}", self.to)),
        }
    }

    fn finish(&mut self, ctl: &Controller) -> Result<(), String> {
        ctl.info(&format!("passed {} bags on to `{}`", self.passed, self.to));
        Ok(())
    }
}

export_block!(Transform, hooks = [on_enqueue]);
