//! Shard placement: a pure, deterministic function from (previous map, live
//! members with weights, shard count) to an owner per shard.
//!
//! # The rule
//!
//! Let `S` be the shard count, `w` a member's weight and `W` the sum of all
//! weights. A member's **cap** is `⌈S·w/W⌉`.
//!
//! 1. **Sticky.** A shard keeps its previous owner while that owner is still a
//!    member and under its cap. When an owner holds more than its cap (a node
//!    joined, or weights changed) it keeps the shards where its rendezvous score
//!    is highest.
//! 2. **Rendezvous.** Every other shard (new, orphaned by a leaver, or shed by an
//!    owner over its cap) goes, in shard order, to the member with the highest
//!    rendezvous score for that shard among members still under their cap.
//!
//! Consequences (tested here and measured against a consistent-hash ring):
//! loads never exceed the caps, so max/avg ≤ `⌈S/N⌉/(S/N)` for equal weights
//! (≈ 1.01 at 1024 shards, 10 nodes); a leave moves only the leaver's shards; a
//! join moves about `S/(N+1)` shards, all to the joiner; the result placed again
//! with the same members is unchanged (idempotent).
//!
//! Architecture Invariant: placement is pure and deterministic — no clock, no
//! randomness, no I/O, no dependence on the order of `members` — so any node
//! recomputing it from the same inputs gets the same map.

use std::collections::BTreeMap;

use crate::hash::{avalanche, xxh64};
use crate::shard_map::ShardMap;
use crate::types::NodeId;

/// A live member as placement sees it: its id and capacity weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node.
    pub node: NodeId,
    /// Its capacity weight; its share of the shards is proportional to it.
    /// A weight of 0 is treated as 1.
    pub weight: u32,
}

impl Member {
    /// A member with the given weight.
    pub fn new(node: NodeId, weight: u32) -> Self {
        Self { node, weight }
    }
}

/// The rendezvous score of `node` for shard `shard`: higher wins.
///
/// `xxh64(node id bytes, seed = avalanche(shard))`. Deterministic across
/// platforms and releases of the same format.
pub fn rendezvous_score(shard: u32, node: &NodeId) -> u64 {
    xxh64(node.as_str().as_bytes(), avalanche(u64::from(shard)))
}

