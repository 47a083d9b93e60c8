//! Tests of a batch: what `next` hands out and settles, what `close` gives back after a fault,
//! and the bounds (items, bytes, a waiting command).
use std::sync::atomic::Ordering;

use super::*;
use crate::bindings::bagpipe::block::delivery::Host as _;
use crate::routing::bag::BagLimits;
use crate::routing::queue::{BlockQueue, Receipt, Settled};

fn queued(bags: &[String]) -> (Envelope, QueueReceiver, BlockQueue, Arc<BlockStatus>) {
    let status = Arc::new(BlockStatus::new("b", "b", true));
    let limits = BagLimits { max_bytes: 8 << 20, max_depth: 8 };
    let (queue, rx) = BlockQueue::new(BATCH_ITEMS * 2, 64 << 20, status.clone(), limits);
    for bag in &bags[1..] {
        queue.try_push(Envelope::Bag(bag.clone())).expect("room");
    }
    (Envelope::Bag(bags[0].clone()), rx, queue, status)
}

fn bags(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!(r#"{{"i":{i}}}"#)).collect()
}

fn clock() -> Arc<CallClock> {
    Arc::new(CallClock::new(std::time::Duration::from_secs(5)))
}

fn never() -> CommandWaiting {
    Arc::new(|| false)
}

fn bag_of(item: Option<Item>) -> String {
    match item {
        Some(Item::Bag(bag)) => bag,
        other => panic!("expected a bag, got {other:?}"),
    }
}

fn count(status: &BlockStatus) -> (u64, u64) {
    let c = &status.counters;
    (c.processed.load(Ordering::Relaxed), c.failed.load(Ordering::Relaxed))
}

#[test]
fn a_fault_hits_the_item_taken_last_and_leaves_the_rest_queued() {
    let all = bags(5);
    let (first, rx, _q, status) = queued(&all);
    let mut ctx = DeliveryCtx::new(status.clone(), clock(), None, None);
    ctx.open(first, rx, never());
    assert_eq!(bag_of(ctx.next(None)), all[0]);
    assert_eq!(bag_of(ctx.next(Some(Ok(())))), all[1]);
    assert_eq!(bag_of(ctx.next(Some(Err("no".into())))), all[2]);
    // The guest traps while processing the third bag.
    let mut end = ctx.close(false).expect("a batch was open");
    assert_eq!(end.current, Some(Envelope::Bag(all[2].clone())), "the bag being processed");
    assert_eq!(end.untaken, None);
    assert_eq!(count(&status), (1, 1), "the first processed, the second refused, the third unsettled");
    assert!(end.went_well);
    let rest: Vec<_> = std::iter::from_fn(|| end.queue.try_recv().ok()).collect();
    assert_eq!(rest, vec![Envelope::Bag(all[3].clone()), Envelope::Bag(all[4].clone())], "still queued, in order");
    assert!(ctx.next(None).is_none(), "no batch, nothing handed out");
}

#[test]
fn a_call_that_returns_settles_its_last_item_and_ends_at_an_empty_queue() {
    let all = bags(2);
    let (first, rx, _q, status) = queued(&all);
    let mut ctx = DeliveryCtx::new(status.clone(), clock(), None, None);
    ctx.open(first, rx, never());
    bag_of(ctx.next(None));
    bag_of(ctx.next(Some(Ok(()))));
    assert!(ctx.next(Some(Ok(()))).is_none(), "the queue is empty");
    let end = ctx.close(true).expect("open");
    assert_eq!((end.current, end.untaken), (None, None));
    assert_eq!(count(&status), (2, 0));

    // A block that returns without reporting its last item is done with it.
    let (first, rx, _q, status) = queued(&bags(1));
    ctx = DeliveryCtx::new(status.clone(), clock(), None, None);
    ctx.open(first, rx, never());
    bag_of(ctx.next(None));
    let end = ctx.close(true).expect("open");
    assert_eq!(end.current, None);
    assert_eq!(count(&status), (1, 0));
}

#[test]
fn a_block_that_took_nothing_leaves_the_first_item_undelivered() {
    let (first, rx, _q, status) = queued(&bags(2));
    let mut ctx = DeliveryCtx::new(status.clone(), clock(), None, None);
    ctx.open(first.clone(), rx, never());
    let end = ctx.close(false).expect("open");
    assert_eq!((end.current, end.untaken), (None, Some(first)));
    assert!(!end.went_well);
}

#[test]
fn a_refused_durable_bag_ends_the_batch_and_goes_back_to_the_task() {
    let all = bags(3);
    let (_, rx, q, status) = queued(&all);
    let (receipt, mut settled) = Receipt::new();
    let durable = Envelope::Durable { bag: all[0].clone(), receipt };
    let mut ctx = DeliveryCtx::new(status.clone(), clock(), None, None);
    ctx.open(durable.clone(), rx, never());
    bag_of(ctx.next(None));
    assert!(ctx.next(Some(Err("not now".into()))).is_none(), "a refusal ends the batch");
    let end = ctx.close(true).expect("open");
    assert_eq!(end.refused, Some((durable, "not now".to_owned())));
    assert!(settled.try_recv().is_err(), "not acknowledged: it is delivered again");
    assert_eq!(count(&status), (0, 1));
    drop(q);

    // Done with, it is settled at once.
    let (_, rx, _q, status) = queued(&all);
    let (receipt, mut settled) = Receipt::new();
    ctx.open(Envelope::Durable { bag: all[0].clone(), receipt }, rx, never());
    bag_of(ctx.next(None));
    bag_of(ctx.next(Some(Ok(()))));
    assert_eq!(settled.try_recv().ok(), Some(Settled::Done));
    drop(status);
}

#[test]
fn a_batch_holds_at_most_batch_items() {
    let all = bags(BATCH_ITEMS + 10);
    let (first, rx, _q, status) = queued(&all);
    let mut ctx = DeliveryCtx::new(status, clock(), None, None);
    ctx.open(first, rx, never());
    let mut previous = None;
    let mut seen = Vec::new();
    while let Some(item) = ctx.next(previous.take()) {
        seen.push(bag_of(Some(item)));
        previous = Some(Ok(()));
    }
    assert_eq!(seen, all[..BATCH_ITEMS], "in queue order, up to the bound");
    let mut end = ctx.close(true).expect("open");
    assert_eq!(end.queue.try_recv().ok(), Some(Envelope::Bag(all[BATCH_ITEMS].clone())), "the rest waits");
}

#[test]
fn an_item_past_the_byte_bound_goes_alone() {
    let big = format!(r#"{{"big":"{}"}}"#, "x".repeat(BATCH_BYTES));
    let all = vec![big.clone(), r#"{"i":2}"#.to_owned()];
    let (first, rx, _q, status) = queued(&all);
    let mut ctx = DeliveryCtx::new(status.clone(), clock(), None, None);
    ctx.open(first, rx, never());
    assert_eq!(bag_of(ctx.next(None)), big, "however large, a batch takes its first item");
    assert!(ctx.next(Some(Ok(()))).is_none(), "and nothing after it");
    let mut end = ctx.close(true).expect("open");
    assert_eq!(end.queue.try_recv().ok(), Some(Envelope::Bag(all[1].clone())));

    // Behind other items, it is not handed out: it waits for the next batch, first in line.
    let all = vec![r#"{"i":1}"#.to_owned(), big.clone(), r#"{"i":3}"#.to_owned()];
    let (first, rx, _q, status) = queued(&all);
    ctx = DeliveryCtx::new(status, clock(), None, None);
    ctx.open(first, rx, never());
    assert_eq!(bag_of(ctx.next(None)), all[0]);
    assert!(ctx.next(Some(Ok(()))).is_none(), "the big one would pass the bound");
    let mut end = ctx.close(true).expect("open");
    assert_eq!(end.untaken, Some(Envelope::Bag(big)), "not delivered, next in line");
    assert_eq!(end.queue.try_recv().ok(), Some(Envelope::Bag(all[2].clone())), "and the rest after it");
}

#[test]
fn a_waiting_command_ends_the_batch_after_the_item_in_hand() {
    let all = bags(4);
    let (first, rx, _q, status) = queued(&all);
    let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = waiting.clone();
    let mut ctx = DeliveryCtx::new(status, clock(), None, None);
    ctx.open(first, rx, Arc::new(move || flag.load(Ordering::Relaxed)));
    bag_of(ctx.next(None));
    bag_of(ctx.next(Some(Ok(()))));
    waiting.store(true, Ordering::Relaxed);
    assert!(ctx.next(Some(Ok(()))).is_none());
    let mut end = ctx.close(true).expect("open");
    assert_eq!(end.queue.try_recv().ok(), Some(Envelope::Bag(all[2].clone())), "the third waits");
}

#[test]
fn socket_events_travel_in_the_same_batch_as_bags() {
    let status = Arc::new(BlockStatus::new("b", "b", true));
    let (queue, rx) = BlockQueue::new(8, 1 << 20, status.clone(), BagLimits { max_bytes: 1024, max_depth: 8 });
    queue.try_push(Envelope::Data { conn: 7, data: b"hello".to_vec() }).expect("room");
    queue.try_push(Envelope::Closed { conn: 7 }).expect("room");
    let mut ctx = DeliveryCtx::new(status, clock(), None, None);
    ctx.open(Envelope::Bag("{}".into()), rx, never());
    assert!(matches!(ctx.next(None), Some(Item::Bag(_))));
    assert!(matches!(ctx.next(Some(Ok(()))), Some(Item::Data(Received { conn: 7, ref data })) if data == b"hello"));
    assert!(matches!(ctx.next(Some(Ok(()))), Some(Item::Closed(7))));
    assert!(ctx.next(Some(Ok(()))).is_none());
}

#[test]
fn each_item_is_timed_as_a_call_of_its_own() {
    let (first, rx, _q, status) = queued(&bags(2));
    let clock = clock();
    let mut ctx = DeliveryCtx::new(status, clock.clone(), None, None);
    ctx.open(first, rx, never());
    bag_of(ctx.next(None));
    clock.note_wait_in_vain();
    bag_of(ctx.next(Some(Ok(()))));
    assert!(!clock.waited_in_vain(), "the first item's wait that ran out does not hold for the second");
}
