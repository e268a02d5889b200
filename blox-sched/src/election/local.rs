//! The single-process election: always leader.

use std::sync::Arc;

use async_trait::async_trait;
use blox_state::store::{KvExpect, KvOp, KvTxn, KvTxnOutcome, StateStore};
use bytes::Bytes;
use tokio::sync::watch;

use super::{ElectionError, LeaderElection, LeaderTerm, Signals, leader_key};

/// Leadership for a process that runs alone (the memory store): it leads as
/// soon as it has written its leader key through `kv_txn`, until it resigns.
/// Intents are fenced on that key exactly as with etcd, so a second process
/// that overwrites the key deposes this one.
pub struct LocalElection {
    store: Arc<dyn StateStore>,
    signals: Signals,
}

impl std::fmt::Debug for LocalElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalElection")
            .field("term", &self.signals.current())
            .finish()
    }
}

impl LocalElection {
    /// Writes the leader key of election `name` (value: `holder`) and leads.
    pub async fn start(
        store: Arc<dyn StateStore>,
        name: &str,
        holder: &str,
    ) -> Result<LocalElection, ElectionError> {
        let key = leader_key(name);
        let outcome = store
            .kv_txn(KvTxn {
                checks: Vec::new(),
                ops: vec![KvOp::Put {
                    key: key.clone(),
                    value: Bytes::from(holder.to_owned()),
                }],
            })
            .await
            .map_err(ElectionError::Store)?;
        let KvTxnOutcome::Applied(revision) = outcome else {
            return Err(ElectionError::Conflict { key });
        };
        let signals = Signals::new();
        signals.elect(LeaderTerm {
            key,
            revision,
            holder: holder.to_owned(),
            lease_ttl: None,
        });
        Ok(LocalElection { store, signals })
    }
}

#[async_trait]
impl LeaderElection for LocalElection {
    fn is_leader(&self) -> watch::Receiver<bool> {
        self.signals.is_leader()
    }

    fn term(&self) -> watch::Receiver<Option<LeaderTerm>> {
        self.signals.term()
    }

    async fn resign(&self) {
        let Some(term) = self.signals.current() else {
            return;
        };
        self.signals.resign();
        let deleted = self
            .store
            .kv_delete(&term.key, Some(KvExpect::Revision(term.revision)))
            .await;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, key = %term.key, "could not delete the leader key on resign");
        }
    }
}

#[cfg(test)]
mod tests {
    use blox_state::store::memory::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn a_local_election_leads_at_once_with_a_key_in_the_store() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let e = LocalElection::start(Arc::clone(&store), "sched", "me")
            .await
            .unwrap();
        assert!(*e.is_leader().borrow());
        let term = e.term().borrow().clone().unwrap();
        let stored = store.kv_get(&term.key).await.unwrap().unwrap();
        assert_eq!(stored.revision, term.revision);
        assert_eq!(stored.value, Bytes::from_static(b"me"));
    }

    #[tokio::test]
    async fn resigning_deletes_the_key_and_flips_leadership_off() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let e = LocalElection::start(Arc::clone(&store), "sched", "me")
            .await
            .unwrap();
        let key = e.term().borrow().clone().unwrap().key;
        e.resign().await;
        assert!(!*e.is_leader().borrow());
        assert!(e.term().borrow().is_none());
        assert!(store.kv_get(&key).await.unwrap().is_none());
    }
}
