//! What the simulation knows to be true, shared by its parts: the fake ECS
//! (ground truth), the environments as the driver made them, who holds the
//! lease, the fault settings, the trace and the violations found.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use blox_core::model::{Arn, InstanceStatus, Task};
use blox_core::testing::FakeEcs;
use tokio::time::Instant;

use crate::ecs::EcsFaults;

/// How many trace lines are kept for a violation's report.
const TRACE_LINES: usize = 150;

/// An environment as the driver made it.
#[derive(Debug, Clone, Default)]
pub struct EnvModel {
    /// Its deployments (the `startedBy` of its tasks).
    pub deployments: HashSet<String>,
    /// The active deployment.
    pub active: Option<String>,
    /// Deleted with `stopTasks` (its tasks may be stopped).
    pub deleting: bool,
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (`one-task`, `allowed-stops`, `converge`, `streams`,
    /// `fencing`, `nothing-lost`, `no-resurrection`, `stall`).
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
    /// Simulated time since the start, in seconds.
    pub at_secs: u64,
}

#[derive(Debug, Default)]
struct Inner {
    faults: Option<EcsFaults>,
    envs: BTreeMap<String, EnvModel>,
    /// Per replica: when its lease was lost (ground truth), while it is out.
    lease_lost: HashMap<usize, Instant>,
    trace: VecDeque<String>,
    /// The trace as it was at the first violation.
    first_trace: Option<Vec<String>>,
    violations: Vec<Violation>,
    /// Duplicates (environment, instance) seen, since when.
    duplicates: HashMap<(String, Arn), Instant>,
    /// Tasks a replica's view has shown stopped.
    seen_stopped: HashMap<usize, HashSet<Arn>>,
}

/// The shared model (see the module docs).
pub struct World {
    /// The fake ECS (ground truth).
    pub fake: FakeEcs,
    /// When the run started.
    pub start: Instant,
    /// How long a duplicate may live.
    pub duplicate_bound: Duration,
    /// How long a deposed leader may still act.
    pub fence_bound: Duration,
    inner: Mutex<Inner>,
}

impl World {
    /// A world over `fake`.
    pub fn new(fake: FakeEcs, duplicate_bound: Duration, fence_bound: Duration) -> Self {
        World {
            fake,
            start: Instant::now(),
            duplicate_bound,
            fence_bound,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn secs(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// Adds a line to the trace.
    pub fn trace(&self, line: impl Into<String>) {
        let line = format!("[{:>5}s] {}", self.secs(), line.into());
        let mut inner = self.lock();
        if inner.trace.len() == TRACE_LINES {
            inner.trace.pop_front();
        }
        inner.trace.push_back(line);
    }

    /// The lines of the trace that led to the first violation (the last
    /// lines of the run when there was none).
    pub fn trace_lines(&self) -> Vec<String> {
        let inner = self.lock();
        match &inner.first_trace {
            Some(t) => t.clone(),
            None => inner.trace.iter().cloned().collect(),
        }
    }

    /// Records a violation (once per invariant and detail).
    pub fn violate(&self, invariant: &'static str, detail: impl Into<String>) {
        let v = Violation {
            invariant,
            detail: detail.into(),
            at_secs: self.secs(),
        };
        self.trace(format!("VIOLATION {}: {}", v.invariant, v.detail));
        let mut inner = self.lock();
        if inner.first_trace.is_none() {
            inner.first_trace = Some(inner.trace.iter().cloned().collect());
        }
        if !inner
            .violations
            .iter()
            .any(|o| o.invariant == v.invariant && o.detail == v.detail)
        {
            inner.violations.push(v);
        }
    }

    /// The violations found so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }

    /// The ECS faults in force.
    pub fn ecs_faults(&self) -> EcsFaults {
        self.lock().faults.unwrap_or(EcsFaults::NONE)
    }

    /// Sets (or clears) the ECS faults.
    pub fn set_ecs_faults(&self, faults: Option<EcsFaults>) {
        self.lock().faults = faults;
    }

    /// Records an environment change made by the driver.
    pub fn update_env(&self, name: &str, f: impl FnOnce(&mut EnvModel)) {
        f(self.lock().envs.entry(name.to_owned()).or_default());
    }

    /// Forgets every environment (the store that held them is gone): each
    /// is kept under a new name, `NAME@lost-N`, so its tasks stay known as
    /// its own and a new environment of the same name starts afresh.
    pub fn forget_envs(&self, incarnation: u64) {
        let mut inner = self.lock();
        let old = std::mem::take(&mut inner.envs);
        for (name, model) in old {
            let name = if name.contains("@lost-") {
                name
            } else {
                format!("{name}@lost-{incarnation}")
            };
            inner.envs.insert(name, model);
        }
    }

    /// The environment a deployment belongs to.
    pub fn env_of(&self, started_by: &str) -> Option<String> {
        self.lock()
            .envs
            .iter()
            .find(|(_, e)| e.deployments.contains(started_by))
            .map(|(n, _)| n.clone())
    }

    /// Records that `replica` lost (`true`) or holds again its lease.
    pub fn set_lease_lost(&self, replica: usize, lost: bool) {
        let mut inner = self.lock();
        if lost {
            inner.lease_lost.entry(replica).or_insert_with(Instant::now);
        } else {
            inner.lease_lost.remove(&replica);
        }
    }

    /// Since when `replica` has been without its lease, if it lost it.
    pub fn lease_lost_since(&self, replica: usize) -> Option<Instant> {
        self.lock().lease_lost.get(&replica).copied()
    }

    /// Checks an acting call of `replica` against fencing.
    pub fn acted(&self, replica: usize, operation: &str) {
        let since = self.lock().lease_lost.get(&replica).copied();
        if let Some(lost) = since
            && lost.elapsed() > self.fence_bound
        {
            self.violate(
                "fencing",
                format!(
                    "replica {replica} called {operation} {:?} after losing its lease (bound {:?})",
                    lost.elapsed(),
                    self.fence_bound
                ),
            );
        }
    }

    /// Records tasks a StartTask created.
    pub fn started(&self, tasks: &[Task]) {
        for t in tasks {
            self.trace(format!(
                "start {} by {} on {}",
                short(t.task_arn.as_str()),
                t.started_by.as_deref().unwrap_or("-"),
                t.container_instance_arn
                    .as_ref()
                    .map_or("-", |a| short(a.as_str()))
            ));
        }
    }

    /// Checks a StopTask of `replica` against the daemon scheduler's rules:
    /// a daemon task is stopped only in a rollout (not the active
    /// deployment), under the draining policy (instance not ACTIVE), when its
    /// environment is deleted with `stopTasks`, or as a duplicate.
    pub fn check_stop(&self, replica: usize, task: &Arn, reason: &str) {
        self.trace(format!(
            "replica {replica} stops {}: {reason}",
            short(task.as_str())
        ));
        let Some(t) = self.fake.task(task) else {
            return;
        };
        if !t.is_live() {
            return;
        }
        let by = t.started_by.clone().unwrap_or_default();
        let Some(env_name) = self.env_of(&by) else {
            self.violate(
                "allowed-stops",
                format!("stopped {task}, not a daemon task"),
            );
            return;
        };
        let env = self.lock().envs.get(&env_name).cloned().unwrap_or_default();
        if env.deleting || env.active.as_deref() != Some(by.as_str()) {
            return;
        }
        let Some(instance) = t.container_instance_arn.clone() else {
            return;
        };
        let active = self
            .fake
            .instance(&instance)
            .is_some_and(|i| i.status == InstanceStatus::Active && i.agent_connected);
        if !active {
            return;
        }
        let duplicate = self.fake.tasks_on(&instance).iter().any(|o| {
            o.task_arn != *task
                && o.is_live()
                && o.started_by
                    .as_deref()
                    .is_some_and(|b| env.deployments.contains(b))
        });
        if !duplicate {
            self.violate(
                "allowed-stops",
                format!("replica {replica} stopped the only {env_name} task {task} on ACTIVE {instance}: {reason}"),
            );
        }
    }

    /// Checks "one task": no environment has two live tasks on one
    /// instance for longer than the bound.
    pub fn check_one_task(&self, instances: &[Arn]) {
        let now = Instant::now();
        let mut seen = HashSet::new();
        for instance in instances {
            let mut per_env: HashMap<String, usize> = HashMap::new();
            for t in self.fake.tasks_on(instance) {
                if !t.is_live() {
                    continue;
                }
                if let Some(env) = t.started_by.as_deref().and_then(|b| self.env_of(b)) {
                    *per_env.entry(env).or_default() += 1;
                }
            }
            for (env, n) in per_env {
                if n > 1 {
                    seen.insert((env, instance.clone()));
                }
            }
        }
        let mut late = Vec::new();
        {
            let mut inner = self.lock();
            inner.duplicates.retain(|k, _| seen.contains(k));
            for key in seen {
                let since = *inner.duplicates.entry(key.clone()).or_insert(now);
                if now.duration_since(since) > self.duplicate_bound {
                    late.push(key);
                }
            }
        }
        late.sort();
        for (env, instance) in late {
            self.violate(
                "one-task",
                format!(
                    "{env} has two live tasks on {instance} for over {:?}",
                    self.duplicate_bound
                ),
            );
        }
    }

    /// Checks "no resurrection" on one replica's view: a task it has shown
    /// stopped never shows live again.
    pub fn check_no_resurrection(&self, replica: usize, tasks: &[(Arn, bool)]) {
        let mut back = Vec::new();
        {
            let mut inner = self.lock();
            let stopped = inner.seen_stopped.entry(replica).or_default();
            for (arn, live) in tasks {
                if *live {
                    if stopped.contains(arn) {
                        back.push(arn.clone());
                    }
                } else {
                    stopped.insert(arn.clone());
                }
            }
        }
        for arn in back {
            self.violate(
                "no-resurrection",
                format!("replica {replica}'s view shows {arn} live after showing it stopped"),
            );
        }
    }
}

/// The last path segment of an ARN (for the trace).
pub fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}
