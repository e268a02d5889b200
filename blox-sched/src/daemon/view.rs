//! A classification, for every environment, of each instance of its
//! cluster and the environment's tasks on it. Decisions, progress and
//! per-instance status are all read from this view, so they agree. It is
//! built from the snapshot's indexes (the instances of the environment's
//! clusters, the tasks of its deployments, the pending starts), so its cost
//! is the environments' share of the view, not the whole view.

use std::sync::Arc;

use blox_core::model::{Arn, ContainerInstance, InstanceStatus, Task, TaskStatus};
use blox_state::store::Filter;

use super::fasthash::{FastMap, TailKey};
use super::model::{DaemonDesired, Deployment, Environment, EnvironmentState};
use crate::scheduler::Snapshot;

/// Whether and how an environment may run on an instance of its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// ACTIVE, agent connected, selector matches: runs exactly one daemon task.
    Eligible,
    /// DRAINING: the draining policy applies.
    Draining,
    /// ACTIVE and connected but not selected: runs no daemon task.
    NotSelected,
    /// Anything else (agent disconnected, INACTIVE, registering): left alone.
    Unreachable,
}

/// An environment's tasks on one instance.
#[derive(Debug, Default)]
pub(crate) struct Slot<'a> {
    /// Live tasks of the active deployment.
    pub current: Vec<&'a Arc<Task>>,
    /// Starts of the active deployment issued but not yet visible.
    pub pending: usize,
    /// Live tasks of older deployments.
    pub old: Vec<&'a Arc<Task>>,
    /// Starts of older deployments issued but not yet visible (a deployment
    /// replaced while its starts were in flight).
    pub old_pending: usize,
    /// Tasks of the environment that are stopping (desired STOPPED, not yet stopped).
    pub stopping: usize,
}

impl<'a> Slot<'a> {
    /// Files a task of the environment found on the instance.
    fn add_task(&mut self, t: &'a Arc<Task>, is_active: bool) {
        if t.is_live() {
            if is_active {
                self.current.push(t);
            } else {
                self.old.push(t);
            }
        } else if is_stopping(t) {
            self.stopping += 1;
        }
    }

    /// Counts a start of the environment in flight on the instance.
    fn add_pending(&mut self, is_active: bool) {
        if is_active {
            self.pending += 1;
        } else {
            self.old_pending += 1;
        }
    }

    /// Whether a task of the active deployment is RUNNING here.
    pub fn current_running(&self) -> bool {
        self.current
            .iter()
            .any(|t| t.last_status == TaskStatus::Running)
    }

    /// Whether any daemon task of the environment is RUNNING here.
    pub fn any_running(&self) -> bool {
        self.current_running()
            || self
                .old
                .iter()
                .any(|t| t.last_status == TaskStatus::Running)
    }
}

/// One instance of an environment's cluster, classified.
#[derive(Debug)]
pub(crate) struct InstanceView<'a> {
    /// The instance.
    pub instance: &'a Arc<ContainerInstance>,
    /// How the environment treats it.
    pub placement: Placement,
    /// The environment's tasks on it.
    pub slot: Slot<'a>,
}

/// One environment, classified.
#[derive(Debug)]
pub(crate) struct EnvView<'a> {
    /// The environment and its deployments.
    pub state: &'a EnvironmentState,
    /// The active deployment, if any.
    pub active: Option<&'a Deployment>,
    /// The instances of its cluster, in snapshot order.
    pub instances: Vec<InstanceView<'a>>,
    /// Every live task of any of its deployments, on any instance.
    pub live: Vec<&'a Arc<Task>>,
    /// Tasks of its deployments that are stopping, plus starts in flight.
    pub in_flight: usize,
    /// Whether any task or start of the active deployment was ever seen.
    pub active_started: bool,
}

/// The whole snapshot, classified per environment.
#[derive(Debug)]
pub(crate) struct View<'a> {
    /// One entry per environment, in desired-state order.
    pub envs: Vec<EnvView<'a>>,
    /// The snapshot.
    snap: &'a Snapshot<DaemonDesired>,
    /// Which environment each deployment belongs to.
    owners: Owners<'a>,
}

/// Deployment id -> (environment index, is the active deployment).
pub(crate) type Owners<'a> = FastMap<&'a str, (usize, bool)>;

/// The owner of every deployment of the desired state.
pub(crate) fn owners(desired: &DaemonDesired) -> Owners<'_> {
    let mut owners = Owners::default();
    for (ei, e) in desired.environments.iter().enumerate() {
        let active = e.environment.active_deployment.as_deref();
        for d in &e.deployments {
            owners.insert(d.id.as_str(), (ei, Some(d.id.as_str()) == active));
        }
    }
    owners
}

/// Non-daemon tasks not yet stopped on an instance (running, starting, or
/// still stopping). O(tasks on the instance).
pub(crate) fn foreign_live(
    snap: &Snapshot<DaemonDesired>,
    owners: &Owners<'_>,
    instance: &Arn,
) -> usize {
    snap.tasks_on(instance)
        .filter(|t| {
            !t.last_status.is_terminal()
                && !t
                    .started_by
                    .as_deref()
                    .is_some_and(|s| owners.contains_key(s))
        })
        .count()
}

