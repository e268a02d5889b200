//! Deployment progress and per-instance status as pure functions of a
//! snapshot (for the tracker, the HTTP API and the cluster map).

use std::collections::BTreeMap;

use blox_core::model::{Arn, TaskStatus};
use serde::{Deserialize, Serialize};

use super::model::{DaemonDesired, Progress};
use super::view::{EnvView, Placement, View};
use crate::scheduler::Snapshot;

/// The reason recorded for a failed instance when ECS gave none.
pub const UNKNOWN_FAILURE: &str = "task failed to start or stopped soon after starting";

/// Where an environment's active deployment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentReport {
    /// The environment.
    pub environment: String,
    /// The active deployment's id.
    pub deployment: String,
    /// done = eligible instances running its task, total = eligible instances.
    pub progress: Progress,
    /// Eligible instances without its running task that are in backoff,
    /// with ECS's last reason.
    pub failed: BTreeMap<Arn, String>,
    /// Whether any start of it was issued or any of its tasks is visible.
    pub started: bool,
}

/// A daemon task's state on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum DaemonInstanceState {
    /// The active deployment's task is RUNNING.
    Running,
    /// Not running yet: starting, waiting for its turn in a rollout, or for
    /// an old task to stop.
    Pending,
    /// Held in backoff after failures.
    Failed {
        /// ECS's last reason.
        reason: String,
    },
}

/// The daemon's state on one eligible instance of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDaemonStatus {
    /// The instance.
    pub instance: Arn,
    /// The state.
    #[serde(flatten)]
    pub state: DaemonInstanceState,
    /// The daemon task on it (the active deployment's if any, else an older one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Arn>,
    /// The task definition of that task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
}

fn failure_reason(snap: &Snapshot<DaemonDesired>, instance: &Arn) -> Option<String> {
    if !snap.in_backoff(instance) {
        return None;
    }
    let reason = snap
        .backoff
        .get(instance)
        .and_then(|b| b.last_reason.clone())
        .unwrap_or_else(|| UNKNOWN_FAILURE.to_owned());
    Some(reason)
}

fn report(snap: &Snapshot<DaemonDesired>, ev: &EnvView<'_>) -> Option<DeploymentReport> {
    let active = ev.active?;
    if ev.state.environment.deleting {
        return None;
    }
    let mut progress = Progress::default();
    let mut failed = BTreeMap::new();
    for iv in ev
        .instances
        .iter()
        .filter(|iv| iv.placement == Placement::Eligible)
    {
        progress.total += 1;
        if iv.slot.current_running() {
            progress.done += 1;
        } else if let Some(r) = failure_reason(snap, &iv.instance.container_instance_arn) {
            failed.insert(iv.instance.container_instance_arn.clone(), r);
        }
    }
    Some(DeploymentReport {
        environment: ev.state.environment.name.clone(),
        deployment: active.id.clone(),
        progress,
        failed,
        started: ev.active_started,
    })
}

/// The progress of every environment's active deployment (environments
/// without one, or being deleted, are left out).
pub fn deployment_progress(snap: &Snapshot<DaemonDesired>) -> Vec<DeploymentReport> {
    reports(snap, &View::build(snap))
}

/// [`deployment_progress`] from an already built view.
pub(crate) fn reports(snap: &Snapshot<DaemonDesired>, view: &View<'_>) -> Vec<DeploymentReport> {
    view.envs.iter().filter_map(|ev| report(snap, ev)).collect()
}

/// The daemon's state on every eligible instance of environment `name`, in
/// snapshot order; `None` if the environment is unknown.
pub fn instance_statuses(
    snap: &Snapshot<DaemonDesired>,
    name: &str,
) -> Option<Vec<InstanceDaemonStatus>> {
    let view = View::build(snap);
    let ev = view
        .envs
        .iter()
        .find(|e| e.state.environment.name == name)?;
    let out = ev
        .instances
        .iter()
        .filter(|iv| iv.placement == Placement::Eligible)
        .map(|iv| {
            let arn = &iv.instance.container_instance_arn;
            let running = iv
                .slot
                .current
                .iter()
                .find(|t| t.last_status == TaskStatus::Running);
            let task = running.or(iv.slot.current.first()).or(iv.slot.old.first());
            let state = if running.is_some() {
                DaemonInstanceState::Running
            } else if let Some(reason) = failure_reason(snap, arn) {
                DaemonInstanceState::Failed { reason }
            } else {
                DaemonInstanceState::Pending
            };
            InstanceDaemonStatus {
                instance: arn.clone(),
                state,
                task: task.map(|t| t.task_arn.clone()),
                task_definition: task.map(|t| t.task_definition_arn.clone()),
            }
        })
        .collect();
    Some(out)
}
