//! Leader election: one process schedules.
//!
//! Several daemon processes may run against one store; a [`LeaderElection`]
//! picks the one that runs the schedulers and the reconciler. Leadership is
//! published on two watch channels: [`LeaderElection::is_leader`] (a plain
//! `bool`, for readiness, metrics and retention) and
//! [`LeaderElection::term`] (the current [`LeaderTerm`], for the runner and
//! the reconciler: they key their per-term work on the term itself, so a
//! loss of leadership and a new election seen at once still start a new
//! term).
//!
//! A term names the leader key **inside the store's key-value namespace** and
//! the revision at which this process wrote it. The runner guards every
//! intent it writes with `KvExpect::Revision(term.revision)` on that key
//! ([`LeaderTerm::check`]), so once the key is gone (lease expired, resigned)
//! or rewritten by a new leader, a deposed leader's transaction fails and it
//! never reaches ECS. That check is the fence; the watch channels only make
//! the loser stop sooner.
//!
//! Two implementations:
//! * [`LocalElection`]: a single process on any store (the memory store):
//!   always leader, the key still written through `kv_txn` so fencing works
//!   the same way.
//! * `EtcdElection` (feature `etcd`): lease-backed campaign on an
//!   [`EtcdStore`](blox_state::store::etcd::EtcdStore).

#[cfg(feature = "etcd")]
mod etcd;
mod local;

use async_trait::async_trait;
use blox_state::store::{KvExpect, Revision, StoreError};
use tokio::sync::watch;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdElection, EtcdElectionOptions, LeaderValue};
pub use local::LocalElection;

/// The key-value prefix under which leader keys live (`leader/{election name}`).
pub const LEADER_KEY_PREFIX: &str = "leader/";

/// The key-value key of the leader key of election `name`.
pub fn leader_key(name: &str) -> String {
    format!("{LEADER_KEY_PREFIX}{name}")
}

/// One term of leadership held by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderTerm {
    /// The leader key, in the store's key-value namespace.
    pub key: String,
    /// The revision at which this process wrote the key (its fencing token).
    pub revision: Revision,
    /// Who holds it (this process's holder id).
    pub holder: String,
    /// The time to live of the lease the key is bound to, if any: once
    /// this long has passed without a renewal, the key may be gone and a
    /// successor leading. The runner ends a start's attempts this long
    /// after its intent was written.
    pub lease_ttl: Option<std::time::Duration>,
}

impl blox_state::reconcile::TermId for LeaderTerm {
    /// The revision at which this process wrote the leader key.
    fn began_at(&self) -> Revision {
        self.revision
    }
}

impl LeaderTerm {
    /// The `kv_txn` check that holds only while this term lasts.
    pub fn check(&self) -> (String, KvExpect) {
        (self.key.clone(), KvExpect::Revision(self.revision))
    }
}

/// Why an election could not start or resign cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The store refused or failed the leader key's write.
    #[error("leader election: store error")]
    Store(#[source] StoreError),
    /// The leader key is held by someone else (single-process election on a shared store).
    #[error("leader election: key {key:?} changed under us")]
    Conflict {
        /// The leader key.
        key: String,
    },
}

/// Picks the process that schedules (see the module docs).
#[async_trait]
pub trait LeaderElection: Send + Sync {
    /// `true` while this process leads; flips to `false` at once when it
    /// loses the lease or resigns.
    fn is_leader(&self) -> watch::Receiver<bool>;

    /// The current term while this process leads, `None` otherwise.
    fn term(&self) -> watch::Receiver<Option<LeaderTerm>>;

    /// Gives up leadership (deletes the leader key if still ours) and stops
    /// campaigning. Idempotent.
    async fn resign(&self);
}

/// The two watch channels every election publishes, updated together (a
/// building block for implementing [`LeaderElection`]).
#[derive(Debug)]
pub struct Signals {
    leader: watch::Sender<bool>,
    term: watch::Sender<Option<LeaderTerm>>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

impl Signals {
    /// Not leading.
    pub fn new() -> Self {
        Signals {
            leader: watch::channel(false).0,
            term: watch::channel(None).0,
        }
    }

    /// Publishes a new term (the term first, so a reader woken by `is_leader`
    /// finds it).
    pub fn elect(&self, term: LeaderTerm) {
        tracing::info!(key = %term.key, revision = %term.revision, holder = %term.holder, "leadership acquired");
        self.term.send_replace(Some(term));
        self.leader.send_replace(true);
    }

    /// Withdraws leadership that was lost (logged as a warning).
    pub fn depose(&self) {
        if self.withdraw() {
            tracing::warn!("leadership lost");
        }
    }

    /// Withdraws leadership because this process gave it up (no warning).
    pub fn resign(&self) {
        if self.withdraw() {
            tracing::info!("leadership resigned");
        }
    }

    /// Withdraws leadership (the term first, then the flag); returns
    /// whether this process was leading.
    fn withdraw(&self) -> bool {
        // The term goes first: whoever sees "not leading" sees no term.
        self.term.send_replace(None);
        self.leader.send_replace(false)
    }

    /// Whether this process leads.
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// The current term, if leading.
    pub fn term(&self) -> watch::Receiver<Option<LeaderTerm>> {
        self.term.subscribe()
    }

    /// The current term now, if leading.
    pub fn current(&self) -> Option<LeaderTerm> {
        self.term.borrow().clone()
    }
}

/// A holder id unique enough for logs and the leader key's value.
pub fn default_holder_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pid{}-{nanos:08x}", std::process::id())
}
