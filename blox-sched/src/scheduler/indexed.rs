//! [`IndexedView`]: the instances and tasks a snapshot shows, with the
//! indexes its queries read, kept up to date one change at a time.
//!
//! The runner keeps one view per scheduler and applies each revision the
//! cache publishes to it (O(change)); a snapshot shares it through an
//! `Arc`, so taking one costs nothing, and the runner's next change copies
//! the view only if a scheduler kept an old snapshot alive.
//!
//! Index sets are in ARN order, so every query answers in the same order
//! whatever the history of changes that built the view.

use std::collections::BTreeSet;
use std::sync::Arc;

use blox_core::model::{Arn, ContainerInstance, Task};

use super::index::key_hash;
use crate::daemon::fasthash::FastMap;

/// An entity and the store sequence number it was written at.
#[derive(Debug, Clone)]
struct Held<T> {
    value: Arc<T>,
    seq: u64,
}

/// Instances and tasks with their indexes (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexedView {
    tasks: FastMap<Arn, Held<Task>>,
    instances: FastMap<Arn, Held<ContainerInstance>>,
    tasks_by_instance: FastMap<Arn, BTreeSet<Arn>>,
    tasks_by_started_by: FastMap<String, BTreeSet<Arn>>,
    instances_by_cluster: FastMap<Arn, BTreeSet<Arn>>,
    /// By the hash of an attribute name, and of a name and value
    /// ([`attribute_key`]); lookups check the attribute itself.
    instances_by_attribute: FastMap<u64, BTreeSet<Arn>>,
}

/// The hash under which an attribute name, or a name and value, is filed
/// (a slice's hash covers its length, so the two kinds never mix).
pub(crate) fn attribute_key(name: &str, value: Option<&str>) -> u64 {
    match value {
        Some(v) => key_hash(&[name, v]),
        None => key_hash(&[name]),
    }
}

fn file<K: std::hash::Hash + Eq>(index: &mut FastMap<K, BTreeSet<Arn>>, key: K, arn: &Arn) {
    index.entry(key).or_default().insert(arn.clone());
}

fn unfile<K, Q>(index: &mut FastMap<K, BTreeSet<Arn>>, key: &Q, arn: &Arn)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(set) = index.get_mut(key) {
        set.remove(arn);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

/// Whether a write at `seq` replaces one held at `held` (sequence 0, for
/// views built from plain lists, always does): the cache's rule.
fn newer(held: u64, seq: u64) -> bool {
    seq == 0 || held < seq
}

/// The instances a change of a task touches: the one it is on, and the one
/// it was on before.
pub(crate) fn touched_by(new: &Task, old: Option<&Task>) -> impl Iterator<Item = Arn> {
    let before = old.and_then(|o| o.container_instance_arn.clone());
    new.container_instance_arn.clone().into_iter().chain(before)
}

fn attribute_keys(i: &ContainerInstance) -> impl Iterator<Item = u64> + '_ {
    i.attributes.iter().flat_map(|a| {
        let named = attribute_key(&a.name, None);
        let valued = a.value.as_deref().map(|v| attribute_key(&a.name, Some(v)));
        std::iter::once(named).chain(valued)
    })
}

impl IndexedView {
    /// A view of these entities (each at sequence 0).
    pub(crate) fn of(instances: Vec<Arc<ContainerInstance>>, tasks: Vec<Arc<Task>>) -> Self {
        let mut view = IndexedView::default();
        view.tasks.reserve(tasks.len());
        view.instances.reserve(instances.len());
        for i in instances {
            view.put_instance(i, 0);
        }
        for t in tasks {
            view.put_task(t, 0);
        }
        view
    }

    /// Puts a task written at `seq`, unless the view holds a later (or the
    /// same) write of it (sequence 0: always). Returns `None` when it was
    /// stale, else `Some` of the version it replaced, if any.
    pub(crate) fn put_task(&mut self, t: Arc<Task>, seq: u64) -> Option<Option<Arc<Task>>> {
        let old = match self.tasks.get(&t.task_arn) {
            Some(old) if !newer(old.seq, seq) => return None,
            Some(old) => Some(Arc::clone(&old.value)),
            None => None,
        };
        if let Some(old) = &old {
            self.unindex_task(old);
        }
        self.index_task(&t);
        self.tasks.insert(
            t.task_arn.clone(),
            Held {
                value: Arc::clone(&t),
                seq,
            },
        );
        Some(old)
    }

    /// Removes a task deleted at `seq`, unless the view holds a later write
    /// of it. Returns the removed version.
    pub(crate) fn delete_task(&mut self, arn: &Arn, seq: u64) -> Option<Arc<Task>> {
        match self.tasks.get(arn) {
            Some(old) if newer(old.seq, seq) => {}
            _ => return None,
        }
        let old = self.tasks.remove(arn)?.value;
        self.unindex_task(&old);
        Some(old)
    }

