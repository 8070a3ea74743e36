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

use aether_core::ActorId;
use dashmap::DashMap;

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

pub(crate) struct VersionCache {
    map: DashMap<ActorId, Tip>,
    capacity: usize,
}

impl VersionCache {
    pub(crate) fn new(capacity: usize) -> Self {
        VersionCache {
            map: DashMap::new(),
            capacity,
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
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(actor.clone(), tip);
    }

    pub(crate) fn invalidate(&self, actor: &ActorId) {
        self.map.remove(actor);
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
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
}
