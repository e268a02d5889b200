//! An in-process, indexed view of the store that answers reads from memory.
//!
//! Modelled on kube-runtime's reflector: a non-`Clone` [`CacheWriter`] applies
//! the store's changes and a cheap-`Clone` [`Cache`] reader answers `get` and
//! filtered `list` synchronously from secondary indexes (by cluster, by
//! cluster and status, by container instance, by `startedBy`), returning
//! shared [`Entry`] handles rather than copies. With the HTTP API built in,
//! a task is held packed, as its compressed v0.3 item beside the few fields
//! the indexes read, and decoded on demand ([`Entry::value`]): about
//! 1.3 KB a task against 3.6 KB typed (`benches/RESULTS.md`, issue 17).
//! [`follow`] keeps a writer in
//! step with a [`StateStore`]: it lists both kinds of entity at one
//! revision, then watches from it, resumes the watch after transient errors
//! (from the last revision it applied whole), and relists (replacing the
//! view atomically) when the store says its revision was compacted.
//!
//! A store revision is atomic in the view: the writer applies all of its
//! changes under one write lock ([`CacheWriter::apply_revision`]), so a
//! read never sees a revision in part, and a page's revision is one the
//! page wholly contains.
//!
//! The cache is also the process's one entity watch for everyone else: it
//! publishes every revision it applies to a bounded [`Fanout`] (with a
//! bounded history of recent revisions), which HTTP streams subscribe to
//! ([`Cache::subscribe`]) instead of watching the store themselves.
//! [`KvFeed`] does the same for a prefix of the key-value API.
//!
//! [`StateStore`]: crate::store::StateStore

mod entry;
mod fanout;
mod follow;
mod index;
mod kv;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use blox_core::model::{Arn, ContainerInstance, Entity, Task};
use tokio::sync::watch;

use entry::Packing;
pub use entry::{Entry, HotItems};
pub use fanout::{
    DEFAULT_BROADCAST_REVISIONS, DEFAULT_HISTORY_EVENTS, Fanout, FeedEnd, FeedOptions, FeedStream,
    SharedBatch, Start, Subscription, catch_up,
};
pub use follow::{follow, spawn_follower, spawn_follower_with};
pub use kv::{KvFeed, KvSubscription};

use crate::store::{Filter, Revision, Versioned, WatchBatch, WatchEvent};
use index::{Indexed, InstanceSlot, Slot, TaskKeys, TaskSlot};

/// The default budget of plain items kept for packed entries:
/// 256 MiB (see [`HotItems`]).
pub const DEFAULT_HOT_ITEMS: usize = 256 << 20;

/// Settings of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// The bounds of the feed of revisions streams read (see [`Fanout`]).
    pub feed: FeedOptions,
    /// The budget, in bytes, of uncompressed items kept for packed entries
    /// (see [`HotItems`]; default [`DEFAULT_HOT_ITEMS`]).
    pub hot_items: usize,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            feed: FeedOptions::default(),
            hot_items: DEFAULT_HOT_ITEMS,
        }
    }
}

/// One page of a cached list.
#[derive(Debug, Clone)]
pub struct CachePage<T> {
    /// The entries, in ARN order.
    pub items: Vec<Entry<T>>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next_after: Option<Arn>,
    /// The cache's revision when the page was read.
    pub revision: Revision,
}

/// The read side of the cache: cheap to clone, reads never wait on the store.
#[derive(Clone)]
pub struct Cache {
    state: Arc<RwLock<Indexed>>,
    ready: watch::Receiver<bool>,
    changes: watch::Receiver<Revision>,
    feed: Fanout<WatchEvent>,
    packing: Arc<Packing>,
}

