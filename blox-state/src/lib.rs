//! # blox-state
//!
//! The materialized view of ECS: a versioned [`store::StateStore`] over etcd
//! (production) and memory (embedded default and test double).

pub mod store;

#[cfg(feature = "testing")]
pub mod testing;

pub use store::{
    ApplyOutcome, Change, Filter, Listing, Revision, StateStore, StoreError, Versioned, WatchEvent,
};
