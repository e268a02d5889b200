//! Rolling a task-definition change out: the bound on instances without a
//! running daemon holds at every step, and the rollout finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use blox_sched::daemon::{DaemonDesired, DaemonScheduler, Environment, EnvironmentState};
use blox_sched::scheduler::{Action, Scheduler, Snapshot};
use blox_sched::testing::{SnapshotBuilder, starts, stops};

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Pending,
    Running,
    Stopping,
    Stopped,
}

#[derive(Debug, Clone)]
struct SimTask {
    id: String,
    instance: String,
    dep: String,
    td: String,
    st: St,
}

/// A tiny cluster that executes actions: stops make tasks STOPPING, starts
/// make PENDING tasks; each tick moves STOPPING to STOPPED and PENDING to RUNNING.
struct Sim {
    instances: Vec<String>,
    tasks: Vec<SimTask>,
    next: usize,
}

impl Sim {
    fn new(n: usize, dep: &str, td: &str) -> Self {
        let instances: Vec<String> = (0..n).map(|k| format!("i{k}")).collect();
        let tasks = instances
            .iter()
            .enumerate()
            .map(|(k, i)| SimTask {
                id: format!("t{k}"),
                instance: i.clone(),
                dep: dep.into(),
                td: td.into(),
                st: St::Running,
            })
            .collect();
        Sim {
            instances,
            tasks,
            next: n,
        }
    }

    fn snapshot(&self, desired: DaemonDesired) -> Snapshot<DaemonDesired> {
        let mut b = SnapshotBuilder::new().cluster("prod");
        for i in &self.instances {
            b = b.instance(i, |x| x);
        }
        for t in &self.tasks {
            b = b.task(&t.id, &t.instance, |x| {
                let x = x.task_definition(&t.td).started_by(&t.dep);
                match t.st {
                    St::Pending => x.pending(),
                    St::Running => x,
                    St::Stopping => x.stopping(),
                    St::Stopped => x.stopped("stopped"),
                }
            });
        }
        b.build(desired)
    }

    fn apply(&mut self, actions: &[Action]) {
        let prefix = SnapshotBuilder::new().cluster("prod");
        for a in actions {
            match a {
                Action::Stop(s) => {
                    let t = self
                        .tasks
                        .iter_mut()
                        .find(|t| prefix.task_arn(&t.id) == s.task)
                        .unwrap();
                    assert!(
                        matches!(t.st, St::Pending | St::Running),
                        "stop of a dead task"
                    );
                    t.st = St::Stopping;
                }
                Action::Start(s) => {
                    for arn in &s.instances {
                        let inst = self
                            .instances
                            .iter()
                            .find(|i| prefix.instance_arn(i) == *arn)
                            .unwrap()
                            .clone();
                        self.next += 1;
                        self.tasks.push(SimTask {
                            id: format!("t{}", self.next),
                            instance: inst,
                            dep: s.started_by.clone(),
                            td: s.task_definition.clone(),
                            st: St::Pending,
                        });
                    }
                }
            }
        }
    }

    fn tick(&mut self) {
        for t in &mut self.tasks {
            t.st = match t.st {
                St::Stopping | St::Stopped => St::Stopped,
                St::Pending | St::Running => St::Running,
            };
        }
    }

    /// Instances without a RUNNING daemon task (any deployment).
    fn unavailable(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| {
                !self
                    .tasks
                    .iter()
                    .any(|t| &t.instance == *i && t.st == St::Running)
            })
            .count()
    }

    fn live_per_instance(&self) -> usize {
        let mut m: HashMap<&str, usize> = HashMap::new();
        for t in self
            .tasks
            .iter()
            .filter(|t| matches!(t.st, St::Pending | St::Running))
        {
            *m.entry(&t.instance).or_default() += 1;
        }
        m.values().copied().max().unwrap_or(0)
    }
}

fn rolled(bound: u32) -> DaemonDesired {
    let mut e = Environment::new("logs", "prod", "logs:1", "t", SnapshotBuilder::EPOCH);
    e.max_unavailable = bound;
    DaemonDesired::new(vec![
        EnvironmentState::deployed(e, "dep-1").redeploy("dep-2", "logs:2"),
    ])
}