/// One instance of environment `ei`'s cluster, classified from the
/// snapshot's indexes. O(tasks and pending starts on the instance).
pub(crate) fn instance_view<'a>(
    snap: &'a Snapshot<DaemonDesired>,
    owners: &Owners<'_>,
    ei: usize,
    env: &Environment,
    instance: &'a Arc<ContainerInstance>,
) -> InstanceView<'a> {
    let arn = &instance.container_instance_arn;
    let mut slot = Slot::default();
    for t in snap.tasks_on(arn) {
        if let Some(&(e, is_active)) = t.started_by.as_deref().and_then(|s| owners.get(s))
            && e == ei
        {
            slot.add_task(t, is_active);
        }
    }
    for p in snap.pending_on(arn) {
        if let Some(&(e, is_active)) = owners.get(p.started_by.as_str())
            && e == ei
        {
            slot.add_pending(is_active);
        }
    }
    InstanceView {
        instance,
        placement: placement(env, instance),
        slot,
    }
}

fn is_stopping(t: &Task) -> bool {
    !t.last_status.is_terminal() && t.desired_status == TaskStatus::Stopped
}

/// How an environment treats an instance of its cluster.
pub(crate) fn placement(env: &Environment, inst: &ContainerInstance) -> Placement {
    match inst.status {
        InstanceStatus::Draining => Placement::Draining,
        InstanceStatus::Active if inst.agent_connected => {
            if env.selector().matches(inst) {
                Placement::Eligible
            } else {
                Placement::NotSelected
            }
        }
        _ => Placement::Unreachable,
    }
}

/// The clusters of the snapshot an environment's cluster (a name or an
/// ARN) names, in ARN order.
pub(crate) fn clusters_of<'a>(
    snap: &'a Snapshot<DaemonDesired>,
    env: &Environment,
) -> Vec<&'a Arn> {
    let mut clusters: Vec<&Arn> = snap
        .clusters()
        .filter(|arn| Filter::cluster_matches(env.cluster(), arn))
        .collect();
    clusters.sort_unstable();
    clusters
}

impl<'a> View<'a> {
    /// Non-daemon tasks not yet stopped on an instance (running, starting,
    /// or still stopping). O(tasks on the instance).
    pub fn foreign_live(&self, instance: &Arn) -> usize {
        foreign_live(self.snap, &self.owners, instance)
    }

    /// Classifies a snapshot: O(the environments' instances, tasks and
    /// pending starts), whatever else the view holds.
    pub fn build(snap: &'a Snapshot<DaemonDesired>) -> Self {
        let desired = &snap.desired;
        let owners = owners(desired);
        // Per environment: instance ARN -> index into its `instances`.
        let mut slot_of: Vec<FastMap<TailKey<'a>, usize>> =
            Vec::with_capacity(desired.environments.len());
        let mut envs: Vec<EnvView<'a>> = Vec::with_capacity(desired.environments.len());
        for state in &desired.environments {
            let env = &state.environment;
            let mut ev = EnvView {
                state,
                active: state.active(),
                instances: Vec::new(),
                live: Vec::new(),
                in_flight: 0,
                active_started: false,
            };
            let mut map = FastMap::default();
            for cluster in clusters_of(snap, env) {
                for inst in snap.instances_in(cluster) {
                    map.insert(
                        TailKey(inst.container_instance_arn.as_str()),
                        ev.instances.len(),
                    );
                    ev.instances.push(InstanceView {
                        instance: inst,
                        placement: placement(env, inst),
                        slot: Slot::default(),
                    });
                }
            }
            slot_of.push(map);
            envs.push(ev);
        }

        for (ei, state) in desired.environments.iter().enumerate() {
            let active = state.environment.active_deployment.as_deref();
            for d in &state.deployments {
                let is_active = Some(d.id.as_str()) == active;
                for t in snap.tasks_started_by(&d.id) {
                    let ev = &mut envs[ei];
                    if is_active {
                        ev.active_started = true;
                    }
                    if t.is_live() {
                        ev.live.push(t);
                    }
                    if is_stopping(t) {
                        ev.in_flight += 1;
                    }
                    let si = t
                        .container_instance_arn
                        .as_ref()
                        .and_then(|i| slot_of[ei].get(&TailKey(i.as_str())));
                    if let Some(iv) = si.and_then(|&si| ev.instances.get_mut(si)) {
                        iv.slot.add_task(t, is_active);
                    }
                }
            }
        }

        for p in snap.pending_starts() {
            let Some(&(ei, is_active)) = owners.get(p.started_by.as_str()) else {
                continue;
            };
            let ev = &mut envs[ei];
            ev.in_flight += 1;
            if is_active {
                ev.active_started = true;
            }
            let si = slot_of[ei].get(&TailKey(p.instance.as_str()));
            if let Some(iv) = si.and_then(|&si| ev.instances.get_mut(si)) {
                iv.slot.add_pending(is_active);
            }
        }

        View { envs, snap, owners }
    }
}
