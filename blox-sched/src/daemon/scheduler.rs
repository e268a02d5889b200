//! [`DaemonScheduler`]: exactly one task of an environment's active
//! deployment on every eligible instance.
//!
//! # Rules, per environment with an active deployment
//! * **Eligible** instances are ACTIVE, agent-connected instances of the
//!   environment's cluster that match its selector. Each gets one task of the
//!   active deployment: a new instance, or one whose task stopped, gets a start
//!   at once unless the runner holds it in backoff. A start in flight
//!   (`pending_starts`) counts as present, and so does a daemon task that is
//!   still stopping (the replacement waits until it has stopped, so the two
//!   never compete for ports or memory). A start of an older deployment
//!   still in flight (the deployment was replaced before its task showed)
//!   holds the new start back too: once its task shows, the rollout stops
//!   it, then starts the new one.
//! * **Extra copies**: if an instance shows two or more live tasks of the
//!   deployment, all but one are stopped (the RUNNING one that started first
//!   is kept).
//! * **DRAINING** instances: with [`DrainingPolicy::StopWhenLast`] (default)
//!   the daemon task stays until every other (non-daemon) task there has
//!   stopped (a log or metrics agent outlives the tasks it serves, their
//!   shutdown included), then it is stopped; with
//!   [`DrainingPolicy::StopImmediately`] it is stopped at once. Nothing is
//!   started on a DRAINING instance. The view's DRAINING may be stale (an
//!   instance activated again, its event late), so these stops carry a
//!   check ([`StopAction::only_if`](crate::scheduler::StopAction::only_if)):
//!   the runner issues them only once ECS confirms the instance is
//!   DRAINING.
//! * Instances that are ACTIVE and connected but **not selected** (an
//!   attribute changed) have their daemon task stopped. Instances whose agent
//!   is disconnected, or that are INACTIVE, are left alone.
//! * **Rollout** of a new deployment: **stop old, then start new.** Daemons
//!   often bind host ports or reserve a fixed share of the instance, so the old
//!   and new task usually cannot run side by side; stopping first never fails
//!   for lack of resources. An old task is stopped only while fewer than
//!   `max_unavailable` eligible instances lack a RUNNING daemon task (any
//!   version, any reason, as Kubernetes DaemonSets count `maxUnavailable`), so
//!   crash-looping or still-starting instances pause the rollout instead of
//!   widening the outage. An old task on an instance that already runs the new
//!   one is stopped at once.
//! * **Deleting** an environment with its tasks stopped: every live task of
//!   any of its deployments is stopped, wherever it is.
//!
//! Starts are grouped per environment into actions of at most
//! [`MAX_INSTANCES_PER_START`] instances (ECS's StartTask limit), in snapshot
//! order, so 1,000 new instances produce exactly 100 start actions.

use std::sync::Arc;

use blox_core::model::{Arn, ContainerInstance, InstanceStatus, Task, TaskStatus, Timestamp};

use std::collections::HashSet;

use blox_state::store::Filter;

use super::model::{DaemonDesired, Deployment, DrainingPolicy, Environment};
use super::view::{self, InstanceView};
use super::view::{EnvView, Placement, View};
use crate::scheduler::{Action, Changes, Scheduler, Snapshot, StartAction};

/// The scheduler's name in logs, metrics and errors.
pub const SCHEDULER_NAME: &str = "daemon";

/// ECS's limit of container instances per StartTask call.
pub const MAX_INSTANCES_PER_START: usize = 10;

/// The daemon scheduler (see the module docs for its rules).
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonScheduler;

impl DaemonScheduler {
    /// A daemon scheduler.
    pub fn new() -> Self {
        DaemonScheduler
    }
}

impl Scheduler for DaemonScheduler {
    type Desired = DaemonDesired;

    fn name(&self) -> &str {
        SCHEDULER_NAME
    }

    fn is_idle(&self, desired: &DaemonDesired) -> bool {
        // An environment being deleted stays in the desired state until its
        // tasks are stopped, so none means nothing to start or stop.
        desired.environments.is_empty()
    }

    fn decide(&self, snapshot: &Snapshot<DaemonDesired>) -> Vec<Action> {
        let view = View::build(snapshot);
        let mut actions = Vec::new();
        for ev in &view.envs {
            decide_env(snapshot, &view, ev, &mut actions);
        }
        actions
    }

