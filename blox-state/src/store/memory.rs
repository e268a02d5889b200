//! The in-memory backend: the embedded default and the test double.
//!
//! One mutex guards the whole state (entities, tombstones, key-value entries
//! and the change log); every operation holds it for a short, non-blocking
//! critical section and never across an `.await`. Entities are shared
//! `Arc`s, so reads, lists and watch events copy pointers, not bodies.
//!
//! Revisions are `epoch:seq`, where the epoch is a random nonzero number
//! chosen when the store is created: a revision kept from an earlier process
//! (or another store) is answered with [`StoreError::EpochMismatch`]. The
//! change log keeps the last [`MemoryOptions::log_capacity`] changes; a watch
//! from before it, or a watcher that falls behind it, gets
//! [`StoreError::Compacted`] and must relist.
//!
//! Choices within the rules of [`crate::store`]:
//! * a delete leaves its tombstone at the delete's version, or at the stored
//!   entity's version when the delete's is unknown;
//! * a guard (`unchanged_since`) from another epoch fails the whole batch
//!   with [`StoreError::EpochMismatch`] before anything is written; a key
//!   that was never written (or whose tombstone was purged) passes any guard;
//! * a key-value transaction whose ops change nothing (deletes of absent
//!   keys) takes no revision and reports the current one;
//! * [`StateStore::expire`] reads two indexes kept with every write
//!   (retired entities by retirement time, tombstones by deletion time), so
//!   a run touches only what is due, however large the store;
//! * a change that cannot apply on its own account (an invalid ARN) fails
//!   alone in [`StateStore::apply_each`]; the others of its batch apply.
//!
//! ```
//! use blox_state::store::memory::{MemoryOptions, MemoryStore};
//! use blox_state::StateStore;
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let store = MemoryStore::with_options(MemoryOptions { log_capacity: 10_000, ..Default::default() });
//! let rev = store.current_revision().await?;
//! assert_eq!(rev.seq, 0);
//! assert_ne!(rev.epoch, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod log;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use blox_core::clock::SharedClock;
use blox_core::model::{Arn, Entity, EntityKind, Timestamp, supersedes};
use bytes::Bytes;

use self::log::{ChangeLog, LogEntry, follow};
use super::retention::retired_since;
use super::tombstone::TombstoneRule;
use super::{
    ApplyOutcome, Change, Expiry, ExpiryReport, Filter, KvEntry, KvEvent, KvExpect, KvOp, KvTxn,
    KvTxnOutcome, KvWatchStream, Listing, Op, Result, Revision, RevisionStream, StaleReason,
    StateStore, StoreError, Versioned, WatchEvent, check_change, kind_of,
};
use futures::StreamExt;

/// The default number of changes the log keeps for watches to resume from.
pub const DEFAULT_LOG_CAPACITY: usize = 100_000;

/// Settings of a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// How many changes the log keeps; a watch from an older revision gets
    /// [`StoreError::Compacted`].
    pub log_capacity: usize,
    /// The epoch of the store's revisions; `None` (the default) picks a random
    /// nonzero one. Fix it only in tests.
    pub epoch: Option<u64>,
    /// The clock of tombstones' deletion times (default: the wall clock).
    pub clock: SharedClock,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            log_capacity: DEFAULT_LOG_CAPACITY,
            epoch: None,
            clock: blox_core::clock::system(),
        }
    }
}

/// The in-memory [`StateStore`]. Cloning gives another handle on the same store.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

/// What every handle and every watch stream share.
struct Shared {
    epoch: u64,
    clock: SharedClock,
    /// When the store was created (empty): it knows nothing gone before.
    born: blox_core::model::Timestamp,
    state: Mutex<State>,
    /// Bumped to the latest sequence number after each write batch.
    wake: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; if some did, the state is
        // still consistent at the granularity of one change.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn revision(&self, seq: u64) -> Revision {
        Revision::new(self.epoch, seq)
    }
}

/// A stored entity key: the live entity or its tombstone.
#[derive(Debug)]
enum Slot {
    Live {
        entity: Entity,
        seq: u64,
    },
    Tombstone {
        rule: TombstoneRule,
        deleted_at: Timestamp,
        seq: u64,
    },
}