/// The write side of the cache (one per cache; see [`follow`]).
pub struct CacheWriter {
    state: Arc<RwLock<Indexed>>,
    ready: watch::Sender<bool>,
    changes: watch::Sender<Revision>,
    feed: Fanout<WatchEvent>,
    packing: Arc<Packing>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (i, t) = self.len();
        f.debug_struct("Cache")
            .field("instances", &i)
            .field("tasks", &t)
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// Creates an empty, not-ready cache and its writer (default options).
pub fn cache() -> (Cache, CacheWriter) {
    cache_with(CacheOptions::default())
}

/// Creates an empty, not-ready cache and its writer.
pub fn cache_with(options: CacheOptions) -> (Cache, CacheWriter) {
    let state = Arc::new(RwLock::new(Indexed::default()));
    let (ready_tx, ready_rx) = watch::channel(false);
    let (changes_tx, changes_rx) = watch::channel(Revision::default());
    let feed = Fanout::new(options.feed);
    let packing = Arc::new(Packing::new(options.hot_items));
    (
        Cache {
            state: Arc::clone(&state),
            ready: ready_rx,
            changes: changes_rx,
            feed: feed.clone(),
            packing: Arc::clone(&packing),
        },
        CacheWriter {
            state,
            ready: ready_tx,
            changes: changes_tx,
            feed,
            packing,
        },
    )
}

fn read(state: &RwLock<Indexed>) -> RwLockReadGuard<'_, Indexed> {
    // A panic while holding the lock cannot leave the maps half-updated in a
    // way readers care about more than losing the cache, so recover the guard.
    state.read().unwrap_or_else(|e| e.into_inner())
}

fn write(state: &RwLock<Indexed>) -> RwLockWriteGuard<'_, Indexed> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// The task with this ARN.
    #[must_use]
    pub fn get_task(&self, arn: &str) -> Option<Entry<Task>> {
        read(&self.state).tasks.get(arn).map(|s| s.entry.clone())
    }

    /// The task with this ARN and the ARN of its cluster (read without
    /// decoding a packed task).
    #[must_use]
    pub fn get_task_and_cluster(&self, arn: &str) -> Option<(Arn, Entry<Task>)> {
        read(&self.state)
            .tasks
            .get(arn)
            .map(|s| (s.keys.cluster_arn().clone(), s.entry.clone()))
    }

    /// The container instance with this ARN.
    #[must_use]
    pub fn get_instance(&self, arn: &str) -> Option<Entry<ContainerInstance>> {
        read(&self.state)
            .instances
            .get(arn)
            .map(|s| s.entry.clone())
    }

    /// Every task matching the filter, in ARN order.
    #[must_use]
    pub fn list_tasks(&self, filter: &Filter) -> Vec<Entry<Task>> {
        entries(read(&self.state).tasks_page(filter, None, usize::MAX))
    }

    /// Every container instance matching the filter, in ARN order.
    #[must_use]
    pub fn list_instances(&self, filter: &Filter) -> Vec<Entry<ContainerInstance>> {
        entries(read(&self.state).instances_page(filter, None, usize::MAX))
    }

    /// Up to `limit` tasks matching the filter with ARNs after `after`.
    #[must_use]
    pub fn list_tasks_page(
        &self,
        filter: &Filter,
        after: Option<&Arn>,
        limit: usize,
    ) -> CachePage<Task> {
        let s = read(&self.state);
        paged(
            s.tasks_page(filter, after, limit.saturating_add(1)),
            limit,
            s.revision,
        )
    }

    /// Up to `limit` container instances matching the filter with ARNs after `after`.
    #[must_use]
    pub fn list_instances_page(
        &self,
        filter: &Filter,
        after: Option<&Arn>,
        limit: usize,
    ) -> CachePage<ContainerInstance> {
        let s = read(&self.state);
        paged(
            s.instances_page(filter, after, limit.saturating_add(1)),
            limit,
            s.revision,
        )
    }

    /// Runs `f` over a consistent view of the whole cache (writers wait while
    /// it runs: keep it short and do no I/O).
    pub fn with_view<R>(&self, f: impl FnOnce(&CacheView<'_>) -> R) -> R {
        let guard = read(&self.state);
        f(&CacheView { inner: &guard })
    }

    /// `(instances, tasks)` currently cached.
    #[must_use]
    pub fn len(&self) -> (usize, usize) {
        let s = read(&self.state);
        (s.instances.len(), s.tasks.len())
    }

    /// How many cached tasks are held packed (see [`Entry`]).
    #[must_use]
    pub fn packed_tasks(&self) -> usize {
        read(&self.state).packed_tasks
    }

    /// Whether the cache holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// The revision of the last change the cache applied.
    #[must_use]
    pub fn revision(&self) -> Revision {
        read(&self.state).revision
    }

    /// Whether the first complete list has been loaded.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the first complete list has been loaded (at once if it has).
    pub async fn wait_until_ready(&self) {
        let mut rx = self.ready.clone();
        // An error means the writer is gone; there is nothing more to wait for.
        let _ = rx.wait_for(|r| *r).await;
    }

    /// A receiver that changes whenever the cache applies a change (its value
    /// is the new revision); schedulers use it as their trigger.
    #[must_use]
    pub fn changes(&self) -> watch::Receiver<Revision> {
        self.changes.clone()
    }

    /// Subscribes to every revision the cache applies after `after` (see
    /// [`Fanout::subscribe`]): the process's one store watch, shared.
    pub fn subscribe(&self, after: Revision) -> Start<WatchEvent> {
        self.feed.subscribe(after)
    }

    /// The budget of plain items kept for packed entries, and its use.
    #[must_use]
    pub fn hot_items(&self) -> &HotItems {
        &self.packing.hot
    }

    /// The feed of revisions streams read (to count or end its readers).
    #[must_use]
    pub fn feed(&self) -> &Fanout<WatchEvent> {
        &self.feed
    }

    /// Ends every stream reading this cache cleanly and refuses new ones:
    /// call it at shutdown, so open HTTP streams do not hold the server.
    pub fn end_streams(&self) {
        self.feed.close();
    }
}

