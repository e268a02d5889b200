//! [`SnapshotBuilder`]: snapshots from short ids.
//!
//! Ids are expanded to long-format ARNs in the builder's region and account
//! (`i1` in cluster `prod` becomes
//! `arn:aws:ecs:us-east-1:123456789012:container-instance/prod/i1`); a full
//! ARN is taken as is. The builder is for tests: it panics on ids that make
//! invalid ARNs, naming the id.

// A test kit: the inputs are literals written by the test author, and a
// clear panic is the most useful answer to a typo.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use blox_core::model::{
    Arn, Attribute, ContainerInstance, InstanceStatus, Resource, ResourceKind, Task, TaskStatus,
    Timestamp,
};

use crate::scheduler::{InstanceBackoff, PendingStart, Snapshot};

/// Builds a [`Snapshot`] (see the [module docs](crate::testing)).
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    region: String,
    account: String,
    cluster: String,
    instances: Vec<ContainerInstance>,
    tasks: Vec<Task>,
    pending: Vec<PendingStart>,
    backoff: HashMap<Arn, InstanceBackoff>,
    now: Timestamp,
}

impl Default for SnapshotBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn arn(region: &str, account: &str, kind: ResourceKind, path: &str) -> Arn {
    if path.starts_with("arn:") {
        return Arn::parse(path).expect("the test gave an invalid ARN");
    }
    Arn::build("aws", region, account, kind, path)
        .unwrap_or_else(|e| panic!("{path:?} does not make a valid {kind} ARN: {e}"))
}

impl SnapshotBuilder {
    /// The builder's default time: 2026-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp::from_millis(1_767_225_600_000);

    /// An empty snapshot in `us-east-1`, account `123456789012`, cluster
    /// `default`, at [`Self::EPOCH`].
    pub fn new() -> Self {
        SnapshotBuilder {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            cluster: "default".into(),
            instances: Vec::new(),
            tasks: Vec::new(),
            pending: Vec::new(),
            backoff: HashMap::new(),
            now: Self::EPOCH,
        }
    }

