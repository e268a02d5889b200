//! [`ChangingView`]: a view changed one entity at a time, as the runner
//! keeps its own, for tests and benchmarks of incremental decisions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use blox_core::model::{Arn, ContainerInstance, Task, Timestamp};

use crate::scheduler::{IndexedView, InstanceBackoff, PendingStart, Snapshot, touched_by};

/// A view changed one entity at a time; each [`snapshot`](Self::snapshot)
/// shares it (see [`Scheduler::decide_changed`](crate::Scheduler::decide_changed)).
#[derive(Debug, Clone)]
pub struct ChangingView {
    view: Arc<IndexedView>,
    seq: u64,
}

impl ChangingView {
    /// The view of a snapshot (built with [`SnapshotBuilder`](super::SnapshotBuilder), say).
    pub fn of<D>(snapshot: &Snapshot<D>) -> Self {
        ChangingView {
            view: Arc::clone(snapshot.view()),
            seq: 0,
        }
    }

    /// Puts a task (a new one, or a new version) and returns the instances
    /// the change touched. Copies the view first if a snapshot of it is
    /// still alive.
    pub fn put_task(&mut self, task: Arc<Task>) -> HashSet<Arn> {
        self.seq += 1;
        let view = Arc::make_mut(&mut self.view);
        let old = view.put_task(Arc::clone(&task), self.seq).flatten();
        touched_by(&task, old.as_deref()).collect()
    }

    /// Puts an instance (a new one, or a new version) and returns the
    /// instances the change touched (itself).
    pub fn put_instance(&mut self, instance: Arc<ContainerInstance>) -> HashSet<Arn> {
        self.seq += 1;
        let arn = instance.container_instance_arn.clone();
        Arc::make_mut(&mut self.view).put_instance(instance, self.seq);
        HashSet::from([arn])
    }

    /// The task with this ARN.
    pub fn task(&self, arn: &Arn) -> Option<&Arc<Task>> {
        self.view.task(arn)
    }

    /// A snapshot sharing the view.
    pub fn snapshot<D>(
        &self,
        pending_starts: Vec<PendingStart>,
        backoff: HashMap<Arn, InstanceBackoff>,
        desired: D,
        now: Timestamp,
    ) -> Snapshot<D> {
        Snapshot::of_view(
            Arc::clone(&self.view),
            pending_starts,
            backoff,
            desired,
            now,
        )
    }
}