impl Slot {
    /// The sequence number of the key's last write.
    fn seq(&self) -> u64 {
        match self {
            Slot::Live { seq, .. } | Slot::Tombstone { seq, .. } => *seq,
        }
    }

    /// The stored version (entity or tombstone).
    fn version(&self) -> Option<u64> {
        match self {
            Slot::Live { entity, .. } => entity.version(),
            Slot::Tombstone { rule, .. } => rule.version,
        }
    }

    /// Where the slot is indexed for retention, if anywhere.
    fn index_entry(&self) -> Option<(IndexKind, Timestamp)> {
        match self {
            Slot::Live { entity, .. } => retired_since(entity).map(|t| (IndexKind::Retired, t)),
            Slot::Tombstone { deleted_at, .. } => Some((IndexKind::Tombstone, *deleted_at)),
        }
    }
}

/// The two retention indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexKind {
    /// Retired live entities, by retirement time.
    Retired,
    /// Tombstones, by deletion time.
    Tombstone,
}

/// The retention indexes: `(time, ARN)` of every retired entity and every
/// tombstone, kept in step with the slots by [`State::set_slot`].
#[derive(Debug, Default)]
struct Indexes {
    retired: BTreeSet<(Timestamp, Arn)>,
    tombstones: BTreeSet<(Timestamp, Arn)>,
}

impl Indexes {
    fn set(&mut self, kind: IndexKind) -> &mut BTreeSet<(Timestamp, Arn)> {
        match kind {
            IndexKind::Retired => &mut self.retired,
            IndexKind::Tombstone => &mut self.tombstones,
        }
    }

    /// Moves `arn` from the entry of its old slot to that of its new one.
    fn update(&mut self, arn: &Arn, old: Option<&Slot>, new: Option<&Slot>) {
        let old = old.and_then(Slot::index_entry);
        let new = new.and_then(Slot::index_entry);
        if old == new {
            return;
        }
        if let Some((kind, t)) = old {
            self.set(kind).remove(&(t, arn.clone()));
        }
        if let Some((kind, t)) = new {
            self.set(kind).insert((t, arn.clone()));
        }
    }

    /// The ARNs indexed strictly before `before`, oldest first.
    fn due(&self, kind: IndexKind, before: Timestamp) -> Vec<Arn> {
        let set = match kind {
            IndexKind::Retired => &self.retired,
            IndexKind::Tombstone => &self.tombstones,
        };
        set.iter()
            .take_while(|(t, _)| *t < before)
            .map(|(_, arn)| arn.clone())
            .collect()
    }
}

#[derive(Debug)]
struct KvSlot {
    value: Bytes,
    seq: u64,
}

/// Everything behind the lock.
#[derive(Debug)]
struct State {
    /// The sequence number of the last write.
    seq: u64,
    instances: HashMap<Arn, Slot>,
    tasks: HashMap<Arn, Slot>,
    indexes: Indexes,
    kv: BTreeMap<String, KvSlot>,
    log: ChangeLog,
}

impl State {
    fn entities(&self, kind: EntityKind) -> &HashMap<Arn, Slot> {
        match kind {
            EntityKind::Instance => &self.instances,
            EntityKind::Task => &self.tasks,
        }
    }

    /// Stores (or, with `None`, removes) the slot of `arn`, keeping the
    /// retention indexes in step: the one place slots change.
    fn set_slot(&mut self, kind: EntityKind, arn: &Arn, slot: Option<Slot>) {
        let map = match kind {
            EntityKind::Instance => &mut self.instances,
            EntityKind::Task => &mut self.tasks,
        };
        let old = match slot {
            Some(new) => {
                let old = map.insert(arn.clone(), new);
                self.indexes.update(arn, old.as_ref(), map.get(arn));
                return;
            }
            None => map.remove(arn),
        };
        self.indexes.update(arn, old.as_ref(), None);
    }