fn entries<T>(page: Vec<(&Arn, Entry<T>)>) -> Vec<Entry<T>> {
    page.into_iter().map(|(_, e)| e).collect()
}

fn paged<T>(mut items: Vec<(&Arn, Entry<T>)>, limit: usize, revision: Revision) -> CachePage<T> {
    let next_after = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|(arn, _)| (*arn).clone())
    } else {
        None
    };
    CachePage {
        items: entries(items),
        next_after,
        revision,
    }
}

/// A consistent read-only view of the whole cache (see [`Cache::with_view`]).
pub struct CacheView<'a> {
    inner: &'a Indexed,
}

impl CacheView<'_> {
    /// Every cached instance (unordered).
    pub fn instances(&self) -> impl Iterator<Item = &Entry<ContainerInstance>> {
        self.inner.instances.values().map(|s| &s.entry)
    }

    /// Every cached task (unordered).
    pub fn tasks(&self) -> impl Iterator<Item = &Entry<Task>> {
        self.inner.tasks.values().map(|s| &s.entry)
    }

    /// Every cached task whose cluster ARN `keep` accepts (unordered),
    /// without decoding a packed task to read its cluster.
    pub fn tasks_in_clusters<'s>(
        &'s self,
        keep: impl Fn(&Arn) -> bool + 's,
    ) -> impl Iterator<Item = &'s Entry<Task>> {
        self.inner
            .tasks
            .values()
            .filter(move |s| keep(s.keys.cluster_arn()))
            .map(|s| &s.entry)
    }

    /// Tasks matching a filter, in ARN order.
    pub fn tasks_matching(&self, filter: &Filter) -> Vec<Entry<Task>> {
        entries(self.inner.tasks_page(filter, None, usize::MAX))
    }

    /// Instances matching a filter, in ARN order.
    pub fn instances_matching(&self, filter: &Filter) -> Vec<Entry<ContainerInstance>> {
        entries(self.inner.instances_page(filter, None, usize::MAX))
    }

    /// The revision of the view.
    pub fn revision(&self) -> Revision {
        self.inner.revision
    }
}

impl CacheWriter {
    /// Applies one change as a revision of its own (see
    /// [`CacheWriter::apply_revision`]; a store revision with several
    /// changes must be applied whole). Returns whether the view changed.
    pub fn apply(&mut self, event: &WatchEvent) -> bool {
        self.apply_revision(WatchBatch {
            revision: event.revision(),
            events: vec![event.clone()],
        })
    }

