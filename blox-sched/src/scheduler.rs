//! The [`Scheduler`] trait: decide from a snapshot, return actions, do no
//! I/O; and the scheduler guide, the contract between a scheduler and the
//! runner that executes its decisions.
//!
//! A scheduler is a pure function of a consistent [`Snapshot`] of the
//! cluster (instances, tasks, starts still in flight, instances in backoff)
//! and of its own desired state `D`. It returns [`Action`]s; the
//! [runner](crate::runner) executes them against ECS. Because a scheduler
//! does no I/O, it is unit-tested with plain data (the `testing` feature's
//! `SnapshotBuilder`). `examples/custom_scheduler.rs` is a complete one: a
//! replica scheduler with several copies per instance, a task group and
//! overrides, and its tests.
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
//!         snap.tasks_started_by("legacy")
//!             .filter(|t| t.is_live())
//!             .map(|t| Action::stop(t.cluster_arn.clone(), t.task_arn.clone(), "legacy task"))
//!             .collect()
//!     }
//! }
//! ```
//!
//! # What a snapshot guarantees
//!
//! - **One consistent view.** The instances and tasks come from one read of
//!   the runner's cache, which applies each store revision whole: the
//!   snapshot shows the cluster at one revision, never half of one. It holds
//!   the runner's clusters only ([`RunnerOptions::clusters`](crate::runner::RunnerOptions::clusters)).
//! - **Complete.** The runner calls [`Scheduler::decide`] only once its cache has loaded, its process
//!   leads, the bootstrap reconcile of this leader term is done and the
//!   cache has reached the revision of everything it read and wrote (a task
//!   the bootstrap re-added is in the view), and the starts a previous
//!   leader left in flight are loaded. A cluster whose bootstrap is still
//!   pending may be in the view, but actions on it are dropped.
//! - **Starts in flight are shown.** Every start the runner issued whose
//!   task the view does not show yet is one [`PendingStart`]
//!   ([`Snapshot::pending_starts`], [`Snapshot::pending_on`],
//!   [`Snapshot::pending_count`]), one per copy, including those a previous
//!   leader left. A start stops being pending once the view shows its task
//!   (the runner settles this before it builds the snapshot, so a copy the
//!   view shows is not also pending), or when, after
//!   [`RunnerOptions::intent_timeout`](crate::runner::RunnerOptions::intent_timeout),
//!   `ListTasks` lists no task for it. Count a copy as present if it is a
//!   live task *or* a pending start.
//! - **Live.** A task is live ([`Task::is_live`](blox_core::model::Task::is_live))
//!   while it is not stopped and not being stopped: PROVISIONING, PENDING
//!   and ACTIVATING tasks are live, a task whose desired status is STOPPED
//!   is not (though it holds its resources until it stops). Stopped tasks
//!   stay in [`Snapshot::tasks`] for the retention period.
//! - **Backoff.** [`Snapshot::backoff`] holds the instances where a task of
//!   the runner stopped soon after starting or ECS refused a placement, with
//!   ECS's reason; the runner drops starts on them until the backoff ends
//!   ([`Snapshot::in_backoff`]).
//! - **Indexed queries.** [`Snapshot::tasks_on`], [`Snapshot::live_tasks_on`],
//!   [`Snapshot::tasks_started_by`], [`Snapshot::instances_in`],
//!   [`Snapshot::instances_with_attribute`],
//!   [`Snapshot::instances_having_attribute`], [`Snapshot::instance`],
//!   [`Snapshot::task`] and [`Snapshot::pending_on`] cost O(result), in ARN
//!   order. The runner keeps its view and these indexes up to date change
//!   by change, so a new snapshot costs O(changes since the last one), not
//!   O(view). [`Snapshot::instances`], [`Snapshot::tasks`],
//!   [`Snapshot::active_instances`] and [`Snapshot::live_tasks`] scan
//!   everything: prefer the indexed queries to a scan per instance
//!   (O(instances × tasks)).
//! - **What changed.** The runner calls [`Scheduler::decide_changed`] with
//!   the instances whose records, tasks, starts in flight or backoff
//!   changed since its previous decision, or with a full [`Changes`] at
//!   least once every [`RunnerOptions::interval`](crate::runner::RunnerOptions::interval)
//!   however busy the cluster, after it loaded its view whole, when the
//!   previous decision's actions were not all issued (capped, held, failed,
//!   or a stop ECS did not confirm), and for the first decision of a term. The default decides on the whole snapshot;
//!   the daemon scheduler decides for the changed instances alone while its
//!   environments are steady.
//! - **Not current.** The view lags ECS: events arrive late, out of order or
//!   twice, and the reconciler corrects what they miss later; ECS's own
//!   listings lag its changes. An instance shown ACTIVE may be draining
//!   already, a task shown RUNNING may have stopped. The snapshot's
//!   [`Snapshot::now`] is the runner's clock, not the time of the view.
//!
//! # What the runner guarantees
//!
//! - **At most one start per intent.** Each copy of a [`StartAction`] (each
//!   entry of its instances) gets its own intent, written to the store in a
//!   transaction that holds only while this process's leader term holds the
//!   leader key, before StartTask is called for it. Copies go to ECS in
//!   StartTask calls of at most ten distinct instances (several copies on
//!   one instance: several calls). An intent stays, shown as a pending start
//!   to this leader and to any successor, until the view shows its task or
//!   ECS lists none for it after the intent timeout, so a StartTask whose
//!   reply was lost is not repeated.
//! - **Fenced to the ECS call.** Before each StartTask attempt the runner
//!   checks that it still leads (in the store, for every retry), retries
//!   only throttled attempts, and makes none later than the term's lease TTL
//!   (at most half the intent timeout) after the intents were written:
//!   a leader cut off from the store stops calling ECS before a successor
//!   may act. A cycle's stops follow a check of the leader key in the
//!   store, and each stop a check that the term is still current.
//! - **Capped.** A cycle executes at most
//!   [`RunnerOptions::max_actions_per_cycle`](crate::runner::RunnerOptions::max_actions_per_cycle)
//!   copies started plus tasks stopped, in the order the scheduler returned
//!   them; the rest are dropped, not queued (the next decision asks again).
//!   Stops run before starts.
//! - **Filtered.** Starts on instances in backoff, actions outside the
//!   runner's clusters, a second stop of one task in a cycle, and a stop of
//!   a task the runner already stopped while the view still shows it live
//!   (until the intent timeout) are dropped. Starts are never deduplicated:
//!   two copies asked are two copies started.
//! - **Stops confirmed when asked.** A stop made with [`Action::stop_if`] is
//!   issued only if ECS, asked right before (`DescribeContainerInstances`),
//!   describes the instance with the given status; otherwise it is not
//!   issued this cycle.
//! - **Backoff per instance.** An instance where a task of the runner stops
//!   within [`RunnerOptions::crash_window`](crate::runner::RunnerOptions::crash_window)
//!   of starting, or where ECS refuses a placement, gets no start for 1 s,
//!   then 2 s, 4 s... up to
//!   [`RunnerOptions::backoff_cap`](crate::runner::RunnerOptions::backoff_cap);
//!   its record clears once a task has run there for
//!   [`RunnerOptions::healthy_after`](crate::runner::RunnerOptions::healthy_after).
//! - **Dry run and pause.** In dry run the actions that pass the filters and
//!   the cap are logged and recorded, not executed; paused, the runner does
//!   not decide.
//!
//! # What a scheduler must not assume
//!
//! - **That an action happened.** A returned action may be capped,
//!   filtered, refused by ECS (no resources, throttled past its bound), or
//!   carried out with its reply lost. The next snapshot tells: a task, a
//!   pending start, or neither (then the scheduler asks again).
//! - **That the view is current.** Decide from what the snapshot shows, and
//!   when a stop rests on a status that may be stale (an instance draining,
//!   say), use [`Action::stop_if`] so ECS confirms it first.
//! - **That it runs in one process forever.** Leadership moves between
//!   processes: a successor calls its own scheduler on its own snapshots,
//!   and this process may lose and regain leadership between two calls.
//!   Keep no state between calls: what a decision needs comes from the
//!   snapshot and the desired state (load lasting state through a
//!   [`DesiredSource`] backed by the store).
//! - **That `decide` runs at a fixed rate.** It runs after cache changes
//!   (debounced), on a timer, when a backoff ends, when leadership or the
//!   bootstrap changes, and soon after a failed cycle; not while the runner
//!   waits for its gates or is paused. Two calls may see the same view.
//! - **That the lists are in any order.** [`Snapshot::tasks`] and
//!   [`Snapshot::instances`] are in no particular order; the indexed
//!   queries answer in ARN order. Sort what must be ordered otherwise.
//! - **That a partial [`Changes`] names everything.** It names what changed
//!   in the view; a decision that also depends on something else (the
//!   desired state, the time) must compare it itself
//!   ([`Changes::previous_desired`]) or leave `decide_changed` to its
//!   default.
//!
//! And so `decide` must be **pure and fast**: no I/O, no blocking, no clock
//! (use [`Snapshot::now`]) and no randomness, so it is deterministic for a
//! given snapshot; and **idempotent given the snapshot**: it asks for the
//! difference between the desired state and what the snapshot shows (live
//! tasks plus pending starts), so deciding again on a snapshot that already
//! shows the last decision's starts asks for nothing more.

