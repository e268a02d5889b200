//! The [`StateStore`] trait: a versioned store of container instances and
//! tasks, plus a small key-value API for schedulers' own state.
//!
//! Two backends implement it and pass the same conformance suite
//! (`blox_state::testing::conformance`): [`memory::MemoryStore`] (embedded
//! default, test double) and `etcd::EtcdStore` (production).
//!
//! # Rules every backend follows
//! * **Versioned apply.** A put applies only if its ECS version supersedes the
//!   stored one ([`blox_core::model::supersedes`]); otherwise it is a no-op
//!   reported as [`ApplyOutcome::Stale`].
//! * **Tombstones.** A delete leaves a tombstone (ARN, last version, time), so
//!   a late or duplicated state of that version or lower cannot resurrect the
//!   entity ([`blox_core::model::blocked_by_tombstone`]). Tombstones are
//!   purged after their own horizon ([`StateStore::expire`]).
//! * **Soft deletes.** A delete made on indirect evidence alone
//!   ([`Change::soft_delete`]: the reconciler saw the entity missing from
//!   ECS's eventually consistent listings) leaves a *soft* tombstone, which
//!   blocks only known versions strictly lower than its own
//!   ([`blox_core::model::blocked_by_soft_tombstone`]): ECS's own later
//!   report of the deleted version applies. A hard delete of the same
//!   version hardens it.
//! * **Retention.** The store owns it, for every cluster: stopped tasks and
//!   INACTIVE instances ("retired" entities, [`retention::retired_since`])
//!   are deleted once retired for longer than the stopped-task retention,
//!   and tombstones purged once older than the tombstone horizon
//!   ([`StateStore::expire`], run on the leader by [`retention::Retention`]).
//!   Backends index both by time, so a run reads only what is due.
//! * **Guards.** A change may carry `unchanged_since`: it applies only if the
//!   stored key (entity or tombstone) was last modified at or before that
//!   revision. The reconciler uses it so it never overwrites or deletes what
//!   an event changed after its listing began.
//! * **Revisions.** Every write gets a [`Revision`]; lists carry the revision
//!   they were read at, and [`StateStore::watch`] from that revision yields
//!   every later change (puts and deletes) with no gap and no duplicate.
//!   A backend may write several changes at one revision (etcd writes a
//!   batch, and the changes of concurrent callers that its writer merges, in
//!   one transaction), so several events can share a revision: a watch
//!   yields each revision whole, as one [`WatchBatch`]
//!   ([`StateStore::watch_revisions`]), and a watcher that resumes from a
//!   revision must have handled every event of it.
//!   [`StateStore::list_all`] reads both kinds of entity at one revision.
//!   History is bounded; asking for a revision older than the history, or
//!   from another epoch (an earlier process of the memory store, another etcd
//!   cluster), is [`StoreError::Compacted`] / [`StoreError::EpochMismatch`]:
//!   relist.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use blox_core::model::{Arn, ContainerInstance, Entity, EntityKind, Task, TaskStatus};
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod limits;
pub mod memory;
pub mod retention;
pub(crate) mod tombstone;

pub use limits::TxnLimits;
pub use retention::{Expiry, ExpiryReport};

/// The version of the stored layout this build reads and writes (keys and
/// record formats; see `etcd::layout`). Records that outlive a process
/// (a scheduler's start intents) carry it, so a daemon never acts on what
/// a daemon of another layout left.
pub const LAYOUT_VERSION: u32 = 2;

#[cfg(feature = "etcd")]
pub mod etcd;

/// A point in a store's history: the sequence number of a write, qualified by
/// the store's epoch (the memory store's start-up nonce, the etcd cluster id).
///
/// Written as `epoch:seq`. Revisions of one epoch are totally ordered by `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Revision {
    /// Which incarnation of the store the sequence number belongs to.
    pub epoch: u64,
    /// The sequence number of the write (0 = before any write).
    pub seq: u64,
}

