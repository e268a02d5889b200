//! Lease-backed leader election on etcd.
//!
//! A campaign grants a lease of `ttl`, then creates the leader key bound to
//! it in a transaction (`create_revision == 0`). The winner publishes a
//! [`LeaderTerm`] whose revision is the key's `mod_revision`, keeps the lease
//! alive every `ttl / 3`, and watches the key. Leadership is withdrawn **at
//! once** when etcd reports the lease expired, or when the key is deleted or
//! rewritten. A transient error of the keep-alive or watch stream is retried
//! (the stream reopened; the watch only if the key is still the term's)
//! while the lease surely lives: leadership is withdrawn when no renewal
//! has been sent for a TTL less one keep-alive period. The others watch the
//! key from the revision of the transaction that saw it (the key's own
//! revision may have been compacted) and try again when it is deleted
//! (resigned, or its lease expired), on one lease meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use blox_state::store::etcd::EtcdStore;
use etcd_client::{
    Client, Compare, CompareOp, EventType, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp, WatchOptions, WatchStream,
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
    campaigns: Arc<AtomicU64>,
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
    /// This process may never lead again: the stored layout changed
    /// under it.
    Refused(String),
}

/// The leader key's value: who leads, and the stored layout it reads
/// (issue 13: leadership carries the leader's layout version).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderValue {
    /// The leader's holder id.
    pub holder: String,
    /// The stored layout version the leader reads.
    pub layout: u32,
}

struct Campaign {
    campaigns: Arc<AtomicU64>,
    client: Client,
    key: String,
    etcd_key: String,
    holder: String,
    ttl: Duration,
    store: EtcdStore,
    signals: Arc<Signals>,
    /// The layout record's key and the mod revision this process's store
    /// checked: a campaign wins only while it is unchanged.
    layout_guard: Option<(String, i64)>,
}

impl EtcdElection {
    /// Starts campaigning with the store's etcd client, for a key in the
    /// store's key-value namespace.
    pub fn start(store: &EtcdStore, options: EtcdElectionOptions) -> EtcdElection {
        let key = leader_key(&options.name);
        let signals = Arc::new(Signals::new());
        let campaigns = Arc::new(AtomicU64::new(0));
        let (resign_tx, resign_rx) = watch::channel(false);
        let campaign = Campaign {
            campaigns: Arc::clone(&campaigns),
            client: store.client().clone(),
            etcd_key: store.kv_key(&key),
            key,
            holder: options.holder,
            ttl: options.ttl.max(Duration::from_secs(1)),
            store: store.clone(),
            signals: Arc::clone(&signals),
            layout_guard: store.layout_guard(),
        };
        let retry = options.retry;
        let task = tokio::spawn(campaign.run(resign_rx, retry));
        EtcdElection {
            signals,
            campaigns,
            resign: resign_tx,
            task: Mutex::new(Some(task)),
        }
    }
}

