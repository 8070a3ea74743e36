//! The leader's next shard map: a pure step from the map in force, the live
//! members, the handoff acknowledgements and the moves in progress.
//!
//! [`place`] says where every shard should be; this step says how to get there
//! without two owners at once. A shard whose owner is alive and must give it up
//! moves in two epochs: first it is marked *moving* from the old owner to the new
//! one; it is published with the new owner only once the old owner acknowledged
//! (an acknowledgement of the marking epoch or later), or once the handoff timeout
//! has passed since it was marked. A shard of a dead owner, or of none, is
//! assigned at once.
//!
//! Architecture Invariant: a live owner never loses a shard in one step: a map
//! that takes a shard from a member that is still alive follows one in which that
//! shard was marked moving from it to its new owner.
//!
//! No runtime, no I/O: the caller passes the clock in. The only side effects are
//! the metrics of handoffs started, finished and timed out.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Incarnation, Member, Move, NodeId, ShardMap, place};

/// A handoff acknowledgement, stored under `handoff.<shard>.<epoch>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandoffAck {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) incarnation: Incarnation,
}

/// A move in progress as the leader tracks it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    /// When the leader marked it (or took it over).
    pub(crate) since: Instant,
    /// Acknowledgements of an older epoch do not count (0: this leader did not mark
    /// it and accepts any acknowledgement of the same move).
    pub(crate) epoch: u64,
}

