//! [`Snapshot`]: what a scheduler sees, with indexed queries.
//!
//! The instances and tasks live in an indexed view the runner keeps up to
//! date change by change (O(change) per cycle); a snapshot shares it, so
//! taking one costs nothing and every query costs O(result). A snapshot is
//! built whole with [`Snapshot::new`] elsewhere (tests use the `testing`
//! feature's `SnapshotBuilder`) and read through iterators and queries.

use std::collections::HashMap;
use std::sync::Arc;

use blox_core::model::{Arn, ContainerInstance, InstanceStatus, Task, Timestamp};

use super::index::{LazyPostings, Postings, arn_hash};
use super::indexed::{IndexedView, attribute_key};

/// A start the runner issued whose task is not yet visible in the view (one
/// per start: several copies on one instance are several pending starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStart {
    /// The instance the task was started on.
    pub instance: Arn,
    /// The task definition.
    pub task_definition: String,
    /// The `startedBy` tag.
    pub started_by: String,
    /// When the start's intent was written.
    pub since: Timestamp,
    /// The task ECS created for it, once its reply named it.
    pub task: Option<Arn>,
}

/// Why the runner is holding off starting tasks on an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceBackoff {
    /// No start before this time.
    pub until: Timestamp,
    /// Consecutive failures (tasks that stopped soon after starting, or placement failures).
    pub failures: u32,
    /// ECS's reason for the last failure (`RESOURCE:MEMORY`, `EssentialContainerExited`, ...).
    pub last_reason: Option<String>,
}

/// A consistent view of the cluster(s) a scheduler manages, plus its own
/// desired state (see the [scheduler guide](crate::scheduler) for what it
/// guarantees).
///
/// [`instances`](Self::instances) and [`tasks`](Self::tasks) list in no
/// particular order; every indexed query ([`tasks_on`](Self::tasks_on),
/// [`tasks_started_by`](Self::tasks_started_by),
/// [`instances_in`](Self::instances_in), the attribute queries) answers in
/// ARN order, so a decision built on them is deterministic for a given view.
#[derive(Debug, Clone)]
pub struct Snapshot<D> {
    view: Arc<IndexedView>,
    pending_starts: Vec<PendingStart>,
    /// Pending starts by instance, built on first use.
    pending_by_instance: LazyPostings,
    /// Instances in backoff, by instance ARN.
    pub backoff: HashMap<Arn, InstanceBackoff>,
    /// The scheduler's own desired state.
    pub desired: D,
    /// The time of the snapshot.
    pub now: Timestamp,
}

impl<D> Snapshot<D> {
    /// A snapshot of `instances` (every status), `tasks` (every status,
    /// stopped ones within the retention period included), the starts in
    /// flight, the instances in backoff, and the scheduler's desired state,
    /// at `now`. Indexing the lists costs O(n log n); the runner instead
    /// shares a view it keeps up to date.
    pub fn new(
        instances: Vec<Arc<ContainerInstance>>,
        tasks: Vec<Arc<Task>>,
        pending_starts: Vec<PendingStart>,
        backoff: HashMap<Arn, InstanceBackoff>,
        desired: D,
        now: Timestamp,
    ) -> Self {
        let view = Arc::new(IndexedView::of(instances, tasks));
        Snapshot::of_view(view, pending_starts, backoff, desired, now)
    }

    /// A snapshot sharing an indexed view.
    pub(crate) fn of_view(
        view: Arc<IndexedView>,
        pending_starts: Vec<PendingStart>,
        backoff: HashMap<Arn, InstanceBackoff>,
        desired: D,
        now: Timestamp,
    ) -> Self {
        Snapshot {
            view,
            pending_starts,
            pending_by_instance: LazyPostings::default(),
            backoff,
            desired,
            now,
        }
    }

    /// The same view with another desired state.
    pub fn with_desired<E>(self, desired: E) -> Snapshot<E> {
        Snapshot {
            view: self.view,
            pending_starts: self.pending_starts,
            pending_by_instance: self.pending_by_instance,
            backoff: self.backoff,
            desired,
            now: self.now,
        }
    }

