//! Lease-backed leader election on etcd.
//!
//! A campaign grants a lease of `ttl`, then creates the leader key bound to
//! it in a transaction (`create_revision == 0`). The winner publishes a
//! [`LeaderTerm`] whose revision is the key's `mod_revision`, keeps the lease
//! alive every `ttl / 3`, and watches the key. Leadership is withdrawn **at
//! once** when a keep-alive fails or times out, when etcd reports the lease
//! expired, or when the key is deleted or rewritten. The others watch the key
//! and try again when it is deleted (resigned, or its lease expired).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use blox_state::store::etcd::EtcdStore;
use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{LeaderElection, LeaderTerm, Signals, default_holder_id, leader_key};

/// Settings of an [`EtcdElection`].
#[derive(Debug, Clone)]
pub struct EtcdElectionOptions {
    /// The election's name (the leader key is `leader/{name}` in the store's
    /// key-value namespace).
    pub name: String,
    /// This process's id, stored as the key's value.
    pub holder: String,
    /// The lease's time to live (whole seconds, at least one): how long a
    /// crashed leader blocks a successor. Keep-alives are sent every third of it.
    pub ttl: Duration,
    /// Pause before campaigning again after an etcd error.
    pub retry: Duration,
}

impl Default for EtcdElectionOptions {
    fn default() -> Self {
        EtcdElectionOptions {
            name: "scheduler".to_owned(),
            holder: default_holder_id(),
            ttl: Duration::from_secs(10),
            retry: Duration::from_secs(1),
        }
    }
}

/// A lease-backed election on etcd (see the module docs). Campaigns in a
/// background task from [`EtcdElection::start`] until [`resign`](LeaderElection::resign)
/// or drop. Dropping it without resigning stops the keep-alives, so the key
/// lingers until its lease expires, as after a crash.
pub struct EtcdElection {
    signals: Arc<Signals>,
    resign: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EtcdElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdElection")
            .field("term", &self.signals.current())
            .finish()
    }
}

impl Drop for EtcdElection {
    fn drop(&mut self) {
        if let Ok(mut t) = self.task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
        self.signals.depose();
    }
}

/// Why a term (or an attempt at one) ended.
enum Ended {
    Resigned,
    Lost(String),
}

struct Campaign {
    client: Client,
    key: String,
    etcd_key: String,
    holder: String,
    ttl: Duration,
    store: EtcdStore,
    signals: Arc<Signals>,
}

impl EtcdElection {
    /// Starts campaigning with the store's etcd client, for a key in the
    /// store's key-value namespace.
    pub fn start(store: &EtcdStore, options: EtcdElectionOptions) -> EtcdElection {
        let key = leader_key(&options.name);
        let signals = Arc::new(Signals::new());
        let (resign_tx, resign_rx) = watch::channel(false);
        let campaign = Campaign {
            client: store.client().clone(),
            etcd_key: store.kv_key(&key),
            key,
            holder: options.holder,
            ttl: options.ttl.max(Duration::from_secs(1)),
            store: store.clone(),
            signals: Arc::clone(&signals),
        };
        let retry = options.retry;
        let task = tokio::spawn(campaign.run(resign_rx, retry));
        EtcdElection {
            signals,
            resign: resign_tx,
            task: Mutex::new(Some(task)),
        }
    }
}

#[async_trait]
impl LeaderElection for EtcdElection {
    fn is_leader(&self) -> watch::Receiver<bool> {
        self.signals.is_leader()
    }

    fn term(&self) -> watch::Receiver<Option<LeaderTerm>> {
        self.signals.term()
    }

