//! Tests of the queue: limits by count and bytes, refusals counted, a receiver dropped unsettled.
use super::*;

fn queue(capacity: usize, max_bytes: usize) -> (BlockQueue, QueueReceiver, Arc<BlockStatus>) {
    let status = Arc::new(BlockStatus::new("b", "b", true));
    let (q, rx) = BlockQueue::new(capacity, max_bytes, status.clone(), BagLimits { max_bytes: 64, max_depth: 2 });
    (q, rx, status)
}

fn count(status: &BlockStatus) -> [u64; 6] {
    let c = &status.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    [
        get(&c.received),
        get(&c.refused_full),
        get(&c.refused_too_large),
        get(&c.refused_invalid),
        get(&c.udp_dropped),
        get(&c.queue_high_water),
    ]
}

#[tokio::test]
async fn every_way_in_counts_in_one_place() {
    let (q, mut rx, status) = queue(2, 1 << 20);
    let bag = q.stamp(r#"{"a":1}"#, "src", 1).unwrap();
    q.try_push(Envelope::Bag(bag)).unwrap();
    q.push(Envelope::Closed { conn: 1 }).await.unwrap();
    assert_eq!(count(&status), [2, 0, 0, 0, 0, 2]);
    let (refusal, _) = q.try_push(Envelope::Bag("{}".into())).unwrap_err();
    assert_eq!(refusal, Refusal::Full);
    let (refusal, envelope) = q.offer(Envelope::Bag("{}".into())).unwrap_err();
    assert_eq!(refusal, Refusal::Full, "an offer is refused uncounted");
    assert_eq!(q.refuse(refusal), Refusal::Full, "until the caller gives up");
    drop(envelope);
    let datagram = Envelope::Datagram { listener: "udp://x".into(), peer: "p".into(), data: vec![] };
    assert_eq!(q.try_push(datagram).unwrap_err().0, Refusal::Full);
    assert_eq!(q.push_within(Envelope::Bag("{}".into()), Duration::from_millis(1)).await, Err(Refusal::Full));
    assert_eq!(q.stamp(&format!(r#"{{"a":"{}"}}"#, "x".repeat(100)), "src", 2), Err(Refusal::TooLarge { limit: 64 }));
    assert!(matches!(q.check("[1]"), Err(Refusal::Invalid(_))));
    assert!(matches!(q.check(r#"{"a":{"b":{"c":1}}}"#), Err(Refusal::Invalid(_))));
    assert_eq!(count(&status), [2, 3, 1, 2, 1, 2]);
    rx.close();
    while rx.recv().await.is_some() {}
    assert_eq!(q.push(Envelope::Bag("{}".into())).await, Err(Refusal::Closed));
    assert_eq!(q.try_push(Envelope::Bag("{}".into())).unwrap_err().0, Refusal::Closed, "not full: closed");
    assert_eq!(count(&status), [2, 3, 1, 2, 1, 2], "a closed queue refuses without counting");
}

#[tokio::test]
async fn the_bytes_a_queue_holds_are_bounded_until_taken_out() {
    let (q, mut rx, status) = queue(100, 10);
    let bag = |n: usize| Envelope::Bag("x".repeat(n));
    q.try_push(bag(6)).unwrap();
    let (refusal, _) = q.try_push(bag(5)).unwrap_err();
    assert_eq!(refusal, Refusal::Full, "6 + 5 bytes do not fit in 10");
    assert_eq!(q.push_within(bag(11), Duration::from_secs(60)).await, Err(Refusal::TooLarge { limit: 10 }));
    assert_eq!(q.push(bag(11)).await, Err(Refusal::TooLarge { limit: 10 }), "can never fit: no waiting");
    q.try_push(bag(4)).unwrap();
    let waiting = q.push_within(bag(5), Duration::from_secs(60));
    tokio::pin!(waiting);
    assert!(futures_util::poll!(&mut waiting).is_pending(), "waits for room");
    assert_eq!(rx.recv().await, Some(bag(6)), "taking one out frees its bytes");
    assert_eq!(waiting.await, Ok(()));
    assert_eq!(count(&status), [3, 1, 2, 0, 0, 2]);
}

#[test]
fn a_receipt_is_done_once_and_its_drop_is_seen() {
    let (receipt, mut rx) = Receipt::new();
    let envelope = Envelope::Durable { bag: "{}".into(), receipt: receipt.clone() };
    envelope.done();
    envelope.done();
    envelope.dead("too late", 2);
    assert_eq!(rx.try_recv(), Ok(Settled::Done));
    let (receipt, mut rx) = Receipt::new();
    let envelope = Envelope::Durable { bag: "{}".into(), receipt };
    envelope.dead("refused", 3);
    envelope.done();
    assert_eq!(rx.try_recv(), Ok(Settled::Dead { error: "refused".into(), attempts: 3 }));
    let (receipt, mut rx) = Receipt::new();
    drop(receipt);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn a_receiver_dropped_with_bags_in_it_counts_them_lost() {
    let (q, rx, status) = queue(8, 1 << 20);
    q.try_push(Envelope::Bag("{}".into())).unwrap();
    q.try_push(Envelope::Bag("{}".into())).unwrap();
    // A socket event is not a bag: not counted as a lost bag.
    q.push(Envelope::Closed { conn: 1 }).await.unwrap();
    drop(rx);
    assert_eq!(status.counters.lost.load(Ordering::Relaxed), 2);
    assert!(q.try_push(Envelope::Bag("{}".into())).is_err(), "and the queue is closed");
}
