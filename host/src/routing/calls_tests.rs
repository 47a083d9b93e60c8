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
    let id = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
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
    let id = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
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
    let id = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
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
    let open = |ms| {
        let id = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
        calls.arm(id, Duration::from_millis(ms));
        id
    };
    let late = open(300);
    let early = open(100);
    let answered = open(200);
    let never = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
    // Taken to be answered (and the answer put elsewhere): no deadline ends it any more.
    calls.take(answered).expect("waits").free();
    let expire = calls.expire();
    tokio::pin!(expire);
    // Paused time moves only while every task waits: the deadlines come in order.
    let first = tokio::select! { () = &mut expire => unreachable!(), r = rx.recv() => r };
    assert!(matches!(first, Some(Envelope::Reply { call, outcome: Err(CallFailure::Timeout) }) if call == early));
    let second = tokio::select! { () = &mut expire => unreachable!(), r = rx.recv() => r };
    assert!(matches!(second, Some(Envelope::Reply { call, outcome: Err(CallFailure::Timeout) }) if call == late));
    assert_eq!(calls.waiting(), 1, "a call not armed has no deadline");
    calls.cancel(never);
    assert_eq!(calls.waiting(), 0);
}

#[test]
fn closing_ends_every_call_and_opens_no_more() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(4);
    let id = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
    calls.close("done");
    assert_eq!(outcome(&mut rx), (id, Err(CallFailure::Unavailable("done".into()))));
    assert!(calls.open(queue.reserve().unwrap(), "caller", "target").is_none());
}

#[test]
fn a_place_taken_and_dropped_unfilled_still_tells_the_caller() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(4);
    let id = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
    assert!(calls.caller_queue(id, "someone-else").is_none(), "only the target answers");
    assert!(calls.caller_queue(id, "target").is_some());
    drop(calls.take(id));
    let (call, got) = outcome(&mut rx);
    assert_eq!(call, id);
    assert!(matches!(got, Err(CallFailure::Unavailable(_))), "{got:?}");
}

#[test]
fn a_caller_that_ends_ends_its_calls_and_long_details_are_cut() {
    let calls = Calls::new("h");
    let (queue, mut rx) = caller(4);
    let mine = calls.open(queue.reserve().unwrap(), "caller", "target").unwrap();
    let other = calls.open(queue.reserve().unwrap(), "other", "target").unwrap();
    calls.end_caller("caller", &"x".repeat(10_000));
    let (call, got) = outcome(&mut rx);
    assert_eq!(call, mine);
    let Err(CallFailure::Unavailable(why)) = got else { panic!("{got:?}") };
    assert!(why.len() < 1100, "cut to what an outcome may carry");
    assert_eq!(calls.waiting(), 1);
    calls.cancel(other);
}

#[test]
fn a_remote_request_never_queued_sends_nothing() {
    let calls = Calls::new("h");
    let mut outgoing = calls.connect_remote();
    drop(calls.serve_remote("_CALL.far.1".into(), "target"));
    assert!(outgoing.try_recv().is_err(), "a request that was not taken ends nothing");
    let token = calls.serve_remote("_CALL.far.2".into(), "target");
    token.arm();
    assert!(!calls.answer_remote("_CALL.far.2", Some("intruder"), Ok("{}".into())), "only its target answers");
    drop(token);
    let (handle, outcome) = outgoing.try_recv().expect("one outcome");
    assert_eq!(handle, "_CALL.far.2");
    assert!(matches!(outcome, Err(CallFailure::Unavailable(_))));
}
