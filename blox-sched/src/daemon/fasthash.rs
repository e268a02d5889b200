//! A fast, non-cryptographic hasher for the decision's hash maps.
//!
//! The keys are ARNs and `startedBy` tags that ECS and the runner produce,
//! not attacker-chosen input, so the standard library's DoS-resistant
//! SipHash buys nothing here while costing most of a decision's time (it was
//! over half of it on 50,000 tasks). This is the multiply-rotate scheme used
//! by rustc's "Fx" hasher, processing eight bytes per step, with a final
//! mixing step so that the low bits a hash table indexes by depend on every
//! input byte.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hasher (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Multiplication only carries changes upward; hash tables index by
        // the low bits, so fold the high bits down (MurmurHash3's finalizer).
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A string key hashed by its length and last 24 bytes only (compared in
/// full). ARNs of one snapshot share a long prefix (partition, region,
/// account, resource type, cluster) and differ in their ids at the end, so
/// hashing the tail is as selective as hashing everything, at a third of the cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TailKey<'a>(pub &'a str);

impl std::hash::Hash for TailKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let b = self.0.as_bytes();
        state.write(&b[b.len().saturating_sub(24)..]);
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn equal_strings_hash_equal_and_near_misses_differ() {
        let b = BuildHasherDefault::<FastHasher>::default();
        let a = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/i1";
        assert_eq!(b.hash_one(a), b.hash_one(a.to_string()));
        assert_ne!(b.hash_one(a), b.hash_one(a.replace("i1", "i2")));
        assert_ne!(b.hash_one("ab"), b.hash_one("ab\0"));
    }

    #[test]
    fn keys_differing_in_one_character_spread_over_the_low_bits() {
        let b = BuildHasherDefault::<FastHasher>::default();
        let mut buckets = std::collections::HashSet::new();
        for k in 0..1000 {
            let arn = format!("arn:aws:ecs:us-east-1:1:container-instance/prod/i{k}");
            buckets.insert(b.hash_one(arn) & 1023);
        }
        assert!(
            buckets.len() > 500,
            "{} distinct low-bit buckets",
            buckets.len()
        );
    }

    #[test]
    fn tail_keys_compare_in_full() {
        let mut m: FastMap<TailKey<'_>, u8> = FastMap::default();
        let a = "arn:aws:ecs:us-east-1:1:container-instance/a/0123456789abcdef0123456789";
        let b = "arn:aws:ecs:us-east-1:2:container-instance/a/0123456789abcdef0123456789";
        m.insert(TailKey(a), 1);
        m.insert(TailKey(b), 2);
        assert_eq!(m.get(&TailKey(a)), Some(&1));
        assert_eq!(m.get(&TailKey(b)), Some(&2));
    }

    #[test]
    fn a_map_finds_every_key() {
        let mut m: FastMap<String, usize> = FastMap::default();
        for k in 0..10_000 {
            m.insert(format!("task/prod/{k}"), k);
        }
        assert!((0..10_000).all(|k| m.get(&format!("task/prod/{k}")) == Some(&k)));
    }
}
