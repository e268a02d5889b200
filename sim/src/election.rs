//! Leadership as the simulation decides it. The driver plays the lease
//! service: it grants the lease to one replica ([`SimElection::campaign`]
//! writes the leader key, as etcd's election does), and takes it away at a
//! moment of its choosing; the replica that lost it notices only later
//! ([`SimElection::notice_loss`]), as a real one notices a lapsed lease
//! only when its keep-alive fails. Until then its writes are fenced by the
//! leader key, and the fencing invariant watches its ECS calls.

use std::sync::Arc;

use async_trait::async_trait;
use blox_sched::election::{LeaderElection, LeaderTerm, Signals, leader_key};
use blox_state::store::{KvExpect, KvOp, KvTxn, KvTxnOutcome, StateStore, StoreError};
use bytes::Bytes;
use tokio::sync::watch;

/// The election name the daemon scheduler's runner uses.
pub const ELECTION: &str = "scheduler";

/// One replica's view of the election (see the module docs).
pub struct SimElection {
    store: Arc<dyn StateStore>,
    holder: String,
    signals: Signals,
}

impl SimElection {
    /// Not leading yet.
    pub fn new(store: Arc<dyn StateStore>, holder: String) -> Self {
        SimElection {
            store,
            holder,
            signals: Signals::new(),
        }
    }

    /// Takes the lease: writes the leader key (whoever held it) and leads.
    pub async fn campaign(&self) -> Result<(), StoreError> {
        let key = leader_key(ELECTION);
        let outcome = self
            .store
            .kv_txn(KvTxn {
                checks: Vec::new(),
                ops: vec![KvOp::Put {
                    key: key.clone(),
                    value: Bytes::from(self.holder.clone()),
                }],
            })
            .await?;
        if let KvTxnOutcome::Applied(revision) = outcome {
            self.signals.elect(LeaderTerm {
                key,
                revision,
                holder: self.holder.clone(),
                lease_ttl: None,
            });
        }
        Ok(())
    }

    /// The replica notices that it lost the lease.
    pub fn notice_loss(&self) {
        self.signals.depose();
    }
}

#[async_trait]
impl LeaderElection for SimElection {
    fn is_leader(&self) -> watch::Receiver<bool> {
        self.signals.is_leader()
    }

    fn term(&self) -> watch::Receiver<Option<LeaderTerm>> {
        self.signals.term()
    }

    async fn resign(&self) {
        let term = self.signals.current();
        self.signals.resign();
        if let Some(term) = term {
            let _ = self
                .store
                .kv_delete(&term.key, Some(KvExpect::Revision(term.revision)))
                .await;
        }
    }
}
