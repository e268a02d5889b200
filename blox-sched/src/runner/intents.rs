//! Intents: a record, written to the store before each StartTask, that a
//! task is on its way to an instance, so a view that lags behind ECS never
//! causes a second start. Each start has its own intent (its own key), so a
//! scheduler may start several copies on one instance; the intent records
//! the task ECS created once StartTask's reply names it. Written and deleted
//! in transactions fenced by the leader key.
//!
//! Stored layout 2: `intents/{scheduler}/{id}`, where `id` is unique per
//! start (the term's revision and a counter). Layout 1 keyed intents by
//! `intents/{scheduler}/{startedBy}/{instance}` (one per pair); the layout
//! migration converts them.

use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// When the intent was written (the runner's clock, read after the write).
    pub since: Timestamp,
    /// The leader that issued it.
    pub leader: String,
    /// The stored layout of the daemon that wrote it
    /// ([`blox_state::store::LAYOUT_VERSION`]; records written before the
    /// field existed are layout 1).
    #[serde(default = "layout_one")]
    pub layout: u32,
    /// The task ECS created for this start, once StartTask's reply (or
    /// `ListTasks`) named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Arn>,
    /// The tasks of `started_by` on the instance that the view showed when
    /// the intent was written: none of them is this start's task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<Arn>,
}

fn layout_one() -> u32 {
    1
}

/// An outstanding intent.
#[derive(Debug, Clone)]
pub(crate) struct Intent {
    pub(crate) record: IntentRecord,
    /// When it was last checked against `ListTasks`.
    pub(crate) checked_at: Option<Timestamp>,
}

impl Intent {
    /// Whether `task` (of this intent's instance and `startedBy`) may be this
    /// start's task: the known one, or, while none is known, any task the
    /// view did not show when the intent was written.
    pub(crate) fn may_be(&self, task: &Arn) -> bool {
        match &self.record.task {
            Some(known) => known == task,
            None => !self.record.before.contains(task),
        }
    }
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

/// A start about to be recorded (the intent's record without its stamp).
#[derive(Debug, Clone)]
pub(crate) struct NewIntent {
    pub(crate) cluster: Arn,
    pub(crate) instance: Arn,
    pub(crate) task_definition: String,
    pub(crate) started_by: String,
    pub(crate) before: Vec<Arn>,
}

/// The intents of one scheduler, mirrored in memory, by key.
#[derive(Debug, Default)]
pub(crate) struct IntentBook {
    prefix: String,
    intents: BTreeMap<String, Intent>,
    /// Intents written by this book (part of each new id).
    written: u64,
}

impl IntentBook {
    pub(crate) fn new(scheduler: &str) -> Self {
        IntentBook {
            prefix: intent_prefix(scheduler),
            intents: BTreeMap::new(),
            written: 0,
        }
    }