    /// Applies retention (see [`StateStore::expire`]).
    fn expire(&mut self, epoch: u64, expiry: Expiry, now: Timestamp) -> ExpiryReport {
        let mut report = ExpiryReport::default();
        if let Some(before) = expiry.retired_before {
            for arn in self.indexes.due(IndexKind::Retired, before) {
                let Some(kind) = EntityKind::of_arn(&arn) else {
                    continue;
                };
                let version = self.entities(kind).get(&arn).and_then(Slot::version);
                if self
                    .delete(epoch, arn, version, false, None, now)
                    .is_applied()
                {
                    report.retired += 1;
                }
            }
        }
        if let Some(before) = expiry.deleted_before {
            for arn in self.indexes.due(IndexKind::Tombstone, before) {
                if let Some(kind) = EntityKind::of_arn(&arn) {
                    self.set_slot(kind, &arn, None);
                    report.purged += 1;
                }
            }
        }
        report
    }

    /// Applies one validated change.
    fn apply(&mut self, epoch: u64, change: Change, now: &Timestamp) -> ApplyOutcome {
        let guard = change.unchanged_since.map(|r| r.seq);
        match change.op {
            Op::Put(entity) => self.put(epoch, entity, guard),
            Op::Delete { arn, version, soft } => {
                let deleted_at = *now;
                self.delete(epoch, arn, version, soft, guard, deleted_at)
            }
        }
    }

    fn put(&mut self, epoch: u64, entity: Entity, guard: Option<u64>) -> ApplyOutcome {
        let kind = entity.kind();
        let incoming = entity.version();
        if let Some(slot) = self.entities(kind).get(entity.arn()) {
            let stale = match slot {
                Slot::Live { entity: old, .. } => {
                    (!supersedes(incoming, old.version())).then_some(StaleReason::Version)
                }
                Slot::Tombstone { rule, .. } => {
                    rule.blocks_put(incoming).then_some(StaleReason::Tombstone)
                }
            }
            .or_else(|| guard_fails(slot, guard));
            if let Some(reason) = stale {
                return ApplyOutcome::Stale {
                    reason,
                    stored_version: slot.version(),
                };
            }
        }
        self.seq += 1;
        let slot = Slot::Live {
            entity: entity.clone(),
            seq: self.seq,
        };
        self.set_slot(kind, entity.arn(), Some(slot));
        let revision = Revision::new(epoch, self.seq);
        self.log.push(
            self.seq,
            LogEntry::Entity(WatchEvent::Put(Versioned { entity, revision })),
        );
        ApplyOutcome::Applied { revision }
    }

    fn delete(
        &mut self,
        epoch: u64,
        arn: Arn,
        version: Option<u64>,
        soft: bool,
        guard: Option<u64>,
        deleted_at: Timestamp,
    ) -> ApplyOutcome {
        // Validated before: anything else is a task ARN.
        let kind = EntityKind::of_arn(&arn).unwrap_or(EntityKind::Task);
        let mut last = None;
        let mut rule = TombstoneRule { version, soft };
        if let Some(slot) = self.entities(kind).get(&arn) {
            let stale = match slot {
                Slot::Live { entity, .. } => match (version, entity.version()) {
                    (Some(v), Some(stored)) if stored > v => Some(StaleReason::Version),
                    _ => None,
                },
                Slot::Tombstone { rule: old, .. } => match old.after_delete(version, soft) {
                    Some(new) => {
                        rule = new;
                        None
                    }
                    None => Some(StaleReason::Tombstone),
                },
            }
            .or_else(|| guard_fails(slot, guard));
            if let Some(reason) = stale {
                return ApplyOutcome::Stale {
                    reason,
                    stored_version: slot.version(),
                };
            }
            if let Slot::Live { entity, .. } = slot {
                rule.version = version.or(entity.version());
                last = Some(entity.clone());
            }
        }
        self.seq += 1;
        let revision = Revision::new(epoch, self.seq);
        let tombstone = Slot::Tombstone {
            rule,
            deleted_at,
            seq: self.seq,
        };
        self.set_slot(kind, &arn, Some(tombstone));
        // Never live (or already deleted): nothing for watchers to see.
        if let Some(last) = last {
            self.log.push(
                self.seq,
                LogEntry::Entity(WatchEvent::Delete {
                    arn,
                    last: Some(last),
                    revision,
                }),
            );
        }
        ApplyOutcome::Applied { revision }
    }

