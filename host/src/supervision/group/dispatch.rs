//! Which worker of a group takes an envelope: the group's dispatcher decides from the envelope's
//! key and what each worker has in flight. Pure: no I/O, no clock.
//!
//! Keys:
//! - a bag's value of the `partition` field (a top-level key, host keys such as `__from`
//!   included): *held while busy*: a bag goes to the worker still holding an earlier bag of the
//!   same value (queued, being delivered, or waiting to be delivered again), otherwise to the
//!   least busy worker. Order per value is kept; values spread as workers come and go. A bag
//!   without the field, or a group without `partition`, has no key: any worker takes it.
//! - a connection (`accept`, `data`, `close`) and a stream (`open`, its bags, its end): *pinned*
//!   to the worker that took its first event, until its last one (`close`, the end) was handed
//!   out, since that worker's instance holds what the block keeps of it.
//!
//! Invariant: while a key is held by a worker that has not settled everything up to the key's
//! last envelope, every envelope of that key goes to that worker.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::routing::queue::Envelope;

/// Past this many keys held, the ones no longer held are forgotten.
const PRUNE_AT: usize = 4096;

/// What keeps envelopes together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A hash of a bag's partition value (its JSON text).
    Value(u64),
    /// A connection.
    Conn(u64),
    /// A stream.
    Stream(u64),
}

/// The key of `env` in a group partitioned by `partition`, and whether it is the last of a
/// pinned key (a connection's close, a stream's end).
pub fn key_of(env: &Envelope, partition: Option<&str>) -> Option<(Key, bool)> {
    match env {
        Envelope::Bag(bag) | Envelope::Durable { bag, .. } | Envelope::Call { bag, .. } => {
            let value = field(bag, partition?)?;
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            value.hash(&mut hasher);
            Some((Key::Value(hasher.finish()), false))
        }
        Envelope::Accept { conn, .. } | Envelope::Data { conn, .. } => Some((Key::Conn(*conn), false)),
        Envelope::Closed { conn } => Some((Key::Conn(*conn), true)),
        Envelope::StreamOpen { stream, .. } | Envelope::StreamData { stream, .. } => {
            Some((Key::Stream(*stream), false))
        }
        Envelope::StreamEnd { stream, .. } => Some((Key::Stream(*stream), true)),
        Envelope::Reply { .. } | Envelope::Datagram { .. } => None,
    }
}

/// The JSON text of `field` at the top of the object `bag`, if it has it. The bag was checked on
/// the way into the queue; anything else reads as no field.
pub fn field(bag: &str, field: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(bag);
    FindField(field).deserialize(&mut de).ok().flatten()
}

struct FindField<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for FindField<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindField<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if found.is_none() && key == self.0 {
                let raw: Box<serde_json::value::RawValue> = map.next_value()?;
                found = Some(raw.get().to_owned());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// What the dispatcher sees of one worker.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Its id.
    pub id: u32,
    /// Envelopes handed to it so far.
    pub handed: u64,
    /// How many of those it settled.
    pub settled: u64,
    /// Whether it may be handed one more now.
    pub room: bool,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    worker: u32,
    /// The worker's `handed` count once the key's last envelope was handed to it.
    upto: u64,
    /// Held until its last envelope, however settled.
    pinned: bool,
}

/// The keys held by workers.
#[derive(Debug, Default)]
pub struct Pins {
    held: HashMap<Key, Hold>,
    /// How many connections and streams each worker holds.
    pinned: HashMap<u32, usize>,
}

/// Where an envelope goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// To this worker now.
    To(u32),
    /// It must go to this worker, which has no room now: wait for it.
    WaitFor(u32),
    /// No worker has room: wait for any.
    WaitAny,
}