    /// Sets the region of the ARNs built from now on.
    pub fn region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }

    /// Sets the account of the ARNs built from now on.
    pub fn account(mut self, account: &str) -> Self {
        self.account = account.into();
        self
    }

    /// Sets the cluster of the instances and tasks added from now on.
    pub fn cluster(mut self, name: &str) -> Self {
        self.cluster = name.into();
        self
    }

    /// Sets the snapshot's time.
    pub fn now(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }

    /// The ARN of the current cluster.
    pub fn cluster_arn(&self) -> Arn {
        arn(
            &self.region,
            &self.account,
            ResourceKind::Cluster,
            &self.cluster,
        )
    }

    /// The ARN of instance `id` of the current cluster.
    pub fn instance_arn(&self, id: &str) -> Arn {
        arn(
            &self.region,
            &self.account,
            ResourceKind::ContainerInstance,
            &format!("{}/{id}", self.cluster),
        )
    }

    /// The ARN of task `id` of the current cluster.
    pub fn task_arn(&self, id: &str) -> Arn {
        arn(
            &self.region,
            &self.account,
            ResourceKind::Task,
            &format!("{}/{id}", self.cluster),
        )
    }

    /// The ARN of a task definition given as `family:revision`.
    pub fn task_definition_arn(&self, family_revision: &str) -> String {
        arn(
            &self.region,
            &self.account,
            ResourceKind::TaskDefinition,
            family_revision,
        )
        .to_string()
    }

    /// Adds an ACTIVE, connected instance `id` to the current cluster, with
    /// 2048 CPU units and 4096 MiB, shaped by `f`.
    pub fn instance(
        mut self,
        id: &str,
        f: impl FnOnce(InstanceBuilder) -> InstanceBuilder,
    ) -> Self {
        let mut i = ContainerInstance::new(self.instance_arn(id), self.cluster_arn());
        i.ec2_instance_id = Some(format!("i-{id}"));
        i.registered_resources = vec![
            Resource::integer("CPU", 2048),
            Resource::integer("MEMORY", 4096),
        ];
        i.remaining_resources = i.registered_resources.clone();
        i.version = Some(1);
        i.registered_at = Some(self.now);
        let b = f(InstanceBuilder(i));
        self.instances.push(b.0);
        self
    }

    /// Adds `n` instances `{prefix}{k}` (k = 0..n), each shaped by `f(k, ..)`.
    pub fn instances(
        mut self,
        n: usize,
        prefix: &str,
        f: impl Fn(usize, InstanceBuilder) -> InstanceBuilder,
    ) -> Self {
        self.instances.reserve(n);
        for k in 0..n {
            self = self.instance(&format!("{prefix}{k}"), |b| f(k, b));
        }
        self
    }

    /// Adds a RUNNING task `id` of `task:1` on instance `instance` (an id of
    /// the current cluster or an ARN; empty for none), shaped by `f`.
    pub fn task(
        mut self,
        id: &str,
        instance: &str,
        f: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let mut t = Task::new(
            self.task_arn(id),
            self.cluster_arn(),
            self.task_definition_arn("task:1"),
        );
        t.container_instance_arn = (!instance.is_empty()).then(|| self.instance_arn(instance));
        t.last_status = TaskStatus::Running;
        t.version = Some(1);
        t.created_at = Some(self.now);
        t.started_at = Some(self.now);
        let b = f(TaskBuilder {
            task: t,
            region: self.region.clone(),
            account: self.account.clone(),
        });
        self.tasks.push(b.task);
        self
    }

    /// Records a start issued by the runner and not yet visible.
    pub fn pending_start(
        mut self,
        instance: &str,
        task_definition: &str,
        started_by: &str,
    ) -> Self {
        self.pending.push(PendingStart {
            instance: self.instance_arn(instance),
            task_definition: task_definition.into(),
            started_by: started_by.into(),
            since: self.now,
            task: None,
        });
        self
    }

    /// Holds instance `instance` in backoff for a minute after a failure
    /// with ECS's `reason`.
    pub fn backoff(mut self, instance: &str, reason: &str) -> Self {
        self.backoff.insert(
            self.instance_arn(instance),
            InstanceBackoff {
                until: self.now.plus(Duration::from_secs(60)),
                failures: 1,
                last_reason: Some(reason.into()),
            },
        );
        self
    }

    /// Records an expired backoff of `instance` (it ended a second ago).
    pub fn expired_backoff(mut self, instance: &str, reason: &str) -> Self {
        self.backoff.insert(
            self.instance_arn(instance),
            InstanceBackoff {
                until: Timestamp::from_millis(self.now.as_millis() - 1000),
                failures: 3,
                last_reason: Some(reason.into()),
            },
        );
        self
    }

    /// The snapshot, with `desired` as the scheduler's desired state.
    pub fn build<D>(self, desired: D) -> Snapshot<D> {
        Snapshot::new(
            self.instances.into_iter().map(Arc::new).collect(),
            self.tasks.into_iter().map(Arc::new).collect(),
            self.pending,
            self.backoff,
            desired,
            self.now,
        )
    }
}

/// Shapes a container instance.
#[derive(Debug, Clone)]
pub struct InstanceBuilder(ContainerInstance);

impl InstanceBuilder {
    /// Sets an attribute.
    pub fn attr(mut self, name: &str, value: &str) -> Self {
        self.0.attributes.retain(|a| a.name != name);
        self.0.attributes.push(Attribute::new(name, value));
        self
    }

    /// Sets an attribute without a value (a capability).
    pub fn flag(mut self, name: &str) -> Self {
        self.0.attributes.retain(|a| a.name != name);
        let mut a = Attribute::new(name, "");
        a.value = None;
        self.0.attributes.push(a);
        self
    }

    /// Sets the availability zone (`ecs.availability-zone`).
    pub fn az(self, zone: &str) -> Self {
        self.attr("ecs.availability-zone", zone)
    }

    /// Sets the instance type (`ecs.instance-type`).
    pub fn instance_type(self, t: &str) -> Self {
        self.attr("ecs.instance-type", t)
    }

    /// Sets the status.
    pub fn status(mut self, s: InstanceStatus) -> Self {
        self.0.status = s;
        self
    }

    /// Marks it DRAINING.
    pub fn draining(self) -> Self {
        self.status(InstanceStatus::Draining)
    }