fn run_rollout(n: usize, bound: u32) -> usize {
    let mut sim = Sim::new(n, "dep-1", "logs:1");
    let mut max_seen = 0;
    for _step in 0..10 * n + 10 {
        let actions = DaemonScheduler.decide(&sim.snapshot(rolled(bound)));
        if actions.is_empty() {
            break;
        }
        sim.apply(&actions);
        max_seen = max_seen.max(sim.unavailable());
        assert!(
            sim.unavailable() <= bound as usize,
            "bound exceeded after actions"
        );
        assert!(
            sim.live_per_instance() <= 1,
            "two live daemon tasks on one instance"
        );
        sim.tick();
        max_seen = max_seen.max(sim.unavailable());
        assert!(
            sim.unavailable() <= bound as usize,
            "bound exceeded after a tick"
        );
    }
    // Finished: every instance runs exactly one task of the new deployment.
    for i in &sim.instances {
        let live: Vec<&SimTask> = sim
            .tasks
            .iter()
            .filter(|t| &t.instance == i && t.st == St::Running)
            .collect();
        assert_eq!(live.len(), 1, "{i}");
        assert_eq!(
            (live[0].dep.as_str(), live[0].td.as_str()),
            ("dep-2", "logs:2")
        );
    }
    assert!(
        DaemonScheduler
            .decide(&sim.snapshot(rolled(bound)))
            .is_empty()
    );
    max_seen
}

#[test]
fn a_rollout_with_bound_one_replaces_one_instance_at_a_time() {
    assert_eq!(run_rollout(6, 1), 1);
}

#[test]
fn a_rollout_with_bound_two_uses_its_budget_but_never_exceeds_it() {
    assert_eq!(run_rollout(7, 2), 2);
}

#[test]
fn the_first_step_of_a_rollout_stops_exactly_bound_old_tasks_and_starts_nothing() {
    let sim = Sim::new(5, "dep-1", "logs:1");
    let actions = DaemonScheduler.decide(&sim.snapshot(rolled(2)));
    assert_eq!(stops(&actions).len(), 2);
    assert!(starts(&actions).is_empty());
}

#[test]
fn an_old_task_is_stopped_at_once_where_the_new_one_runs() {
    let snap = SnapshotBuilder::new()
        .cluster("prod")
        .instance("i0", |i| i)
        .instance("i1", |i| i)
        .task("old0", "i0", |t| t.started_by("dep-1"))
        .task("new0", "i0", |t| {
            t.started_by("dep-2").task_definition("logs:2")
        })
        .task("old1", "i1", |t| t.started_by("dep-1"))
        .build(rolled(1));
    // i0 is available (new runs), so the bound also lets one more old task go.
    let actions = DaemonScheduler.decide(&snap);
    let p = SnapshotBuilder::new().cluster("prod");
    assert_eq!(
        stops(&actions),
        vec![p.task_arn("old0"), p.task_arn("old1")]
    );
}

#[test]
fn a_rollout_waits_while_instances_lack_a_running_daemon_for_other_reasons() {
    let snap = SnapshotBuilder::new()
        .cluster("prod")
        .instance("i0", |i| i)
        .instance("i1", |i| i)
        .instance("failing", |i| i)
        .task("old0", "i0", |t| t.started_by("dep-1"))
        .task("old1", "i1", |t| t.started_by("dep-1"))
        .backoff("failing", "RESOURCE:MEMORY")
        .build(rolled(1));
    assert_eq!(DaemonScheduler.decide(&snap), vec![]);
}

#[test]
fn an_old_task_that_never_ran_is_replaced_without_using_the_budget() {
    let snap = SnapshotBuilder::new()
        .cluster("prod")
        .instance("i0", |i| i)
        .instance("i1", |i| i)
        .instance("i2", |i| i)
        .task("old0", "i0", |t| t.started_by("dep-1").pending())
        .task("old1", "i1", |t| t.started_by("dep-1"))
        .task("old2", "i2", |t| t.started_by("dep-1"))
        .build(rolled(1));
    let actions = DaemonScheduler.decide(&snap);
    // i0 lacks a running daemon (uses the whole budget), but its old task is
    // not running, so it is stopped anyway; i1 and i2 wait.
    let p = SnapshotBuilder::new().cluster("prod");
    assert_eq!(stops(&actions), vec![p.task_arn("old0")]);
    assert!(starts(&actions).is_empty());
}

#[test]
fn a_start_of_a_replaced_deployment_still_in_flight_blocks_the_new_start() {
    // dep-1 stopped i0's task and started its own (the intent is
    // outstanding, its task not visible yet); then dep-2 replaced dep-1.
    // Starting dep-2 now would leave two daemon tasks on i0 (seed 21 of
    // the simulation): wait for dep-1's task, stop it, then start.
    let b = SnapshotBuilder::new().cluster("prod");
    let p = b.clone();
    let snap = b
        .instance("i0", |i| i)
        .pending_start("i0", "logs:1", "dep-1")
        .build(rolled(1));
    assert_eq!(DaemonScheduler.decide(&snap), vec![]);

    // Its task shows up: it is stopped (stop old, then start new).
    let snap = SnapshotBuilder::new()
        .cluster("prod")
        .instance("i0", |i| i)
        .task("late", "i0", |t| t.started_by("dep-1").pending())
        .build(rolled(1));
    let actions = DaemonScheduler.decide(&snap);
    assert_eq!(stops(&actions), vec![p.task_arn("late")]);
    assert!(starts(&actions).is_empty());
}