    fn kv_txn(&mut self, epoch: u64, txn: KvTxn) -> KvTxnOutcome {
        let holds = txn
            .checks
            .iter()
            .all(|(key, expect)| match (self.kv.get(key), expect) {
                (None, KvExpect::Absent) | (Some(_), KvExpect::Present) => true,
                (Some(slot), KvExpect::Revision(r)) => r.epoch == epoch && r.seq == slot.seq,
                _ => false,
            });
        if !holds {
            return KvTxnOutcome::Conflict;
        }
        let changes = txn.ops.iter().any(|op| match op {
            KvOp::Put { .. } => true,
            KvOp::Delete { key } => self.kv.contains_key(key),
        });
        if !changes {
            return KvTxnOutcome::Applied(Revision::new(epoch, self.seq));
        }
        self.seq += 1;
        let seq = self.seq;
        let revision = Revision::new(epoch, seq);
        for op in txn.ops {
            let event = match op {
                KvOp::Put { key, value } => {
                    self.kv.insert(
                        key.clone(),
                        KvSlot {
                            value: value.clone(),
                            seq,
                        },
                    );
                    KvEvent {
                        key,
                        value: Some(value),
                        revision,
                    }
                }
                KvOp::Delete { key } => {
                    if self.kv.remove(&key).is_none() {
                        continue;
                    }
                    KvEvent {
                        key,
                        value: None,
                        revision,
                    }
                }
            };
            self.log.push(seq, LogEntry::Kv(event));
        }
        KvTxnOutcome::Applied(revision)
    }
}

/// `Some(ModifiedSince)` when the key was written after the guard revision.
fn guard_fails(slot: &Slot, guard: Option<u64>) -> Option<StaleReason> {
    guard
        .is_some_and(|g| slot.seq() > g)
        .then_some(StaleReason::ModifiedSince)
}

impl MemoryStore {
    /// An empty store with default options (a random epoch).
    pub fn new() -> Self {
        Self::with_options(MemoryOptions::default())
    }

    /// An empty store with these options.
    pub fn with_options(options: MemoryOptions) -> Self {
        let epoch = options.epoch.unwrap_or_else(random_epoch);
        let (wake, _) = tokio::sync::watch::channel(0);
        MemoryStore {
            shared: Arc::new(Shared {
                epoch,
                born: options.clock.now(),
                clock: options.clock,
                state: Mutex::new(State {
                    seq: 0,
                    instances: HashMap::new(),
                    tasks: HashMap::new(),
                    indexes: Indexes::default(),
                    kv: BTreeMap::new(),
                    log: ChangeLog::new(options.log_capacity),
                }),
                wake,
            }),
        }
    }

    /// The epoch of this store's revisions.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch
    }

    /// How many tombstones the store holds.
    pub fn tombstone_count(&self) -> usize {
        self.shared.lock().indexes.tombstones.len()
    }

    /// Checks that a watch may start after `after`.
    fn check_start(&self, state: &State, after: Revision) -> Result<()> {
        let epoch = self.shared.epoch;
        if after.epoch != epoch {
            return Err(StoreError::EpochMismatch {
                requested: after,
                current: epoch,
            });
        }
        if after.seq > state.seq {
            return Err(StoreError::FutureRevision {
                requested: after,
                current: Revision::new(epoch, state.seq),
            });
        }
        let oldest = state.log.oldest_start();
        if after.seq < oldest {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: Revision::new(epoch, oldest),
            });
        }
        Ok(())
    }

    /// Rejects a guard from another epoch (it fails the whole batch).
    fn check_guard(&self, change: &Change) -> Result<()> {
        match change.unchanged_since {
            Some(r) if r.epoch != self.shared.epoch => Err(StoreError::EpochMismatch {
                requested: r,
                current: self.shared.epoch,
            }),
            _ => Ok(()),
        }
    }

    /// Live entities of some kinds matching a filter, in ARN order, read
    /// under one lock (so at one revision).
    fn listing(&self, kinds: &[EntityKind], filter: &Filter) -> Listing<Versioned> {
        let (mut items, seq) = {
            let state = self.shared.lock();
            let items: Vec<_> = kinds
                .iter()
                .flat_map(|kind| state.entities(*kind).values())
                .filter_map(|slot| match slot {
                    Slot::Live { entity, seq } if filter.matches(entity) => Some(Versioned {
                        entity: entity.clone(),
                        revision: self.shared.revision(*seq),
                    }),
                    _ => None,
                })
                .collect();
            (items, state.seq)
        };
        items.sort_unstable_by(|a, b| a.entity.arn().cmp(b.entity.arn()));
        Listing {
            items,
            revision: self.shared.revision(seq),
        }
    }

    /// Tells followers about writes up to `seq`.
    fn wake_followers(&self, seq: u64) {
        self.shared.wake.send_replace(seq);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("epoch", &self.shared.epoch)
            .finish_non_exhaustive()
    }
}