impl Revision {
    /// A revision of an epoch.
    pub const fn new(epoch: u64, seq: u64) -> Self {
        Revision { epoch, seq }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// Why a string is not a [`Revision`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid revision {0:?}: expected EPOCH:SEQ as returned by a list or stream")]
pub struct RevisionParseError(pub String);

impl FromStr for Revision {
    type Err = RevisionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RevisionParseError(s.chars().take(64).collect());
        let (e, q) = s.split_once(':').ok_or_else(err)?;
        Ok(Revision {
            epoch: e.parse().map_err(|_| err())?,
            seq: q.parse().map_err(|_| err())?,
        })
    }
}

impl serde::Serialize for Revision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Revision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a [`Change`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Store this state of an entity (if its version supersedes the stored one).
    Put(Entity),
    /// Remove an entity, leaving a tombstone at `version`.
    Delete {
        /// The entity's ARN (a task or container instance ARN).
        arn: Arn,
        /// The last version known to the deleter; the delete is stale if the
        /// stored state is strictly newer. `None` = unknown (always applies).
        version: Option<u64>,
        /// A deletion on listing evidence alone: its tombstone never blocks
        /// the deleted version itself (see the module docs).
        soft: bool,
    },
}

/// One write to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What to write.
    pub op: Op,
    /// Apply only if the key was last modified at or before this revision.
    pub unchanged_since: Option<Revision>,
}

impl Change {
    /// A versioned put.
    pub fn put(entity: impl Into<Entity>) -> Self {
        Change {
            op: Op::Put(entity.into()),
            unchanged_since: None,
        }
    }

    /// A delete leaving a tombstone at `version`.
    pub fn delete(arn: Arn, version: Option<u64>) -> Self {
        Change {
            op: Op::Delete {
                arn,
                version,
                soft: false,
            },
            unchanged_since: None,
        }
    }

    /// A soft delete: a tombstone at `version` that blocks only older
    /// versions, so ECS's own later report of `version` still applies (for
    /// deletions on indirect evidence, such as a task missing from ECS's
    /// listings).
    pub fn soft_delete(arn: Arn, version: Option<u64>) -> Self {
        Change {
            op: Op::Delete {
                arn,
                version,
                soft: true,
            },
            unchanged_since: None,
        }
    }

    /// Adds the guard: apply only if the key is unchanged since `revision`.
    pub fn unchanged_since(mut self, revision: Revision) -> Self {
        self.unchanged_since = Some(revision);
        self
    }

    /// The ARN this change writes.
    pub fn arn(&self) -> &Arn {
        match &self.op {
            Op::Put(e) => e.arn(),
            Op::Delete { arn, .. } => arn,
        }
    }
}

/// Why a change was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// The stored state's version is equal or newer.
    Version,
    /// The entity was deleted at an equal or newer version.
    Tombstone,
    /// The key changed after the change's `unchanged_since` revision.
    ModifiedSince,
}

/// The result of one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written at this revision.
    Applied {
        /// The revision of the write.
        revision: Revision,
    },
    /// Not written: the store already had newer state.
    Stale {
        /// Why.
        reason: StaleReason,
        /// The version of what is stored (entity or tombstone).
        stored_version: Option<u64>,
    },
}

impl ApplyOutcome {
    /// Whether the change was written.
    pub fn is_applied(&self) -> bool {
        matches!(self, ApplyOutcome::Applied { .. })
    }
}

/// An entity with the revision of its last write.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    /// The entity.
    pub entity: Entity,
    /// The revision at which it was last written.
    pub revision: Revision,
}

/// A filter for [`StateStore::list`]; every field that is set must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// The cluster, by name or ARN.
    pub cluster: Option<String>,
    /// The status (instance `status` or task `lastStatus`), ignoring case.
    pub status: Option<String>,
    /// Tasks only: `startedBy`.
    pub started_by: Option<String>,
    /// Tasks only: the container instance they are placed on.
    pub container_instance: Option<Arn>,
}

