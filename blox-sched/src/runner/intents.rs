//! Intents: a record, written to the store before each StartTask, that a
//! task is on its way to an instance, so a view that lags behind ECS never
//! causes a second start. Written and deleted in transactions fenced by the
//! leader key.

use std::collections::BTreeMap;

use blox_core::model::{Arn, Timestamp};
use blox_state::store::{KvOp, KvTxn, KvTxnOutcome, Revision, StateStore, StoreError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::election::LeaderTerm;
use crate::scheduler::PendingStart;

/// The key-value prefix of a scheduler's intents.
pub fn intent_prefix(scheduler: &str) -> String {
    format!("intents/{scheduler}/")
}

/// What an intent records (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRecord {
    /// The cluster.
    pub cluster: Arn,
    /// The instance the task is started on.
    pub instance: Arn,
    /// The task definition.
    pub task_definition: String,
    /// The `startedBy` tag.
    pub started_by: String,
    /// When the start was issued.
    pub since: Timestamp,
    /// The leader that issued it.
    pub leader: String,
    /// The stored layout of the daemon that wrote it
    /// ([`blox_state::store::LAYOUT_VERSION`]; records written before the
    /// field existed are layout 1).
    #[serde(default = "layout_one")]
    pub layout: u32,
}

fn layout_one() -> u32 {
    1
}

/// An outstanding intent.
#[derive(Debug, Clone)]
pub(crate) struct Intent {
    pub(crate) record: IntentRecord,
    /// The task ECS created for it, once known.
    pub(crate) task: Option<Arn>,
    /// When it was last checked against `ListTasks`.
    pub(crate) checked_at: Option<Timestamp>,
}

/// Why an intent operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IntentError {
    /// The leader key changed: this process is deposed.
    #[error("deposed: the leader key changed")]
    Fenced,
    /// The store failed.
    #[error("intent store error")]
    Store(#[from] StoreError),
}

/// The intents of one scheduler, mirrored in memory.
#[derive(Debug, Default)]
pub(crate) struct IntentBook {
    prefix: String,
    intents: BTreeMap<String, Intent>,
}

impl IntentBook {
    pub(crate) fn new(scheduler: &str) -> Self {
        IntentBook {
            prefix: intent_prefix(scheduler),
            intents: BTreeMap::new(),
        }
    }

    /// The key of the intent for `started_by` on `instance`.
    pub(crate) fn key(&self, instance: &Arn, started_by: &str) -> String {
        format!("{}{}/{}", self.prefix, started_by, instance)
    }

    pub(crate) fn len(&self) -> usize {
        self.intents.len()
    }

