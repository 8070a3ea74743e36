//! [`ShardMap`]: who owns each shard, which shards are moving, under which
//! `(term, epoch)`; its versioned MessagePack encoding; pure helpers for the
//! two-step handoff.
//!
//! # Ordering
//!
//! Maps are ordered by `(term, epoch)`, lexicographically
//! ([`ShardMap::is_newer_than`]). The term is the leader lease's term, so a map
//! written by a newer leader beats any map of an older one; within one term the
//! epoch counts changes. Every helper here returns a map with a strictly larger
//! epoch, so epochs alone also grow from one map to the next, across terms.
//!
//! # Handoff
//!
//! Moving shard `s` from `A` to `B` takes two maps: [`ShardMap::begin_move`]
//! records `moving[s] = A → B` (A still owns `s` and stops taking new commands),
//! then [`ShardMap::finish_move`] makes `B` the owner. [`ShardMap::assign`] sets
//! an owner at once, for shards with no live owner to hand off from.
//!
//! # Encoding
//!
//! A MessagePack map with named fields and a `format` number
//! ([`ShardMap::FORMAT`]). Owners are stored as indices into a table of node ids,
//! so a 1024-shard map of 10 nodes takes about 1.3 KiB. [`ShardMap::decode`]
//! refuses a newer format with [`ClusterError::IncompatibleFormat`] and anything
//! malformed with [`ClusterError::Corrupt`]; it never panics.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{ClusterError, Result};
use crate::types::{NodeId, ShardId};

/// A shard on its way from one owner to another (first step of a handoff).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Move {
    /// The current owner, which drains the shard.
    pub from: NodeId,
    /// The next owner.
    pub to: NodeId,
}

/// One shard whose owner differs between two maps (see [`ShardMap::changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardChange {
    /// The shard.
    pub shard: ShardId,
    /// Its owner in the current map.
    pub from: Option<NodeId>,
    /// Its owner in the target.
    pub to: Option<NodeId>,
}

/// The owner of every shard of a cluster, as published by the leader.
///
/// Fields are public for construction and inspection; maps built by the
/// helpers (and every map [`ShardMap::decode`] accepts) keep these invariants:
/// `owners.len() == shard_count >= 1`; every `moving` key is a shard below
/// `shard_count` whose owner is the move's `from`, and `from != to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// The leader term under which the map was written.
    pub term: u64,
    /// The change counter; grows with every new map.
    pub epoch: u64,
    /// The number of shards, fixed for the cluster's life.
    pub shard_count: u32,
    /// The owner of each shard (index = shard number); `None` while unassigned.
    pub owners: Vec<Option<NodeId>>,
    /// Shards being handed off, by shard number.
    pub moving: BTreeMap<u32, Move>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    format: u32,
    term: u64,
    epoch: u64,
    shard_count: u32,
    nodes: Vec<String>,
    owners: Vec<Option<u32>>,
    moving: Vec<(u32, u32, u32)>,
}

#[derive(Deserialize)]
struct Header {
    format: u32,
}

fn corrupt(reason: impl Into<String>) -> ClusterError {
    ClusterError::Corrupt {
        what: "shard map",
        reason: reason.into(),
    }
}

impl ShardMap {
    /// The encoding format this release writes, and the newest it reads.
    pub const FORMAT: u32 = 1;

    /// The map before any leader wrote one: term 0, epoch 0, every shard unassigned.
    /// A `shard_count` of 0 is treated as 1.
    pub fn empty(shard_count: u32) -> Self {
        let shard_count = shard_count.max(1);
        Self {
            term: 0,
            epoch: 0,
            shard_count,
            owners: vec![None; shard_count as usize],
            moving: BTreeMap::new(),
        }
    }