impl Filter {
    /// Whether a cluster ARN matches a cluster filter given as a name or an ARN.
    pub fn cluster_matches(filter: &str, cluster_arn: &Arn) -> bool {
        cluster_arn.as_str() == filter || cluster_arn.cluster_name() == Some(filter)
    }

    /// Whether a container instance matches this filter.
    pub fn matches_instance(&self, i: &ContainerInstance) -> bool {
        self.started_by.is_none()
            && self
                .container_instance
                .as_ref()
                .is_none_or(|c| *c == i.container_instance_arn)
            && self
                .cluster
                .as_deref()
                .is_none_or(|c| Self::cluster_matches(c, &i.cluster_arn))
            && self
                .status
                .as_deref()
                .is_none_or(|s| i.status.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether a task matches this filter.
    pub fn matches_task(&self, t: &Task) -> bool {
        self.matches_task_fields(
            &t.cluster_arn,
            &t.last_status,
            t.started_by.as_deref(),
            t.container_instance_arn.as_ref(),
        )
    }

    /// Whether a task with these fields matches this filter (the fields of
    /// a task a filter reads; see [`Filter::matches_task`]).
    pub fn matches_task_fields(
        &self,
        cluster_arn: &Arn,
        last_status: &TaskStatus,
        started_by: Option<&str>,
        container_instance_arn: Option<&Arn>,
    ) -> bool {
        self.cluster
            .as_deref()
            .is_none_or(|c| Self::cluster_matches(c, cluster_arn))
            && self
                .status
                .as_deref()
                .is_none_or(|s| last_status.as_str().eq_ignore_ascii_case(s))
            && self
                .started_by
                .as_deref()
                .is_none_or(|s| started_by == Some(s))
            && self
                .container_instance
                .as_ref()
                .is_none_or(|c| container_instance_arn == Some(c))
    }

    /// Whether an entity matches this filter.
    pub fn matches(&self, e: &Entity) -> bool {
        match e {
            Entity::Instance(i) => self.matches_instance(i),
            Entity::Task(t) => self.matches_task(t),
        }
    }
}

/// The result of a list: the entities and the revision they were read at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing<T> {
    /// What matched.
    pub items: Vec<T>,
    /// The store revision the list was read at: watch from here to follow it.
    pub revision: Revision,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// An entity was created or updated.
    Put(Versioned),
    /// An entity was deleted.
    Delete {
        /// The deleted entity's ARN.
        arn: Arn,
        /// The last state the store had of it.
        last: Option<Entity>,
        /// The revision of the delete.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(v) => v.revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    /// The ARN of the changed entity.
    pub fn arn(&self) -> &Arn {
        match self {
            WatchEvent::Put(v) => v.entity.arn(),
            WatchEvent::Delete { arn, .. } => arn,
        }
    }
}

/// Every change a store wrote at one revision, as one watch item: a revision
/// is atomic, so a watcher applies all of its events or none.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch<E> {
    /// The revision every event was written at.
    pub revision: Revision,
    /// The changes of that revision, in the order the store reports them
    /// (never empty in a watch stream).
    pub events: Vec<E>,
}

impl<E> WatchBatch<E> {
    /// Groups events, in revision order, into one batch per revision.
    pub fn group(
        events: impl IntoIterator<Item = E>,
        revision: impl Fn(&E) -> Revision,
    ) -> Vec<Self> {
        let mut out: Vec<WatchBatch<E>> = Vec::new();
        for event in events {
            let rev = revision(&event);
            match out.last_mut() {
                Some(last) if last.revision == rev => last.events.push(event),
                _ => out.push(WatchBatch {
                    revision: rev,
                    events: vec![event],
                }),
            }
        }
        out
    }
}

/// A stored key-value entry of the generic key-value API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key (without the store's internal prefix).
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The revision of the last write of this key.
    pub revision: Revision,
}

/// A precondition on one key of a key-value transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvExpect {
    /// The key must not exist.
    Absent,
    /// The key must exist, last written at exactly this revision.
    Revision(Revision),
    /// The key must exist (any revision).
    Present,
}

