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

use crate::ids::ShardId;

// xxHash64's primes used by its finaliser.
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;

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
    // The same remainder either way; a mask where it can be one, because a
    // 64-bit division costs more than the whole hash of a short id.
    let shard = if count.is_power_of_two() {
        hash & (count - 1)
    } else {
        hash % count
    };
    // The remainder is below `shard_count`, which fits in a u32.
    ShardId::new(u32::try_from(shard).unwrap_or(0))
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

/// xxHash64 of `input` with `seed` (the `twox-hash` crate's implementation of
/// the specification; the reference vectors below pin it).
///
/// Also a building block of the control plane's placement (rendezvous
/// scores) and hash ring, which share this wire contract.
pub fn xxh64(input: &[u8], seed: u64) -> u64 {
    twox_hash::XxHash64::oneshot(seed, input)
}

/// A 64-bit finaliser (xxHash64's avalanche), for mixing integers (the
/// control plane's placement seeds its scores with it).
pub fn avalanche(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
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

    /// The mask taken for power-of-two counts is the remainder of the
    /// contract, whatever the count.
    #[test]
    fn shard_is_the_remainder_for_every_count() {
        let counts = [1, 2, 3, 7, 64, 1000, 1024, 4096, 1 << 31, u32::MAX];
        for n in 0..200 {
            let actor = ActorId::new(format!("account-{n}")).unwrap();
            let hash = shard_hash("account", actor.as_str());
            for count in counts {
                let expected = u32::try_from(hash % u64::from(count)).unwrap();
                assert_eq!(
                    shard_of("account", &actor, count).get(),
                    expected,
                    "count {count}"
                );
            }
        }
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