    /// Encodes the map (format [`Self::FORMAT`], MessagePack).
    ///
    /// A map that breaks the invariants of [`ShardMap`] is encoded as is and will
    /// be refused by [`Self::decode`].
    pub fn encode(&self) -> Vec<u8> {
        let mut nodes: BTreeSet<&NodeId> = self.owners.iter().flatten().collect();
        nodes.extend(self.moving.values().flat_map(|m| [&m.from, &m.to]));
        let nodes: Vec<&NodeId> = nodes.into_iter().collect();
        let index = |n: &NodeId| -> u32 {
            // Every node was collected above; the table has fewer than 2^32 entries
            // because each entry comes from a distinct shard or move.
            nodes
                .binary_search(&n)
                .map_or(u32::MAX, |i| u32::try_from(i).unwrap_or(u32::MAX))
        };
        let wire = Wire {
            format: Self::FORMAT,
            term: self.term,
            epoch: self.epoch,
            shard_count: self.shard_count,
            nodes: nodes.iter().map(|n| n.as_str().to_owned()).collect(),
            owners: self.owners.iter().map(|o| o.as_ref().map(index)).collect(),
            moving: self
                .moving
                .iter()
                .map(|(s, m)| (*s, index(&m.from), index(&m.to)))
                .collect(),
        };
        rmp_serde::to_vec_named(&wire)
            .expect("MessagePack encoding of integers and strings into a Vec cannot fail")
    }

    /// Decodes a map written by [`Self::encode`] of this or an older release.
    ///
    /// # Errors
    /// * [`ClusterError::IncompatibleFormat`] if the map was written in a format
    ///   newer than [`Self::FORMAT`];
    /// * [`ClusterError::Corrupt`] if the bytes are not a map, or the map breaks
    ///   an invariant of [`ShardMap`] (bad node id, index out of range, owner
    ///   count differing from the shard count, ...).
    ///
    /// Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<ShardMap> {
        let header: Header = rmp_serde::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.format > Self::FORMAT {
            return Err(ClusterError::IncompatibleFormat {
                found: header.format,
                supported: Self::FORMAT,
            });
        }
        if header.format == 0 {
            return Err(corrupt("format 0 does not exist"));
        }
        let wire: Wire = rmp_serde::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if wire.shard_count == 0 {
            return Err(corrupt("shard count 0"));
        }
        if wire.owners.len() != wire.shard_count as usize {
            return Err(corrupt(format!(
                "{} owners for {} shards",
                wire.owners.len(),
                wire.shard_count
            )));
        }
        let nodes = wire
            .nodes
            .iter()
            .map(NodeId::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        let node = |i: u32| -> Result<NodeId> {
            nodes
                .get(i as usize)
                .cloned()
                .ok_or_else(|| corrupt(format!("node index {i} out of range")))
        };
        let owners = wire
            .owners
            .iter()
            .map(|o| o.map(node).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut moving = BTreeMap::new();
        for (shard, from, to) in wire.moving {
            let (from, to) = (node(from)?, node(to)?);
            if owners.get(shard as usize) != Some(&Some(from.clone())) {
                return Err(corrupt(format!(
                    "shard {shard} moves from a node that does not own it"
                )));
            }
            if from == to {
                return Err(corrupt(format!("shard {shard} moves to its own owner")));
            }
            if moving.insert(shard, Move { from, to }).is_some() {
                return Err(corrupt(format!("shard {shard} moves twice")));
            }
        }
        Ok(ShardMap {
            term: wire.term,
            epoch: wire.epoch,
            shard_count: wire.shard_count,
            owners,
            moving,
        })
    }

    /// The owner of `shard`, if it exists and is assigned. While the shard moves,
    /// this is still the old owner.
    pub fn owner(&self, shard: ShardId) -> Option<&NodeId> {
        self.owners.get(shard.index()).and_then(Option::as_ref)
    }

    /// The handoff in progress for `shard`, if any.
    pub fn moving(&self, shard: ShardId) -> Option<&Move> {
        self.moving.get(&shard.get())
    }

    /// Whether this map supersedes `other`: `(term, epoch)` compared
    /// lexicographically, strictly greater.
    pub fn is_newer_than(&self, other: &ShardMap) -> bool {
        (self.term, self.epoch) > (other.term, other.epoch)
    }

    /// The shards `node` owns (including those it is handing off), ascending.
    pub fn shards_of(&self, node: &NodeId) -> Vec<ShardId> {
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_ref() == Some(node))
            .filter_map(|(s, _)| u32::try_from(s).ok().map(ShardId::new))
            .collect()
    }

