//! The ingester's counters, exposed for metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of what the ingester did (shared; read with [`IngestCounters::snapshot`]).
#[derive(Debug, Default)]
pub struct IngestCounters {
    received: AtomicU64,
    applied: AtomicU64,
    stale: AtomicU64,
    ignored: AtomicU64,
    malformed: AtomicU64,
    expired: AtomicU64,
    store_errors: AtomicU64,
    unconfirmed: AtomicU64,
    source_errors: AtomicU64,
    deleted: AtomicU64,
    delete_failures: AtomicU64,
    last_lag_ms: AtomicU64,
}

/// A point-in-time copy of [`IngestCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestStats {
    /// Messages received from the source.
    pub received: u64,
    /// Events whose state was written to the store.
    pub applied: u64,
    /// Events the store already had newer state for (no write).
    pub stale: u64,
    /// Messages of detail-types blox does not apply (service actions, deployments, ...).
    pub ignored: u64,
    /// Messages that are not ECS events blox can use.
    pub malformed: u64,
    /// Events older than the tombstone horizon: deleted, not applied.
    pub expired: u64,
    /// Failed store writes, of a batch or of one change (the messages were
    /// kept for redelivery).
    pub store_errors: u64,
    /// Events from before a fresh store started, about entities it had no
    /// record of, that ECS could not be asked about now (the messages were
    /// kept for redelivery).
    pub unconfirmed: u64,
    /// Failed receive or delete calls to the source.
    pub source_errors: u64,
    /// Messages deleted from the source.
    pub deleted: u64,
    /// Messages the source failed to delete (they come back and are applied as stale).
    pub delete_failures: u64,
    /// Milliseconds between the last applied event's emission and its application.
    pub last_lag_ms: u64,
}

macro_rules! bump {
    ($($name:ident => $field:ident),+ $(,)?) => {
        impl IngestCounters {
            $(
                /// Adds to the counter of the same name.
                pub(crate) fn $name(&self, n: u64) {
                    self.$field.fetch_add(n, Ordering::Relaxed);
                }
            )+
        }
    };
}

bump!(
    add_received => received,
    add_applied => applied,
    add_stale => stale,
    add_ignored => ignored,
    add_malformed => malformed,
    add_expired => expired,
    add_store_errors => store_errors,
    add_unconfirmed => unconfirmed,
    add_source_errors => source_errors,
    add_deleted => deleted,
    add_delete_failures => delete_failures,
);

impl IngestCounters {
    /// Records the lag of the last applied event.
    pub(crate) fn set_lag_ms(&self, ms: u64) {
        self.last_lag_ms.store(ms, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> IngestStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngestStats {
            received: get(&self.received),
            applied: get(&self.applied),
            stale: get(&self.stale),
            ignored: get(&self.ignored),
            malformed: get(&self.malformed),
            expired: get(&self.expired),
            store_errors: get(&self.store_errors),
            unconfirmed: get(&self.unconfirmed),
            source_errors: get(&self.source_errors),
            deleted: get(&self.deleted),
            delete_failures: get(&self.delete_failures),
            last_lag_ms: get(&self.last_lag_ms),
        }
    }
}
