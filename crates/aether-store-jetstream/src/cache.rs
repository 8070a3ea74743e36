//! The version cache: actor → (latest version, stream sequence of that event).
//!
//! It lets an append send `Nats-Expected-Last-Subject-Sequence` without first
//! reading the actor's last message. It is only ever a hint: the server checks
//! the expected sequence, so a stale entry costs a refused publish and a
//! read-back, never a wrong write. Entries only move forward (a stored event
//! is never removed: the events stream denies delete and purge), are dropped
//! when a write conflicts or fails, and are raised when a read sees a newer
//! version written by another process.

use aether_core::ActorId;
use dashmap::DashMap;

/// The last event of an actor as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tip {
    pub(crate) version: u64,
    pub(crate) seq: u64,
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

    /// Records `tip` unless a newer one is known.
    pub(crate) fn observe(&self, actor: &ActorId, tip: Tip) {
        if self.capacity == 0 {
            return;
        }
        if let Some(mut cur) = self.map.get_mut(actor) {
            if tip.version >= cur.version {
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
        c.observe(
            &a,
            Tip {
                version: 3,
                seq: 10,
            },
        );
        c.observe(&a, Tip { version: 2, seq: 7 });
        assert_eq!(
            c.get(&a),
            Some(Tip {
                version: 3,
                seq: 10
            })
        );
        c.observe(&ActorId::new("b").unwrap(), Tip { version: 1, seq: 1 });
        c.observe(&ActorId::new("c").unwrap(), Tip { version: 1, seq: 2 });
        assert!(c.len() <= 2);
        c.invalidate(&a);
        assert_eq!(c.get(&a), None);
        let off = VersionCache::new(0);
        off.observe(&a, Tip { version: 1, seq: 1 });
        assert_eq!(off.get(&a), None);
    }
}
