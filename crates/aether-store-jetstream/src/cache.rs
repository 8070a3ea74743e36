//! The version cache: actor → (latest valid version, stream sequence of that
//! event, stream sequence of the last message on the actor's subject).
//!
//! It lets an append send `Nats-Expected-Last-Subject-Sequence` without first
//! reading the actor's last message. It is only ever a hint: the server checks
//! the expected sequence, so a stale entry costs a refused publish and a
//! read-back, never a wrong write. The last message on a subject need not be
//! the last valid event (a foreign message may follow it), so the expected
//! sequence is `last`, while the version continues from `version`. Entries
//! only move forward (a stored event is never removed: the events stream
//! denies delete and purge), are dropped when a write conflicts or fails, and
//! are raised when a read sees a newer version or a later message written by
//! another process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aether_core::ActorId;
use async_nats::Subject;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::envelope::actor_scope;

/// The maps' hasher: foldhash, seeded per map (a SipHash of the actor id
/// was a tenth of an append's client work; an append looks an actor up
/// in two maps, and DashMap hashes each key twice).
type Hasher = foldhash::fast::RandomState;

/// The last event of an actor as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tip {
    /// The latest valid version (0: none).
    pub(crate) version: u64,
    /// The stream sequence of the event at `version` (0: none).
    pub(crate) seq: u64,
    /// The stream sequence of the last message on the actor's subject, valid
    /// or not (`>= seq`): the expected sequence of the next append.
    pub(crate) last: u64,
}

impl Tip {
    /// An actor with nothing on its subject.
    pub(crate) const EMPTY: Tip = Tip {
        version: 0,
        seq: 0,
        last: 0,
    };

    /// The tip right after a valid event at `seq` that is also the subject's
    /// last message.
    pub(crate) fn at(version: u64, seq: u64) -> Tip {
        Tip {
            version,
            seq,
            last: seq,
        }
    }
}

/// A bounded map of tips. Its size is an atomic count kept beside the map
/// (`DashMap::len` locks every shard), and a full cache evicts about an
/// eighth of its entries in one pass, run by one thread at a time, instead of
/// clearing everything: the actors being written keep their entries, with
/// high probability, and no insert waits for a clear-all.
pub(crate) struct VersionCache {
    map: DashMap<ActorId, Tip, Hasher>,
    capacity: usize,
    len: AtomicUsize,
    evicting: AtomicBool,
    /// Rotates which entries an eviction pass takes.
    sweep: AtomicUsize,
}

/// One entry in this many is evicted by a pass.
const EVICT_ONE_IN: usize = 8;