    /// How many shards each owner holds. Nodes owning nothing are absent.
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for owner in self.owners.iter().flatten() {
            *load.entry(owner.clone()).or_insert(0) += 1;
        }
        load
    }

    /// Checks that this map uses the shard count this node was configured with.
    ///
    /// # Errors
    /// [`ClusterError::IncompatibleShardCount`] if they differ; such a node must
    /// not join (its shard numbers would name other actors).
    pub fn check_shard_count(&self, ours: u32) -> Result<()> {
        if self.shard_count == ours {
            Ok(())
        } else {
            Err(ClusterError::IncompatibleShardCount {
                ours,
                theirs: self.shard_count,
            })
        }
    }

    /// The shards whose owner differs between this map and `target` (for
    /// example the output of [`crate::place`]), ascending. Entries of `target`
    /// beyond the shard count are ignored; missing ones count as `None`.
    pub fn changes(&self, target: &[Option<NodeId>]) -> Vec<ShardChange> {
        self.owners
            .iter()
            .enumerate()
            .filter_map(|(s, from)| {
                let to = target.get(s).cloned().flatten();
                (from.as_ref() != to.as_ref()).then(|| ShardChange {
                    shard: ShardId::new(u32::try_from(s).unwrap_or(u32::MAX)),
                    from: from.clone(),
                    to,
                })
            })
            .collect()
    }

    /// The same owners re-stamped with `term`, at the next epoch: what a new
    /// leader publishes before changing anything.
    ///
    /// # Errors
    /// [`ClusterError::InvalidMove`] if `term` is lower than the map's term or the
    /// epoch is exhausted.
    pub fn with_term(&self, term: u64) -> Result<ShardMap> {
        if term < self.term {
            return Err(ClusterError::InvalidMove {
                shard: 0,
                reason: format!("term {term} is older than the map's term {}", self.term),
            });
        }
        let mut next = self.next(0)?;
        next.term = term;
        Ok(next)
    }

    /// Step one of a handoff: marks `shard` as moving from its owner to `to`, at
    /// the next epoch. The owner keeps the shard until [`Self::finish_move`].
    ///
    /// # Errors
    /// [`ClusterError::InvalidMove`] if the shard does not exist, has no owner
    /// (use [`Self::assign`]), is already moving, or is already owned by `to`.
    pub fn begin_move(&self, shard: ShardId, to: NodeId) -> Result<ShardMap> {
        let from = self
            .check(shard)?
            .cloned()
            .ok_or_else(|| ClusterError::InvalidMove {
                shard: shard.get(),
                reason: "has no owner to hand off from".into(),
            })?;
        if let Some(m) = self.moving.get(&shard.get()) {
            return Err(ClusterError::InvalidMove {
                shard: shard.get(),
                reason: format!("is already moving from {} to {}", m.from, m.to),
            });
        }
        if from == to {
            return Err(ClusterError::InvalidMove {
                shard: shard.get(),
                reason: format!("is already owned by {to}"),
            });
        }
        let mut next = self.next(shard.get())?;
        next.moving.insert(shard.get(), Move { from, to });
        Ok(next)
    }

    /// Step two of a handoff: makes the move's target the owner of `shard`, at
    /// the next epoch.
    ///
    /// # Errors
    /// [`ClusterError::InvalidMove`] if the shard does not exist or is not moving.
    pub fn finish_move(&self, shard: ShardId) -> Result<ShardMap> {
        self.check(shard)?;
        let mut next = self.next(shard.get())?;
        let m = next
            .moving
            .remove(&shard.get())
            .ok_or_else(|| ClusterError::InvalidMove {
                shard: shard.get(),
                reason: "is not moving".into(),
            })?;
        next.owners[shard.index()] = Some(m.to);
        Ok(next)
    }

    /// Abandons the handoff of `shard` (its target left): the owner keeps it, at
    /// the next epoch.
    ///
    /// # Errors
    /// [`ClusterError::InvalidMove`] if the shard does not exist or is not moving.
    pub fn cancel_move(&self, shard: ShardId) -> Result<ShardMap> {
        self.check(shard)?;
        let mut next = self.next(shard.get())?;
        if next.moving.remove(&shard.get()).is_none() {
            return Err(ClusterError::InvalidMove {
                shard: shard.get(),
                reason: "is not moving".into(),
            });
        }
        Ok(next)
    }

    /// Sets the owner of `shard` at once (no handoff), cancelling any move of it,
    /// at the next epoch. For shards with no owner or a dead one.
    ///
    /// # Errors
    /// [`ClusterError::InvalidMove`] if the shard does not exist.
    pub fn assign(&self, shard: ShardId, owner: Option<NodeId>) -> Result<ShardMap> {
        self.check(shard)?;
        let mut next = self.next(shard.get())?;
        next.moving.remove(&shard.get());
        next.owners[shard.index()] = owner;
        Ok(next)
    }

    /// The current owner of `shard`, or an error if the shard does not exist.
    fn check(&self, shard: ShardId) -> Result<Option<&NodeId>> {
        match self.owners.get(shard.index()) {
            Some(owner) if shard.get() < self.shard_count => Ok(owner.as_ref()),
            _ => Err(ClusterError::InvalidMove {
                shard: shard.get(),
                reason: format!("does not exist among {} shards", self.shard_count),
            }),
        }
    }

    /// A copy at the next epoch.
    fn next(&self, shard: u32) -> Result<ShardMap> {
        let epoch = self
            .epoch
            .checked_add(1)
            .ok_or_else(|| ClusterError::InvalidMove {
                shard,
                reason: "epoch exhausted".into(),
            })?;
        Ok(ShardMap {
            epoch,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;
    use crate::hash::avalanche;
    use crate::placement::{Member, place};

    fn node(i: usize) -> NodeId {
        NodeId::new(format!("node-{i}")).unwrap()
    }

    fn placed(n: usize, shards: u32) -> ShardMap {
        let members: Vec<Member> = (0..n).map(|i| Member::new(node(i), 1)).collect();
        let mut map = ShardMap::empty(shards);
        map.owners = place(None, &members, shards);
        map.term = 7;
        map.epoch = 3;
        map
    }

    #[test]
    fn round_trips_and_is_compact() {
        let mut map = placed(10, 1024);
        map.owners[5] = None;
        let map = map.begin_move(ShardId::new(9), node(10)).unwrap();
        let bytes = map.encode();
        assert_eq!(ShardMap::decode(&bytes).unwrap(), map);
        assert!(bytes.len() < 2048, "{} bytes", bytes.len());
        let empty = ShardMap::empty(16);
        assert_eq!(ShardMap::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn ordering_is_term_then_epoch() {
        let base = placed(2, 8);
        let at = |term, epoch| ShardMap {
            term,
            epoch,
            ..base.clone()
        };
        assert!(at(2, 0).is_newer_than(&at(1, 99)));
        assert!(at(1, 5).is_newer_than(&at(1, 4)));
        assert!(!at(1, 4).is_newer_than(&at(1, 4)));
        assert!(!at(1, 99).is_newer_than(&at(2, 0)));
    }

    #[test]
    fn queries() {
        let map = placed(3, 12);
        let load = map.load();
        assert_eq!(load.values().sum::<usize>(), 12);
        for (n, count) in &load {
            let shards = map.shards_of(n);
            assert_eq!(shards.len(), *count);
            assert!(shards.iter().all(|s| map.owner(*s) == Some(n)));
        }
        assert_eq!(map.owner(ShardId::new(12)), None);
        assert!(map.check_shard_count(12).is_ok());
        assert!(matches!(
            map.check_shard_count(1024),
            Err(ClusterError::IncompatibleShardCount {
                ours: 1024,
                theirs: 12
            })
        ));
    }

    #[test]
    fn two_step_handoff_bumps_the_epoch_each_step() {
        let map = placed(2, 8);
        let shard = ShardId::new(3);
        let from = map.owner(shard).unwrap().clone();
        let to = if from == node(0) { node(1) } else { node(0) };

        let moving = map.begin_move(shard, to.clone()).unwrap();
        assert_eq!(moving.epoch, map.epoch + 1);
        assert_eq!(moving.term, map.term);
        assert_eq!(
            moving.owner(shard),
            Some(&from),
            "the old owner keeps it while moving"
        );
        assert_eq!(
            moving.moving(shard),
            Some(&Move {
                from: from.clone(),
                to: to.clone()
            })
        );
        assert!(moving.is_newer_than(&map));
        assert_eq!(ShardMap::decode(&moving.encode()).unwrap(), moving);

        let done = moving.finish_move(shard).unwrap();
        assert_eq!(done.epoch, map.epoch + 2);
        assert_eq!(done.owner(shard), Some(&to));
        assert!(done.moving.is_empty());
        // Nothing else changed.
        assert_eq!(map.changes(&done.owners).len(), 1);

        let cancelled = moving.cancel_move(shard).unwrap();
        assert_eq!(cancelled.owner(shard), Some(&from));
        assert!(cancelled.moving.is_empty());
    }

    #[test]
    fn invalid_moves_are_refused() {
        let map = placed(2, 8);
        let shard = ShardId::new(1);
        let owner = map.owner(shard).unwrap().clone();
        let other = if owner == node(0) { node(1) } else { node(0) };
        let refused = |r: Result<ShardMap>| matches!(r, Err(ClusterError::InvalidMove { .. }));
        assert!(refused(map.begin_move(ShardId::new(8), other.clone())));
        assert!(refused(map.begin_move(shard, owner.clone())));
        assert!(refused(map.finish_move(shard)));
        assert!(refused(map.cancel_move(shard)));
        let moving = map.begin_move(shard, other.clone()).unwrap();
        assert!(refused(moving.begin_move(shard, node(2))));
        let unowned = map.assign(shard, None).unwrap();
        assert!(refused(unowned.begin_move(shard, other)));
        assert!(refused(map.assign(ShardId::new(99), None)));
        assert!(refused(map.with_term(map.term - 1)));
        let last = ShardMap {
            epoch: u64::MAX,
            ..map.clone()
        };
        assert!(refused(last.assign(shard, None)));
    }

    #[test]
    fn assign_and_with_term() {
        let map = placed(2, 8);
        let shard = ShardId::new(2);
        let moving = map.begin_move(shard, node(5)).unwrap();
        let assigned = moving.assign(shard, Some(node(9))).unwrap();
        assert_eq!(assigned.owner(shard), Some(&node(9)));
        assert!(assigned.moving.is_empty(), "assigning cancels the move");
        assert_eq!(assigned.epoch, moving.epoch + 1);

        let restamped = map.with_term(map.term + 10).unwrap();
        assert_eq!(
            (restamped.term, restamped.epoch),
            (map.term + 10, map.epoch + 1)
        );
        assert_eq!(restamped.owners, map.owners);
    }

    #[test]
    fn changes_lists_differing_owners() {
        let map = placed(2, 8);
        let mut target = map.owners.clone();
        target[0] = Some(node(7));
        target[6] = None;
        let changes = map.changes(&target);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].shard, ShardId::new(0));
        assert_eq!(changes[0].to, Some(node(7)));
        assert_eq!(changes[1].shard, ShardId::new(6));
        assert_eq!(changes[1].from, map.owners[6]);
        assert_eq!(changes[1].to, None);
        // A short target counts as unassigned for the missing shards.
        assert_eq!(map.changes(&[]).len(), 8);
    }

    #[derive(Serialize)]
    struct FakeWire<'a> {
        format: u32,
        term: u64,
        epoch: u64,
        shard_count: u32,
        nodes: Vec<&'a str>,
        owners: Vec<Option<u32>>,
        moving: Vec<(u32, u32, u32)>,
    }

    fn fake() -> FakeWire<'static> {
        FakeWire {
            format: 1,
            term: 1,
            epoch: 1,
            shard_count: 2,
            nodes: vec!["a", "b"],
            owners: vec![Some(0), Some(1)],
            moving: vec![],
        }
    }

    fn decode_fake(f: &FakeWire<'_>) -> Result<ShardMap> {
        ShardMap::decode(&rmp_serde::to_vec_named(f).unwrap())
    }

    #[test]
    fn a_newer_format_is_refused() {
        assert!(decode_fake(&fake()).is_ok());
        let newer = FakeWire {
            format: ShardMap::FORMAT + 1,
            ..fake()
        };
        assert!(matches!(
            decode_fake(&newer),
            Err(ClusterError::IncompatibleFormat {
                found: 2,
                supported: 1
            })
        ));
        // A newer format is recognised even when the rest is unreadable to us.
        #[derive(Serialize)]
        struct Future {
            format: u32,
            layout: &'static str,
        }
        let future = rmp_serde::to_vec_named(&Future {
            format: 9,
            layout: "new",
        })
        .unwrap();
        assert!(matches!(
            ShardMap::decode(&future),
            Err(ClusterError::IncompatibleFormat { found: 9, .. })
        ));
    }

    #[test]
    fn broken_invariants_are_refused() {
        let corrupt =
            |f: FakeWire<'_>| matches!(decode_fake(&f), Err(ClusterError::Corrupt { .. }));
        assert!(corrupt(FakeWire {
            format: 0,
            ..fake()
        }));
        assert!(corrupt(FakeWire {
            shard_count: 0,
            owners: vec![],
            ..fake()
        }));
        assert!(corrupt(FakeWire {
            shard_count: 3,
            ..fake()
        }));
        assert!(corrupt(FakeWire {
            owners: vec![Some(0), Some(2)],
            ..fake()
        }));
        assert!(corrupt(FakeWire {
            nodes: vec!["a", "b c"],
            ..fake()
        }));
        assert!(
            corrupt(FakeWire {
                moving: vec![(0, 1, 0)],
                ..fake()
            }),
            "from is not the owner"
        );
        assert!(
            corrupt(FakeWire {
                moving: vec![(0, 0, 0)],
                ..fake()
            }),
            "moves to itself"
        );
        assert!(
            corrupt(FakeWire {
                moving: vec![(5, 0, 1)],
                ..fake()
            }),
            "shard out of range"
        );
        assert!(corrupt(FakeWire {
            moving: vec![(0, 0, 1), (0, 0, 1)],
            ..fake()
        }));
        assert!(corrupt(FakeWire {
            moving: vec![(0, 0, 7)],
            ..fake()
        }));
        assert!(!corrupt(FakeWire {
            moving: vec![(0, 0, 1)],
            ..fake()
        }));
    }

    /// Garbage, truncations and bit flips decode to an error or to a map that
    /// keeps the invariants; never a panic.
    #[test]
    fn decode_never_panics_on_garbage() {
        let mut state = 1u64;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            avalanche(state)
        };
        let mut good = placed(5, 64).begin_move(ShardId::new(0), node(9)).unwrap();
        good.owners[3] = None;
        let bytes = good.encode();
        let mut accepted = 0;
        let mut check = |input: &[u8]| {
            if let Ok(map) = ShardMap::decode(input) {
                accepted += 1;
                assert_eq!(map.owners.len(), map.shard_count as usize);
                for (s, m) in &map.moving {
                    assert_eq!(map.owners[*s as usize].as_ref(), Some(&m.from));
                    assert_ne!(m.from, m.to);
                }
            }
        };
        for len in 0..bytes.len() {
            assert!(
                ShardMap::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for _ in 0..5_000 {
            let mut flipped = bytes.clone();
            for _ in 0..=next() % 4 {
                let i = usize::try_from(next() % bytes.len() as u64).unwrap();
                flipped[i] = u8::try_from(next() & 0xff).unwrap();
            }
            check(&flipped);
        }
        for _ in 0..5_000 {
            let len = usize::try_from(next() % 300).unwrap();
            let random: Vec<u8> = (0..len)
                .map(|_| u8::try_from(next() & 0xff).unwrap())
                .collect();
            check(&random);
        }
        // Huge declared lengths must not allocate without bound either:
        // a map with a `nodes` array announcing 2^32-1 entries.
        check(&[
            0x81, 0xa5, b'n', b'o', b'd', b'e', b's', 0xdd, 0xff, 0xff, 0xff, 0xff,
        ]);
        check(&bytes);
        assert!(accepted >= 1, "the untouched encoding decodes");
    }
}
