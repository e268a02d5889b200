//! Fast hash maps for the decision.
//!
//! The keys are ARNs and `startedBy` tags that ECS and the runner produce,
//! not attacker-chosen input, so the standard library's DoS-resistant
//! SipHash buys nothing here while costing most of a decision's time (it was
//! over half of it on 50,000 tasks). The maps use rustc-hash's Fx hasher.

use std::hash::Hasher;

/// A string key hashed by its last 24 bytes only (compared in
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

/// A `HashMap` with rustc-hash's Fx hasher.
pub(crate) type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxBuildHasher;
    use std::hash::BuildHasher;

    #[test]
    fn equal_strings_hash_equal_and_near_misses_differ() {
        let b = FxBuildHasher;
        let a = "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/i1";
        assert_eq!(b.hash_one(a), b.hash_one(a.to_string()));
        assert_ne!(b.hash_one(a), b.hash_one(a.replace("i1", "i2")));
        assert_ne!(b.hash_one("ab"), b.hash_one("ab\0"));
    }

    #[test]
    fn keys_differing_in_one_character_spread_over_the_low_bits() {
        let b = FxBuildHasher;
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
