//! The active actors of one kind: the table from pre-hashed actor key to
//! the incarnation's slot, and the order of last use for LRU eviction.

use std::sync::Arc;

use aether_core::{ActorId, Aggregate};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc, oneshot};

use crate::actor::Actor;
use crate::ids::ShardId;
use crate::shared::Envelope;
use crate::shared::StopReason;

/// An actor id with its hash in the host's table, computed once
/// (`KindHost::key`, foldhash): an [`ActorRef`](crate::ActorRef) keeps its
/// key, so finding its actor hashes no text.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) hash: u64,
    pub(crate) id: ActorId,
}

impl Key {
    fn is(&self, other: &Key) -> bool {
        self.hash == other.hash && self.id == other.id
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.is(other)
    }
}

impl Eq for Key {}

pub(crate) struct Slot<A: Aggregate> {
    pub(crate) tx: mpsc::Sender<Envelope<A>>,
    /// Wakes the incarnation's task after a command was queued.
    pub(crate) wake: Arc<Notify>,
    /// The incarnation's state; held by whoever runs a command.
    pub(crate) actor: Arc<AsyncMutex<Actor<A>>>,
    /// The runtime the incarnation's task runs on.
    pub(crate) runtime: tokio::runtime::Id,
    pub(crate) incarnation: u64,
    pub(crate) shard: ShardId,
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) last_used: u64,
    /// Tells the actor to passivate (with the reason), e.g. when evicted.
    pub(crate) stop: Option<oneshot::Sender<StopReason>>,
}

/// The active actors of a kind and their order of last use.
pub(crate) struct Table<A: Aggregate> {
    pub(crate) slots: Slots<Slot<A>>,
    pub(crate) lru: LruOrder<Key>,
}

/// Values by [`Key`] (a kind's incarnations), in a [`hashbrown::HashTable`]
/// addressed by the hash each key carries: no hasher runs on a lookup.
pub(crate) struct Slots<V> {
    table: hashbrown::HashTable<(Key, V)>,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            table: hashbrown::HashTable::new(),
        }
    }
}

impl<V> Slots<V> {
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn contains_key(&self, key: &Key) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&V> {
        self.table
            .find(key.hash, |(k, _)| k.is(key))
            .map(|(_, slot)| slot)
    }

    pub(crate) fn get_mut(&mut self, key: &Key) -> Option<&mut V> {
        self.table
            .find_mut(key.hash, |(k, _)| k.is(key))
            .map(|(_, slot)| slot)
    }

    pub(crate) fn remove(&mut self, key: &Key) -> Option<V> {
        self.table
            .find_entry(key.hash, |(k, _)| k.is(key))
            .ok()
            .map(|entry| entry.remove().0.1)
    }

    /// Puts `value` under `key`, replacing the value there.
    pub(crate) fn insert(&mut self, key: Key, value: V) {
        match self
            .table
            .entry(key.hash, |(k, _)| k.is(&key), |(k, _)| k.hash)
        {
            hashbrown::hash_table::Entry::Occupied(mut entry) => entry.get_mut().1 = value,
            hashbrown::hash_table::Entry::Vacant(entry) => {
                entry.insert((key, value));
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Key, &V)> {
        self.table.iter().map(|(k, slot)| (k, slot))
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Key, V)> + '_ {
        self.table.drain()
    }
}

/// The order in which actors were last used, for least-recently-used
/// eviction without a scan of the table: a queue of `(tick, id)` in tick
/// order, one entry per use. An entry is current while its tick is the
/// actor's `last_used`; stale entries are skipped when a victim is taken
/// and dropped when the queue outgrows twice the table, so every
/// operation is amortised O(1).
#[derive(Debug)]
pub(crate) struct LruOrder<K> {
    order: std::collections::VecDeque<(u64, K)>,
}

impl<K> Default for LruOrder<K> {
    fn default() -> Self {
        LruOrder {
            order: std::collections::VecDeque::new(),
        }
    }
}

impl<K: PartialEq + Clone> LruOrder<K> {
    /// Notes a use of `id` at `tick` (ticks only grow).
    pub(crate) fn touch(&mut self, id: &K, tick: u64) {
        match self.order.back_mut() {
            // The same actor again: its entry moves, nothing grows.
            Some((t, last)) if last == id => *t = tick,
            _ => self.order.push_back((tick, id.clone())),
        }
    }

