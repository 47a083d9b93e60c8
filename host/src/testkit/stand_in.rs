//! Stand-ins: the other blocks of a test, played by the test. A stand-in is a route like any
//! block's (a bounded queue behind a name), so the block under test reaches it through the real
//! controller: its bags are checked and stamped as they would be for a real target. The test
//! reads what arrived; a stand-in may answer the calls made to it, and may be made to refuse
//! everything (`queue-full`) for a while.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

use crate::bindings::CallFailure;
use crate::defaults::{TEST_STAND_IN_BYTES, TEST_STAND_IN_QUEUE};
use crate::routing::bag::BagLimits;
use crate::routing::calls::Calls;
use crate::routing::queue::{BlockQueue, Envelope, QueueReceiver, ReplySlot};
use crate::routing::router::{Route, Router};
use crate::stats::BlockStatus;

/// How a stand-in answers a call: `Some(Ok(answer))`, `Some(Err(why))` (it refuses the request)
/// or `None` (it handles the request without answering: the caller hears `no-reply`).
pub type Answer = Box<dyn FnMut(&Value) -> Option<Result<Value, String>> + Send>;

/// A bag that reached a stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrived {
    /// The bag, host keys (`__from`, `__seq`, `__reply`...) included.
    pub bag: Value,
    /// Whether it was a request (a `call`), not a plain bag.
    pub call: bool,
}

/// One stand-in: its queue, what arrived, how it answers.
pub struct StandIn {
    name: String,
    queue: BlockQueue,
    rx: QueueReceiver,
    answer: Option<Answer>,
    arrived: VecDeque<Arrived>,
    /// Room held so that the block's bags find the queue full.
    held: Vec<ReplySlot>,
    /// The answers' sequence numbers.
    seq: u64,
    /// Outcomes of calls the test made (the test's own stand-in only).
    outcomes: Vec<(u64, Result<String, CallFailure>)>,
}

impl StandIn {
    /// A stand-in called `name`, routed in `router`.
    pub fn new(name: &str, router: &Router, answer: Option<Answer>) -> Self {
        let status = Arc::new(BlockStatus::new(name, name, true));
        status.set_state(crate::bindings::BlockState::Running);
        let limits = BagLimits { max_bytes: usize::MAX, max_depth: usize::MAX };
        let (queue, rx) = BlockQueue::new(TEST_STAND_IN_QUEUE, TEST_STAND_IN_BYTES, status.clone(), limits);
        router.insert(Route { status, queue: Some(queue.clone()), via_server: false, streams: None });
        Self {
            name: name.to_owned(),
            queue,
            rx,
            answer,
            arrived: VecDeque::new(),
            held: Vec::new(),
            seq: 0,
            outcomes: Vec::new(),
        }
    }

    /// Its queue, for the test's own calls' outcomes.
    pub fn queue(&self) -> &BlockQueue {
        &self.queue
    }

    /// Takes what arrived, answering the calls; returns whether anything did.
    pub async fn serve(&mut self, calls: &Arc<Calls>) -> bool {
        let mut any = false;
        while let Ok(env) = self.rx.try_recv() {
            any = true;
            match env {
                Envelope::Bag(bag) | Envelope::Durable { bag, .. } => {
                    self.arrived.push_back(Arrived { bag: parse(&bag), call: false });
                }
                Envelope::Call { ref bag, .. } => {
                    let bag = parse(bag);
                    let answer = self.answer.as_mut().and_then(|answer| answer(&bag));
                    self.arrived.push_back(Arrived { bag: bag.clone(), call: true });
                    match answer {
                        Some(Ok(value)) => self.reply(calls, &bag, &value, &env).await,
                        Some(Err(why)) => env.refused(&why),
                        None => env.done(),
                    }
                }
                Envelope::Reply { call, outcome } => self.outcomes.push((call, outcome)),
                other => self.arrived.push_back(Arrived { bag: other.describe(), call: false }),
            }
        }
        any
    }

    /// Answers the request `bag` with `value`, as the `reply` import does.
    async fn reply(&mut self, calls: &Arc<Calls>, bag: &Value, value: &Value, env: &Envelope) {
        let handle = bag.get("__reply").and_then(Value::as_str).unwrap_or_default();
        let Some(id) = calls.id_of(handle) else { return };
        let Some(caller) = calls.caller_queue(id, &self.name) else { return };
        self.seq += 1;
        let stamped = match caller.stamp(&value.to_string(), &self.name, self.seq) {
            Ok(stamped) => stamped,
            Err(r) => return env.refused(&format!("the stand-in's answer does not fit the caller: {r}")),
        };
        let Some(slot) = calls.take(id) else { return };
        // As `reply` does: the caller's queue is not drained while it is in a call, so no wait.
        let answer = Envelope::Reply { call: id, outcome: Ok(stamped) };
        if let Err((r, slot)) = slot.fill_within(answer, std::time::Duration::ZERO).await {
            let why = format!("the answer found no room in the caller's queue: {r}");
            slot.fill(Envelope::Reply { call: id, outcome: Err(CallFailure::Unavailable(why)) });
        }
    }

    /// The outcome of call `id`, once it arrived.
    pub fn outcome(&mut self, id: u64) -> Option<Result<String, CallFailure>> {
        let at = self.outcomes.iter().position(|(call, _)| *call == id)?;
        Some(self.outcomes.remove(at).1)
    }

    /// Takes the bags that arrived so far.
    pub fn take(&mut self) -> Vec<Arrived> {
        self.arrived.drain(..).collect()
    }

    /// Makes the queue full (every bag sent to it is refused with `queue-full`) until
    /// [`StandIn::open`].
    pub fn fill(&mut self) {
        while let Ok(slot) = self.queue.reserve() {
            self.held.push(slot);
        }
    }

    /// Gives the room [`StandIn::fill`] held back.
    pub fn open(&mut self) {
        self.held.drain(..).for_each(ReplySlot::free);
    }
}

fn parse(bag: &str) -> Value {
    serde_json::from_str(bag).unwrap_or_else(|_| Value::String(bag.to_owned()))
}
