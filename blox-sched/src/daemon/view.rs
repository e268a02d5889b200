//! One pass over a snapshot that classifies, for every environment, each
//! instance of its cluster and the environment's tasks on it. Decisions,
//! progress and per-instance status are all read from this view, so they
//! agree, and building it is O(instances + tasks + pending starts).
//!
//! It scans the snapshot's lists in one pass rather than querying its
//! indexes: while the runner builds a new snapshot every cycle, building the
//! `startedBy` index costs more than this pass (see `benches/RESULTS.md`,
//! issue 15); the indexed queries pay off once snapshots are kept in
//! O(change).

use std::sync::Arc;

use blox_core::model::{Arn, ContainerInstance, InstanceStatus, Task, TaskStatus};
use blox_state::store::Filter;

use super::fasthash::{FastMap, TailKey};
use super::model::{DaemonDesired, Deployment, DrainingPolicy, EnvironmentState};
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

impl Slot<'_> {
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
    /// Its position in the snapshot's instance list.
    pub pos: usize,
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
    /// Tasks that belong to no daemon environment and have not stopped yet
    /// (running, starting, or still stopping), per instance position.
    foreign_live: Vec<usize>,
}

fn is_stopping(t: &Task) -> bool {
    !t.last_status.is_terminal() && t.desired_status == TaskStatus::Stopped
}

/// No slot: the instance is not in the environment's cluster.
const NO_SLOT: usize = usize::MAX;

impl<'a> View<'a> {
    /// Non-daemon tasks not yet stopped on the instance at `pos`.
    pub fn foreign_live(&self, pos: usize) -> usize {
        self.foreign_live.get(pos).copied().unwrap_or(0)
    }

    /// Classifies a snapshot.
    pub fn build(snap: &'a Snapshot<DaemonDesired>) -> Self {
        let desired = &snap.desired;
        let (instances, tasks) = (snap.instance_slice(), snap.task_slice());
        let n = instances.len();
        // Deployment id -> (environment index, is the active deployment).
        let mut owners: FastMap<&str, (usize, bool)> = FastMap::default();
        for (ei, e) in desired.environments.iter().enumerate() {
            let active = e.environment.active_deployment.as_deref();
            for d in &e.deployments {
                owners.insert(d.id.as_str(), (ei, Some(d.id.as_str()) == active));
            }
        }

        // Instances by cluster ARN, and each instance's position.
        let mut by_cluster: FastMap<&Arn, Vec<usize>> = FastMap::default();
        let mut inst_pos: FastMap<TailKey<'_>, usize> = FastMap::default();
        inst_pos.reserve(n);
        for (pos, i) in instances.iter().enumerate() {
            by_cluster.entry(&i.cluster_arn).or_default().push(pos);
            inst_pos.insert(TailKey(i.container_instance_arn.as_str()), pos);
        }

        let mut envs: Vec<EnvView<'a>> = desired
            .environments
            .iter()
            .map(|state| EnvView {
                state,
                active: state.active(),
                instances: Vec::new(),
                live: Vec::new(),
                in_flight: 0,
                active_started: false,
            })
            .collect();

        // Per environment: instance position -> index into its `instances`.
        let mut slot_of: Vec<Vec<usize>> = Vec::with_capacity(envs.len());
        for ev in &mut envs {
            let env = &ev.state.environment;
            let mut map = vec![NO_SLOT; n];
            let mut positions: Vec<usize> = by_cluster
                .iter()
                .filter(|(arn, _)| Filter::cluster_matches(env.cluster(), arn))
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            positions.sort_unstable();
            ev.instances.reserve(positions.len());
            for pos in positions {
                let inst = &instances[pos];
                let placement = match inst.status {
                    InstanceStatus::Draining => Placement::Draining,
                    InstanceStatus::Active if inst.agent_connected => {
                        if env.selector().matches(inst) {
                            Placement::Eligible
                        } else {
                            Placement::NotSelected
                        }
                    }
                    _ => Placement::Unreachable,
                };
                map[pos] = ev.instances.len();
                ev.instances.push(InstanceView {
                    instance: inst,
                    pos,
                    placement,
                    slot: Slot::default(),
                });
            }
            slot_of.push(map);
        }

        // Other tasks matter only on DRAINING instances of environments that
        // keep their daemon until it is the last task: skip locating them
        // otherwise (each lookup reads the task's instance ARN, a cache miss).
        let count_foreign = envs.iter().any(|ev| {
            ev.state.environment.draining_policy == DrainingPolicy::StopWhenLast
                && ev
                    .instances
                    .iter()
                    .any(|iv| iv.placement == Placement::Draining)
        });
        let locate = |t: &Task| {
            t.container_instance_arn
                .as_ref()
                .and_then(|i| inst_pos.get(&TailKey(i.as_str())))
                .copied()
        };
        let mut foreign_live = vec![0usize; n];
        for t in tasks {
            let owner = t.started_by.as_deref().and_then(|s| owners.get(s)).copied();
            let Some((ei, is_active)) = owner else {
                if count_foreign
                    && !t.last_status.is_terminal()
                    && let Some(p) = locate(t)
                {
                    foreign_live[p] += 1;
                }
                continue;
            };
            let pos = locate(t);
            let ev = &mut envs[ei];
            if is_active {
                ev.active_started = true;
            }
            let live = t.is_live();
            let stopping = is_stopping(t);
            if live {
                ev.live.push(t);
            }
            if stopping {
                ev.in_flight += 1;
            }
            let si = pos.map_or(NO_SLOT, |p| slot_of[ei][p]);
            let Some(iv) = ev.instances.get_mut(si) else {
                continue;
            };
            let slot = &mut iv.slot;
            if live {
                if is_active {
                    slot.current.push(t);
                } else {
                    slot.old.push(t);
                }
            } else if stopping {
                slot.stopping += 1;
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
            let si = inst_pos
                .get(&TailKey(p.instance.as_str()))
                .map_or(NO_SLOT, |&pos| slot_of[ei][pos]);
            if let Some(iv) = ev.instances.get_mut(si) {
                if is_active {
                    iv.slot.pending += 1;
                } else {
                    iv.slot.old_pending += 1;
                }
            }
        }

        View { envs, foreign_live }
    }
}
