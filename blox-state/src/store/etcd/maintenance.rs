//! Bounding history: compaction of old revisions and purging of old
//! tombstones, on a schedule or on demand.

use std::sync::atomic::Ordering;

use blox_core::model::Timestamp;
use etcd_client::CompactionOptions;

use super::EtcdStore;
use super::retry::{Failure, classify, to_store_error};
use crate::store::{Result, Revision, StateStore};

/// What one maintenance run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaintenanceReport {
    /// The revision history was compacted to, if it was.
    pub compacted_to: Option<Revision>,
    /// How many tombstones were purged.
    pub tombstones_purged: usize,
}

impl EtcdStore {
    /// Compacts history so that only the last `keep_revisions` revisions
    /// remain; returns the revision compacted to (`None` if there was
    /// nothing to compact). Watches from an older revision then fail with
    /// [`crate::store::StoreError::Compacted`].
    pub async fn compact(&self, keep_revisions: u64) -> Result<Option<Revision>> {
        let inner = &self.inner;
        let current = inner.current_seq().await?;
        let keep = i64::try_from(keep_revisions).unwrap_or(i64::MAX);
        let target = current.saturating_sub(keep);
        if target <= 0 || target <= inner.compacted.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut attempt = || {
            let mut kv = inner.client.kv_client();
            async move { kv.compact(target, Some(CompactionOptions::new())).await }
        };
        match inner.policy.run_raw(&mut attempt).await {
            Ok(_) => {}
            // Someone (another process, etcd's auto-compaction) got there first.
            Err(super::retry::AttemptError::Client(e)) if classify(&e) == Failure::Compacted => {}
            Err(super::retry::AttemptError::Client(e)) => {
                return Err(to_store_error("compacting", e));
            }
            Err(super::retry::AttemptError::TimedOut) => {
                return Err(crate::store::StoreError::Unavailable {
                    message: "compacting: no etcd member answered".into(),
                    source: None,
                });
            }
        }
        inner.compacted.fetch_max(target, Ordering::Relaxed);
        Ok(Some(inner.revision(target)))
    }

    /// One maintenance run: compacts to [`super::EtcdOptions::keep_revisions`]
    /// and purges tombstones older than
    /// [`super::EtcdOptions::tombstone_retention`].
    pub async fn maintain(&self) -> Result<MaintenanceReport> {
        let compacted_to = self.compact(self.inner.options.keep_revisions).await?;
        let tombstones_purged =
            match self.inner.options.tombstone_retention {
                Some(keep) => {
                    let before =
                        Timestamp::from_millis(
                            self.inner.options.clock.now().as_millis().saturating_sub(
                                i64::try_from(keep.as_millis()).unwrap_or(i64::MAX),
                            ),
                        );
                    self.purge_tombstones(before).await?
                }
                None => 0,
            };
        Ok(MaintenanceReport {
            compacted_to,
            tombstones_purged,
        })
    }

    /// Runs [`EtcdStore::maintain`] every
    /// [`super::EtcdOptions::compaction_interval`] until the handle is
    /// aborted; failures are logged and retried at the next tick. Several
    /// processes may run it against one cluster (compaction is idempotent),
    /// though running it only on the leader saves work.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let every = self.inner.options.compaction_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.maintain().await {
                    Ok(r) => tracing::debug!(?r, "etcd maintenance done"),
                    Err(e) => tracing::warn!(error = %e, "etcd maintenance failed"),
                }
            }
        })
    }
}