    /// Marks it INACTIVE.
    pub fn inactive(self) -> Self {
        self.status(InstanceStatus::Inactive)
    }

    /// Marks its agent disconnected.
    pub fn disconnected(mut self) -> Self {
        self.0.agent_connected = false;
        self
    }

    /// Sets the registered and remaining CPU units and memory (MiB).
    pub fn resources(mut self, cpu: i64, memory: i64) -> Self {
        self.0.registered_resources = vec![
            Resource::integer("CPU", cpu),
            Resource::integer("MEMORY", memory),
        ];
        self.0.remaining_resources = self.0.registered_resources.clone();
        self
    }

    /// Sets ECS's version.
    pub fn version(mut self, v: u64) -> Self {
        self.0.version = Some(v);
        self
    }
}

/// Shapes a task.
#[derive(Debug, Clone)]
pub struct TaskBuilder {
    task: Task,
    region: String,
    account: String,
}

impl TaskBuilder {
    /// Sets the task definition (`family:revision`, expanded to its ARN, or an ARN).
    pub fn task_definition(mut self, td: &str) -> Self {
        self.task.task_definition_arn = arn(
            &self.region,
            &self.account,
            ResourceKind::TaskDefinition,
            td,
        )
        .to_string();
        self
    }

    /// Sets `startedBy`.
    pub fn started_by(mut self, s: &str) -> Self {
        self.task.started_by = Some(s.into());
        self
    }

    /// Sets the group.
    pub fn group(mut self, g: &str) -> Self {
        self.task.group = Some(g.into());
        self
    }

    /// Sets the last and desired status.
    pub fn status(mut self, last: TaskStatus, desired: TaskStatus) -> Self {
        self.task.last_status = last;
        self.task.desired_status = desired;
        self
    }

    /// PENDING, desired RUNNING (not started yet).
    pub fn pending(mut self) -> Self {
        self.task.started_at = None;
        self.status(TaskStatus::Pending, TaskStatus::Running)
    }

    /// RUNNING, desired STOPPED (being stopped).
    pub fn stopping(self) -> Self {
        self.status(TaskStatus::Running, TaskStatus::Stopped)
    }

    /// STOPPED with a stop reason.
    pub fn stopped(mut self, reason: &str) -> Self {
        self.task.stopped_reason = Some(reason.into());
        self.status(TaskStatus::Stopped, TaskStatus::Stopped)
    }

    /// Sets when it started running.
    pub fn started_at(mut self, t: Timestamp) -> Self {
        self.task.started_at = Some(t);
        self
    }

    /// Sets the availability zone.
    pub fn az(mut self, zone: &str) -> Self {
        self.task.availability_zone = Some(zone.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_expand_to_long_arns_in_the_current_cluster() {
        let snap = SnapshotBuilder::new()
            .cluster("prod")
            .instance("i1", |i| i.az("us-east-1a").attr("k", "v"))
            .task("t1", "i1", |t| t.task_definition("web:2").started_by("me"))
            .build(());
        let i = snap.instances().next().expect("one instance");
        assert_eq!(
            i.container_instance_arn.as_str(),
            "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/i1"
        );
        assert_eq!(i.cluster_arn.cluster_name(), Some("prod"));
        assert_eq!(i.availability_zone(), Some("us-east-1a"));
        assert_eq!(i.attribute("k"), Some("v"));
        let t = snap.tasks().next().expect("one task");
        assert_eq!(
            t.container_instance_arn.as_ref(),
            Some(&i.container_instance_arn)
        );
        assert_eq!(
            t.task_definition_arn,
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2"
        );
        assert_eq!(t.last_status, TaskStatus::Running);
        assert_eq!(snap.live_tasks_on(&i.container_instance_arn).count(), 1);
    }

    #[test]
    fn backoff_holds_until_a_minute_later_and_expired_backoff_does_not() {
        let b = SnapshotBuilder::new();
        let (a1, a2) = (b.instance_arn("a"), b.instance_arn("b"));
        let snap = b
            .backoff("a", "RESOURCE:MEMORY")
            .expired_backoff("b", "x")
            .build(());
        assert!(snap.in_backoff(&a1));
        assert!(!snap.in_backoff(&a2));
    }
}