    /// A new, unique key: the term's revision and a counter, zero-padded
    /// so keys sort in the order they were written.
    fn next_key(&mut self, term: &LeaderTerm) -> String {
        self.written += 1;
        format!(
            "{}{:x}-{:020}-{:010}",
            self.prefix, term.revision.epoch, term.revision.seq, self.written
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.intents.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Intent)> {
        self.intents.iter()
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Intent> {
        self.intents.get_mut(key)
    }

    /// The tasks already attributed to an intent.
    pub(crate) fn known_tasks(&self) -> HashSet<Arn> {
        self.intents
            .values()
            .filter_map(|i| i.record.task.clone())
            .collect()
    }

    /// The outstanding starts, for the snapshot (one per intent).
    pub(crate) fn pending_starts(&self) -> Vec<PendingStart> {
        self.intents
            .values()
            .map(|i| PendingStart {
                instance: i.record.instance.clone(),
                task_definition: i.record.task_definition.clone(),
                started_by: i.record.started_by.clone(),
                since: i.record.since,
                task: i.record.task.clone(),
            })
            .collect()
    }

    /// The layout versions, other than `own`, of loaded intents.
    pub(crate) fn foreign_layouts(&self, own: u32) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .intents
            .values()
            .map(|i| i.record.layout)
            .filter(|l| *l != own)
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

    /// Writes one intent per start in one transaction fenced by `term`,
    /// stamped `since` (read just before the write, never at cycle start:
    /// a successor times the intent out from it, and this process's own
    /// attempts end a bound after it); returns their keys, in the order of
    /// `starts`, and the revision.
    pub(crate) async fn record(
        &mut self,
        store: &dyn StateStore,
        term: &LeaderTerm,
        starts: Vec<NewIntent>,
        since: Timestamp,
    ) -> Result<(Vec<String>, Revision), IntentError> {
        let mut ops = Vec::with_capacity(starts.len());
        let mut records = Vec::with_capacity(starts.len());
        for s in starts {
            let record = IntentRecord {
                cluster: s.cluster,
                instance: s.instance,
                task_definition: s.task_definition,
                started_by: s.started_by,
                since,
                leader: term.holder.clone(),
                layout: store.layout_version(),
                task: None,
                before: s.before,
            };
            let key = self.next_key(term);
            ops.push(put(&key, &record)?);
            records.push((key, record));
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
        let mut keys = Vec::with_capacity(records.len());
        for (key, record) in records {
            keys.push(key.clone());
            self.intents.insert(
                key,
                Intent {
                    record,
                    checked_at: None,
                },
            );
        }
        Ok((keys, revision))
    }

    /// Records the tasks ECS created for intents (`key` → task), in the
    /// store too (fenced), so a successor knows them.
    pub(crate) async fn attribute(
        &mut self,
        store: &dyn StateStore,
        term: &LeaderTerm,
        tasks: HashMap<String, Arn>,
    ) -> Result<(), IntentError> {
        let mut ops = Vec::with_capacity(tasks.len());
        for (key, task) in tasks {
            let Some(intent) = self.intents.get_mut(&key) else {
                continue;
            };
            intent.record.task = Some(task);
            ops.push(put(&key, &intent.record)?);
        }
        if ops.is_empty() {
            return Ok(());
        }
        let outcome = store
            .kv_txn_chunked(KvTxn {
                checks: vec![term.check()],
                ops,
            })
            .await?;
        if outcome == KvTxnOutcome::Conflict {
            return Err(IntentError::Fenced);
        }
        Ok(())
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

fn put(key: &str, record: &IntentRecord) -> Result<KvOp, StoreError> {
    let value = serde_json::to_vec(record).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(KvOp::Put {
        key: key.to_owned(),
        value: Bytes::from(value),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use blox_state::store::memory::MemoryStore;

    use super::*;
    use crate::election::{LeaderElection, LocalElection};

    fn start(n: usize) -> NewIntent {
        NewIntent {
            cluster: Arn::parse("arn:aws:ecs:us-east-1:000000000000:cluster/c").unwrap(),
            instance: Arn::parse(&format!(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i{n}"
            ))
            .unwrap(),
            task_definition: "web:1".into(),
            started_by: "me".into(),
            before: Vec::new(),
        }
    }

    fn t0() -> Timestamp {
        Timestamp::from_millis(0)
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
    async fn each_start_has_its_own_intent_written_and_removed_under_the_leader_key() {
        let (store, term) = leading().await;
        let mut book = IntentBook::new("sched");
        // Two copies on one instance, one on another: three intents.
        let (keys, _) = book
            .record(
                store.as_ref(),
                &term,
                vec![start(1), start(1), start(2)],
                t0(),
            )
            .await
            .unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(book.len(), 3);

        let mut reloaded = IntentBook::new("sched");
        reloaded.load(store.as_ref()).await.unwrap();
        assert_eq!(reloaded.pending_starts(), book.pending_starts());
        assert_eq!(
            reloaded.foreign_layouts(blox_state::store::LAYOUT_VERSION),
            Vec::<u32>::new()
        );

        book.remove(store.as_ref(), &term, vec![keys[0].clone()])
            .await
            .unwrap();
        assert_eq!(
            store
                .kv_list(&intent_prefix("sched"))
                .await
                .unwrap()
                .items
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn a_known_task_is_stored_with_its_intent() {
        let (store, term) = leading().await;
        let mut book = IntentBook::new("sched");
        let (keys, _) = book
            .record(store.as_ref(), &term, vec![start(1)], t0())
            .await
            .unwrap();
        let task = Arn::parse("arn:aws:ecs:us-east-1:000000000000:task/c/t1").unwrap();
        book.attribute(
            store.as_ref(),
            &term,
            HashMap::from([(keys[0].clone(), task.clone())]),
        )
        .await
        .unwrap();
        let mut reloaded = IntentBook::new("sched");
        reloaded.load(store.as_ref()).await.unwrap();
        let (_, intent) = reloaded.iter().next().unwrap();
        assert_eq!(intent.record.task.as_ref(), Some(&task));
        assert!(intent.may_be(&task));
        assert!(
            !intent.may_be(&Arn::parse("arn:aws:ecs:us-east-1:000000000000:task/c/t2").unwrap())
        );
    }

    #[test]
    fn a_layout_one_record_still_reads() {
        let v1 = r#"{"cluster":"arn:aws:ecs:us-east-1:000000000000:cluster/c",
            "instance":"arn:aws:ecs:us-east-1:000000000000:container-instance/c/i1",
            "task_definition":"web:1","started_by":"me","since":0,"leader":"a"}"#;
        let r: IntentRecord = serde_json::from_str(v1).unwrap();
        assert_eq!(r.layout, 1);
        assert_eq!(r.task, None);
        assert!(r.before.is_empty());
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
                chunk.iter().map(|n| start(*n)).collect(),
                t0(),
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
        let err = book
            .record(store.as_ref(), &stale, vec![start(1)], t0())
            .await;
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