/// A write of a key-value transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Set a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Remove a key (no-op if absent).
    Delete {
        /// The key.
        key: String,
    },
}

/// An all-or-nothing compare-and-swap over keys of the key-value API.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvTxn {
    /// Every check must hold.
    pub checks: Vec<(String, KvExpect)>,
    /// Then every op is applied, at one revision. At most one op per key.
    pub ops: Vec<KvOp>,
}

/// The result of a key-value transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvTxnOutcome {
    /// The checks held and the ops were applied at this revision.
    Applied(Revision),
    /// A check failed; nothing was written.
    Conflict,
}

/// A change to a key of the key-value API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEvent {
    /// The key.
    pub key: String,
    /// The new value; `None` when the key was deleted.
    pub value: Option<Bytes>,
    /// The revision of the change.
    pub revision: Revision,
}

/// An error from a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested revision is older than the retained history: relist.
    #[error(
        "revision {requested} has been compacted (oldest retained: {oldest}); relist and watch from the list's revision"
    )]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision a watch can start from.
        oldest: Revision,
    },
    /// The requested revision belongs to another epoch of the store: relist.
    #[error(
        "revision {requested} is from another store epoch (current epoch {current}); relist and watch from the list's revision"
    )]
    EpochMismatch {
        /// The revision asked for.
        requested: Revision,
        /// The store's epoch.
        current: u64,
    },
    /// The requested revision is in the future of this store.
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The backend refuses work for lack of capacity (etcd's `NOSPACE`
    /// alarm, "too many requests"): back-pressure. Retry later, without
    /// taking on more work meanwhile.
    #[error("state store exhausted (back-pressure): {message}")]
    Exhausted {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The backend cannot be reached now; retry later.
    #[error("state store unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A stored value could not be decoded.
    #[error("corrupt value at key {key:?}: {message}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The request is invalid (e.g. an ARN of a kind the store does not keep).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// A transaction is larger than the store accepts (etcd's
    /// `--max-txn-ops` and `--max-request-bytes`); retrying cannot help.
    #[error(
        "transaction too large: {ops} operations and {bytes} bytes (limits: {} operations, {} bytes); split it or write less at once",
        limits.max_ops,
        limits.max_bytes
    )]
    TooLarge {
        /// Its operations (the larger of its checks and its writes).
        ops: usize,
        /// Its size in bytes.
        bytes: usize,
        /// The limits it exceeds.
        limits: TxnLimits,
    },
    /// The store holds a layout this build does not read as it is (newer,
    /// older, or half-migrated); nothing was written.
    #[error(
        "the store holds stored layout version {stored}, and this daemon reads layout version {supported}: {detail}"
    )]
    Layout {
        /// The version stored.
        stored: u32,
        /// The version this build reads.
        supported: u32,
        /// What to do.
        detail: String,
    },
    /// Any other backend failure.
    #[error("state store error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// Whether the caller must relist (its revision is compacted or from another epoch).
    pub fn needs_relist(&self) -> bool {
        matches!(
            self,
            StoreError::Compacted { .. }
                | StoreError::EpochMismatch { .. }
                | StoreError::FutureRevision { .. }
        )
    }

    /// Whether the backend cannot do the work now (unreachable, or
    /// exhausted: [`StoreError::Exhausted`]); retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Exhausted { .. }
        )
    }

    /// Whether this is back-pressure ([`StoreError::Exhausted`]).
    pub fn is_exhausted(&self) -> bool {
        matches!(self, StoreError::Exhausted { .. })
    }
}

/// Results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of watch events; an `Err` item ends the stream.
pub type WatchStream = BoxStream<'static, Result<WatchEvent>>;
/// A stream of whole revisions of entity changes; an `Err` item ends the stream.
pub type RevisionStream = BoxStream<'static, Result<WatchBatch<WatchEvent>>>;
/// A stream of key-value events; an `Err` item ends the stream.
pub type KvWatchStream = BoxStream<'static, Result<KvEvent>>;

