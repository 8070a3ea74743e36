//! The stable shard hash: a wire contract.
//!
//! Every node of a cluster, of every release and on every platform, must map an
//! actor to the same shard, or two nodes would host one actor. The mapping is
//! therefore specified here, not left to `std::hash`:
//!
//! 1. **Input bytes**: the actor kind's UTF-8 bytes, one `0x00` byte, then the
//!    actor id's UTF-8 bytes: `kind ++ [0x00] ++ actor_id`. Actor ids never
//!    contain `0x00` (control characters are refused), so the pair can be
//!    recovered from the input and two different pairs never share an input.
//! 2. **Hash**: [xxHash64](https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md)
//!    with seed 0 over those bytes, as a `u64` ([`stable_hash`]). Multi-byte
//!    words are read little-endian whatever the platform's byte order; nothing
//!    depends on `usize`.
//! 3. **Shard**: `hash % shard_count` ([`shard_of`]).
//!
//! Architecture Invariant: the vectors pinned in this module's tests never
//! change. Changing the hash, the input layout or the reduction reassigns
//! actors between releases and is a breaking change of the cluster protocol.

use aether_core::ActorId;

use crate::types::ShardId;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// xxHash64 of `bytes` with seed 0.
///
/// Specified by the xxHash specification (XXH64); equal to the reference
/// implementation's `XXH64(bytes, len, 0)` on every platform. Pure, total,
/// allocation-free.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxh64(bytes, 0)
}

/// The shard of actor `actor` of kind `kind` among `shard_count` shards:
/// `stable_hash(kind ++ [0x00] ++ actor) % shard_count`.
///
/// Part of the wire contract (see the [module docs](self)). A `shard_count` of 0
/// (which a cluster never accepts) is treated as 1, so the function is total.
pub fn shard_of(kind: &str, actor: &ActorId, shard_count: u32) -> ShardId {
    let hash = shard_hash(kind, actor.as_str());
    let count = u64::from(shard_count.max(1));
    // The remainder is below `shard_count`, which fits in a u32.
    ShardId::new(u32::try_from(hash % count).unwrap_or(0))
}

/// `stable_hash(kind ++ [0x00] ++ actor)`, without allocating for the usual sizes.
pub(crate) fn shard_hash(kind: &str, actor: &str) -> u64 {
    let len = kind.len() + 1 + actor.len();
    let mut stack = [0u8; 64];
    let mut heap;
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap = vec![0u8; len];
        &mut heap
    };
    buf[..kind.len()].copy_from_slice(kind.as_bytes());
    buf[kind.len()] = 0;
    buf[kind.len() + 1..].copy_from_slice(actor.as_bytes());
    stable_hash(buf)
}