impl Pins {
    /// Where an envelope with `key` goes, given the workers' `loads`.
    pub fn choose(&self, key: Option<Key>, loads: &[Load]) -> Choice {
        if let Some(hold) = key.and_then(|k| self.held.get(&k))
            && let Some(load) = loads.iter().find(|l| l.id == hold.worker)
            && (hold.pinned || load.settled < hold.upto)
        {
            return if load.room { Choice::To(load.id) } else { Choice::WaitFor(load.id) };
        }
        // The least busy; among those, a new connection or stream goes to the worker holding
        // the fewest (so they spread), anything else to the first (so that, when there is little
        // to do, the last workers stay idle and retire).
        let spread = matches!(key, Some(Key::Conn(_) | Key::Stream(_)));
        loads
            .iter()
            .filter(|l| l.room)
            .min_by_key(|l| {
                let holds = if spread { self.pinned.get(&l.id).copied().unwrap_or(0) } else { 0 };
                (l.handed.saturating_sub(l.settled), holds, l.id)
            })
            .map_or(Choice::WaitAny, |l| Choice::To(l.id))
    }

    /// An envelope with `key` was handed to `worker`, which has now been handed `handed` in all.
    pub fn handed(&mut self, key: Option<(Key, bool)>, worker: u32, handed: u64, loads: &[Load]) {
        let Some((key, last)) = key else { return };
        if last {
            if let Some(hold) = self.held.remove(&key) {
                self.unpin(hold);
            }
            return;
        }
        let pinned = !matches!(key, Key::Value(_));
        if let Some(old) = self.held.insert(key, Hold { worker, upto: handed, pinned }) {
            self.unpin(old);
        }
        if pinned {
            *self.pinned.entry(worker).or_default() += 1;
        }
        if self.held.len() > PRUNE_AT {
            self.held
                .retain(|_, hold| hold.pinned || loads.iter().any(|l| l.id == hold.worker && l.settled < hold.upto));
        }
    }

    /// `key` (a connection or a stream) is `worker`'s, unless a worker holds it already.
    pub fn claim(&mut self, key: Key, worker: u32) {
        if let std::collections::hash_map::Entry::Vacant(entry) = self.held.entry(key) {
            entry.insert(Hold { worker, upto: 0, pinned: true });
            *self.pinned.entry(worker).or_default() += 1;
        }
    }