/// The versioned store of the cluster state (see the module docs for the rules).
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Applies one change.
    async fn apply(&self, change: Change) -> Result<ApplyOutcome> {
        let mut out = self.apply_batch(vec![change]).await?;
        out.pop()
            .ok_or_else(|| StoreError::Invalid("apply_batch returned no outcome".into()))
    }

    /// Applies changes, reporting per change: one result per change, in
    /// order. A change that cannot apply on its own account (an invalid
    /// ARN, an unreadable stored value at its key) fails alone; the others
    /// are applied. Changes to the same ARN within a batch are applied in
    /// order (as if one by one). The outer `Err` is for what fails the
    /// whole batch (the store unreachable or exhausted, a guard from
    /// another epoch); then some changes may have been applied, and
    /// applying the batch again is safe (every change is idempotent under
    /// the version rule).
    async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>>;

    /// Applies changes, returning one outcome per change in order, like
    /// [`StateStore::apply_each`], except that the first change that fails
    /// fails the whole call (the other changes may have been applied).
    async fn apply_batch(&self, changes: Vec<Change>) -> Result<Vec<ApplyOutcome>> {
        self.apply_each(changes).await?.into_iter().collect()
    }

    /// The live entity with this ARN (tombstones are not returned).
    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>>;

    /// Live entities of a kind that match a filter, with the list's revision.
    async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>>;

    /// Every live entity of both kinds, read at one revision (the listing's):
    /// it holds every write up to that revision and none after it.
    async fn list_all(&self) -> Result<Listing<Versioned>>;

    /// Every change to entities after revision `after` (exclusive), puts and
    /// deletes, then new changes as they happen: one item per revision, in
    /// revision order, each holding every entity change of its revision.
    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream>;

    /// [`StateStore::watch_revisions`], one event at a time (events of one
    /// revision follow each other).
    async fn watch(&self, after: Revision) -> Result<WatchStream> {
        use futures::StreamExt;
        let batches = self.watch_revisions(after).await?;
        Ok(batches
            .flat_map(|item| {
                let events: Vec<Result<WatchEvent>> = match item {
                    Ok(batch) => batch.events.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(events)
            })
            .boxed())
    }

    /// How many stored records this store skipped, since it was created,
    /// because they could not be decoded (each read of one counts; see
    /// `docs/operating.md`). A backend that cannot hold such records says 0.
    fn undecodable_records(&self) -> u64 {
        0
    }

    /// The store's current revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Applies retention once, in every cluster: deletes (leaving
    /// tombstones) the entities retired before `expiry.retired_before`, and
    /// purges the tombstones recorded before `expiry.deleted_before`.
    /// Backends index both by time, so a run reads only what is due. Safe
    /// to run concurrently with writes (a retired entity written since it
    /// was found is left alone); run it on one process (the leader).
    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport>;

    /// A key of the key-value API.
    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>>;

    /// Keys under a prefix, sorted, with the list's revision.
    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>>;

    /// Applies a compare-and-swap transaction over keys of the key-value
    /// API, all or nothing. A transaction over [`StateStore::txn_limits`] is
    /// refused with [`StoreError::TooLarge`] (see [`limits`]).
    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome>;

    /// The size limits of one transaction of this store.
    fn txn_limits(&self) -> TxnLimits {
        TxnLimits::default()
    }

    /// The stored layout version this store reads and writes: records
    /// that outlive a process (a scheduler's start intents) carry it
    /// ([`LAYOUT_VERSION`] unless the store was built for another).
    fn layout_version(&self) -> u32 {
        LAYOUT_VERSION
    }

    /// Since when the store's record of gone entities is complete, if it
    /// did not always hold one (`None`: it did, up to its tombstone
    /// retention). A store that starts empty, such as a process's memory
    /// store, never saw what ECS stopped before it: an event dated before
    /// this time about an entity the store holds no record of may be a
    /// stopped entity's late event, so it needs ECS's word before it
    /// applies (see [`crate::ingest`]).
    fn remembers_since(&self) -> Option<blox_core::model::Timestamp> {
        None
    }

    /// Applies a transaction's ops in as many transactions as the store's
    /// limits need, each guarded by the same checks, in order. Not atomic:
    /// on `Conflict` or `Err` the earlier parts stay applied, so use it only
    /// where each op stands on its own (deleting resolved intents, removing
    /// an environment's records). Returns the revision of the last part.
    async fn kv_txn_chunked(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
        let mut last = KvTxnOutcome::Conflict;
        for part in txn.split(self.txn_limits()) {
            last = self.kv_txn(part).await?;
            if last == KvTxnOutcome::Conflict {
                break;
            }
        }
        Ok(last)
    }

    /// Every change to keys under a prefix after revision `after` (exclusive).
    async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream>;

    /// Sets a key if the check holds.
    async fn kv_put(
        &self,
        key: &str,
        value: Bytes,
        expect: Option<KvExpect>,
    ) -> Result<KvTxnOutcome> {
        self.kv_txn(KvTxn {
            checks: expect.map(|e| (key.to_owned(), e)).into_iter().collect(),
            ops: vec![KvOp::Put {
                key: key.to_owned(),
                value,
            }],
        })
        .await
    }

    /// Deletes a key if the check holds.
    async fn kv_delete(&self, key: &str, expect: Option<KvExpect>) -> Result<KvTxnOutcome> {
        self.kv_txn(KvTxn {
            checks: expect.map(|e| (key.to_owned(), e)).into_iter().collect(),
            ops: vec![KvOp::Delete {
                key: key.to_owned(),
            }],
        })
        .await
    }
}

