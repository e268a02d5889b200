//! The [`Scheduler`] trait: decide from a snapshot, return actions, do no I/O.
//!
//! A scheduler is a pure function of a consistent [`Snapshot`] of the
//! cluster (instances, tasks, starts still in flight, instances in backoff)
//! and of its own desired state `D`. It returns [`Action`]s; the runner
//! executes them against ECS, records intents so nothing starts twice, backs
//! off crash-looping instances, caps actions per cycle, and honours dry-run
//! and pause. Because a scheduler does no I/O, it is unit-tested with plain
//! data (see the `testing` feature's snapshot builder).
//!
//! ```
//! use blox_sched::scheduler::{Action, Scheduler, Snapshot};
//!
//! /// Stops every task started by "legacy".
//! struct Reaper;
//!
//! impl Scheduler for Reaper {
//!     type Desired = ();
//!     fn name(&self) -> &str { "reaper" }
//!     fn decide(&self, snap: &Snapshot<()>) -> Vec<Action> {
//!         snap.live_tasks()
//!             .filter(|t| t.started_by.as_deref() == Some("legacy"))
//!             .map(|t| Action::stop(t.cluster_arn.clone(), t.task_arn.clone(), "legacy task"))
//!             .collect()
//!     }
//! }
//! ```

mod index;
mod snapshot;

use std::collections::BTreeMap;

use blox_core::model::{Arn, InstanceStatus, TaskOverride};

pub use snapshot::{InstanceBackoff, PendingStart, Snapshot, is_active};

/// Start one task of a task definition on each of the given instances; an
/// instance named `n` times gets `n` copies. Each start has its own intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartAction {
    /// The cluster.
    pub cluster: Arn,
    /// `family:revision` or a task definition ARN.
    pub task_definition: String,
    /// The instances, one entry per copy (the runner splits them into
    /// StartTask calls of at most ten distinct instances).
    pub instances: Vec<Arn>,
    /// The `startedBy` tag (at most 36 characters, an ECS limit).
    pub started_by: String,
    /// Why (for logs and status).
    pub reason: String,
    /// The task group (ECS's default: `family:{family}`).
    pub group: Option<String>,
    /// Overrides of the task definition (boxed: most starts have none).
    pub overrides: Option<Box<TaskOverride>>,
    /// Tags of the started tasks (needs `ecs:TagResource`).
    pub tags: BTreeMap<String, String>,
}

impl StartAction {
    /// A start of `task_definition` on `instances`, tagged `started_by`,
    /// without group, overrides or tags.
    pub fn new(
        cluster: Arn,
        task_definition: impl Into<String>,
        instances: Vec<Arn>,
        started_by: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        StartAction {
            cluster,
            task_definition: task_definition.into(),
            instances,
            started_by: started_by.into(),
            reason: reason.into(),
            group: None,
            overrides: None,
            tags: BTreeMap::new(),
        }
    }

    /// Sets the task group.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the overrides.
    pub fn with_overrides(mut self, overrides: TaskOverride) -> Self {
        self.overrides = Some(Box::new(overrides));
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
}

impl From<StartAction> for Action {
    fn from(start: StartAction) -> Self {
        Action::Start(start)
    }
}

/// Stop a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopAction {
    /// The cluster.
    pub cluster: Arn,
    /// The task.
    pub task: Arn,
    /// Why (sent to ECS as the stop reason).
    pub reason: String,
    /// Stop only if ECS, asked right before the stop
    /// (`DescribeContainerInstances`), describes this instance with this
    /// status: for a stop decided from an instance's status in the view,
    /// which may be stale (its events late). A stop ECS does not confirm
    /// is not issued this cycle. `None`: no check.
    pub only_if: Option<InstanceCheck>,
}

/// An instance status a stop needs ECS to confirm ([`StopAction::only_if`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCheck {
    /// The container instance.
    pub instance: Arn,
    /// The status ECS must describe it with.
    pub status: InstanceStatus,
}

