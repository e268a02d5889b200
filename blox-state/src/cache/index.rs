//! The cache's in-memory state: primary maps by ARN and secondary indexes.
//!
//! The maps hash with rustc-hash's Fx hasher rather than the standard
//! library's SipHash: gets by ARN and filtered lists take some 15-20% less
//! time (`benches/RESULTS.md`). Their keys are ARNs, statuses and
//! `startedBy` tags that ECS produced and the ingester validated, not input
//! an attacker can choose freely, so SipHash's resistance to collision
//! flooding buys nothing here.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use rustc_hash::FxHashMap as HashMap;

use blox_core::model::{Arn, ContainerInstance, Entity, Task};

use crate::store::{Filter, Revision};

/// A cached entity with the store revision of its last write, and its
/// v0.3 item (`{"metadata", "entity"}`) for that revision, encoded once.
///
/// Entries are recreated on every write, so the encoding belongs to one
/// revision of the entity. It is encoded lazily, by the first request that
/// serves the entity, outside the cache's lock, and then shared by every
/// clone of the entry (the cell is behind an `Arc`): later lists and gets
/// copy the bytes. Encoding at apply time instead would lengthen the write
/// lock of every change and of every relist by the encoding time and keep
/// bytes of entities nobody reads (`benches/RESULTS.md`, issue 17).
#[derive(Debug)]
pub struct Entry<T> {
    /// The entity (shared; cloning the entry does not copy it).
    pub value: Arc<T>,
    /// The store revision of its last write (`metadata.entityVersion`).
    /// The encoding kept for the entry names it: an entry for another
    /// revision is a new entry ([`Entry::new`]), never a changed one.
    pub revision: Revision,
    /// The entity's v0.3 item (metadata and entity), once encoded.
    encoded: Arc<OnceLock<Bytes>>,
}

impl<T> Entry<T> {
    /// An entry for `value` written at `revision`, not yet encoded.
    pub fn new(value: Arc<T>, revision: Revision) -> Self {
        Entry {
            value,
            revision,
            encoded: Arc::default(),
        }
    }

    /// The entry's encoding: `encode`'s result, computed by the first
    /// caller of this entry's revision and kept. Every caller must pass the
    /// same encoder (the HTTP API's v0.3 item, which names the entry's
    /// `revision`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn encoded(&self, encode: impl FnOnce(&T) -> Bytes) -> &Bytes {
        self.encoded.get_or_init(|| encode(&self.value))
    }
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            value: Arc::clone(&self.value),
            revision: self.revision,
            encoded: Arc::clone(&self.encoded),
        }
    }
}

type Set = BTreeSet<Arn>;

/// One kind's indexes by cluster and by cluster and status, and all its ARNs.
type KindIndexes<'a> = (
    &'a HashMap<Arn, Set>,
    &'a HashMap<(Arn, String), Set>,
    &'a Set,
);

fn index_insert<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Set>, key: K, arn: &Arn) {
    map.entry(key).or_default().insert(arn.clone());
}

