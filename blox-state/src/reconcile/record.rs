//! The record of the last complete reconcile, and the check that lets a new
//! leader skip its bootstrap reconcile.
//!
//! A full reconcile of every cluster at each change of leader is costly at
//! scale. A new leader may act without one only when the store says a
//! complete reconcile was made recently against this very store: the record
//! (`reconcile/complete`) holds when it finished, of which clusters, and the
//! etcd cluster id (the store's epoch) it was written to. A record restored
//! with a backup carries the old cluster's id, so a restored store always
//! gets a full reconcile; so does one older than the reconcile interval, or
//! one that does not cover every cluster now managed.
//!
//! This module only writes and checks the record; the reconciler decides
//! where to call it.

use std::time::Duration;

use blox_core::model::Timestamp;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{KvExpect, KvOp, KvTxn, KvTxnOutcome, Result, StateStore, StoreError};

/// The key-value key of the record.
pub const COMPLETE_RECONCILE_KEY: &str = "reconcile/complete";

/// A complete reconcile, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompleteReconcile {
    /// When it finished.
    pub at: Timestamp,
    /// The store's epoch it was written to (for etcd: the cluster id).
    pub epoch: u64,
    /// The clusters it reconciled (names or ARNs, as configured).
    pub clusters: Vec<String>,
}

/// Records a complete reconcile of `clusters` finished at `at`, under
/// `fence` (the leader key's check); returns whether it was written (not
/// when the fence failed).
pub async fn record_complete(
    store: &dyn StateStore,
    fence: Vec<(String, KvExpect)>,
    at: Timestamp,
    clusters: Vec<String>,
) -> Result<bool> {
    // An empty transaction tells the store's epoch (and checks the fence).
    let KvTxnOutcome::Applied(now) = store
        .kv_txn(KvTxn {
            checks: fence.clone(),
            ops: Vec::new(),
        })
        .await?
    else {
        return Ok(false);
    };
    let record = CompleteReconcile {
        at,
        epoch: now.epoch,
        clusters,
    };
    let value = serde_json::to_vec(&record).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let outcome = store
        .kv_txn(KvTxn {
            checks: fence,
            ops: vec![KvOp::Put {
                key: COMPLETE_RECONCILE_KEY.to_owned(),
                value: Bytes::from(value),
            }],
        })
        .await?;
    Ok(matches!(outcome, KvTxnOutcome::Applied(_)))
}

/// Why a new leader must reconcile in full (`None`: it may skip it).
pub async fn full_reconcile_needed(
    store: &dyn StateStore,
    now: Timestamp,
    interval: Duration,
    clusters: &[String],
) -> Result<Option<String>> {
    let Some(entry) = store.kv_get(COMPLETE_RECONCILE_KEY).await? else {
        return Ok(Some("no complete reconcile is recorded".to_owned()));
    };
    let record: CompleteReconcile = match serde_json::from_slice(&entry.value) {
        Ok(r) => r,
        Err(e) => return Ok(Some(format!("the recorded reconcile is unreadable: {e}"))),
    };
    if record.epoch != entry.revision.epoch {
        return Ok(Some(format!(
            "the recorded reconcile was made against another store (epoch {}, now {}): restored from a backup?",
            record.epoch, entry.revision.epoch
        )));
    }
    if now.since(record.at) >= interval || record.at > now {
        return Ok(Some(format!(
            "the recorded reconcile is not within the reconcile interval ({} ms ago)",
            now.as_millis() - record.at.as_millis()
        )));
    }
    if let Some(missing) = clusters.iter().find(|c| !record.clusters.contains(c)) {
        return Ok(Some(format!(
            "the recorded reconcile did not cover cluster {missing}"
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    #[tokio::test]
    async fn a_recent_complete_reconcile_of_this_store_lets_a_leader_skip_its_bootstrap() {
        let store = MemoryStore::new();
        let clusters = vec!["c1".to_owned(), "c2".to_owned()];
        let interval = Duration::from_secs(300);
        assert!(
            full_reconcile_needed(&store, t(100), interval, &clusters)
                .await
                .unwrap()
                .is_some(),
            "nothing recorded"
        );
        assert!(
            record_complete(&store, Vec::new(), t(100), clusters.clone())
                .await
                .unwrap()
        );
        assert_eq!(
            full_reconcile_needed(&store, t(200), interval, &clusters)
                .await
                .unwrap(),
            None
        );
        let old = full_reconcile_needed(&store, t(400), interval, &clusters)
            .await
            .unwrap();
        assert!(old.unwrap().contains("interval"));
        let more = full_reconcile_needed(&store, t(200), interval, &["c3".to_owned()])
            .await
            .unwrap();
        assert!(more.unwrap().contains("c3"));
    }

    #[tokio::test]
    async fn a_record_of_another_store_forces_a_full_reconcile() {
        // As after restoring a backup: the record names the old cluster id.
        let store = MemoryStore::new();
        let record = CompleteReconcile {
            at: t(100),
            epoch: 12345,
            clusters: vec!["c1".to_owned()],
        };
        store
            .kv_put(
                COMPLETE_RECONCILE_KEY,
                Bytes::from(serde_json::to_vec(&record).unwrap()),
                None,
            )
            .await
            .unwrap();
        let why = full_reconcile_needed(&store, t(101), Duration::from_secs(300), &[])
            .await
            .unwrap();
        assert!(why.unwrap().contains("another store"));
    }

    #[tokio::test]
    async fn a_fenced_out_leader_records_nothing() {
        let store = MemoryStore::new();
        let fence = vec![("leader/x".to_owned(), KvExpect::Present)];
        assert!(
            !record_complete(&store, fence, t(1), Vec::new())
                .await
                .unwrap()
        );
        assert!(
            store
                .kv_get(COMPLETE_RECONCILE_KEY)
                .await
                .unwrap()
                .is_none()
        );
    }
}