    /// Every container instance, of every status, in no particular order.
    pub fn instances(&self) -> impl ExactSizeIterator<Item = &Arc<ContainerInstance>> + '_ {
        self.view.instances()
    }

    /// Every task, of every status (stopped ones within the retention
    /// period included), in no particular order.
    pub fn tasks(&self) -> impl ExactSizeIterator<Item = &Arc<Task>> + '_ {
        self.view.tasks()
    }

    /// Every start issued by the runner that the view does not show yet.
    pub fn pending_starts(&self) -> impl ExactSizeIterator<Item = &PendingStart> + '_ {
        self.pending_starts.iter()
    }

    /// ACTIVE instances whose agent is connected (a scan of every instance).
    pub fn active_instances(&self) -> impl Iterator<Item = &Arc<ContainerInstance>> {
        self.instances().filter(|i| is_active(i))
    }

    /// Tasks that are running or on their way to run (a scan of every task).
    pub fn live_tasks(&self) -> impl Iterator<Item = &Arc<Task>> {
        self.tasks().filter(|t| t.is_live())
    }

    /// The instance with this ARN. O(1).
    pub fn instance(&self, arn: &Arn) -> Option<&Arc<ContainerInstance>> {
        self.view.instance(arn)
    }

    /// The task with this ARN. O(1).
    pub fn task(&self, arn: &Arn) -> Option<&Arc<Task>> {
        self.view.task(arn)
    }

    /// The clusters (ARNs) the view has instances of.
    pub fn clusters(&self) -> impl Iterator<Item = &Arn> + '_ {
        self.view.clusters()
    }

    /// Instances of a cluster, of every status, in ARN order. O(result).
    pub fn instances_in<'a>(
        &'a self,
        cluster: &Arn,
    ) -> impl Iterator<Item = &'a Arc<ContainerInstance>> + 'a {
        self.view.instances_in(cluster)
    }

    /// Instances, of every status, whose attribute `name` has value `value`
    /// (ECS container-instance attributes: `ecs.availability-zone`,
    /// `ecs.instance-type`, custom ones), in ARN order. O(result).
    pub fn instances_with_attribute<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ContainerInstance>> + 'a {
        self.view
            .instances_under(attribute_key(name, Some(value)))
            .filter(move |i| {
                i.attributes
                    .iter()
                    .any(|a| a.name == name && a.value.as_deref() == Some(value))
            })
    }

    /// Instances, of every status, that have attribute `name`, with any
    /// value or none (a capability such as
    /// `com.amazonaws.ecs.capability.docker-remote-api.1.19`), in ARN
    /// order. O(result).
    pub fn instances_having_attribute<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ContainerInstance>> + 'a {
        self.view
            .instances_under(attribute_key(name, None))
            .filter(move |i| i.attributes.iter().any(|a| a.name == name))
    }

    /// Tasks on an instance, of every status, in ARN order. O(result).
    pub fn tasks_on<'a>(&'a self, instance: &Arn) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.view.tasks_on(instance)
    }

    /// Live tasks on an instance ([`Task::is_live`]), in ARN order.
    /// O(tasks on the instance).
    pub fn live_tasks_on<'a>(&'a self, instance: &Arn) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.tasks_on(instance).filter(|t| t.is_live())
    }

    /// Tasks tagged `started_by`, of every status, on any instance, in ARN
    /// order. O(result).
    pub fn tasks_started_by<'a>(
        &'a self,
        started_by: &str,
    ) -> impl Iterator<Item = &'a Arc<Task>> + 'a {
        self.view.tasks_started_by(started_by)
    }

    /// The starts in flight on an instance (one per start), in the order
    /// the runner lists them. O(result).
    pub fn pending_on<'a>(
        &'a self,
        instance: &'a Arn,
    ) -> impl Iterator<Item = &'a PendingStart> + 'a {
        let index = self.pending_by_instance.get_or_build(|| {
            Postings::build(&self.pending_starts, |p, emit| {
                emit(arn_hash(p.instance.as_str()))
            })
        });
        index
            .get(arn_hash(instance.as_str()))
            .map(|p| &self.pending_starts[p])
            .filter(move |p| &p.instance == instance)
    }

    /// How many starts tagged `started_by` are in flight on an instance.
    pub fn pending_count(&self, instance: &Arn, started_by: &str) -> usize {
        self.pending_on(instance)
            .filter(|p| p.started_by == started_by)
            .count()
    }

    /// The number of starts in flight per instance.
    pub fn pending_per_instance(&self) -> HashMap<&Arn, usize> {
        let mut out: HashMap<&Arn, usize> = HashMap::new();
        for p in &self.pending_starts {
            *out.entry(&p.instance).or_default() += 1;
        }
        out
    }

    /// Whether the runner is holding off starts on an instance.
    pub fn in_backoff(&self, instance: &Arn) -> bool {
        self.backoff
            .get(instance)
            .is_some_and(|b| b.until > self.now)
    }

    /// The indexed view, shared.
    pub(crate) fn view(&self) -> &Arc<IndexedView> {
        &self.view
    }

    /// The desired state, taken out of the snapshot.
    pub(crate) fn into_desired(self) -> D {
        self.desired
    }
}

