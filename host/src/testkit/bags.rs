//! Bags and calls between the test and the block: what the test gives the block (checked and
//! stamped by the block's own queue, as from a block called `test`), the calls it makes to it,
//! and what reached the stand-ins.

use std::collections::BTreeMap;

use serde_json::Value;

use super::stand_in::{Arrived, StandIn};
use super::{Bench, CallFailure, TEST_SENDER, TestError};
use crate::routing::bag;
use crate::routing::calls::CallToken;
use crate::routing::queue::{BlockQueue, Envelope, Refusal};

impl Bench {
    /// Sends `bag` to the block, as a block called `test` would, and settles.
    pub async fn enqueue(&mut self, bag: &Value) -> Result<(), TestError> {
        self.enqueue_text(&bag.to_string()).await
    }

    /// Sends the JSON text `bag` to the block (which may be anything: the queue checks it), and
    /// settles.
    pub async fn enqueue_text(&mut self, bag: &str) -> Result<(), TestError> {
        let queue = self.bag_queue()?;
        self.seq += 1;
        let stamped = queue.stamp(bag, TEST_SENDER, self.seq).map_err(|r| TestError::Refused(r.to_string()))?;
        queue.try_push(Envelope::Bag(stamped)).map_err(|(r, _)| self.refusal(r))?;
        self.settle().await
    }

    /// Calls the block with `bag` (its `__reply` set), settles, and gives the call's outcome.
    /// A call the block neither answered nor ended by then is an error (the kit has no call
    /// deadlines: `timeout` never happens here).
    pub async fn call(&mut self, bag: &Value) -> Result<Result<Value, CallFailure>, TestError> {
        let queue = self.bag_queue()?;
        let calls = self.links.calls.clone();
        let slot = self.me.queue().reserve().map_err(|r| TestError::Misuse(format!("the test's queue: {r}")))?;
        let id = calls
            .open(slot, TEST_SENDER, &self.spec.responsibility)
            .ok_or_else(|| TestError::Misuse("the call could not be opened".to_owned()))?;
        self.seq += 1;
        let stamped = match queue.stamp(&bag.to_string(), TEST_SENDER, self.seq) {
            Ok(stamped) => stamped,
            Err(r) => {
                calls.cancel(id);
                return Err(TestError::Refused(r.to_string()));
            }
        };
        let handle = calls.handle(id);
        let request =
            Envelope::Call { bag: bag::with_reply(&stamped, &handle), call: CallToken::new(calls.clone(), id) };
        if let Err((r, request)) = queue.offer(request) {
            calls.cancel(id);
            drop(request);
            return Err(self.refusal(r));
        }
        let settled = self.settle().await;
        let outcome = self.me.outcome(id);
        if outcome.is_none() {
            calls.cancel(id);
        }
        settled?;
        match outcome {
            Some(Ok(answer)) => Ok(Ok(serde_json::from_str(&answer).unwrap_or(Value::String(answer)))),
            Some(Err(failure)) => Ok(Err(failure)),
            None => {
                Err(TestError::Misuse("the block has not answered the call (nor ended it) after settling".to_owned()))
            }
        }
    }

    fn bag_queue(&self) -> Result<BlockQueue, TestError> {
        self.queue.clone().ok_or_else(|| {
            TestError::Misuse("the block takes no bags (it does not export enqueue-hook: list `on_enqueue`)".to_owned())
        })
    }

    pub(super) fn refusal(&self, r: Refusal) -> TestError {
        match (&self.ended, r) {
            (Some(how), Refusal::Closed) => TestError::Ended(how.clone()),
            (_, r) => TestError::Refused(r.to_string()),
        }
    }

    /// Takes the bags that reached stand-in `target` (or `test`) since the last call.
    pub fn sent_to(&mut self, target: &str) -> Result<Vec<Arrived>, TestError> {
        if target == TEST_SENDER {
            return Ok(self.me.take());
        }
        Ok(self.stand_in(target)?.take())
    }

    /// Takes the bags that reached any stand-in (or `test`), by name; names that got none are
    /// left out.
    pub fn sent(&mut self) -> BTreeMap<String, Vec<Arrived>> {
        let mut sent: BTreeMap<String, Vec<Arrived>> =
            self.stand_ins.iter_mut().map(|(name, s)| (name.clone(), s.take())).collect();
        sent.insert(TEST_SENDER.to_owned(), self.me.take());
        sent.retain(|_, bags| !bags.is_empty());
        sent
    }

    /// Makes stand-in `target` refuse every bag (`queue-full`) until [`Bench::reopen`].
    pub fn fill(&mut self, target: &str) -> Result<(), TestError> {
        self.stand_in(target)?.fill();
        Ok(())
    }

    /// Lets stand-in `target` take bags again.
    pub fn reopen(&mut self, target: &str) -> Result<(), TestError> {
        self.stand_in(target)?.open();
        Ok(())
    }

    fn stand_in(&mut self, target: &str) -> Result<&mut StandIn, TestError> {
        self.stand_ins.get_mut(target).ok_or_else(|| TestError::Misuse(format!("there is no stand-in `{target}`")))
    }
}