impl EtcdElection {
    /// How many leases this election has campaigned with: one per term, and
    /// one per attempt that ended in an error (a churn metric; a healthy
    /// follower keeps one lease while it waits).
    pub fn campaigns(&self) -> u64 {
        self.campaigns.load(Ordering::Relaxed)
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
/// The next message of a watch that is open (the caller checks).
async fn next_message(
    watch: &mut Option<WatchStream>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match watch {
        Some(w) => w.message().await,
        None => std::future::pending().await,
    }
}

async fn resigned(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|r| *r).await;
}

fn lost(what: &str, e: impl std::fmt::Display) -> Ended {
    Ended::Lost(format!("{what}: {e}"))
}

/// The lease's keep-alive stream, reopened after a transient error.
struct KeepAlive {
    client: Client,
    lease: i64,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// How long one renewal may take.
    period: Duration,
}

impl KeepAlive {
    /// Renews the lease once; returns when the renewal was sent (the lease
    /// then lives at least a TTL from that instant).
    async fn renew(&mut self) -> Result<tokio::time::Instant, String> {
        let sent = tokio::time::Instant::now();
        if self.stream.is_none() {
            let opened =
                tokio::time::timeout(self.period, self.client.lease_keep_alive(self.lease))
                    .await
                    .map_err(|_| "opening keep-alives timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
            self.stream = Some(opened);
        }
        let Some((keeper, acks)) = self.stream.as_mut() else {
            return Err("no keep-alive stream".to_owned());
        };
        let answer = tokio::time::timeout(self.period, async {
            keeper.keep_alive().await.map_err(|e| e.to_string())?;
            acks.message().await.map_err(|e| e.to_string())
        })
        .await;
        let result = match answer {
            Err(_) => Err("keep-alive timed out".to_owned()),
            Ok(Err(e)) => Err(e),
            Ok(Ok(None)) => Err("keep-alive stream closed".to_owned()),
            Ok(Ok(Some(r))) if r.ttl() <= 0 => return Err(LEASE_EXPIRED.to_owned()),
            Ok(Ok(Some(_))) => Ok(sent),
        };
        if result.is_err() {
            // Reopened on the next renewal.
            self.stream = None;
        }
        result
    }
}

/// What etcd says of a lease that is gone (no retry can bring it back).
const LEASE_EXPIRED: &str = "lease expired";

/// A watch of the leader key, from the revision of a read that saw it.
async fn watch_from(
    client: &mut Client,
    key: &str,
    seen_at: i64,
) -> Result<WatchStream, etcd_client::Error> {
    let opts = WatchOptions::new().with_start_revision(seen_at + 1);
    client.watch(key, Some(opts)).await
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
                Ended::Refused(why) => {
                    tracing::error!(key = %self.key, %why, "not campaigning any more");
                    return;
                }
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
        self.campaigns.fetch_add(1, Ordering::Relaxed);
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
        let period = self.ttl / 3;
        // The lease lives at least a TTL from its grant.
        let mut valid_until = tokio::time::Instant::now() + self.ttl;
        let mut keep = KeepAlive {
            client: client.clone(),
            lease,
            stream: None,
            period,
        };
        match keep.renew().await {
            Ok(sent) => valid_until = valid_until.max(sent + self.ttl),
            Err(e) => return lost("starting keep-alives", e),
        }
        let value = match serde_json::to_string(&LeaderValue {
            holder: self.holder.clone(),
            layout: self.store.layout().version,
        }) {
            Ok(v) => v,
            Err(e) => return lost("encoding the leader key", e),
        };
        // The key is created only while the stored layout is the one this
        // process checked: a daemon never takes over a prefix migrated
        // under it.
        let mut compares = vec![Compare::create_revision(
            self.etcd_key.clone(),
            CompareOp::Equal,
            0,
        )];
        let mut reads = vec![TxnOp::get(self.etcd_key.clone(), None)];
        if let Some((key, revision)) = &self.layout_guard {
            compares.push(Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                *revision,
            ));
            reads.push(TxnOp::get(key.clone(), None));
        }
        // Campaign until the key is ours.
        let revision = loop {
            let txn = Txn::new()
                .when(compares.clone())
                .and_then([TxnOp::put(
                    self.etcd_key.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else(reads.clone());
            let resp = match client.txn(txn).await {
                Ok(r) => r,
                Err(e) => return lost("creating the leader key", e),
            };
            let seen_at = resp.header().map(|h| h.revision()).unwrap_or(0);
            if resp.succeeded() {
                break seen_at;
            }
            if let Some(why) = self.layout_moved(&resp) {
                return Ended::Refused(why);
            }
            // Wait for the key to go, keeping our lease alive meanwhile.
            // The watch starts after the transaction that saw the key (its
            // header revision), not after the key's own revision: that one
            // may be compacted away, and a watch from it is refused.
            let mut watch = match watch_from(client, &self.etcd_key, seen_at).await {
                Ok(w) => w,
                Err(e) => return lost("watching the leader key", e),
            };
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = resigned(resign) => return Ended::Resigned,
                    _ = tick.tick() => match keep.renew().await {
                        Ok(sent) => valid_until = sent + self.ttl,
                        Err(e) => return Ended::Lost(e),
                    },
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
        let mut watch = match watch_from(client, &self.etcd_key, revision).await {
            Ok(w) => Some(w),
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
                    match keep.renew().await {
                        Ok(sent) => valid_until = sent + self.ttl,
                        Err(e) if e == LEASE_EXPIRED => return Ended::Lost(e),
                        Err(e) => {
                            // A transient error: retried while the lease
                            // surely lives, with time for one more attempt.
                            if tokio::time::Instant::now() + period >= valid_until {
                                return Ended::Lost(format!("{e} (keep-alives failing for the lease's TTL)"));
                            }
                            tracing::warn!(error = %e, "keep-alive failed; retrying within the lease's TTL");
                        }
                    }
                    if watch.is_none() {
                        match self.rewatch(client, revision).await {
                            Ok(w) => watch = Some(w),
                            Err(Ended::Lost(e)) if tokio::time::Instant::now() + period < valid_until => {
                                tracing::warn!(error = %e, "re-watching the leader key failed; retrying");
                            }
                            Err(ended) => return ended,
                        }
                    }
                }
                msg = next_message(&mut watch), if watch.is_some() => match msg {
                    Ok(Some(r)) if r.canceled() => {
                        tracing::warn!(reason = %r.cancel_reason(), "leader key watch canceled; re-watching");
                        watch = None;
                    }
                    Ok(Some(r)) => {
                        if !r.events().is_empty() {
                            return Ended::Lost("the leader key changed".to_owned());
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("leader key watch closed; re-watching");
                        watch = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "leader key watch failed; re-watching");
                        watch = None;
                    }
                },
            }
        }
    }

    /// Why the layout record a failed campaign read (its second read) is
    /// not the one this process checked, if it is not.
    fn layout_moved(&self, resp: &etcd_client::TxnResponse) -> Option<String> {
        let (_, guard) = self.layout_guard.as_ref()?;
        let now = match resp.op_responses().get(1) {
            Some(etcd_client::TxnOpResponse::Get(g)) => {
                g.kvs().first().map_or(0, |kv| kv.mod_revision())
            }
            _ => return None,
        };
        (now != *guard).then(|| {
            format!(
                "the stored layout record changed while this process ran (revision {guard}, now {now}): \
                 a daemon of layout {} never leads a migrated prefix",
                self.store.layout().version
            )
        })
    }

    /// Watches the leader key again after its watch broke: the term goes
    /// on only if the key is still the one written at `revision`.
    async fn rewatch(&self, client: &mut Client, revision: i64) -> Result<WatchStream, Ended> {
        let got = client
            .get(self.etcd_key.clone(), None)
            .await
            .map_err(|e| lost("reading the leader key", e))?;
        let still = got.kvs().first().map(|kv| kv.mod_revision()) == Some(revision);
        if !still {
            return Err(Ended::Lost("the leader key changed".to_owned()));
        }
        let seen_at = got.header().map(|h| h.revision()).unwrap_or(revision);
        watch_from(client, &self.etcd_key, seen_at)
            .await
            .map_err(|e| lost("watching the leader key", e))
    }
}
