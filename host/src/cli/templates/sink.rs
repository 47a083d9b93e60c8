//! A sink block: prints every bag it takes as one JSON line on stdout and counts them.
use bagpipe_guest::{Bag, Block, Config, Controller, export_block};

/// The block's state; each responsibility running this component has its own.
struct Sink {
    /// Bags taken so far.
    taken: u64,
}

impl Block for Sink {
    fn init(_ctl: &Controller, _config: Config) -> Result<Self, String> {
        Ok(Sink { taken: 0 })
    }

    fn on_enqueue(&mut self, _ctl: &Controller, bag: Bag) -> Result<(), String> {
        self.taken += 1;
        // `payload` leaves out the keys the host adds (`__from`, `__seq`...).
        println!("{}", bag.payload());
        Ok(())
    }

    fn finish(&mut self, ctl: &Controller) -> Result<(), String> {
        ctl.info(&format!("took {} bags", self.taken));
        Ok(())
    }
}

export_block!(Sink, hooks = [on_enqueue]);