/// The next map under `term`, or `None` when nothing changes (same term, owners
/// and moves). Pure, apart from the metrics of handoffs it starts and finishes.
///
/// * `current`: the newest map; `None` gives a first map (epoch 1, no moves).
/// * `acks`: the acknowledgements seen, by `(shard, epoch)`.
/// * `members`: the live members; a shard of an owner not among them is assigned
///   at once.
/// * `marks`: the moves this leader tracks, updated here (a move finished, timed
///   out or no longer wanted is removed). The caller adds a mark for every move
///   of a map it has written.
/// * `now`: the leader's clock, against `handoff_timeout`.
///
/// The next map's epoch is one above `current`'s; an epoch that cannot grow gives
/// `None` (never a wrap-around to an older epoch).
#[expect(clippy::too_many_arguments, reason = "one pure step of the leader")]
pub(crate) fn next_map(
    current: Option<&ShardMap>,
    acks: &BTreeMap<(u32, u64), HandoffAck>,
    members: &[Member],
    shard_count: u32,
    term: u64,
    marks: &mut HashMap<u32, Mark>,
    handoff_timeout: Duration,
    now: Instant,
) -> Option<ShardMap> {
    let desired = place(current, members, shard_count);
    let Some(current) = current else {
        return Some(ShardMap {
            term,
            epoch: 1,
            shard_count,
            owners: desired,
            moving: BTreeMap::new(),
        });
    };
    let live = |node: &NodeId| members.iter().any(|member| member.node == *node);
    let mut owners = current.owners.clone();
    let mut moving = BTreeMap::new();
    for (index, target) in desired.into_iter().enumerate() {
        let Ok(shard) = u32::try_from(index) else {
            break;
        };
        let Some(slot) = owners.get_mut(index) else {
            break;
        };
        let owner = slot.clone();
        match (owner, target) {
            (_, None) => {}
            (None, Some(target)) => *slot = Some(target),
            (Some(owner), Some(target)) if owner == target => {
                marks.remove(&shard);
            }
            (Some(owner), Some(target)) if !live(&owner) => {
                // The old owner is gone: nothing to wait for.
                if marks.remove(&shard).is_some() {
                    metrics::counter!("aether_cluster_handoffs_finished_total").increment(1);
                }
                *slot = Some(target);
            }
            (Some(owner), Some(target)) => {
                let same_move = current
                    .moving
                    .get(&shard)
                    .is_some_and(|mv| mv.from == owner && mv.to == target);
                let mark = marks.get(&shard).copied();
                match (same_move, mark) {
                    (true, Some(mark)) => {
                        let acked = acks
                            .range((shard, mark.epoch)..=(shard, u64::MAX))
                            .any(|(_, ack)| ack.from == owner && ack.to == target);
                        let elapsed = now.saturating_duration_since(mark.since);
                        if acked {
                            metrics::counter!("aether_cluster_handoffs_finished_total")
                                .increment(1);
                            metrics::histogram!("aether_cluster_handoff_duration_seconds")
                                .record(elapsed.as_secs_f64());
                            marks.remove(&shard);
                            *slot = Some(target);
                        } else if elapsed >= handoff_timeout {
                            metrics::counter!("aether_cluster_handoffs_timed_out_total")
                                .increment(1);
                            tracing::warn!(shard, from = %owner, to = %target, "handoff timed out; assigning anyway");
                            marks.remove(&shard);
                            *slot = Some(target);
                        } else {
                            moving.insert(
                                shard,
                                Move {
                                    from: owner,
                                    to: target,
                                },
                            );
                        }
                    }
                    _ => {
                        // A new move (or one whose mark was lost): mark it moving.
                        metrics::counter!("aether_cluster_handoffs_started_total").increment(1);
                        marks.remove(&shard);
                        moving.insert(
                            shard,
                            Move {
                                from: owner,
                                to: target,
                            },
                        );
                    }
                }
            }
        }
    }
    if term == current.term && owners == current.owners && moving == current.moving {
        return None;
    }
    let Some(epoch) = current.epoch.checked_add(1) else {
        // Only a forged map can get here: never wrap around to an older epoch.
        tracing::error!(
            epoch = current.epoch,
            "the shard map's epoch cannot grow; not writing"
        );
        return None;
    };
    Some(ShardMap {
        term,
        epoch,
        shard_count,
        owners,
        moving,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ShardId;
    use crate::placement::tests::Rng;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    fn members(names: &[&str]) -> Vec<Member> {
        names
            .iter()
            .map(|name| Member {
                node: id(name),
                weight: 1,
            })
            .collect()
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn first_map_assigns_every_shard_without_moves() {
        let mut marks = HashMap::new();
        let map = next_map(
            None,
            &BTreeMap::new(),
            &members(&["a", "b"]),
            64,
            7,
            &mut marks,
            TIMEOUT,
            Instant::now(),
        )
        .expect("a first map");
        assert_eq!((map.term, map.epoch, map.shard_count), (7, 1, 64));
        assert!(map.owners.iter().all(Option::is_some));
        assert!(map.moving.is_empty());
    }

    #[test]
    fn a_join_moves_in_two_steps_after_the_acknowledgement() {
        let mut marks = HashMap::new();
        let now = Instant::now();
        let first = next_map(
            None,
            &BTreeMap::new(),
            &members(&["a", "b"]),
            64,
            3,
            &mut marks,
            TIMEOUT,
            now,
        )
        .unwrap();
        // Nothing changes: no write.
        assert!(
            next_map(
                Some(&first),
                &BTreeMap::new(),
                &members(&["a", "b"]),
                64,
                3,
                &mut marks,
                TIMEOUT,
                now
            )
            .is_none()
        );
        // c joins: shards are marked moving, owners unchanged.
        let marked = next_map(
            Some(&first),
            &BTreeMap::new(),
            &members(&["a", "b", "c"]),
            64,
            3,
            &mut marks,
            TIMEOUT,
            now,
        )
        .unwrap();
        assert_eq!(marked.epoch, 2);
        assert_eq!(marked.owners, first.owners);
        assert!(!marked.moving.is_empty());
        assert!(marked.moving.values().all(|mv| mv.to == id("c")));
        for &shard in marked.moving.keys() {
            marks.insert(
                shard,
                Mark {
                    since: now,
                    epoch: marked.epoch,
                },
            );
        }
        // Without acknowledgements and before the timeout: nothing to write.
        assert!(
            next_map(
                Some(&marked),
                &BTreeMap::new(),
                &members(&["a", "b", "c"]),
                64,
                3,
                &mut marks,
                TIMEOUT,
                now
            )
            .is_none()
        );
        // Every old owner acknowledges at the marking epoch (and one stale ack of an
        // older epoch does not count).
        let mut acks = BTreeMap::new();
        let (&stale_shard, _) = marked.moving.iter().next().unwrap();
        for (&shard, mv) in &marked.moving {
            let epoch = if shard == stale_shard {
                1
            } else {
                marked.epoch
            };
            acks.insert(
                (shard, epoch),
                HandoffAck {
                    from: mv.from.clone(),
                    to: mv.to.clone(),
                    incarnation: Incarnation::new(),
                },
            );
        }
        let done = next_map(
            Some(&marked),
            &acks,
            &members(&["a", "b", "c"]),
            64,
            3,
            &mut marks,
            TIMEOUT,
            now,
        )
        .unwrap();
        assert_eq!(done.epoch, 3);
        assert_eq!(
            done.moving.keys().copied().collect::<Vec<_>>(),
            [stale_shard]
        );
        assert_eq!(done.shards_of(&id("c")).len(), marked.moving.len() - 1);
        // Past the timeout the unacknowledged one is assigned anyway.
        let late = now + TIMEOUT;
        let last = next_map(
            Some(&done),
            &BTreeMap::new(),
            &members(&["a", "b", "c"]),
            64,
            3,
            &mut marks,
            TIMEOUT,
            late,
        )
        .unwrap();
        assert!(last.moving.is_empty());
        assert_eq!(last.owner(ShardId::new(stale_shard)), Some(&id("c")));
    }

    #[test]
    fn a_dead_owner_loses_its_shards_at_once_and_a_new_term_rewrites() {
        let mut marks = HashMap::new();
        let now = Instant::now();
        let first = next_map(
            None,
            &BTreeMap::new(),
            &members(&["a", "b"]),
            64,
            3,
            &mut marks,
            TIMEOUT,
            now,
        )
        .unwrap();
        let after = next_map(
            Some(&first),
            &BTreeMap::new(),
            &members(&["a"]),
            64,
            3,
            &mut marks,
            TIMEOUT,
            now,
        )
        .unwrap();
        assert!(after.moving.is_empty());
        assert_eq!(after.shards_of(&id("a")).len(), 64);
        // Same members, new term: written anyway (it fences the old leader).
        let fenced = next_map(
            Some(&after),
            &BTreeMap::new(),
            &members(&["a"]),
            64,
            9,
            &mut marks,
            TIMEOUT,
            now,
        )
        .unwrap();
        assert_eq!((fenced.term, fenced.epoch), (9, after.epoch + 1));
        assert_eq!(fenced.owners, after.owners);
    }

    /// Checks one map written after `prev` under `term` with `members` alive;
    /// `case` names the seed and step in a failure.
    fn check_step(
        case: &str,
        prev: Option<&ShardMap>,
        next: &ShardMap,
        members: &[Member],
        term: u64,
    ) {
        let live = |node: &NodeId| members.iter().any(|member| member.node == *node);
        assert_eq!((next.term, next.shard_count), (term, SHARDS), "{case}");
        assert_eq!(next.owners.len(), SHARDS as usize, "{case}");
        match prev {
            None => {
                assert_eq!(next.epoch, 1, "{case}");
                assert!(next.moving.is_empty(), "{case}: a first map moves nothing");
            }
            Some(prev) => {
                assert_eq!(next.epoch, prev.epoch + 1, "{case}");
                assert!(next.is_newer_than(prev), "{case}");
            }
        }
        for (index, owner) in next.owners.iter().enumerate() {
            let owner = owner.as_ref().expect("every shard has an owner");
            assert!(live(owner), "{case}: shard {index} owned by {owner}, gone");
        }
        for (&shard, mv) in &next.moving {
            assert_eq!(next.owner(ShardId::new(shard)), Some(&mv.from), "{case}");
            assert_ne!(mv.from, mv.to, "{case}");
            assert!(
                live(&mv.to),
                "{case}: shard {shard} moves to {}, gone",
                mv.to
            );
        }
        // The two-step rule: a live owner loses a shard only after a map that
        // marked that very move.
        let Some(prev) = prev else { return };
        for (index, (before, after)) in prev.owners.iter().zip(&next.owners).enumerate() {
            let (Some(before), Some(after)) = (before, after) else {
                continue;
            };
            if before != after && live(before) {
                let shard = u32::try_from(index).unwrap();
                let marked = Move {
                    from: before.clone(),
                    to: after.clone(),
                };
                assert_eq!(
                    prev.moving.get(&shard),
                    Some(&marked),
                    "{case}: shard {shard} taken from live {before} without a move"
                );
            }
        }
    }

    const SHARDS: u32 = 64;

    /// Random walks of joins, leaves, acknowledgements, new terms and passing
    /// time, stepped as the leader steps them: every map keeps the two-step rule
    /// and has only live owners, and once the members stop changing and every
    /// move is acknowledged the maps settle on the placement and stop changing.
    #[test]
    fn random_walks_keep_the_two_step_rule_and_settle_on_the_placement() {
        let pool: Vec<NodeId> = (0..6).map(|i| id(&format!("n{i}"))).collect();
        // Weights 1 and 2, so caps differ between members.
        let members_of = |live: &BTreeSet<usize>| -> Vec<Member> {
            live.iter()
                .map(|&i| Member::new(pool[i].clone(), if i % 2 == 0 { 1 } else { 2 }))
                .collect()
        };
        for seed in 0..200u64 {
            let mut rng = Rng(seed);
            let mut now = Instant::now();
            let mut live: BTreeSet<usize> = BTreeSet::from([0]);
            let mut term = 1;
            let mut current: Option<ShardMap> = None;
            let mut marks: HashMap<u32, Mark> = HashMap::new();
            let mut acks: BTreeMap<(u32, u64), HandoffAck> = BTreeMap::new();
            for step in 0..60 {
                let settling = step >= 40;
                if !settling && rng.below(3) == 0 {
                    let node = usize::try_from(rng.below(pool.len() as u64)).unwrap();
                    if !live.remove(&node) || live.is_empty() {
                        live.insert(node);
                    }
                }
                if !settling && rng.below(10) == 0 {
                    // A new leader: it takes the moves in the map over, timed from now.
                    term += 1;
                    marks.clear();
                    for &shard in current.iter().flat_map(|map| map.moving.keys()) {
                        marks.insert(
                            shard,
                            Mark {
                                since: now,
                                epoch: 0,
                            },
                        );
                    }
                }
                let members = members_of(&live);
                // Old owners still alive acknowledge some moves (all, once settling).
                if let Some(map) = &current {
                    for (&shard, mv) in &map.moving {
                        let alive = members.iter().any(|member| member.node == mv.from);
                        if alive && (settling || rng.below(2) == 0) {
                            let ack = HandoffAck {
                                from: mv.from.clone(),
                                to: mv.to.clone(),
                                incarnation: Incarnation::new(),
                            };
                            acks.insert((shard, map.epoch), ack);
                        }
                    }
                }
                now += if rng.below(8) == 0 {
                    TIMEOUT
                } else {
                    Duration::from_millis(10)
                };
                let next = next_map(
                    current.as_ref(),
                    &acks,
                    &members,
                    SHARDS,
                    term,
                    &mut marks,
                    TIMEOUT,
                    now,
                );
                let Some(next) = next else { continue };
                check_step(
                    &format!("seed {seed}, step {step}"),
                    current.as_ref(),
                    &next,
                    &members,
                    term,
                );
                // As the leader does once the write succeeded.
                for &shard in next.moving.keys() {
                    marks.entry(shard).or_insert(Mark {
                        since: now,
                        epoch: next.epoch,
                    });
                }
                acks.retain(|(shard, _), _| next.moving.contains_key(shard));
                current = Some(next);
            }
            let settled = current.expect("a map was written");
            let members = members_of(&live);
            assert!(settled.moving.is_empty(), "seed {seed}: moves left");
            assert_eq!(
                settled.owners,
                place(Some(&settled), &members, SHARDS),
                "seed {seed}: not the placement"
            );
            assert!(
                next_map(
                    Some(&settled),
                    &BTreeMap::new(),
                    &members,
                    SHARDS,
                    term,
                    &mut marks,
                    TIMEOUT,
                    now
                )
                .is_none(),
                "seed {seed}: still changing"
            );
        }
    }
}
