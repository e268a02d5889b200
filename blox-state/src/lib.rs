//! # blox-state
//!
//! The materialized view of ECS: a versioned [`store::StateStore`] over etcd
//! (production) and memory (embedded default and test double), and an
//! indexed in-process [`cache`] that follows the store and answers reads,
//! and (feature `http`) the Blox v0.3 compatible HTTP routes over them.

pub mod cache;
#[cfg(feature = "http")]
pub mod http;
pub mod ingest;
pub mod reconcile;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use cache::{Cache, CacheWriter, Entry};
pub use store::{
    ApplyOutcome, Change, Filter, Listing, Revision, StateStore, StoreError, Versioned, WatchEvent,
};