/// XXH64 with an explicit seed (used by placement and the ring for per-shard /
/// per-vnode scores).
pub(crate) fn xxh64(input: &[u8], seed: u64) -> u64 {
    let len = input.len() as u64;
    let mut rest = input;
    let mut h = if rest.len() >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 32 {
            let (stripe, tail) = rest.split_at(32);
            for (lane, word) in v.iter_mut().zip(stripe.chunks_exact(8)) {
                *lane = round(*lane, read_u64(word));
            }
            rest = tail;
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge_round(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len);
    while rest.len() >= 8 {
        let (word, tail) = rest.split_at(8);
        h ^= round(0, read_u64(word));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = tail;
    }
    if rest.len() >= 4 {
        let (word, tail) = rest.split_at(4);
        h ^= u64::from(read_u32(word)).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = tail;
    }
    for &byte in rest {
        h ^= u64::from(byte).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    avalanche(h)
}

/// A 64-bit finaliser (xxHash64's avalanche), for mixing integers.
pub(crate) fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge_round(acc: u64, lane: u64) -> u64 {
    (acc ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P4)
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XXH64 reference values (seed 0 unless given), as computed by the
    /// reference C implementation (libxxhash `XXH64`). They cover every branch:
    /// empty, 1–3 trailing bytes, a 4-byte word, 8-byte words and 32-byte stripes.
    #[test]
    fn xxh64_matches_the_reference() {
        let range: Vec<u8> = (0u8..100).collect();
        let cases: [(&[u8], u64); 7] = [
            (b"", 0xef46_db37_51d8_e999),
            (b"a", 0xd24e_c4f1_a98c_6e5b),
            (b"abc", 0x44bc_2cf5_ad77_0999),
            (b"abcd", 0xde03_27b0_d25d_92cc),
            (b"abcdefgh", 0x3ad3_5177_5b46_34b7),
            (
                b"Nobody inspects the spammish repetition",
                0xfbce_a83c_8a37_8bf1,
            ),
            (&range, 0x6ac1_e580_3216_6597),
        ];
        for (input, expected) in cases {
            assert_eq!(stable_hash(input), expected, "input {input:?}");
        }
        assert_eq!(xxh64(b"node-1", 7), 0x18c8_127b_d0d5_06a7);
        assert_eq!(xxh64(b"", 1 << 63), 0xcf2d_67ff_e44a_40df);
    }

    /// The wire contract: (kind, actor id) → hash → shard. These vectors must
    /// never change; if this test fails, the change reassigns actors between
    /// releases.
    #[test]
    fn shard_vectors_are_pinned() {
        let cases = [
            ("account", "account-1", 0xf353_e545_0026_611a_u64, 282, 4),
            ("account", "account-2", 0x4356_0fc5_39c8_59c7, 455, 0),
            ("account", "account-10", 0x749f_7c66_c2fe_4f7e, 894, 1),
            ("order", "account-1", 0x2fba_2e57_0536_d645, 581, 4),
            ("", "x", 0x5ba7_8926_6fb2_23b9, 953, 6),
            ("Konto", "Müller-ß", 0x27fc_a142_d933_c1a0, 416, 5),
            ("注文", "顧客-42", 0xbfb6_67d5_7281_aad0, 720, 2),
            ("emoji", "🦀🚀", 0xbfb3_5142_3f40_dda4, 420, 4),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                0x9d5f_c7aa_4ccf_8d27,
                295,
                3,
            ),
            ("account", "a.b*c>d e", 0x965a_2c3d_646c_2f7a, 890, 3),
        ];
        for (kind, id, hash, shard_1024, shard_7) in cases {
            let actor = ActorId::new(id).unwrap();
            assert_eq!(shard_hash(kind, id), hash, "{kind:?}/{id:?}");
            let mut input = kind.as_bytes().to_vec();
            input.push(0);
            input.extend_from_slice(id.as_bytes());
            assert_eq!(stable_hash(&input), hash, "{kind:?}/{id:?}");
            assert_eq!(shard_of(kind, &actor, 1024), ShardId::new(shard_1024));
            assert_eq!(shard_of(kind, &actor, 7), ShardId::new(shard_7));
        }
        // Inputs longer than the stack buffer take the heap path; same bytes, same hash.
        assert_eq!(shard_hash("x", &"y".repeat(300)), 0xa38e_8482_4ca4_9e00);
        assert_eq!(shard_hash("k", ""), 0x1b4b_bcea_3bde_c754);
    }

    #[test]
    fn kind_is_part_of_the_identity() {
        let actor = ActorId::new("same-id").unwrap();
        let shards: std::collections::BTreeSet<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|k| shard_of(k, &actor, 1 << 20))
            .collect();
        assert_eq!(shards.len(), 6);
    }

    #[test]
    fn shard_is_in_range_and_zero_count_is_total() {
        for n in 0..500 {
            let actor = ActorId::new(format!("actor-{n}")).unwrap();
            assert!(shard_of("k", &actor, 13).get() < 13);
            assert_eq!(shard_of("k", &actor, 0), ShardId::new(0));
            assert_eq!(shard_of("k", &actor, 1), ShardId::new(0));
        }
    }

    #[test]
    fn sequential_ids_spread_evenly_over_shards() {
        let shards = 64u32;
        let mut counts = vec![0u32; shards as usize];
        for n in 0..64_000 {
            let actor = ActorId::new(format!("account-{n}")).unwrap();
            counts[shard_of("account", &actor, shards).index()] += 1;
        }
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        // 1000 expected per shard; a fair hash stays well within ±15%.
        assert!(min > 850 && max < 1150, "min {min}, max {max}");
    }
}
