use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::routing::bag::BagLimits;
use crate::routing::queue::{BlockQueue, QueueReceiver};
use crate::stats::BlockStatus;

fn caller(capacity: usize) -> (BlockQueue, QueueReceiver) {
    let status = Arc::new(BlockStatus::new("c", "caller", true));
    BlockQueue::new(capacity, 1 << 20, status, BagLimits { max_bytes: 1 << 16, max_depth: 8 })
}

fn outcome(rx: &mut QueueReceiver) -> (u64, Result<String, CallFailure>) {
    match rx.try_recv() {
        Ok(Envelope::Reply { call, outcome }) => (call, outcome),
        other => panic!("expected an outcome, got {other:?}"),
    }
}

#[test]
fn handles_name_this_host_only() {
    let calls = Calls::new("h1");
    let other = Calls::new("h2");
    assert_eq!(calls.handle(7), "_CALL.h1.7");
    assert_eq!(calls.id_of("_CALL.h1.7"), Some(7));
    assert_eq!(calls.id_of(&other.handle(7)), None);
    assert_eq!(calls.id_of("_INBOX.abc"), None);
    assert_eq!(calls.id_of("_CALL.h1.x"), None);
}

#[test]
fn a_call_ends_once_whatever_ends_it() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(4);
    let id = calls.open(queue.reserve().unwrap(), Duration::from_secs(60)).unwrap();
    let token = CallToken::new(calls.clone(), id);
    let copy = token.clone();
    // The answer comes first: what the token says afterwards ends nothing.
    let slot = calls.take(id).expect("the call waits");
    slot.fill(Envelope::Reply { call: id, outcome: Err(CallFailure::NoReply) });
    token.end(CallFailure::Refused("late".into()));
    drop(copy);
    drop(token);
    assert_eq!(outcome(&mut rx), (id, Err(CallFailure::NoReply)));
    assert!(rx.try_recv().is_err(), "exactly one outcome");
    assert_eq!(calls.waiting(), 0);
}

#[test]
fn a_dropped_request_says_its_target_stopped() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(4);
    let id = calls.open(queue.reserve().unwrap(), Duration::from_secs(60)).unwrap();
    let token = CallToken::new(calls.clone(), id);
    let copy = token.clone();
    drop(token);
    assert!(rx.try_recv().is_err(), "a clone still holds the request");
    drop(copy);
    let (call, got) = outcome(&mut rx);
    assert_eq!(call, id);
    assert!(matches!(got, Err(CallFailure::Unavailable(_))), "{got:?}");
}

#[test]
fn a_cancelled_call_says_nothing_and_frees_its_place() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(1);
    let id = calls.open(queue.reserve().unwrap(), Duration::from_secs(60)).unwrap();
    assert!(queue.reserve().is_err(), "the one place is held for the outcome");
    let token = CallToken::new(calls.clone(), id);
    calls.cancel(id);
    drop(token);
    assert!(rx.try_recv().is_err());
    assert!(queue.reserve().is_ok(), "the place is free again");
}

#[tokio::test(start_paused = true)]
async fn deadlines_end_calls_in_their_order() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(8);
    let late = calls.open(queue.reserve().unwrap(), Duration::from_millis(300)).unwrap();
    let early = calls.open(queue.reserve().unwrap(), Duration::from_millis(100)).unwrap();
    let answered = calls.open(queue.reserve().unwrap(), Duration::from_millis(200)).unwrap();
    drop(calls.take(answered));
    let expire = calls.expire();
    tokio::pin!(expire);
    // Paused time moves only while every task waits: the deadlines come in order.
    let first = tokio::select! { () = &mut expire => unreachable!(), r = rx.recv() => r };
    assert!(matches!(first, Some(Envelope::Reply { call, outcome: Err(CallFailure::Timeout) }) if call == early));
    let second = tokio::select! { () = &mut expire => unreachable!(), r = rx.recv() => r };
    assert!(matches!(second, Some(Envelope::Reply { call, outcome: Err(CallFailure::Timeout) }) if call == late));
    assert_eq!(calls.waiting(), 0);
}

#[test]
fn closing_ends_every_call_and_opens_no_more() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(4);
    let id = calls.open(queue.reserve().unwrap(), Duration::from_secs(60)).unwrap();
    calls.close("done");
    assert_eq!(outcome(&mut rx), (id, Err(CallFailure::Unavailable("done".into()))));
    assert!(calls.open(queue.reserve().unwrap(), Duration::from_secs(1)).is_none());
}