    /// Whether a start of `started_by` on `instance` is outstanding.
    pub(crate) fn is_pending(&self, instance: &Arn, started_by: &str) -> bool {
        self.intents.contains_key(&self.key(instance, started_by))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Intent)> {
        self.intents.iter()
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Intent> {
        self.intents.get_mut(key)
    }

    /// The outstanding starts, for the snapshot.
    pub(crate) fn pending_starts(&self) -> Vec<PendingStart> {
        self.intents
            .values()
            .map(|i| PendingStart {
                instance: i.record.instance.clone(),
                task_definition: i.record.task_definition.clone(),
                started_by: i.record.started_by.clone(),
                since: i.record.since,
            })
            .collect()
    }

    /// The layout versions, other than this build's, of loaded intents.
    pub(crate) fn foreign_layouts(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .intents
            .values()
            .map(|i| i.record.layout)
            .filter(|l| *l != blox_state::store::LAYOUT_VERSION)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Loads every intent of the scheduler from the store (a takeover).
    pub(crate) async fn load(&mut self, store: &dyn StateStore) -> Result<(), StoreError> {
        let listing = store.kv_list(&self.prefix).await?;
        self.intents.clear();
        for entry in listing.items {
            match serde_json::from_slice::<IntentRecord>(&entry.value) {
                Ok(record) => {
                    self.intents.insert(
                        entry.key,
                        Intent {
                            record,
                            task: None,
                            checked_at: None,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(key = %entry.key, error = %e, "ignoring an unreadable intent");
                }
            }
        }
        Ok(())
    }

    /// Writes intents in one transaction fenced by `term`; returns the revision.
    pub(crate) async fn record(
        &mut self,
        store: &dyn StateStore,
        term: &LeaderTerm,
        records: Vec<IntentRecord>,
    ) -> Result<Revision, IntentError> {
        let mut ops = Vec::with_capacity(records.len());
        for r in &records {
            let value = serde_json::to_vec(r).map_err(|e| StoreError::Invalid(e.to_string()))?;
            ops.push(KvOp::Put {
                key: self.key(&r.instance, &r.started_by),
                value: Bytes::from(value),
            });
        }
        let outcome = store
            .kv_txn(KvTxn {
                checks: vec![term.check()],
                ops,
            })
            .await?;
        let KvTxnOutcome::Applied(revision) = outcome else {
            return Err(IntentError::Fenced);
        };
        for record in records {
            let key = self.key(&record.instance, &record.started_by);
            self.intents.insert(
                key,
                Intent {
                    record,
                    task: None,
                    checked_at: None,
                },
            );
        }
        Ok(revision)
    }

    /// Deletes intents (resolved or failed) in fenced transactions that fit
    /// the store's limits.
    pub(crate) async fn remove(
        &mut self,
        store: &dyn StateStore,
        term: &LeaderTerm,
        keys: Vec<String>,
    ) -> Result<(), IntentError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ops = keys
            .iter()
            .map(|k| KvOp::Delete { key: k.clone() })
            .collect();
        // However many: each part is fenced by the leader key on its own
        // (deleting a resolved intent needs no atomicity with the others).
        let outcome = store
            .kv_txn_chunked(KvTxn {
                checks: vec![term.check()],
                ops,
            })
            .await?;
        if outcome == KvTxnOutcome::Conflict {
            return Err(IntentError::Fenced);
        }
        for k in keys {
            self.intents.remove(&k);
        }
        Ok(())
    }

    /// Forgets every intent held in memory (leadership lost).
    pub(crate) fn clear(&mut self) {
        self.intents.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use blox_state::store::memory::MemoryStore;

    use super::*;
    use crate::election::{LeaderElection, LocalElection};

    fn record(n: usize) -> IntentRecord {
        IntentRecord {
            cluster: Arn::parse("arn:aws:ecs:us-east-1:000000000000:cluster/c").unwrap(),
            instance: Arn::parse(&format!(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i{n}"
            ))
            .unwrap(),
            task_definition: "web:1".into(),
            started_by: "me".into(),
            since: Timestamp::from_millis(0),
            leader: "a".into(),
            layout: blox_state::store::LAYOUT_VERSION,
        }
    }

    /// A memory store and the term of its leader "a".
    async fn leading() -> (Arc<dyn StateStore>, LeaderTerm) {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let e = LocalElection::start(Arc::clone(&store), "s", "a")
            .await
            .unwrap();
        let term = e.term().borrow().clone().unwrap();
        (store, term)
    }

    #[tokio::test]
    async fn intents_are_written_and_removed_under_the_leader_key() {
        let (store, term) = leading().await;
        let mut book = IntentBook::new("sched");
        book.record(store.as_ref(), &term, vec![record(1), record(2)])
            .await
            .unwrap();
        assert!(book.is_pending(&record(1).instance, "me"));
        assert!(!book.is_pending(&record(1).instance, "other"));

        let mut reloaded = IntentBook::new("sched");
        reloaded.load(store.as_ref()).await.unwrap();
        assert_eq!(reloaded.pending_starts(), book.pending_starts());

        let key = book.key(&record(1).instance, "me");
        book.remove(store.as_ref(), &term, vec![key]).await.unwrap();
        assert_eq!(
            store
                .kv_list(&intent_prefix("sched"))
                .await
                .unwrap()
                .items
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn hundreds_of_resolved_intents_are_removed_within_the_store_limits() {
        // 200 instances once stalled for good: 129+ deletes in one
        // transaction, which etcd (and now every store) refuses.
        let (store, term) = leading().await;
        let mut book = IntentBook::new("sched");
        for chunk in (0..300).collect::<Vec<_>>().chunks(10) {
            book.record(
                store.as_ref(),
                &term,
                chunk.iter().map(|n| record(*n)).collect(),
            )
            .await
            .unwrap();
        }
        let keys: Vec<String> = book.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys.len(), 300);
        book.remove(store.as_ref(), &term, keys).await.unwrap();
        assert_eq!(book.len(), 0);
        let left = store.kv_list(&intent_prefix("sched")).await.unwrap();
        assert!(left.items.is_empty());
    }

    #[tokio::test]
    async fn a_stale_term_writes_nothing() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let old = LocalElection::start(Arc::clone(&store), "s", "a")
            .await
            .unwrap();
        let stale = old.term().borrow().clone().unwrap();
        let _new = LocalElection::start(Arc::clone(&store), "s", "b")
            .await
            .unwrap();
        let mut book = IntentBook::new("sched");
        let err = book.record(store.as_ref(), &stale, vec![record(1)]).await;
        assert!(matches!(err, Err(IntentError::Fenced)));
        assert_eq!(book.len(), 0);
        assert!(
            store
                .kv_list(&intent_prefix("sched"))
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
}