    fn unpin(&mut self, hold: Hold) {
        if hold.pinned
            && let Some(n) = self.pinned.get_mut(&hold.worker)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Lets go of the streams that are no longer `open` (ended from this side, refused, or
    /// ended with a worker's fault: their last envelope never comes through the dispatcher).
    pub fn release_ended(&mut self, open: impl Fn(u64) -> bool) {
        let ended: Vec<Key> =
            self.held.keys().filter(|k| matches!(k, Key::Stream(id) if !open(*id))).copied().collect();
        for key in ended {
            if let Some(hold) = self.held.remove(&key) {
                self.unpin(hold);
            }
        }
    }

    /// Worker `id` is gone: what it held is free.
    pub fn forget(&mut self, id: u32) {
        self.held.retain(|_, hold| hold.worker != id);
        self.pinned.remove(&id);
    }

    /// Whether worker `id` holds a connection or a stream (it cannot retire).
    pub fn pins_any(&self, id: u32) -> bool {
        self.pinned.get(&id).is_some_and(|n| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(id: u32, handed: u64, settled: u64) -> Load {
        Load { id, handed, settled, room: true }
    }

    #[test]
    fn a_field_is_read_at_the_top_only() {
        assert_eq!(field(r#"{"a":{"k":1},"k":"x","__from":"s"}"#, "k").as_deref(), Some(r#""x""#));
        assert_eq!(field(r#"{"a":{"k":1}}"#, "k"), None);
        assert_eq!(field(r#"{"k":[1, 2]}"#, "k").as_deref(), Some("[1, 2]"));
        assert_eq!(field(r#"{"k\u0031":3}"#, "k1").as_deref(), Some("3"));
        assert_eq!(field("not json", "k"), None);
    }

    #[test]
    fn a_busy_key_stays_with_its_worker_and_a_settled_one_moves() {
        let mut pins = Pins::default();
        let key = Some((Key::Value(7), false));
        let loads = [load(0, 0, 0), load(1, 0, 0)];
        assert_eq!(pins.choose(key.map(|k| k.0), &loads), Choice::To(0));
        pins.handed(key, 0, 1, &loads);
        // Worker 0 is busier, but the key is still in flight there.
        let loads = [load(0, 5, 0), load(1, 0, 0)];
        assert_eq!(pins.choose(key.map(|k| k.0), &loads), Choice::To(0));
        let full = [Load { room: false, ..load(0, 5, 0) }, load(1, 0, 0)];
        assert_eq!(pins.choose(key.map(|k| k.0), &full), Choice::WaitFor(0));
        // Once worker 0 settled past it, the key goes where there is least to do.
        let loads = [load(0, 5, 1), load(1, 0, 0)];
        assert_eq!(pins.choose(key.map(|k| k.0), &loads), Choice::To(1));
        // A bag without a key goes to the least busy worker with room.
        let loads = [load(0, 5, 1), Load { room: false, ..load(1, 0, 0) }];
        assert_eq!(pins.choose(None, &loads), Choice::To(0));
        let none = [Load { room: false, ..load(0, 0, 0) }];
        assert_eq!(pins.choose(None, &none), Choice::WaitAny);
    }

    #[test]
    fn a_connection_is_pinned_until_its_close() {
        let mut pins = Pins::default();
        let accept = key_of(&Envelope::Accept { conn: 3, listener: "l".into(), peer: "p".into() }, None);
        let loads = [load(0, 0, 0), load(1, 0, 0)];
        pins.handed(accept, 1, 1, &loads);
        assert!(pins.pins_any(1));
        // Settled long ago, still pinned.
        let loads = [load(0, 0, 0), load(1, 9, 9)];
        let data = key_of(&Envelope::Data { conn: 3, data: vec![1] }, None);
        assert_eq!(pins.choose(data.map(|k| k.0), &loads), Choice::To(1));
        let close = key_of(&Envelope::Closed { conn: 3 }, None);
        assert_eq!(pins.choose(close.map(|k| k.0), &loads), Choice::To(1));
        pins.handed(close, 1, 10, &loads);
        assert!(!pins.pins_any(1));
    }

    #[test]
    fn new_connections_spread_and_bags_pack_onto_the_first_worker() {
        let mut pins = Pins::default();
        let idle = [load(0, 4, 4), load(1, 0, 0), load(2, 0, 0)];
        let mut to = Vec::new();
        for conn in 0..6 {
            let key = key_of(&Envelope::Accept { conn, listener: "l".into(), peer: "p".into() }, None);
            let Choice::To(id) = pins.choose(key.map(|k| k.0), &idle) else { panic!("room") };
            pins.handed(key, id, 1, &idle);
            to.push(id);
        }
        assert_eq!(to, [0, 1, 2, 0, 1, 2], "connections spread over idle workers");
        assert_eq!(pins.choose(None, &idle), Choice::To(0), "a bag goes to the first idle worker");
    }

    #[test]
    fn a_gone_worker_holds_nothing() {
        let mut pins = Pins::default();
        let key = Some((Key::Value(1), false));
        pins.handed(key, 2, 1, &[load(2, 1, 0)]);
        pins.forget(2);
        assert_eq!(pins.choose(key.map(|k| k.0), &[load(0, 0, 0)]), Choice::To(0));
    }

    #[test]
    fn keys_no_longer_held_are_pruned() {
        let mut pins = Pins::default();
        let loads = [load(0, 10_000, 10_000)];
        for i in 0..=PRUNE_AT as u64 {
            pins.handed(Some((Key::Value(i), false)), 0, i + 1, &loads);
        }
        assert!(pins.held.len() < PRUNE_AT);
    }
}