fn index_remove<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Set>, key: &K, arn: &Arn) {
    if let Some(set) = map.get_mut(key) {
        set.remove(arn);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// Everything the cache holds, with indexes by cluster, status, instance and startedBy.
#[derive(Debug, Default)]
pub(crate) struct Indexed {
    pub(crate) instances: HashMap<Arn, Entry<ContainerInstance>>,
    pub(crate) tasks: HashMap<Arn, Entry<Task>>,
    all_instances: Set,
    all_tasks: Set,
    instances_by_cluster: HashMap<Arn, Set>,
    instances_by_cluster_status: HashMap<(Arn, String), Set>,
    tasks_by_cluster: HashMap<Arn, Set>,
    tasks_by_cluster_status: HashMap<(Arn, String), Set>,
    tasks_by_instance: HashMap<Arn, Set>,
    tasks_by_started_by: HashMap<String, Set>,
    clusters_by_name: HashMap<String, BTreeSet<Arn>>,
    /// The revision of the last change applied.
    pub(crate) revision: Revision,
}

impl Indexed {
    fn note_cluster(&mut self, cluster: &Arn) {
        if let Some(name) = cluster.cluster_name() {
            self.clusters_by_name
                .entry(name.to_owned())
                .or_default()
                .insert(cluster.clone());
        }
    }

    fn unindex_instance(&mut self, i: &ContainerInstance) {
        let arn = &i.container_instance_arn;
        self.all_instances.remove(arn);
        index_remove(&mut self.instances_by_cluster, &i.cluster_arn, arn);
        index_remove(
            &mut self.instances_by_cluster_status,
            &(
                i.cluster_arn.clone(),
                i.status.as_str().to_ascii_uppercase(),
            ),
            arn,
        );
    }

    fn index_instance(&mut self, i: &ContainerInstance) {
        let arn = &i.container_instance_arn;
        self.all_instances.insert(arn.clone());
        index_insert(&mut self.instances_by_cluster, i.cluster_arn.clone(), arn);
        index_insert(
            &mut self.instances_by_cluster_status,
            (
                i.cluster_arn.clone(),
                i.status.as_str().to_ascii_uppercase(),
            ),
            arn,
        );
        self.note_cluster(&i.cluster_arn);
    }

    fn unindex_task(&mut self, t: &Task) {
        let arn = &t.task_arn;
        self.all_tasks.remove(arn);
        index_remove(&mut self.tasks_by_cluster, &t.cluster_arn, arn);
        index_remove(
            &mut self.tasks_by_cluster_status,
            &(
                t.cluster_arn.clone(),
                t.last_status.as_str().to_ascii_uppercase(),
            ),
            arn,
        );
        if let Some(ci) = &t.container_instance_arn {
            index_remove(&mut self.tasks_by_instance, ci, arn);
        }
        if let Some(sb) = &t.started_by {
            index_remove(&mut self.tasks_by_started_by, sb, arn);
        }
    }

    fn index_task(&mut self, t: &Task) {
        let arn = &t.task_arn;
        self.all_tasks.insert(arn.clone());
        index_insert(&mut self.tasks_by_cluster, t.cluster_arn.clone(), arn);
        index_insert(
            &mut self.tasks_by_cluster_status,
            (
                t.cluster_arn.clone(),
                t.last_status.as_str().to_ascii_uppercase(),
            ),
            arn,
        );
        if let Some(ci) = &t.container_instance_arn {
            index_insert(&mut self.tasks_by_instance, ci.clone(), arn);
        }
        if let Some(sb) = &t.started_by {
            index_insert(&mut self.tasks_by_started_by, sb.clone(), arn);
        }
        self.note_cluster(&t.cluster_arn);
    }

    /// Stores an entity written at `revision`, unless the cache already has a
    /// later write of it. Returns whether it changed the cache.
    pub(crate) fn put(&mut self, entity: Entity, revision: Revision) -> bool {
        match entity {
            Entity::Instance(i) => {
                let arn = i.container_instance_arn.clone();
                if let Some(old) = self.instances.get(&arn) {
                    if old.revision.seq >= revision.seq {
                        return false;
                    }
                    let old = Arc::clone(&old.value);
                    self.unindex_instance(&old);
                }
                self.index_instance(&i);
                self.instances.insert(arn, Entry::new(i, revision));
            }
            Entity::Task(t) => {
                let arn = t.task_arn.clone();
                if let Some(old) = self.tasks.get(&arn) {
                    if old.revision.seq >= revision.seq {
                        return false;
                    }
                    let old = Arc::clone(&old.value);
                    self.unindex_task(&old);
                }
                self.index_task(&t);
                self.tasks.insert(arn, Entry::new(t, revision));
            }
        }
        true
    }

    /// Removes an entity deleted at `revision`, unless the cache has a later
    /// write of it. Returns the removed entity.
    pub(crate) fn delete(&mut self, arn: &Arn, revision: Revision) -> Option<Entity> {
        if let Some(old) = self.instances.get(arn) {
            if old.revision.seq >= revision.seq {
                return None;
            }
            let old = self.instances.remove(arn)?;
            self.unindex_instance(&old.value);
            return Some(Entity::Instance(old.value));
        }
        if let Some(old) = self.tasks.get(arn) {
            if old.revision.seq >= revision.seq {
                return None;
            }
            let old = self.tasks.remove(arn)?;
            self.unindex_task(&old.value);
            return Some(Entity::Task(old.value));
        }
        None
    }

    /// The cluster ARNs a cluster filter (name or ARN) selects.
    fn clusters_for(&self, filter: &str) -> Vec<Arn> {
        if let Ok(arn) = Arn::parse(filter) {
            return vec![arn];
        }
        self.clusters_by_name
            .get(filter)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The sets a filter's cluster and status select from a kind's indexes
    /// (by cluster, by cluster and status, all), and `rest` without those
    /// two fields.
    fn cluster_status_sets<'a>(
        &self,
        (by_cluster, by_cluster_status, all): KindIndexes<'a>,
        f: &Filter,
        mut rest: Filter,
    ) -> (Vec<&'a Set>, Filter) {
        let status = f.status.as_deref().map(str::to_ascii_uppercase);
        rest.status = None;
        rest.cluster = None;
        let sets = match (&f.cluster, status) {
            (Some(c), status) => self
                .clusters_for(c)
                .into_iter()
                .filter_map(|c| match &status {
                    Some(s) => by_cluster_status.get(&(c, s.clone())),
                    None => by_cluster.get(&c),
                })
                .collect(),
            (None, Some(s)) => by_cluster_status
                .iter()
                .filter(|((_, st), _)| *st == s)
                .map(|(_, set)| set)
                .collect(),
            (None, None) => vec![all],
        };
        (sets, rest)
    }

    /// Candidate task ARNs for a filter, from the most selective index, in
    /// ARN order, and what of the filter is left to check on them (the
    /// index chosen already guarantees its own fields).
    fn task_candidates(&self, f: &Filter) -> (Vec<&Set>, Filter) {
        let mut rest = f.clone();
        if let Some(sb) = &f.started_by {
            rest.started_by = None;
            return (self.tasks_by_started_by.get(sb).into_iter().collect(), rest);
        }
        if let Some(ci) = &f.container_instance {
            rest.container_instance = None;
            return (self.tasks_by_instance.get(ci).into_iter().collect(), rest);
        }
        let indexes = (
            &self.tasks_by_cluster,
            &self.tasks_by_cluster_status,
            &self.all_tasks,
        );
        self.cluster_status_sets(indexes, f, rest)
    }

    /// [`Self::task_candidates`] for instances.
    fn instance_candidates(&self, f: &Filter) -> (Vec<&Set>, Filter) {
        let indexes = (
            &self.instances_by_cluster,
            &self.instances_by_cluster_status,
            &self.all_instances,
        );
        self.cluster_status_sets(indexes, f, f.clone())
    }

    /// Tasks matching `f` with ARN greater than `after`, in ARN order, at most `limit`.
    pub(crate) fn tasks_page(
        &self,
        f: &Filter,
        after: Option<&Arn>,
        limit: usize,
    ) -> Vec<Entry<Task>> {
        let (sets, rest) = self.task_candidates(f);
        page(&sets, after, limit, |arn| {
            self.tasks
                .get(arn)
                .filter(|e| rest.matches_task(&e.value))
                .cloned()
        })
    }

    /// Instances matching `f` with ARN greater than `after`, in ARN order, at most `limit`.
    pub(crate) fn instances_page(
        &self,
        f: &Filter,
        after: Option<&Arn>,
        limit: usize,
    ) -> Vec<Entry<ContainerInstance>> {
        let (sets, rest) = self.instance_candidates(f);
        page(&sets, after, limit, |arn| {
            self.instances
                .get(arn)
                .filter(|e| rest.matches_instance(&e.value))
                .cloned()
        })
    }
}

/// Walks the union of sorted sets in ARN order after `after`, keeping what `get` returns.
fn page<T>(
    sets: &[&Set],
    after: Option<&Arn>,
    limit: usize,
    get: impl Fn(&Arn) -> Option<T>,
) -> Vec<T> {
    use std::ops::Bound;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut out = Vec::new();
    if let [only] = sets {
        for arn in only.range::<Arn, _>((lower, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            if let Some(v) = get(arn) {
                out.push(v);
            }
        }
        return out;
    }
    let mut arns: Vec<&Arn> = sets
        .iter()
        .flat_map(|s| s.range::<Arn, _>((lower, Bound::Unbounded)))
        .collect();
    arns.sort();
    arns.dedup();
    for arn in arns {
        if out.len() >= limit {
            break;
        }
        if let Some(v) = get(arn) {
            out.push(v);
        }
    }
    out
}