/// What a scheduler asks the runner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start tasks.
    Start(StartAction),
    /// Stop a task.
    Stop(StopAction),
}

impl Action {
    /// A start of `task_definition` on `instances`, tagged `started_by`.
    pub fn start(
        cluster: Arn,
        task_definition: impl Into<String>,
        instances: Vec<Arn>,
        started_by: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Action::Start(StartAction::new(
            cluster,
            task_definition,
            instances,
            started_by,
            reason,
        ))
    }

    /// A stop of `task`.
    pub fn stop(cluster: Arn, task: Arn, reason: impl Into<String>) -> Self {
        Action::Stop(StopAction {
            cluster,
            task,
            reason: reason.into(),
            only_if: None,
        })
    }

    /// A stop of `task` only if ECS confirms, right before the stop, that
    /// `instance` has `status` ([`StopAction::only_if`]).
    pub fn stop_if(
        cluster: Arn,
        task: Arn,
        reason: impl Into<String>,
        instance: Arn,
        status: InstanceStatus,
    ) -> Self {
        Action::Stop(StopAction {
            cluster,
            task,
            reason: reason.into(),
            only_if: Some(InstanceCheck { instance, status }),
        })
    }
}

/// A scheduler: decides from a snapshot, does no I/O.
pub trait Scheduler: Send + Sync + 'static {
    /// The scheduler's own desired state (the daemon scheduler's environments).
    type Desired: Send + Sync + 'static;

    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// The actions that move the cluster toward the desired state. Called
    /// on every state change (debounced) and on a timer; must be cheap and
    /// deterministic for a given snapshot.
    fn decide(&self, snapshot: &Snapshot<Self::Desired>) -> Vec<Action>;
}

/// Why a scheduler's desired state could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the desired state of scheduler {scheduler}: {message}")]
pub struct DesiredError {
    /// The scheduler.
    pub scheduler: String,
    /// What failed.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Loads a scheduler's desired state before each decision (the daemon
/// scheduler's environments and deployments live in the store's key-value
/// API; a simple scheduler may return a constant).
#[async_trait::async_trait]
pub trait DesiredSource<D>: Send + Sync {
    /// The current desired state.
    async fn load(&self) -> Result<D, DesiredError>;
}

/// A desired state that never changes.
#[derive(Debug, Clone)]
pub struct Fixed<D>(pub D);

#[async_trait::async_trait]
impl<D: Clone + Send + Sync> DesiredSource<D> for Fixed<D> {
    async fn load(&self) -> Result<D, DesiredError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blox_core::model::Timestamp;
    use std::collections::HashMap;

    fn arn(s: &str) -> Arn {
        Arn::parse(&format!("arn:aws:ecs:us-east-1:000000000000:{s}")).unwrap()
    }

    fn pending(instance: &str, started_by: &str) -> PendingStart {
        PendingStart {
            instance: arn(instance),
            task_definition: "web:1".into(),
            started_by: started_by.into(),
            since: Timestamp::from_millis(0),
            task: None,
        }
    }

    #[test]
    fn pending_starts_are_counted_per_instance() {
        let snap = Snapshot::new(
            Vec::new(),
            Vec::new(),
            vec![
                pending("container-instance/c/i1", "a"),
                pending("container-instance/c/i1", "a"),
                pending("container-instance/c/i1", "b"),
                pending("container-instance/c/i2", "a"),
            ],
            HashMap::new(),
            (),
            Timestamp::from_millis(0),
        );
        let i1 = arn("container-instance/c/i1");
        assert_eq!(snap.pending_on(&i1).count(), 3);
        assert_eq!(snap.pending_count(&i1, "a"), 2);
        assert_eq!(snap.pending_count(&i1, "c"), 0);
        let per = snap.pending_per_instance();
        assert_eq!(per[&i1], 3);
        assert_eq!(per[&arn("container-instance/c/i2")], 1);
    }
}