/// A random nonzero epoch.
fn random_epoch() -> u64 {
    loop {
        let epoch: u64 = rand::random();
        if epoch != 0 {
            return epoch;
        }
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    fn remembers_since(&self) -> Option<blox_core::model::Timestamp> {
        Some(self.shared.born)
    }
    async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>> {
        for change in &changes {
            self.check_guard(change)?;
        }
        let epoch = self.shared.epoch;
        let now = self.shared.clock.now();
        let (outcomes, before, after) = {
            let mut state = self.shared.lock();
            let before = state.seq;
            let outcomes: Vec<_> = changes
                .into_iter()
                .map(|c| {
                    check_change(&c)?;
                    Ok(state.apply(epoch, c, &now))
                })
                .collect();
            (outcomes, before, state.seq)
        };
        if after != before {
            self.wake_followers(after);
        }
        Ok(outcomes)
    }

    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>> {
        let kind = kind_of(arn)?;
        let state = self.shared.lock();
        Ok(match state.entities(kind).get(arn) {
            Some(Slot::Live { entity, seq }) => Some(Versioned {
                entity: entity.clone(),
                revision: self.shared.revision(*seq),
            }),
            _ => None,
        })
    }

    async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>> {
        Ok(self.listing(&[kind], filter))
    }

    async fn list_all(&self) -> Result<Listing<Versioned>> {
        Ok(self.listing(
            &[EntityKind::Instance, EntityKind::Task],
            &Filter::default(),
        ))
    }

    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream> {
        self.check_start(&self.shared.lock(), after)?;
        Ok(follow(
            self.shared.clone(),
            after.seq,
            |entry| match entry {
                LogEntry::Entity(event) => Some(event.clone()),
                LogEntry::Kv(_) => None,
            },
        ))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let seq = self.shared.lock().seq;
        Ok(self.shared.revision(seq))
    }

    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport> {
        let now = self.shared.clock.now();
        let (report, before, after) = {
            let mut state = self.shared.lock();
            let before = state.seq;
            let report = state.expire(self.shared.epoch, expiry, now);
            (report, before, state.seq)
        };
        if after != before {
            self.wake_followers(after);
        }
        Ok(report)
    }

    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        let state = self.shared.lock();
        Ok(state.kv.get(key).map(|slot| KvEntry {
            key: key.to_owned(),
            value: slot.value.clone(),
            revision: self.shared.revision(slot.seq),
        }))
    }

    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>> {
        let state = self.shared.lock();
        let items = state
            .kv
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, slot)| KvEntry {
                key: key.clone(),
                value: slot.value.clone(),
                revision: self.shared.revision(slot.seq),
            })
            .collect();
        Ok(Listing {
            items,
            revision: self.shared.revision(state.seq),
        })
    }

    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
        txn.validate(self.txn_limits())?;
        let (outcome, before, after) = {
            let mut state = self.shared.lock();
            let before = state.seq;
            let outcome = state.kv_txn(self.shared.epoch, txn);
            (outcome, before, state.seq)
        };
        if after != before {
            self.wake_followers(after);
        }
        Ok(outcome)
    }

    async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream> {
        self.check_start(&self.shared.lock(), after)?;
        let prefix = prefix.to_owned();
        let batches = follow(self.shared.clone(), after.seq, move |entry| match entry {
            LogEntry::Kv(event) if event.key.starts_with(&prefix) => Some(event.clone()),
            _ => None,
        });
        Ok(batches
            .flat_map(|item| {
                let events: Vec<Result<KvEvent>> = match item {
                    Ok(batch) => batch.events.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(events)
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use blox_core::model::{ResourceKind, Task};
    use futures::StreamExt;

    use super::*;

    fn task(id: &str, version: u64) -> Task {
        let arn = |kind, path: &str| Arn::build("aws", "us-east-1", "1", kind, path).unwrap();
        let mut t = Task::new(
            arn(ResourceKind::Task, &format!("c/{id}")),
            arn(ResourceKind::Cluster, "c"),
            "td",
        );
        t.version = Some(version);
        t
    }

    #[tokio::test]
    async fn reads_and_watch_events_share_the_stored_entity_instead_of_copying_it() {
        let store = MemoryStore::new();
        let from = store.current_revision().await.unwrap();
        let entity = Entity::from(task("t", 1));
        store.apply(Change::put(entity.clone())).await.unwrap();
        let mut watch = store.watch(from).await.unwrap();
        let Some(Ok(WatchEvent::Put(watched))) = watch.next().await else {
            panic!("expected a put event");
        };
        let got = store.get(entity.arn()).await.unwrap().unwrap();
        let listed = store
            .list(EntityKind::Task, &Filter::default())
            .await
            .unwrap();
        let (Entity::Task(a), Entity::Task(b), Entity::Task(c), Entity::Task(d)) = (
            &entity,
            &watched.entity,
            &got.entity,
            &listed.items[0].entity,
        ) else {
            panic!("tasks expected");
        };
        assert!(Arc::ptr_eq(a, b) && Arc::ptr_eq(a, c) && Arc::ptr_eq(a, d));
    }

    #[tokio::test]
    async fn tombstones_are_counted_until_purged() {
        let store = MemoryStore::with_options(MemoryOptions {
            epoch: Some(42),
            ..Default::default()
        });
        assert_eq!(store.epoch(), 42);
        store.apply(Change::put(task("a", 1))).await.unwrap();
        let arn = task("a", 1).task_arn;
        store
            .apply(Change::delete(arn.clone(), None))
            .await
            .unwrap();
        store
            .apply(Change::delete(task("b", 1).task_arn, Some(1)))
            .await
            .unwrap();
        assert_eq!(store.tombstone_count(), 2);
        store.apply(Change::put(task("a", 2))).await.unwrap();
        assert_eq!(
            store.tombstone_count(),
            1,
            "a resurrected entity is live again"
        );
        let later = Timestamp::now().plus(std::time::Duration::from_secs(1));
        let expiry = Expiry {
            retired_before: None,
            deleted_before: Some(later),
        };
        assert_eq!(store.expire(expiry).await.unwrap().purged, 1);
        assert_eq!(store.tombstone_count(), 0);
    }

    #[tokio::test]
    async fn a_put_under_an_arn_of_the_other_kind_is_invalid_alone() {
        let store = MemoryStore::new();
        let mut t = task("t", 1);
        t.task_arn = Arn::build(
            "aws",
            "us-east-1",
            "1",
            ResourceKind::ContainerInstance,
            "c/t",
        )
        .unwrap();
        let batch = vec![Change::put(t), Change::put(task("ok", 1))];
        let out = store.apply_each(batch).await.unwrap();
        assert!(matches!(out[0], Err(StoreError::Invalid(_))), "{out:?}");
        assert!(
            matches!(out[1], Ok(ApplyOutcome::Applied { .. })),
            "{out:?}"
        );
        assert_eq!(store.current_revision().await.unwrap().seq, 1);
    }

    #[tokio::test]
    async fn a_transaction_writing_a_key_twice_is_invalid() {
        let store = MemoryStore::new();
        let txn = KvTxn {
            checks: Vec::new(),
            ops: vec![
                KvOp::Put {
                    key: "k".into(),
                    value: Bytes::from_static(b"1"),
                },
                KvOp::Delete { key: "k".into() },
            ],
        };
        assert!(matches!(
            store.kv_txn(txn).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(store.kv_get("k").await.unwrap(), None);
    }
}