/// Checks that a store can hold what a change writes: an ARN of a kind it
/// keeps, and a put's entity of the ARN's kind; else [`StoreError::Invalid`].
pub(crate) fn check_change(change: &Change) -> Result<()> {
    let kind = kind_of(change.arn())?;
    match &change.op {
        Op::Put(entity) if entity.kind() != kind => Err(StoreError::Invalid(format!(
            "a {} cannot be stored under the {kind} ARN {}",
            entity.kind(),
            entity.arn()
        ))),
        _ => Ok(()),
    }
}

/// The kind of entity an ARN names, or [`StoreError::Invalid`].
pub fn kind_of(arn: &Arn) -> Result<EntityKind> {
    EntityKind::of_arn(arn).ok_or_else(|| {
        StoreError::Invalid(format!("{arn} is not a task or container instance ARN"))
    })
}

/// A shared store is a store (so wrappers such as
/// `testing::faulty::FaultyStore` can wrap an `Arc<dyn StateStore>`).
#[async_trait]
impl<T: StateStore + ?Sized> StateStore for std::sync::Arc<T> {
    async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>> {
        (**self).apply_each(changes).await
    }
    async fn apply_batch(&self, changes: Vec<Change>) -> Result<Vec<ApplyOutcome>> {
        (**self).apply_batch(changes).await
    }
    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>> {
        (**self).get(arn).await
    }
    async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>> {
        (**self).list(kind, filter).await
    }
    async fn list_all(&self) -> Result<Listing<Versioned>> {
        (**self).list_all().await
    }
    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream> {
        (**self).watch_revisions(after).await
    }
    async fn watch(&self, after: Revision) -> Result<WatchStream> {
        (**self).watch(after).await
    }
    fn undecodable_records(&self) -> u64 {
        (**self).undecodable_records()
    }
    async fn current_revision(&self) -> Result<Revision> {
        (**self).current_revision().await
    }
    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport> {
        (**self).expire(expiry).await
    }
    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        (**self).kv_get(key).await
    }
    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>> {
        (**self).kv_list(prefix).await
    }
    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
        (**self).kv_txn(txn).await
    }
    fn txn_limits(&self) -> TxnLimits {
        (**self).txn_limits()
    }
    fn layout_version(&self) -> u32 {
        (**self).layout_version()
    }
    fn remembers_since(&self) -> Option<blox_core::model::Timestamp> {
        (**self).remembers_since()
    }
    async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream> {
        (**self).kv_watch(prefix, after).await
    }
}
