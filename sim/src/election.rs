//! Leadership in the simulation.
//!
//! On the memory store the driver plays the lease service
//! ([`SimElection`]): it grants the lease to one replica
//! ([`SimElection::campaign`] writes the leader key, as etcd's election
//! does), and takes it away at a moment of its choosing; the replica that
//! lost it notices only later ([`SimElection::notice_loss`]), as a real one
//! notices a lapsed lease only when its keep-alive fails. Until then its
//! writes are fenced by the leader key, and the fencing invariant watches
//! its ECS calls.
//!
//! On etcd every replica runs blox's own lease-backed
//! [`EtcdElection`]; the driver only revokes the leader's lease
//! ([`revoke_leader_lease`]) and learns who holds the lease, and when one
//! lost it, from etcd itself ([`LeaseWatch`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use blox_sched::election::{
    EtcdElection, EtcdElectionOptions, LeaderElection, LeaderTerm, LeaderValue, Signals, leader_key,
};
use blox_state::store::etcd::EtcdStore;
use blox_state::store::{KvExpect, KvOp, KvTxn, KvTxnOutcome, StateStore, StoreError};
use bytes::Bytes;
use etcd_client::{EventType, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::world::World;

/// The lease's time to live on etcd (the daemon's default `--lease-ttl`).
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// A replica's election.
#[derive(Clone)]
pub enum Election {
    /// The driver's (memory store).
    Sim(Arc<SimElection>),
    /// blox's own, on etcd.
    Etcd(Arc<EtcdElection>),
}

impl Election {
    /// The election as the replica's components see it.
    pub fn leadership(&self) -> Arc<dyn LeaderElection> {
        match self {
            Election::Sim(e) => e.clone(),
            Election::Etcd(e) => e.clone(),
        }
    }

    /// Whether the replica believes it leads now.
    pub fn is_leading(&self) -> bool {
        *self.leadership().is_leader().borrow()
    }
}

/// The holder id of replica `id` (the leader key's value).
pub fn holder(id: usize) -> String {
    format!("replica-{id}")
}

/// The replica whose holder id the leader key's value names (the value
/// is a [`LeaderValue`]: the holder and the layout it reads).
fn replica_of(value: &[u8]) -> Option<usize> {
    let value: LeaderValue = serde_json::from_slice(value).ok()?;
    value.holder.strip_prefix("replica-")?.parse().ok()
}

/// Starts blox's etcd election for replica `id`.
pub fn etcd_election(store: &EtcdStore, id: usize) -> EtcdElection {
    EtcdElection::start(
        store,
        EtcdElectionOptions {
            name: ELECTION.to_owned(),
            holder: holder(id),
            ttl: LEASE_TTL,
            retry: Duration::from_secs(1),
        },
    )
}

/// Revokes the lease the leader key is bound to (the leader loses it now);
/// returns the replica that held it.
pub async fn revoke_leader_lease(store: &EtcdStore) -> Result<Option<usize>, String> {
    let mut client = store.client().clone();
    let key = store.kv_key(&leader_key(ELECTION));
    let got = client.get(key, None).await.map_err(|e| e.to_string())?;
    let Some(kv) = got.kvs().first() else {
        return Ok(None);
    };
    let (lease, who) = (kv.lease(), replica_of(kv.value()));
    if lease == 0 {
        return Ok(None);
    }
    client
        .lease_revoke(lease)
        .await
        .map_err(|e| e.to_string())?;
    Ok(who)
}

/// Follows the leader key on etcd and tells the world who holds the
/// lease: a replica holds it from the write of its key, and lost it at
/// the key's deletion (lease revoked or expired) or rewrite. This is the
/// ground truth the fencing invariant measures from (as seen by the
/// driver's own watch, so at most its delivery late).
pub struct LeaseWatch {
    task: JoinHandle<()>,
}

impl LeaseWatch {
    /// Follows the leader key of `store` (again after any error).
    pub fn start(store: &EtcdStore, world: Arc<World>) -> LeaseWatch {
        let client = store.client().clone();
        let key = store.kv_key(&leader_key(ELECTION));
        let task = tokio::spawn(async move {
            let mut holder: Option<usize> = None;
            loop {
                if let Err(e) = follow_key(client.clone(), &key, &world, &mut holder).await {
                    world.trace(format!("lease watch: {e}; again"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        LeaseWatch { task }
    }

    /// Stops following.
    pub fn stop(self) {
        self.task.abort();
    }
}

fn holds(world: &World, holder: &mut Option<usize>, now: Option<usize>) {
    if *holder != now
        && let Some(old) = holder.take()
    {
        world.set_lease_lost(old, true);
        world.trace(format!("replica {old}'s lease is gone (etcd)"));
    }
    if let Some(new) = now {
        if *holder != Some(new) {
            world.trace(format!("replica {new} holds the lease (etcd)"));
        }
        world.set_lease_lost(new, false);
    }
    *holder = now;
}

async fn follow_key(
    mut client: etcd_client::Client,
    key: &str,
    world: &World,
    holder: &mut Option<usize>,
) -> Result<(), String> {
    let got = client.get(key, None).await.map_err(|e| e.to_string())?;
    let now = got.kvs().first().and_then(|kv| replica_of(kv.value()));
    holds(world, holder, now);
    let seen = got.header().map(|h| h.revision()).unwrap_or(0);
    let opts = WatchOptions::new().with_start_revision(seen + 1);
    let mut watch = client
        .watch(key, Some(opts))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(msg) = watch.message().await.map_err(|e| e.to_string())? {
        if msg.canceled() {
            return Err("watch canceled".to_owned());
        }
        for event in msg.events() {
            let now = match event.event_type() {
                EventType::Put => event.kv().and_then(|kv| replica_of(kv.value())),
                EventType::Delete => None,
            };
            holds(world, holder, now);
        }
    }
    Err("watch closed".to_owned())
}

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
