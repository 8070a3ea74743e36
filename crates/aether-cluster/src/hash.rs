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
    let mut stack = [0u8; 256];
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