/// Whether an instance is ACTIVE with its agent connected: one ECS may
/// place a started task on (as far as the snapshot knows).
pub fn is_active(i: &ContainerInstance) -> bool {
    i.status == InstanceStatus::Active && i.agent_connected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SnapshotBuilder;

    /// A deterministic mix: 40 instances over 3 zones, some with a `role`,
    /// some with a capability flag; 400 tasks of 5 tags and every status,
    /// some on no instance or on an instance the view lacks; 30 pending starts.
    fn mixed() -> Snapshot<()> {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut b = SnapshotBuilder::new().cluster("prod");
        for k in 0..40 {
            let (zone, role, flag) = (next(3), next(4), next(2));
            b = b.instance(&format!("i{k}"), |i| {
                let i = i.az(["us-east-1a", "us-east-1b", "us-east-1c"][zone as usize]);
                let i = match role {
                    0 => i.attr("role", "web"),
                    1 => i.attr("role", "db"),
                    _ => i,
                };
                if flag == 1 { i.flag("gpu") } else { i }
            });
        }
        for k in 0..400 {
            let on = match next(20) {
                0 => String::new(),
                1 => "elsewhere".into(),
                _ => format!("i{}", next(40)),
            };
            let (tag, status) = (next(6), next(4));
            b = b.task(&format!("t{k}"), &on, |t| {
                let t = if tag < 5 {
                    t.started_by(&format!("tag-{tag}"))
                } else {
                    t
                };
                match status {
                    0 => t.pending(),
                    1 => t.stopping(),
                    2 => t.stopped("done"),
                    _ => t,
                }
            });
        }
        for _ in 0..30 {
            let (i, tag) = (next(45), next(3));
            b = b.pending_start(&format!("i{i}"), "web:1", &format!("tag-{tag}"));
        }
        b.build(())
    }

    fn arns<'a, T: 'a>(it: impl Iterator<Item = &'a Arc<T>>, key: impl Fn(&T) -> &Arn) -> Vec<Arn> {
        it.map(|x| key(x).clone()).collect()
    }

    #[test]
    fn tasks_on_an_instance_equal_a_scan_in_arn_order() {
        let snap = mixed();
        let b = SnapshotBuilder::new().cluster("prod");
        let mut wanted: Vec<Arn> = snap
            .instances()
            .map(|i| i.container_instance_arn.clone())
            .collect();
        wanted.push(b.instance_arn("elsewhere"));
        wanted.push(b.instance_arn("absent"));
        let task = |t: &Task| t.task_arn.clone();
        for i in &wanted {
            let mut scan: Vec<Arn> = snap
                .tasks()
                .filter(|t| t.container_instance_arn.as_ref() == Some(i))
                .map(|t| task(t))
                .collect();
            scan.sort();
            assert_eq!(arns(snap.tasks_on(i), |t| &t.task_arn), scan, "{i}");
            let mut live: Vec<Arn> = snap
                .live_tasks()
                .filter(|t| t.container_instance_arn.as_ref() == Some(i))
                .map(|t| task(t))
                .collect();
            live.sort();
            assert_eq!(arns(snap.live_tasks_on(i), |t| &t.task_arn), live, "{i}");
        }
        // Every task on an instance is found once.
        let on_some: usize = wanted.iter().map(|i| snap.tasks_on(i).count()).sum();
        let scan = snap
            .tasks()
            .filter(|t| t.container_instance_arn.is_some())
            .count();
        assert_eq!(on_some, scan);
        assert!(scan > 300, "the mix puts most tasks on an instance");
    }

    #[test]
    fn tasks_by_started_by_equal_a_scan_in_arn_order() {
        let snap = mixed();
        for tag in ["tag-0", "tag-1", "tag-4", "tag-5", "tag", ""] {
            let mut scan: Vec<Arn> = snap
                .tasks()
                .filter(|t| t.started_by.as_deref() == Some(tag))
                .map(|t| t.task_arn.clone())
                .collect();
            scan.sort();
            assert_eq!(
                arns(snap.tasks_started_by(tag), |t| &t.task_arn),
                scan,
                "{tag}"
            );
        }
        assert!(snap.tasks_started_by("tag-0").count() > 30);
    }

    #[test]
    fn instances_by_attribute_equal_a_scan_in_arn_order() {
        let snap = mixed();
        let inst = |i: &ContainerInstance| i.container_instance_arn.clone();
        for (name, value) in [
            ("role", "web"),
            ("role", "db"),
            ("role", "cache"),
            ("ecs.availability-zone", "us-east-1b"),
            ("gpu", ""),
            ("missing", "x"),
        ] {
            let mut scan: Vec<Arn> = snap
                .instances()
                .filter(|i| i.attribute(name) == Some(value))
                .map(|i| inst(i))
                .collect();
            scan.sort();
            assert_eq!(
                arns(snap.instances_with_attribute(name, value), |i| &i
                    .container_instance_arn),
                scan,
                "{name}={value}"
            );
        }
        for name in ["role", "gpu", "ecs.availability-zone", "missing"] {
            let mut scan: Vec<Arn> = snap
                .instances()
                .filter(|i| i.attributes.iter().any(|a| a.name == name))
                .map(|i| inst(i))
                .collect();
            scan.sort();
            assert_eq!(
                arns(snap.instances_having_attribute(name), |i| &i
                    .container_instance_arn),
                scan,
                "{name}"
            );
        }
        assert!(snap.instances_having_attribute("gpu").count() > 5);
    }

    #[test]
    fn instance_lookup_and_pending_starts_equal_a_scan() {
        let snap = mixed();
        let b = SnapshotBuilder::new().cluster("prod");
        for k in 0..45 {
            let arn = b.instance_arn(&format!("i{k}"));
            let scan = snap.instances().find(|i| i.container_instance_arn == arn);
            assert_eq!(
                snap.instance(&arn).map(|i| &i.container_instance_arn),
                scan.map(|i| &i.container_instance_arn)
            );
            let pending: Vec<&PendingStart> = snap
                .pending_starts()
                .filter(|p| p.instance == arn)
                .collect();
            assert_eq!(snap.pending_on(&arn).collect::<Vec<_>>(), pending);
            for tag in ["tag-0", "tag-1", "tag-2"] {
                let n = pending.iter().filter(|p| p.started_by == tag).count();
                assert_eq!(snap.pending_count(&arn, tag), n);
            }
        }
        assert_eq!(snap.pending_starts().len(), 30);
    }

    #[test]
    fn a_flag_is_had_but_matches_no_value_and_values_do_not_cross_names() {
        let snap = SnapshotBuilder::new()
            .instance("a", |i| i.flag("gpu").attr("x", "y"))
            .instance("b", |i| i.attr("gpu", "").attr("xy", ""))
            .build(());
        let ids = |it: Box<dyn Iterator<Item = &Arc<ContainerInstance>> + '_>| {
            it.map(|i| i.container_instance_arn.id().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(Box::new(snap.instances_having_attribute("gpu"))),
            ["a", "b"]
        );
        assert_eq!(
            ids(Box::new(snap.instances_with_attribute("gpu", ""))),
            ["b"]
        );
        assert_eq!(
            ids(Box::new(snap.instances_with_attribute("x", "y"))),
            ["a"]
        );
        assert!(
            snap.instances_with_attribute("xy", "")
                .all(|i| i.container_instance_arn.id() == "b")
        );
        assert_eq!(snap.instances_with_attribute("x", "").count(), 0);
    }

    #[test]
    fn with_desired_keeps_the_view_and_its_indexes() {
        let snap = mixed();
        let before = snap.tasks_started_by("tag-2").count();
        let other = snap.with_desired(7u8);
        assert_eq!(other.desired, 7);
        assert_eq!(other.tasks_started_by("tag-2").count(), before);
        assert_eq!(other.tasks().len(), 400);
        assert_eq!(other.instances().len(), 40);
    }
}
