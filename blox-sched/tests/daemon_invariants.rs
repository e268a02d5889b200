//! Randomized snapshots (seeded, reproducible): whatever the mix of
//! environments, instance states, tasks, starts in flight and backoffs, the
//! daemon scheduler's decision keeps its invariants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use blox_core::model::{Arn, InstanceStatus, TaskStatus};
use blox_sched::daemon::{
    AttributeMatch, DaemonDesired, DaemonScheduler, DrainingPolicy, Environment, EnvironmentState,
    InstanceSelector, MAX_INSTANCES_PER_START,
};
use blox_sched::scheduler::{Action, Scheduler, Snapshot};
use blox_sched::testing::SnapshotBuilder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn random_desired(rng: &mut SmallRng) -> DaemonDesired {
    let mut envs = Vec::new();
    for e in 0..rng.random_range(1..=2) {
        let name = format!("e{e}");
        let mut env = Environment::new(&name, "prod", "d:1", "t", SnapshotBuilder::EPOCH);
        env.max_unavailable = rng.random_range(1..=3);
        if rng.random_bool(0.5) {
            env.draining_policy = DrainingPolicy::StopImmediately;
        }
        if rng.random_bool(0.3) {
            env.instance_group.attributes =
                InstanceSelector::all().and(AttributeMatch::exists("sel"));
        }
        let mut state = EnvironmentState::deployed(env, format!("{name}-a"));
        if rng.random_bool(0.6) {
            state = state.redeploy(format!("{name}-b"), "d:2");
        }
        if rng.random_bool(0.1) {
            state.environment.deleting = true;
        }
        if rng.random_bool(0.05) {
            state.environment.active_deployment = None;
        }
        envs.push(state);
    }
    DaemonDesired::new(envs)
}

fn random_snapshot(seed: u64) -> Snapshot<DaemonDesired> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let desired = random_desired(&mut rng);
    let tags = ["e0-a", "e0-b", "e1-a", "e1-b", "ecs-svc/x", ""];
    let mut b = SnapshotBuilder::new();
    let mut task = 0;
    for k in 0..rng.random_range(0..12) {
        b = b.cluster(if rng.random_bool(0.9) {
            "prod"
        } else {
            "other"
        });
        let id = format!("i{k}");
        let status = match rng.random_range(0..10) {
            0 | 1 => InstanceStatus::Draining,
            2 => InstanceStatus::Inactive,
            _ => InstanceStatus::Active,
        };
        let (connected, sel) = (rng.random_bool(0.9), rng.random_bool(0.5));
        b = b.instance(&id, |i| {
            let i = i.status(status);
            let i = if connected { i } else { i.disconnected() };
            if sel { i.flag("sel") } else { i }
        });
        for _ in 0..rng.random_range(0..4) {
            task += 1;
            let tag = tags[rng.random_range(0..tags.len())];
            let st = rng.random_range(0..4);
            b = b.task(&format!("t{task}"), &id, |t| {
                let t = if tag.is_empty() { t } else { t.started_by(tag) };
                match st {
                    0 => t.pending(),
                    1 => t.stopping(),
                    2 => t.stopped("x"),
                    _ => t,
                }
            });
        }
        if rng.random_bool(0.15) {
            b = b.pending_start(&id, "d:2", tags[rng.random_range(0..4)]);
        }
        if rng.random_bool(0.15) {
            b = b.backoff(&id, "RESOURCE:MEMORY");
        }
    }
    b.build(desired)
}

/// Which environment a `startedBy` belongs to.
fn env_of<'a>(snap: &'a Snapshot<DaemonDesired>, tag: &str) -> Option<&'a EnvironmentState> {
    snap.desired
        .environments
        .iter()
        .find(|e| e.deployments.iter().any(|d| d.id == tag))
}

fn eligible(snap: &Snapshot<DaemonDesired>, env: &Environment, arn: &Arn) -> bool {
    snap.instances().any(|i| {
        &i.container_instance_arn == arn
            && i.status == InstanceStatus::Active
            && i.agent_connected
            && i.cluster_arn.cluster_name() == Some(env.cluster())
            && env.selector().matches(i)
    })
}

