//! Prints every bag it receives as one JSON line on stdout; when a bag says `"last": true`, asks
//! the host to shut down.
use bagpipe_guest::{Bag, Block, Config, Controller, export_block};

struct Sink {
    seen: u64,
}

impl Block for Sink {
    fn init(_ctl: &Controller, _config: Config) -> Result<Self, String> {
        Ok(Sink { seen: 0 })
    }

    fn on_enqueue(&mut self, ctl: &Controller, bag: Bag) -> Result<(), String> {
        self.seen += 1;
        println!("{bag}");
        if bag.get("last").and_then(|v| v.as_bool()) == Some(true) {
            ctl.info(&format!("last bag seen after {} bags, shutting down", self.seen));
            ctl.shutdown();
        }
        Ok(())
    }
}

export_block!(Sink, hooks = [on_enqueue]);
