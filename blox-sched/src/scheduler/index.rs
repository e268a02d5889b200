//! Postings lists that index a vector by a string key, built lazily and at
//! most once (a snapshot's pending starts by instance), and the key hashes
//! the indexes file keys under.
//!
//! A key is stored as its hash only, so building an index allocates no key;
//! a lookup checks each candidate against the key, so two keys with the
//! same hash never mix.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use rustc_hash::FxBuildHasher;

use crate::daemon::fasthash::FastMap;

/// The hash of a key, as the postings store it.
pub(crate) fn key_hash(parts: &[&str]) -> u64 {
    FxBuildHasher.hash_one(parts)
}

/// The hash of an ARN: of its last 24 bytes only. The ARNs of one snapshot
/// share a long prefix (partition, region, account, resource type,
/// cluster) and differ in their ids at the end, so the tail is as selective
/// as the whole at a third of the cost; lookups compare the ARN in full.
pub(crate) fn arn_hash(arn: &str) -> u64 {
    let b = arn.as_bytes();
    FxBuildHasher.hash_one(&b[b.len().saturating_sub(24)..])
}

/// Positions in a vector, by the hash of a key, each list in vector order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Postings(FastMap<u64, Vec<u32>>);

impl Postings {
    /// Indexes `items`: `keys(item, emit)` calls `emit` with the hash of
    /// every key the item is found under.
    pub(crate) fn build<T>(items: &[T], keys: impl Fn(&T, &mut dyn FnMut(u64))) -> Self {
        let mut map: FastMap<u64, Vec<u32>> = FastMap::default();
        for (pos, item) in items.iter().enumerate() {
            // A snapshot never holds 2^32 entities; one that did would
            // leave the rest unindexed rather than wrap.
            let Ok(pos) = u32::try_from(pos) else { break };
            keys(item, &mut |h| map.entry(h).or_default().push(pos));
        }
        Postings(map)
    }

    /// The positions filed under `hash` (candidates: the caller checks the key).
    pub(crate) fn get(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        self.0.get(&hash).into_iter().flatten().map(|&p| p as usize)
    }
}

/// A [`Postings`] built on first use.
#[derive(Debug, Default, Clone)]
pub(crate) struct LazyPostings(OnceLock<Postings>);

impl LazyPostings {
    /// The postings, built by `build` if this is the first use.
    pub(crate) fn get_or_build(&self, build: impl FnOnce() -> Postings) -> &Postings {
        self.0.get_or_init(build)
    }
}