mod changes;
mod index;
mod indexed;
mod snapshot;

use std::collections::BTreeMap;

use blox_core::model::{Arn, InstanceStatus, TaskOverride};

pub use changes::Changes;
pub(crate) use indexed::{IndexedView, touched_by};
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
    /// after state changes (debounced), on a timer and on other triggers;
    /// must be cheap, deterministic and idempotent for a given snapshot
    /// (see the [scheduler guide](crate::scheduler)).
    fn decide(&self, snapshot: &Snapshot<Self::Desired>) -> Vec<Action>;

    /// The runner's entry point: [`decide`](Self::decide), told what
    /// changed since the previous decision. The default decides on the
    /// whole snapshot, which is always right. A scheduler whose decisions
    /// are per instance may, when `changes` is not
    /// [`full`](Changes::is_full), decide only for the
    /// [`changed instances`](Changes::instances) (and for whatever a change
    /// of its desired state from [`Changes::previous_desired`] asks): the
    /// runner issued every action of the previous decision, and asks for a
    /// full one at least once every
    /// [`RunnerOptions::interval`](crate::runner::RunnerOptions::interval),
    /// after loading its view again, and after any action was capped, held,
    /// failed or left unconfirmed.
    fn decide_changed(
        &self,
        snapshot: &Snapshot<Self::Desired>,
        changes: &Changes<'_, Self::Desired>,
    ) -> Vec<Action> {
        let _ = changes;
        self.decide(snapshot)
    }

    /// Whether `desired` asks nothing of the cluster: `decide` would return
    /// no action whatever the view holds (the daemon scheduler with no
    /// environment). The runner then skips the cycle without reading the
    /// view, unless a start or stop of its own is still in flight. The
    /// default, `false`, suits a scheduler that acts on the view alone
    /// (one that stops tasks it finds, say).
    fn is_idle(&self, desired: &Self::Desired) -> bool {
        let _ = desired;
        false
    }
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