    async fn resign(&self) {
        self.signals.resign();
        self.resign.send_replace(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Resolves when resignation is requested (or the election is gone).
async fn resigned(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|r| *r).await;
}

fn lost(what: &str, e: impl std::fmt::Display) -> Ended {
    Ended::Lost(format!("{what}: {e}"))
}

impl Campaign {
    async fn run(self, mut resign: watch::Receiver<bool>, retry: Duration) {
        loop {
            if *resign.borrow() {
                return;
            }
            let ended = self.term(&mut resign).await;
            self.signals.depose();
            match ended {
                Ended::Resigned => return,
                Ended::Lost(why) => {
                    tracing::info!(key = %self.key, %why, "campaigning again");
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = resigned(&mut resign) => return,
                    }
                }
            }
        }
    }

    /// One lease: campaign with it, lead while it lasts, revoke it.
    async fn term(&self, resign: &mut watch::Receiver<bool>) -> Ended {
        let mut client = self.client.clone();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let lease = match client.lease_grant(ttl, None).await {
            Ok(l) => l.id(),
            Err(e) => return lost("granting a lease", e),
        };
        let ended = self.hold(&mut client, lease, resign).await;
        // Withdraw before the (possibly slow) revoke: stop acting at once.
        self.signals.depose();
        if let Err(e) = client.lease_revoke(lease).await {
            tracing::debug!(error = %e, "lease revoke failed (it expires on its own)");
        }
        ended
    }

    async fn hold(
        &self,
        client: &mut Client,
        lease: i64,
        resign: &mut watch::Receiver<bool>,
    ) -> Ended {
        let (mut keeper, mut acks) = match client.lease_keep_alive(lease).await {
            Ok(k) => k,
            Err(e) => return lost("starting keep-alives", e),
        };
        let period = self.ttl / 3;
        let mut keep_alive = async || -> Result<(), String> {
            let sent = tokio::time::timeout(period, async {
                keeper.keep_alive().await.map_err(|e| e.to_string())?;
                acks.message().await.map_err(|e| e.to_string())
            })
            .await;
            match sent {
                Err(_) => Err("keep-alive timed out".to_owned()),
                Ok(Err(e)) => Err(e),
                Ok(Ok(None)) => Err("keep-alive stream closed".to_owned()),
                Ok(Ok(Some(r))) if r.ttl() <= 0 => Err("lease expired".to_owned()),
                Ok(Ok(Some(_))) => Ok(()),
            }
        };
        // Campaign until the key is ours.
        let revision = loop {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.etcd_key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    self.etcd_key.clone(),
                    self.holder.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(self.etcd_key.clone(), None)]);
            let resp = match client.txn(txn).await {
                Ok(r) => r,
                Err(e) => return lost("creating the leader key", e),
            };
            if resp.succeeded() {
                break resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let held_at = resp
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision()),
                    _ => None,
                })
                .unwrap_or(0);
            // Wait for the key to go, keeping our lease alive meanwhile.
            let opts = WatchOptions::new().with_start_revision(held_at + 1);
            let mut watch = match client.watch(self.etcd_key.clone(), Some(opts)).await {
                Ok(w) => w,
                Err(e) => return lost("watching the leader key", e),
            };
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = resigned(resign) => return Ended::Resigned,
                    _ = tick.tick() => {
                        if let Err(e) = keep_alive().await {
                            return Ended::Lost(e);
                        }
                    }
                    msg = watch.message() => match msg {
                        Ok(Some(r)) if r.canceled() => return lost("watch", "canceled"),
                        Ok(Some(r)) => {
                            if r.events().iter().any(|e| e.event_type() == EventType::Delete) {
                                break;
                            }
                        }
                        Ok(None) => return lost("watch", "closed"),
                        Err(e) => return lost("watch", e),
                    },
                }
            }
        };
        // Leading: publish the term, then keep the lease and watch the key.
        let term = LeaderTerm {
            key: self.key.clone(),
            revision: self.store.revision_of(revision),
            holder: self.holder.clone(),
            lease_ttl: Some(self.ttl),
        };
        let opts = WatchOptions::new().with_start_revision(revision + 1);
        let mut watch = match client.watch(self.etcd_key.clone(), Some(opts)).await {
            Ok(w) => w,
            Err(e) => return lost("watching the leader key", e),
        };
        self.signals.elect(term);
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = resigned(resign) => {
                    self.signals.resign();
                    let txn = Txn::new()
                        .when([Compare::mod_revision(self.etcd_key.clone(), CompareOp::Equal, revision)])
                        .and_then([TxnOp::delete(self.etcd_key.clone(), None)]);
                    if let Err(e) = client.txn(txn).await {
                        tracing::warn!(error = %e, "could not delete the leader key on resign");
                    }
                    return Ended::Resigned;
                }
                _ = tick.tick() => {
                    if let Err(e) = keep_alive().await {
                        return Ended::Lost(e);
                    }
                }
                msg = watch.message() => match msg {
                    Ok(Some(r)) if r.canceled() => return lost("watch", "canceled"),
                    Ok(Some(r)) => {
                        if !r.events().is_empty() {
                            return Ended::Lost("the leader key changed".to_owned());
                        }
                    }
                    Ok(None) => return lost("watch", "closed"),
                    Err(e) => return lost("watch", e),
                },
            }
        }
    }
}