    /// The least recently used actor, given each actor's current tick
    /// (`None`: not active). Its entry leaves the queue.
    pub(crate) fn victim(&mut self, current: impl Fn(&K) -> Option<u64>) -> Option<K> {
        while let Some((tick, id)) = self.order.pop_front() {
            if current(&id) == Some(tick) {
                return Some(id);
            }
        }
        None
    }

    /// Drops stale entries once the queue holds more than twice `live`.
    pub(crate) fn compact(&mut self, live: usize, current: impl Fn(&K) -> Option<u64>) {
        if self.order.len() > 2 * live + 16 {
            self.order.retain(|(tick, id)| current(id) == Some(*tick));
        }
    }

    /// How many entries the queue holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn slots_tell_keys_with_one_hash_apart_by_their_ids() {
        let key = |id: &str, hash| Key {
            hash,
            id: ActorId::new(id).expect("id"),
        };
        let mut slots = Slots::default();
        slots.insert(key("a", 7), 1);
        slots.insert(key("b", 7), 2);
        slots.insert(key("c", 8), 3);
        assert_eq!(slots.len(), 3);
        assert_eq!(slots.get(&key("a", 7)), Some(&1));
        assert_eq!(slots.get(&key("b", 7)), Some(&2));
        assert_eq!(slots.get(&key("a", 8)), None, "same id, other hash");
        slots.insert(key("a", 7), 10);
        assert_eq!(slots.len(), 3, "insert replaces");
        *slots.get_mut(&key("c", 8)).expect("c") += 1;
        assert_eq!(slots.remove(&key("b", 7)), Some(2));
        assert!(!slots.contains_key(&key("b", 7)));
        assert_eq!(slots.get(&key("a", 7)), Some(&10), "its neighbour stays");
        let mut left: Vec<(String, i32)> = slots
            .drain()
            .map(|(k, v)| (k.id.as_str().to_owned(), v))
            .collect();
        left.sort();
        assert_eq!(left, [("a".to_owned(), 10), ("c".to_owned(), 4)]);
        assert_eq!(slots.len(), 0);
    }

    fn id(n: usize) -> ActorId {
        ActorId::new(format!("a{n}")).expect("id")
    }

    #[test]
    fn the_victim_is_the_least_recently_used_and_the_queue_stays_bounded() {
        let mut lru = LruOrder::default();
        let mut current: HashMap<ActorId, u64> = HashMap::new();
        let mut tick = 0;
        let mut touch =
            |lru: &mut LruOrder<ActorId>, current: &mut HashMap<ActorId, u64>, n: usize| {
                tick += 1;
                current.insert(id(n), tick);
                lru.touch(&id(n), tick);
            };
        for n in [0, 1, 2, 0, 0, 1] {
            touch(&mut lru, &mut current, n);
        }
        // 2 was used least recently (0 and 1 since).
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(2)));
        current.remove(&id(2));
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(0)));
        current.remove(&id(0));
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(1)));
        current.remove(&id(1));
        assert_eq!(lru.victim(|k| current.get(k).copied()), None);
        // Many uses of a few actors: compaction keeps the queue near the table.
        for round in 0..10_000 {
            touch(&mut lru, &mut current, round % 7);
            lru.compact(current.len(), |k| current.get(k).copied());
            assert!(lru.len() <= 2 * current.len() + 17, "queue {}", lru.len());
        }
        // The order survives compaction: the oldest of the seven goes first.
        let oldest = (0..7).min_by_key(|n| current[&id(*n)]).expect("seven");
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(oldest)));
    }
}