/// Computes the owner of every shard. Pure and deterministic.
///
/// * `previous`: the map in force, if any. It is used only when its
///   `shard_count` equals `shard_count` (otherwise placement starts afresh).
///   Only `owners` is read; shards being moved count as owned by their current
///   owner.
/// * `members`: the live members. Order does not matter; when a node appears
///   twice, its largest weight counts.
/// * Returns `shard_count` entries; all `None` when `members` is empty,
///   otherwise all `Some`.
///
/// Guarantees: each member gets at most `⌈S·w/W⌉` shards; a shard whose
/// previous owner is a member under its cap keeps that owner; placing the
/// result again with the same members returns it unchanged.
pub fn place(
    previous: Option<&ShardMap>,
    members: &[Member],
    shard_count: u32,
) -> Vec<Option<NodeId>> {
    let shards = shard_count as usize;
    // Deduplicate and sort: the result must not depend on the order given.
    let mut weights: BTreeMap<&NodeId, u64> = BTreeMap::new();
    for member in members {
        let w = u64::from(member.weight.max(1));
        let entry = weights.entry(&member.node).or_insert(w);
        *entry = (*entry).max(w);
    }
    if weights.is_empty() {
        return vec![None; shards];
    }
    let nodes: Vec<&NodeId> = weights.keys().copied().collect();
    let total: u64 = weights.values().sum();
    let caps: Vec<usize> = weights
        .values()
        .map(|&w| {
            let cap = (u64::from(shard_count) * w).div_ceil(total);
            usize::try_from(cap).unwrap_or(usize::MAX)
        })
        .collect();
    let index_of: BTreeMap<&NodeId, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();

    let mut owners: Vec<Option<usize>> = vec![None; shards];
    let mut load = vec![0usize; nodes.len()];

    // 1. Sticky: previous owners keep their best-scoring shards up to their cap.
    if let Some(prev) =
        previous.filter(|p| p.shard_count == shard_count && p.owners.len() == shards)
    {
        let mut held: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
        for (shard, owner) in (0..shard_count).zip(&prev.owners) {
            if let Some(i) = owner.as_ref().and_then(|o| index_of.get(o)) {
                held[*i].push(shard);
            }
        }
        for (i, mut shards_held) in held.into_iter().enumerate() {
            if shards_held.len() > caps[i] {
                shards_held
                    .sort_by_cached_key(|&s| (std::cmp::Reverse(rendezvous_score(s, nodes[i])), s));
                shards_held.truncate(caps[i]);
            }
            load[i] = shards_held.len();
            for s in shards_held {
                owners[s as usize] = Some(i);
            }
        }
    }

    // 2. Rendezvous: the rest, in shard order, to the best-scoring node under its cap.
    for (shard, owner) in (0..shard_count).zip(owners.iter_mut()) {
        if owner.is_some() {
            continue;
        }
        let best = (0..nodes.len())
            .filter(|&i| load[i] < caps[i])
            .max_by_key(|&i| (rendezvous_score(shard, nodes[i]), std::cmp::Reverse(i)));
        // Caps sum to at least S, so some node is always under its cap.
        if let Some(i) = best {
            load[i] += 1;
            *owner = Some(i);
        }
    }

    owners
        .into_iter()
        .map(|o| o.map(|i| nodes[i].clone()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const S: u32 = 1024;

    /// A small deterministic generator (SplitMix64) for property tests: every
    /// run checks the same cases, and a failure names its seed. Shared with the
    /// property tests of [`crate::next_map`].
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            avalanche(self.0)
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn node(i: usize) -> NodeId {
        NodeId::new(format!("node-{i}")).unwrap()
    }

    fn equal(n: usize) -> Vec<Member> {
        (0..n).map(|i| Member::new(node(i), 1)).collect()
    }

    fn map_of(owners: Vec<Option<NodeId>>) -> ShardMap {
        ShardMap {
            shard_count: u32::try_from(owners.len()).unwrap(),
            owners,
            ..ShardMap::empty(1)
        }
    }

    fn loads(owners: &[Option<NodeId>]) -> BTreeMap<NodeId, usize> {
        map_of(owners.to_vec()).load()
    }

    fn cap(shards: u32, weight: u32, total: u64) -> usize {
        usize::try_from((u64::from(shards) * u64::from(weight)).div_ceil(total)).unwrap()
    }

    fn max_over_avg(owners: &[Option<NodeId>], n: usize) -> f64 {
        let max = *loads(owners).values().max().unwrap();
        max as f64 / (owners.len() as f64 / n as f64)
    }

    fn moved(before: &[Option<NodeId>], after: &[Option<NodeId>]) -> usize {
        before.iter().zip(after).filter(|(a, b)| a != b).count()
    }

    #[test]
    fn no_members_no_owners() {
        assert_eq!(place(None, &[], 16), vec![None; 16]);
        let full = map_of(place(None, &equal(3), 16));
        assert_eq!(place(Some(&full), &[], 16), vec![None; 16]);
        assert!(place(None, &equal(3), 0).is_empty());
    }

    #[test]
    fn balanced_for_one_to_ten_equal_nodes() {
        for n in 1..=10 {
            let owners = place(None, &equal(n), S);
            assert!(owners.iter().all(Option::is_some));
            assert_eq!(loads(&owners).len(), n);
            let ratio = max_over_avg(&owners, n);
            assert!(ratio <= 1.05, "{n} nodes: max/avg {ratio}");
        }
    }

    #[test]
    fn a_join_moves_at_most_one_share_all_to_the_joiner() {
        for n in 1..=9 {
            let before = place(None, &equal(n), S);
            let prev = map_of(before.clone());
            let after = place(Some(&prev), &equal(n + 1), S);
            let joiner = node(n);
            let moved = moved(&before, &after);
            let bound = 1.2 * f64::from(S) / (n + 1) as f64;
            assert!(
                moved as f64 <= bound,
                "{n}→{}: moved {moved} > {bound}",
                n + 1
            );
            assert!(moved > 0);
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    assert_eq!(a.as_ref(), Some(&joiner));
                }
            }
            assert!(max_over_avg(&after, n + 1) <= 1.05);
        }
    }

    #[test]
    fn a_leave_moves_only_the_leavers_shards() {
        for n in 2..=10 {
            for leaver in [0, n / 2, n - 1] {
                let before = place(None, &equal(n), S);
                let prev = map_of(before.clone());
                let rest: Vec<Member> = equal(n)
                    .into_iter()
                    .filter(|m| m.node != node(leaver))
                    .collect();
                let after = place(Some(&prev), &rest, S);
                for (b, a) in before.iter().zip(&after) {
                    if b.as_ref() == Some(&node(leaver)) {
                        assert!(a.is_some() && a.as_ref() != Some(&node(leaver)));
                    } else {
                        assert_eq!(b, a, "a shard of a staying node moved");
                    }
                }
                assert!(
                    max_over_avg(&after, n - 1) <= 1.05,
                    "{n} nodes, leaver {leaver}"
                );
            }
        }
    }

    #[test]
    fn weights_are_respected() {
        let members = vec![
            Member::new(node(0), 1),
            Member::new(node(1), 2),
            Member::new(node(2), 5),
        ];
        let owners = place(None, &members, S);
        let load = loads(&owners);
        let total = 8u64;
        for m in &members {
            let got = load[&m.node];
            let fair = f64::from(S) * f64::from(m.weight) / total as f64;
            assert!(got <= cap(S, m.weight, total), "{m:?}: {got}");
            assert!(
                got as f64 >= fair - members.len() as f64,
                "{m:?}: {got} < {fair}"
            );
        }
    }

    #[test]
    fn order_of_members_does_not_matter_and_duplicates_collapse() {
        let mut members = equal(7);
        let a = place(None, &members, S);
        members.reverse();
        members.push(Member::new(node(3), 1));
        assert_eq!(place(None, &members, S), a);
    }

    #[test]
    fn a_previous_map_of_another_shard_count_is_ignored() {
        let prev = map_of(place(None, &equal(3), 512));
        assert_eq!(place(Some(&prev), &equal(4), S), place(None, &equal(4), S));
    }

    /// Random members, weights, shard counts and previous maps (including
    /// nonsense ones): caps hold, every sticky shard stays, and placing the
    /// result again changes nothing.
    #[test]
    fn properties_hold_for_random_inputs() {
        for seed in 0..300u64 {
            let mut rng = Rng(seed);
            let shards = 1 + u32::try_from(rng.below(2048)).unwrap();
            let pool: Vec<NodeId> = (0..14).map(node).collect();
            let mut members = Vec::new();
            for n in &pool {
                if rng.below(2) == 0 {
                    members.push(Member::new(n.clone(), u32::try_from(rng.below(6)).unwrap()));
                }
            }
            let prev = match rng.below(3) {
                0 => None,
                // Arbitrary owners, including nodes that are gone and gaps.
                1 => Some(map_of(
                    (0..shards)
                        .map(|_| {
                            let i = usize::try_from(rng.below(16)).unwrap();
                            pool.get(i).cloned()
                        })
                        .collect(),
                )),
                // A placement over another random set of members.
                _ => {
                    let other: Vec<Member> = pool
                        .iter()
                        .filter(|_| rng.below(2) == 0)
                        .map(|n| Member::new(n.clone(), 1))
                        .collect();
                    Some(map_of(place(None, &other, shards)))
                }
            };
            let owners = place(prev.as_ref(), &members, shards);
            assert_eq!(owners.len(), shards as usize, "seed {seed}");
            if members.is_empty() {
                assert!(owners.iter().all(Option::is_none), "seed {seed}");
                continue;
            }
            assert!(owners.iter().all(Option::is_some), "seed {seed}");

            let total: u64 = members.iter().map(|m| u64::from(m.weight.max(1))).sum();
            let load = loads(&owners);
            let alive: BTreeSet<&NodeId> = members.iter().map(|m| &m.node).collect();
            for m in &members {
                let c = cap(shards, m.weight.max(1), total);
                let got = load.get(&m.node).copied().unwrap_or(0);
                assert!(got <= c, "seed {seed}: {} has {got} > cap {c}", m.node);
                if let Some(prev) = &prev {
                    // Sticky: an alive owner keeps min(what it had, its cap).
                    let had = prev.shards_of(&m.node);
                    let kept = had
                        .iter()
                        .filter(|s| owners[s.index()].as_ref() == Some(&m.node))
                        .count();
                    assert_eq!(
                        kept,
                        had.len().min(c),
                        "seed {seed}: {} kept {kept}",
                        m.node
                    );
                }
            }
            assert!(load.keys().all(|n| alive.contains(n)), "seed {seed}");

            let again = place(Some(&map_of(owners.clone())), &members, shards);
            assert_eq!(again, owners, "seed {seed}: not idempotent");
        }
    }

    /// A random walk of joins and leaves among equal nodes: each leave moves only
    /// the leaver's shards, each join at most 1.2/(N+1) of them, and balance
    /// stays within 1.05.
    #[test]
    fn joins_and_leaves_stay_within_bounds() {
        let mut rng = Rng(42);
        let mut live: BTreeSet<usize> = (0..3).collect();
        let mut next = 3;
        let mut owners = place(None, &members_of(&live), S);
        for step in 0..200 {
            let join = live.len() < 2 || (live.len() < 10 && rng.below(2) == 0);
            let prev = map_of(owners.clone());
            if join {
                live.insert(next);
                next += 1;
            } else {
                let victim = *live
                    .iter()
                    .nth(usize::try_from(rng.below(live.len() as u64)).unwrap())
                    .unwrap();
                live.remove(&victim);
            }
            owners = place(Some(&prev), &members_of(&live), S);
            let n = live.len();
            let m = moved(&prev.owners, &owners);
            if join {
                let bound = 1.2 * f64::from(S) / n as f64;
                assert!(m as f64 <= bound, "step {step}: join to {n} moved {m}");
            } else {
                let lost = prev
                    .owners
                    .iter()
                    .flatten()
                    .filter(|o| !live.iter().any(|&i| node(i) == **o))
                    .count();
                assert_eq!(
                    m, lost,
                    "step {step}: leave moved more than the leaver's shards"
                );
            }
            assert!(max_over_avg(&owners, n) <= 1.05, "step {step}");
        }
    }

    fn members_of(live: &BTreeSet<usize>) -> Vec<Member> {
        live.iter().map(|&i| Member::new(node(i), 1)).collect()
    }
}