impl VersionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        VersionCache {
            map: DashMap::with_hasher(Hasher::default()),
            capacity,
            len: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
            sweep: AtomicUsize::new(0),
        }
    }

    pub(crate) fn get(&self, actor: &ActorId) -> Option<Tip> {
        self.map.get(actor).map(|t| *t)
    }

    /// Records `tip` unless a newer one (a higher version, or the same
    /// version with a later last message) is known.
    pub(crate) fn observe(&self, actor: &ActorId, tip: Tip) {
        if self.capacity == 0 {
            return;
        }
        if let Some(mut cur) = self.map.get_mut(actor) {
            if (tip.version, tip.last) >= (cur.version, cur.last) {
                *cur = tip;
            }
            return;
        }
        if self.len.load(Ordering::Relaxed) >= self.capacity {
            self.evict();
        }
        match self.map.entry(actor.clone()) {
            Entry::Occupied(mut cur) => {
                // Inserted meanwhile by another thread.
                let cur = cur.get_mut();
                if (tip.version, tip.last) >= (cur.version, cur.last) {
                    *cur = tip;
                }
            }
            Entry::Vacant(v) => {
                v.insert(tip);
                self.len.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Removes about one entry in [`EVICT_ONE_IN`] (at least one); a pass already running
    /// elsewhere makes this a no-op (that pass makes room).
    fn evict(&self) {
        if self.evicting.swap(true, Ordering::Acquire) {
            return;
        }
        // A stride no longer than the map, so a pass always removes one.
        let stride = EVICT_ONE_IN.min(self.len.load(Ordering::Relaxed)).max(1);
        let mut i = self.sweep.fetch_add(1, Ordering::Relaxed);
        let mut removed = 0;
        self.map.retain(|_, _| {
            i = i.wrapping_add(1);
            let keep = !i.is_multiple_of(stride);
            if !keep {
                removed += 1;
            }
            keep
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
        self.evicting.store(false, Ordering::Release);
    }

    pub(crate) fn invalidate(&self, actor: &ActorId) {
        if self.map.remove(actor).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn clear(&self) {
        // Entries inserted during the clear stay counted only if they stay.
        let removed = {
            let mut n = 0;
            self.map.retain(|_, _| {
                n += 1;
                false
            });
            n
        };
        self.len.fetch_sub(removed, Ordering::Relaxed);
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

/// What an append needs of an actor beyond its tip: the scope of its
/// message ids ([`actor_scope`], a SHA-1) and its events subject (the
/// encoded id), cached so a steady writer computes neither on every append
/// and hands the client a subject it need not copy. Pure functions of the
/// id: entries never go stale. When full the cache stops taking new actors
/// (theirs are computed per append, as without it) instead of clearing
/// anything.
pub(crate) struct ActorKeys {
    map: DashMap<ActorId, Keys, Hasher>,
    capacity: usize,
    len: AtomicUsize,
}

/// The cached keys of one actor.
#[derive(Clone)]
pub(crate) struct Keys {
    /// [`actor_scope`] of the actor.
    pub(crate) scope: Arc<str>,
    /// The actor's subject in the events stream.
    pub(crate) subject: Subject,
}

impl ActorKeys {
    pub(crate) fn new(capacity: usize) -> Self {
        ActorKeys {
            map: DashMap::with_hasher(Hasher::default()),
            capacity,
            len: AtomicUsize::new(0),
        }
    }

    /// The keys of `actor`, whose events subject is `subject(actor)`.
    pub(crate) fn get(&self, actor: &ActorId, subject: impl FnOnce() -> String) -> Keys {
        if let Some(k) = self.map.get(actor) {
            return k.clone();
        }
        let keys = Keys {
            scope: Arc::from(actor_scope(actor)),
            subject: Subject::from(subject()),
        };
        if self.len.load(Ordering::Relaxed) < self.capacity
            && self.map.insert(actor.clone(), keys.clone()).is_none()
        {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_moves_forward_and_is_bounded() {
        let c = VersionCache::new(2);
        let a = ActorId::new("a").unwrap();
        c.observe(&a, Tip::at(3, 10));
        c.observe(&a, Tip::at(2, 7));
        assert_eq!(c.get(&a), Some(Tip::at(3, 10)));
        // A foreign message after the valid tip moves `last` only.
        let foreign_after = Tip {
            version: 3,
            seq: 10,
            last: 12,
        };
        c.observe(&a, foreign_after);
        c.observe(&a, Tip::at(3, 10));
        assert_eq!(c.get(&a), Some(foreign_after));
        c.observe(&ActorId::new("b").unwrap(), Tip::at(1, 1));
        c.observe(&ActorId::new("c").unwrap(), Tip::at(1, 2));
        assert!(c.len() <= 2);
        c.invalidate(&a);
        assert_eq!(c.get(&a), None);
        let off = VersionCache::new(0);
        off.observe(&a, Tip::at(1, 1));
        assert_eq!(off.get(&a), None);
    }

    #[test]
    fn a_full_cache_evicts_a_fraction_and_counts_exactly() {
        const CAP: usize = 800;
        let c = VersionCache::new(CAP);
        let ids: Vec<ActorId> = (0..3 * CAP)
            .map(|i| ActorId::new(format!("actor-{i}")).unwrap())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            c.observe(id, Tip::at(1, i as u64 + 1));
            assert!(c.len() <= CAP, "len {} after {} inserts", c.len(), i + 1);
            assert_eq!(c.len(), c.map.len());
        }
        // An eviction takes about an eighth, not everything.
        assert!(c.len() > CAP / 2, "len {}", c.len());
        // Most of the latest inserts are still there.
        let recent = ids[ids.len() - 50..]
            .iter()
            .filter(|id| c.get(id).is_some())
            .count();
        assert!(recent >= 40, "{recent} of the last 50 kept");
        let present = ids.iter().find(|id| c.get(id).is_some()).unwrap();
        c.invalidate(present);
        c.invalidate(present);
        assert_eq!(c.len(), c.map.len());
        c.clear();
        assert_eq!((c.len(), c.map.len()), (0, 0));
    }

    #[test]
    fn actor_keys_are_cached_up_to_capacity_and_always_right() {
        let c = ActorKeys::new(2);
        for i in 0..5 {
            let a = ActorId::new(format!("actor-{i}")).unwrap();
            for _ in 0..2 {
                let k = c.get(&a, || format!("s.{i}"));
                assert_eq!(&*k.scope, actor_scope(&a));
                assert_eq!(k.subject.as_str(), format!("s.{i}"));
            }
        }
        assert_eq!(c.map.len(), 2);
        assert_eq!(c.len.load(Ordering::Relaxed), 2);
    }
}