fn check(seed: u64) {
    let snap = random_snapshot(seed);
    let actions = DaemonScheduler.decide(&snap);
    let ctx = || format!("seed {seed}: {actions:#?}");
    let tasks: HashMap<&Arn, _> = snap.tasks().map(|t| (&t.task_arn, t)).collect();

    let mut stopped = HashSet::new();
    let mut started: HashSet<(String, Arn)> = HashSet::new();
    for a in &actions {
        match a {
            Action::Stop(s) => {
                let t = tasks
                    .get(&s.task)
                    .unwrap_or_else(|| panic!("unknown task; {}", ctx()));
                assert!(t.is_live(), "stop of a task that is not live; {}", ctx());
                let tag = t.started_by.as_deref().unwrap_or("");
                assert!(
                    env_of(&snap, tag).is_some(),
                    "stop of a foreign task; {}",
                    ctx()
                );
                assert!(
                    stopped.insert(s.task.clone()),
                    "task stopped twice; {}",
                    ctx()
                );
            }
            Action::Start(s) => {
                assert!(s.instances.len() <= MAX_INSTANCES_PER_START, "{}", ctx());
                let env = env_of(&snap, &s.started_by).unwrap_or_else(|| panic!("{}", ctx()));
                let active = env.active().unwrap();
                assert_eq!(
                    active.id,
                    s.started_by,
                    "starts only the active deployment; {}",
                    ctx()
                );
                assert_eq!(s.task_definition, active.task_definition);
                assert!(
                    !env.environment.deleting,
                    "start for a deleted environment; {}",
                    ctx()
                );
                let ids: HashSet<&str> = env.deployments.iter().map(|d| d.id.as_str()).collect();
                for i in &s.instances {
                    assert!(
                        eligible(&snap, &env.environment, i),
                        "start on an ineligible instance; {}",
                        ctx()
                    );
                    assert!(!snap.in_backoff(i), "start during backoff; {}", ctx());
                    let busy = snap.tasks().any(|t| {
                        t.container_instance_arn.as_ref() == Some(i)
                            && !t.last_status.is_terminal()
                            && t.started_by.as_deref().is_some_and(|x| ids.contains(x))
                    });
                    assert!(
                        !busy,
                        "start next to a daemon task of the environment; {}",
                        ctx()
                    );
                    let pending = snap
                        .pending_starts()
                        .any(|p| &p.instance == i && p.started_by == active.id);
                    assert!(!pending, "start while a start is in flight; {}", ctx());
                    assert!(
                        started.insert((s.started_by.clone(), i.clone())),
                        "started twice; {}",
                        ctx()
                    );
                }
            }
        }
    }

    for env in &snap.desired.environments {
        let ids: HashSet<&str> = env.deployments.iter().map(|d| d.id.as_str()).collect();
        let mine = |t: &&std::sync::Arc<blox_core::model::Task>| {
            t.started_by.as_deref().is_some_and(|x| ids.contains(x))
        };
        if env.environment.deleting {
            for t in snap.live_tasks().filter(mine) {
                assert!(
                    stopped.contains(&t.task_arn),
                    "deleted environment's task kept; {}",
                    ctx()
                );
            }
            continue;
        }
        // The rollout bound: instances lacking a running daemon after the
        // stops never exceed the bound, unless they already did before.
        let lacking = |count_stops: bool| {
            snap.instances()
                .filter(|i| eligible(&snap, &env.environment, &i.container_instance_arn))
                .filter(|i| {
                    !snap.tasks().any(|t| {
                        mine(&t)
                            && t.container_instance_arn.as_ref() == Some(&i.container_instance_arn)
                            && t.is_live()
                            && t.last_status == TaskStatus::Running
                            && !(count_stops && stopped.contains(&t.task_arn))
                    })
                })
                .count()
        };
        let (before, after) = (lacking(false), lacking(true));
        let bound = env.environment.max_unavailable as usize;
        assert!(
            after <= bound.max(before),
            "bound {bound}: {before} -> {after}; {}",
            ctx()
        );
    }
}

#[test]
fn decisions_keep_their_invariants_on_random_snapshots() {
    for seed in 0..3000 {
        check(seed);
    }
}