    /// Decides only for the changed instances while every environment is
    /// steady (none is being deleted, no older deployment has a live task
    /// or a start in flight) and the desired state is the previous one:
    /// then each instance's decision depends on that instance alone.
    /// Otherwise (a rollout, a deletion, a new or changed environment, or a
    /// full pass) decides on the whole snapshot.
    fn decide_changed(
        &self,
        snapshot: &Snapshot<DaemonDesired>,
        changes: &Changes<'_, DaemonDesired>,
    ) -> Vec<Action> {
        match changes.previous_desired() {
            Some(previous) if *previous == snapshot.desired && steady(snapshot) => {
                decide_instances(snapshot, changes)
            }
            _ => self.decide(snapshot),
        }
    }
}

/// Whether no environment is being deleted and no older deployment of any
/// environment has a live task or a start in flight.
fn steady(snap: &Snapshot<DaemonDesired>) -> bool {
    let old_pending: HashSet<&str> = snap
        .pending_starts()
        .map(|p| p.started_by.as_str())
        .collect();
    snap.desired.environments.iter().all(|state| {
        let env = &state.environment;
        !env.deleting
            && state
                .deployments
                .iter()
                .filter(|d| env.active_deployment.as_ref() != Some(&d.id))
                .all(|d| {
                    !old_pending.contains(d.id.as_str())
                        && !snap.tasks_started_by(&d.id).any(|t| t.is_live())
                })
    })
}

/// The decisions for the changed instances of steady environments.
fn decide_instances(
    snap: &Snapshot<DaemonDesired>,
    changes: &Changes<'_, DaemonDesired>,
) -> Vec<Action> {
    let owners = view::owners(&snap.desired);
    let mut changed: Vec<&Arc<ContainerInstance>> = changes
        .instances()
        .filter_map(|a| snap.instance(a))
        .collect();
    changed.sort_by(|a, b| a.container_instance_arn.cmp(&b.container_instance_arn));
    let mut out = Vec::new();
    for (ei, state) in snap.desired.environments.iter().enumerate() {
        let env = &state.environment;
        let Some(active) = state.active() else {
            continue;
        };
        let foreign = |i: &Arn| view::foreign_live(snap, &owners, i);
        let mut starts = Vec::new();
        // Steady: no older deployment's task is live, so the rollout budget
        // is never consulted.
        let mut budget = 0;
        for inst in &changed {
            if Filter::cluster_matches(env.cluster(), &inst.cluster_arn) {
                let iv = view::instance_view(snap, &owners, ei, env, inst);
                decide_instance(snap, &foreign, env, &iv, &mut budget, &mut starts, &mut out);
            }
        }
        push_starts(active, &env.name, starts, &mut out);
    }
    out
}

/// Splits start actions into actions of at most `max` instances each (the
/// runner's StartTask batching), keeping stops as they are.
pub fn split_starts(actions: &[Action], max: usize) -> Vec<Action> {
    let max = max.max(1);
    let mut out = Vec::with_capacity(actions.len());
    for a in actions {
        match a {
            Action::Start(s) => {
                for chunk in s.instances.chunks(max) {
                    out.push(Action::Start(StartAction {
                        instances: chunk.to_vec(),
                        ..s.clone()
                    }));
                }
            }
            Action::Stop(_) => out.push(a.clone()),
        }
    }
    out
}

fn stop(t: &Task, env: &str, why: &str) -> Action {
    Action::stop(
        t.cluster_arn.clone(),
        t.task_arn.clone(),
        format!("blox daemon environment {env}: {why}"),
    )
}

/// Stops `t` on the DRAINING `instance`, if ECS confirms it is DRAINING
/// (the view's status may be stale).
fn stop_draining(t: &Task, instance: &Arn, env: &str) -> Action {
    Action::stop_if(
        t.cluster_arn.clone(),
        t.task_arn.clone(),
        format!("blox daemon environment {env}: instance is draining"),
        instance.clone(),
        InstanceStatus::Draining,
    )
}

/// The order in which to keep copies: RUNNING first, then the earliest
/// started or created, then by ARN (deterministic).
fn keep_order(t: &Task) -> (bool, Timestamp, Timestamp, &Arn) {
    (
        t.last_status != TaskStatus::Running,
        t.started_at.unwrap_or(Timestamp::from_millis(i64::MAX)),
        t.created_at.unwrap_or(Timestamp::from_millis(i64::MAX)),
        &t.task_arn,
    )
}

/// Stops all but one of `tasks`.
fn stop_extras(tasks: &[&Arc<Task>], env: &str, why: &str, out: &mut Vec<Action>) {
    if tasks.len() < 2 {
        return;
    }
    let mut sorted: Vec<&Arc<Task>> = tasks.to_vec();
    sorted.sort_by(|a, b| keep_order(a).cmp(&keep_order(b)));
    out.extend(sorted.iter().skip(1).map(|t| stop(t, env, why)));
}