    /// Puts an instance written at `seq` (as [`Self::put_task`]).
    pub(crate) fn put_instance(
        &mut self,
        i: Arc<ContainerInstance>,
        seq: u64,
    ) -> Option<Option<Arc<ContainerInstance>>> {
        let arn = i.container_instance_arn.clone();
        let old = match self.instances.get(&arn) {
            Some(old) if !newer(old.seq, seq) => return None,
            Some(old) => Some(Arc::clone(&old.value)),
            None => None,
        };
        if let Some(old) = &old {
            self.unindex_instance(old);
        }
        self.index_instance(&i);
        self.instances.insert(arn, Held { value: i, seq });
        Some(old)
    }

    /// Removes an instance deleted at `seq` (as [`Self::delete_task`]).
    pub(crate) fn delete_instance(
        &mut self,
        arn: &Arn,
        seq: u64,
    ) -> Option<Arc<ContainerInstance>> {
        match self.instances.get(arn) {
            Some(old) if newer(old.seq, seq) => {}
            _ => return None,
        }
        let old = self.instances.remove(arn)?.value;
        self.unindex_instance(&old);
        Some(old)
    }

    fn index_task(&mut self, t: &Task) {
        if let Some(i) = &t.container_instance_arn {
            file(&mut self.tasks_by_instance, i.clone(), &t.task_arn);
        }
        if let Some(s) = &t.started_by {
            if let Some(set) = self.tasks_by_started_by.get_mut(s.as_str()) {
                set.insert(t.task_arn.clone());
            } else {
                file(&mut self.tasks_by_started_by, s.clone(), &t.task_arn);
            }
        }
    }

    fn unindex_task(&mut self, t: &Task) {
        if let Some(i) = &t.container_instance_arn {
            unfile(&mut self.tasks_by_instance, i, &t.task_arn);
        }
        if let Some(s) = &t.started_by {
            unfile(&mut self.tasks_by_started_by, s.as_str(), &t.task_arn);
        }
    }

    fn index_instance(&mut self, i: &ContainerInstance) {
        let arn = &i.container_instance_arn;
        file(&mut self.instances_by_cluster, i.cluster_arn.clone(), arn);
        for key in attribute_keys(i) {
            file(&mut self.instances_by_attribute, key, arn);
        }
    }

    fn unindex_instance(&mut self, i: &ContainerInstance) {
        let arn = &i.container_instance_arn;
        unfile(&mut self.instances_by_cluster, &i.cluster_arn, arn);
        for key in attribute_keys(i) {
            unfile(&mut self.instances_by_attribute, &key, arn);
        }
    }

    /// Every task, in no particular order.
    pub(crate) fn tasks(&self) -> impl ExactSizeIterator<Item = &Arc<Task>> + '_ {
        self.tasks.values().map(|h| &h.value)
    }

    /// Every instance, in no particular order.
    pub(crate) fn instances(&self) -> impl ExactSizeIterator<Item = &Arc<ContainerInstance>> + '_ {
        self.instances.values().map(|h| &h.value)
    }

    /// The task with this ARN.
    pub(crate) fn task(&self, arn: &Arn) -> Option<&Arc<Task>> {
        self.tasks.get(arn).map(|h| &h.value)
    }

    /// The instance with this ARN.
    pub(crate) fn instance(&self, arn: &Arn) -> Option<&Arc<ContainerInstance>> {
        self.instances.get(arn).map(|h| &h.value)
    }

    fn tasks_of<'a>(
        &'a self,
        set: Option<&'a BTreeSet<Arn>>,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        set.into_iter().flatten().filter_map(|a| self.task(a))
    }

    fn instances_of<'a>(
        &'a self,
        set: Option<&'a BTreeSet<Arn>>,
    ) -> impl Iterator<Item = &'a Arc<ContainerInstance>> + 'a {
        set.into_iter().flatten().filter_map(|a| self.instance(a))
    }

    /// Tasks on an instance, in ARN order.
    pub(crate) fn tasks_on<'a>(
        &'a self,
        instance: &Arn,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.tasks_of(self.tasks_by_instance.get(instance))
    }

    /// Tasks tagged `started_by`, in ARN order.
    pub(crate) fn tasks_started_by<'a>(
        &'a self,
        started_by: &str,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.tasks_of(self.tasks_by_started_by.get(started_by))
    }

    /// Instances of a cluster (by ARN), in ARN order.
    pub(crate) fn instances_in<'a>(
        &'a self,
        cluster: &Arn,
    ) -> impl Iterator<Item = &'a Arc<ContainerInstance>> + 'a {
        self.instances_of(self.instances_by_cluster.get(cluster))
    }

    /// The clusters that have instances.
    pub(crate) fn clusters(&self) -> impl Iterator<Item = &Arn> + '_ {
        self.instances_by_cluster.keys()
    }

    /// Instances filed under an attribute key (candidates: the caller
    /// checks the attribute), in ARN order.
    pub(crate) fn instances_under<'a>(
        &'a self,
        key: u64,
    ) -> impl Iterator<Item = &'a Arc<ContainerInstance>> + 'a {
        self.instances_of(self.instances_by_attribute.get(&key))
    }
}