    /// Applies every change of one store revision under one write lock, so
    /// no read sees the revision in part, moves the view's revision to it,
    /// and publishes it to the feed. Returns whether the view changed.
    pub fn apply_revision(&mut self, batch: WatchBatch<WatchEvent>) -> bool {
        // Made ready (tasks packed) before the lock, which readers share.
        let slots: Vec<Option<Slot>> = batch
            .events
            .iter()
            .map(|event| match event {
                WatchEvent::Put(v) => Some(slot(&v.entity, v.revision, &self.packing)),
                WatchEvent::Delete { .. } => None,
            })
            .collect();
        let changed = {
            let mut s = write(&self.state);
            let mut changed = false;
            for (event, slot) in batch.events.iter().zip(slots) {
                changed |= match (event, slot) {
                    (WatchEvent::Delete { arn, revision, .. }, _) => s.delete(arn, *revision),
                    (WatchEvent::Put(_), Some(slot)) => s.put(slot),
                    (WatchEvent::Put(_), None) => false,
                };
            }
            if batch.revision.seq > s.revision.seq || batch.revision.epoch != s.revision.epoch {
                s.revision = batch.revision;
            }
            // Published under the lock: the feed's head is the view's revision.
            self.feed.publish(batch);
            changed
        };
        if changed {
            self.changes.send_replace(self.revision());
        }
        changed
    }

    /// Replaces the whole view atomically with a complete list read at
    /// `revision`, and marks the cache ready. Readers of the feed are ended
    /// ([`FeedEnd::Relisted`]): what happened between is not known.
    pub fn replace(&mut self, items: Vec<Versioned>, revision: Revision) {
        let slots = Slots::of(items, &self.packing);
        self.replace_with(slots, revision);
    }

    /// What this writer's packed entries share (to make [`Slots`]
    /// elsewhere).
    pub(crate) fn packing(&self) -> Arc<Packing> {
        Arc::clone(&self.packing)
    }

    /// [`CacheWriter::replace`] with the list already made ready.
    pub(crate) fn replace_with(&mut self, slots: Slots, revision: Revision) {
        let mut fresh = Indexed::default();
        for slot in slots.0 {
            fresh.put(slot);
        }
        fresh.revision = revision;
        {
            let mut s = write(&self.state);
            *s = fresh;
            self.feed.reset(revision);
        }
        self.changes.send_replace(revision);
        self.ready.send_replace(true);
    }

    /// The revision of the last change applied.
    pub fn revision(&self) -> Revision {
        read(&self.state).revision
    }

    /// A reader of this writer's cache.
    pub fn reader(&self) -> Cache {
        Cache {
            state: Arc::clone(&self.state),
            ready: self.ready.subscribe(),
            changes: self.changes.subscribe(),
            feed: self.feed.clone(),
            packing: Arc::clone(&self.packing),
        }
    }
}

/// A complete list made ready for the view (tasks packed), which takes a
/// while for a large view: [`follow`] makes it off the runtime's threads.
pub(crate) struct Slots(Vec<Slot>);

impl Slots {
    pub(crate) fn of(items: Vec<Versioned>, packing: &Arc<Packing>) -> Self {
        Slots(
            items
                .iter()
                .map(|v| slot(&v.entity, v.revision, packing))
                .collect(),
        )
    }
}

/// An entity's write made ready for the view: a task packed (when the
/// cache serves the HTTP API), an instance typed.
fn slot(entity: &Entity, revision: Revision, packing: &Arc<Packing>) -> Slot {
    match entity {
        Entity::Instance(i) => Slot::Instance(InstanceSlot {
            value: Arc::clone(i),
            entry: Entry::new(Arc::clone(i), revision),
        }),
        Entity::Task(t) => Slot::Task(
            t.task_arn.clone(),
            TaskSlot {
                keys: TaskKeys::of(t),
                entry: task_entry(t, revision, packing),
            },
        ),
    }
}

/// A task's entry, packed with its v0.3 item when it reads back exactly.
#[cfg(feature = "http")]
fn task_entry(t: &Arc<Task>, revision: Revision, packing: &Arc<Packing>) -> Entry<Task> {
    let mut item = Vec::with_capacity(4096);
    crate::http::shape::write_item_of(&mut item, &**t, revision, false);
    Entry::pack(Arc::clone(t), revision, &item, packing)
}

/// A task's entry: typed (nothing serves items without the HTTP API).
#[cfg(not(feature = "http"))]
fn task_entry(t: &Arc<Task>, revision: Revision, _packing: &Arc<Packing>) -> Entry<Task> {
    Entry::new(Arc::clone(t), revision)
}

#[cfg(test)]
mod tests;

#[cfg(all(test, feature = "http"))]
mod packed_tests;