fn decide_env(
    snap: &Snapshot<DaemonDesired>,
    view: &View<'_>,
    ev: &EnvView<'_>,
    out: &mut Vec<Action>,
) {
    let env = &ev.state.environment;
    let name = env.name.as_str();
    if env.deleting {
        out.extend(ev.live.iter().map(|t| stop(t, name, "environment deleted")));
        return;
    }
    let Some(active) = ev.active else {
        return;
    };

    // Eligible instances lacking a RUNNING daemon task of any version.
    let unavailable = ev
        .instances
        .iter()
        .filter(|iv| iv.placement == Placement::Eligible && !iv.slot.any_running())
        .count();
    let mut budget = (env.max_unavailable as usize).saturating_sub(unavailable);

    let mut starts: Vec<&ContainerInstance> = Vec::new();
    let foreign = |i: &Arn| view.foreign_live(i);
    for iv in &ev.instances {
        decide_instance(snap, &foreign, env, iv, &mut budget, &mut starts, out);
    }
    push_starts(active, name, starts, out);
}

/// The decision for one instance of an environment with an active
/// deployment: stops into `out`, the instance into `starts` if it needs a
/// task; `budget` is what is left of the rollout's unavailability.
fn decide_instance<'a>(
    snap: &Snapshot<DaemonDesired>,
    foreign_live: &dyn Fn(&Arn) -> usize,
    env: &Environment,
    iv: &InstanceView<'a>,
    budget: &mut usize,
    starts: &mut Vec<&'a ContainerInstance>,
    out: &mut Vec<Action>,
) {
    let name = env.name.as_str();
    let s = &iv.slot;
    match iv.placement {
        Placement::Eligible => {
            stop_extras(&s.current, name, "extra copy on the instance", out);
            let has_current = !s.current.is_empty() || s.pending > 0;
            if s.old.is_empty() {
                if !has_current
                    && s.stopping == 0
                    && s.old_pending == 0
                    && !snap.in_backoff(&iv.instance.container_instance_arn)
                {
                    starts.push(iv.instance);
                }
            } else if s.current_running() {
                out.extend(
                    s.old
                        .iter()
                        .map(|t| stop(t, name, "replaced by a new deployment")),
                );
            } else if !has_current {
                stop_extras(&s.old, name, "extra copy on the instance", out);
                let old_running = s.old.iter().any(|t| t.last_status == TaskStatus::Running);
                // Stopping a task that is not running yet costs no availability.
                if !old_running || *budget > 0 {
                    if old_running {
                        *budget -= 1;
                    }
                    let mut sorted = s.old.clone();
                    sorted.sort_by(|a, b| keep_order(a).cmp(&keep_order(b)));
                    if let Some(t) = sorted.first() {
                        out.push(stop(t, name, "rolling out a new deployment"));
                    }
                }
            }
        }
        Placement::Draining => {
            let stop_now = match env.draining_policy {
                DrainingPolicy::StopImmediately => true,
                DrainingPolicy::StopWhenLast => {
                    foreign_live(&iv.instance.container_instance_arn) == 0
                }
            };
            if stop_now {
                let on = &iv.instance.container_instance_arn;
                out.extend((s.current.iter().chain(&s.old)).map(|t| stop_draining(t, on, name)));
            }
        }
        Placement::NotSelected => {
            let why = "instance no longer matches the selector";
            out.extend(s.current.iter().chain(&s.old).map(|t| stop(t, name, why)));
        }
        Placement::Unreachable => {}
    }
}

/// Start actions for `starts`: per cluster ARN (one in practice; a cluster
/// given by name could match clusters of that name in several accounts),
/// in order, at most [`MAX_INSTANCES_PER_START`] instances each.
fn push_starts(
    active: &Deployment,
    name: &str,
    starts: Vec<&ContainerInstance>,
    out: &mut Vec<Action>,
) {
    let mut by_cluster: Vec<(&Arn, Vec<Arn>)> = Vec::new();
    for i in starts {
        match by_cluster.iter_mut().find(|(c, _)| *c == &i.cluster_arn) {
            Some((_, v)) => v.push(i.container_instance_arn.clone()),
            None => by_cluster.push((&i.cluster_arn, vec![i.container_instance_arn.clone()])),
        }
    }
    for (cluster, instances) in by_cluster {
        for chunk in instances.chunks(MAX_INSTANCES_PER_START) {
            out.push(Action::start(
                cluster.clone(),
                active.task_definition.clone(),
                chunk.to_vec(),
                active.id.clone(),
                format!(
                    "blox daemon environment {name}: deployment {} on {} instance(s) without its task",
                    active.id,
                    chunk.len()
                ),
            ));
        }
    }
}
