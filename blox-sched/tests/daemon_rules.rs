//! The daemon scheduler's rules, one snapshot at a time, built with the test kit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blox_core::model::Arn;
use blox_sched::daemon::{
    AttributeMatch, DaemonDesired, DaemonScheduler, DrainingPolicy, Environment, EnvironmentState,
    InstanceSelector, MAX_INSTANCES_PER_START, split_starts,
};
use blox_sched::scheduler::{Action, Scheduler};
use blox_sched::testing::{SnapshotBuilder, starts, stops};

fn env(name: &str, td: &str) -> Environment {
    Environment::new(name, "prod", td, "token", SnapshotBuilder::EPOCH)
}

fn one(e: Environment, dep: &str) -> DaemonDesired {
    DaemonDesired::new(vec![EnvironmentState::deployed(e, dep)])
}

fn prod() -> SnapshotBuilder {
    SnapshotBuilder::new().cluster("prod")
}

fn ia(id: &str) -> Arn {
    prod().instance_arn(id)
}

fn ta(id: &str) -> Arn {
    prod().task_arn(id)
}

#[test]
fn new_instances_get_one_start_of_the_active_deployment() {
    let snap = prod()
        .instance("i1", |i| i)
        .instance("i2", |i| i)
        .build(one(env("logs", "logs:1"), "dep-1"));
    let actions = DaemonScheduler.decide(&snap);
    assert_eq!(actions.len(), 1);
    let Action::Start(s) = &actions[0] else {
        panic!("expected a start, got {actions:?}")
    };
    assert_eq!(s.instances, vec![ia("i1"), ia("i2")]);
    assert_eq!(s.task_definition, "logs:1");
    assert_eq!(s.started_by, "dep-1");
    assert_eq!(s.cluster, prod().cluster_arn());
}

#[test]
fn instances_already_running_the_daemon_get_nothing() {
    let snap = prod()
        .instance("i1", |i| i)
        .task("t1", "i1", |t| {
            t.task_definition("logs:1").started_by("dep-1")
        })
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(DaemonScheduler.decide(&snap), vec![]);
}

#[test]
fn a_starting_task_counts_as_present() {
    let snap = prod()
        .instance("i1", |i| i)
        .task("t1", "i1", |t| t.started_by("dep-1").pending())
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(DaemonScheduler.decide(&snap), vec![]);
}

#[test]
fn a_stopped_task_is_replaced() {
    let snap = prod()
        .instance("i1", |i| i)
        .task("t1", "i1", |t| {
            t.started_by("dep-1").stopped("EssentialContainerExited")
        })
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(starts(&DaemonScheduler.decide(&snap)), vec![ia("i1")]);
}

#[test]
fn the_replacement_waits_until_the_old_task_has_stopped() {
    let snap = prod()
        .instance("i1", |i| i)
        .task("t1", "i1", |t| t.started_by("dep-1").stopping())
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(DaemonScheduler.decide(&snap), vec![]);
}

#[test]
fn instances_in_backoff_get_no_start_until_it_expires() {
    let base = || {
        prod()
            .instance("i1", |i| i)
            .instance("i2", |i| i)
            .task("t1", "i1", |t| {
                t.started_by("dep-1").stopped("CannotPullContainerError")
            })
    };
    let held = base()
        .backoff("i1", "CannotPullContainerError")
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(starts(&DaemonScheduler.decide(&held)), vec![ia("i2")]);
    let expired = base()
        .expired_backoff("i1", "CannotPullContainerError")
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(
        starts(&DaemonScheduler.decide(&expired)),
        vec![ia("i1"), ia("i2")]
    );
}

#[test]
fn pending_starts_of_the_deployment_count_as_present() {
    let snap = prod()
        .instance("i1", |i| i)
        .instance("i2", |i| i)
        .pending_start("i1", "logs:1", "dep-1")
        .pending_start("i2", "other:1", "someone-else")
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(starts(&DaemonScheduler.decide(&snap)), vec![ia("i2")]);
}

#[test]
fn an_extra_copy_is_stopped_and_the_running_one_kept() {
    let later = SnapshotBuilder::EPOCH.plus(std::time::Duration::from_secs(5));
    let snap = prod()
        .instance("i1", |i| i)
        .task("new", "i1", |t| t.started_by("dep-1").started_at(later))
        .task("old", "i1", |t| t.started_by("dep-1"))
        .task("starting", "i1", |t| t.started_by("dep-1").pending())
        .build(one(env("logs", "logs:1"), "dep-1"));
    let actions = DaemonScheduler.decide(&snap);
    assert_eq!(stops(&actions), vec![ta("new"), ta("starting")]);
    assert!(starts(&actions).is_empty());
}

#[test]
fn a_draining_instance_keeps_the_daemon_until_it_is_the_last_task() {
    let e = env("logs", "logs:1");
    assert_eq!(e.draining_policy, DrainingPolicy::StopWhenLast);
    let busy = prod()
        .instance("i1", |i| i.draining())
        .task("d", "i1", |t| t.started_by("dep-1"))
        .task("app", "i1", |t| {
            t.task_definition("app:7").started_by("ecs-svc/123")
        })
        .build(one(e.clone(), "dep-1"));
    assert_eq!(DaemonScheduler.decide(&busy), vec![]);
    let shutting_down = prod()
        .instance("i1", |i| i.draining())
        .task("d", "i1", |t| t.started_by("dep-1"))
        .task("app", "i1", |t| t.started_by("ecs-svc/123").stopping())
        .build(one(e.clone(), "dep-1"));
    assert_eq!(DaemonScheduler.decide(&shutting_down), vec![]);
    let last = prod()
        .instance("i1", |i| i.draining())
        .task("d", "i1", |t| t.started_by("dep-1"))
        .task("app", "i1", |t| {
            t.started_by("ecs-svc/123").stopped("drained")
        })
        .build(one(e, "dep-1"));
    assert_eq!(
        DaemonScheduler.decide(&last),
        vec![Action::stop_if(
            prod().cluster_arn(),
            ta("d"),
            "blox daemon environment logs: instance is draining",
            ia("i1"),
            blox_core::model::InstanceStatus::Draining,
        )],
        "stopped once ECS confirms the instance is DRAINING (the view may be stale)"
    );
}

#[test]
fn stop_immediately_stops_the_daemon_on_a_draining_instance_at_once() {
    let mut e = env("logs", "logs:1");
    e.draining_policy = DrainingPolicy::StopImmediately;
    let snap = prod()
        .instance("i1", |i| i.draining())
        .instance("i2", |i| i.draining())
        .task("d", "i1", |t| t.started_by("dep-1"))
        .task("app", "i1", |t| t.started_by("ecs-svc/123"))
        .build(one(e, "dep-1"));
    // Stopped despite the app task; nothing is started on the empty draining i2.
    assert_eq!(stops(&DaemonScheduler.decide(&snap)), vec![ta("d")]);
    assert!(starts(&DaemonScheduler.decide(&snap)).is_empty());
}

#[test]
fn the_selector_limits_instances_by_attribute_value_and_existence() {
    let mut e = env("gpu-agent", "agent:1");
    e.instance_group.attributes = InstanceSelector::all()
        .and(AttributeMatch::equals("ecs.instance-type", "m5.large"))
        .and(AttributeMatch::exists("gpu"));
    let snap = prod()
        .instance("yes", |i| i.instance_type("m5.large").flag("gpu"))
        .instance("no-gpu", |i| i.instance_type("m5.large"))
        .instance("wrong-type", |i| i.instance_type("c5.large").flag("gpu"))
        .instance("was-selected", |i| i.instance_type("c5.large"))
        .task("t", "was-selected", |t| t.started_by("dep-1"))
        .build(one(e, "dep-1"));
    let actions = DaemonScheduler.decide(&snap);
    assert_eq!(starts(&actions), vec![ia("yes")]);
    assert_eq!(stops(&actions), vec![ta("t")]);
}

#[test]
fn disconnected_inactive_and_other_cluster_instances_are_left_alone() {
    let snap = prod()
        .instance("gone", |i| i.inactive())
        .instance("lost", |i| i.disconnected())
        .task("t", "lost", |t| t.started_by("dep-1"))
        .task("t2", "lost", |t| t.started_by("dep-1"))
        .cluster("staging")
        .instance("s1", |i| i)
        .build(one(env("logs", "logs:1"), "dep-1"));
    assert_eq!(DaemonScheduler.decide(&snap), vec![]);
}

#[test]
fn an_environment_may_name_its_cluster_by_arn() {
    let e = Environment::new(
        "logs",
        prod().cluster_arn().as_str(),
        "logs:1",
        "t",
        SnapshotBuilder::EPOCH,
    );
    let snap = prod().instance("i1", |i| i).build(one(e, "dep-1"));
    assert_eq!(starts(&DaemonScheduler.decide(&snap)), vec![ia("i1")]);
}

#[test]
fn an_environment_without_a_deployment_starts_nothing() {
    let snap = prod()
        .instance("i1", |i| i)
        .build(DaemonDesired::new(vec![EnvironmentState {
            environment: env("logs", "logs:1"),
            deployments: vec![],
        }]));
    assert_eq!(DaemonScheduler.decide(&snap), vec![]);
}

#[test]
fn tasks_of_others_are_never_touched() {
    let snap = prod()
        .instance("i1", |i| i)
        .task("a", "i1", |t| t.task_definition("logs:1"))
        .task("b", "i1", |t| {
            t.task_definition("logs:1").started_by("ecs-svc/1")
        })
        .task("c", "i1", |t| {
            t.task_definition("logs:1").started_by("ecs-svc/1")
        })
        .build(one(env("logs", "logs:1"), "dep-1"));
    let actions = DaemonScheduler.decide(&snap);
    assert!(stops(&actions).is_empty());
    assert_eq!(starts(&actions), vec![ia("i1")]);
}

#[test]
fn deleting_an_environment_with_stop_stops_all_its_tasks_and_starts_none() {
    let mut state =
        EnvironmentState::deployed(env("logs", "logs:1"), "dep-1").redeploy("dep-2", "logs:2");
    state.environment.deleting = true;
    let snap = prod()
        .instance("i1", |i| i)
        .instance("i2", |i| i.draining())
        .instance("i3", |i| i)
        .task("old", "i1", |t| t.started_by("dep-1"))
        .task("new", "i2", |t| t.started_by("dep-2"))
        .task("done", "i3", |t| t.started_by("dep-2").stopped("x"))
        .task("app", "i3", |t| t.started_by("ecs-svc/1"))
        .build(DaemonDesired::new(vec![state]));
    let actions = DaemonScheduler.decide(&snap);
    assert_eq!(stops(&actions), vec![ta("old"), ta("new")]);
    assert!(starts(&actions).is_empty());
}

#[test]
fn environments_on_the_same_instances_are_independent() {
    let snap = prod()
        .instance("i1", |i| i)
        .task("l", "i1", |t| t.started_by("dep-logs"))
        .build(DaemonDesired::new(vec![
            EnvironmentState::deployed(env("logs", "logs:1"), "dep-logs"),
            EnvironmentState::deployed(env("metrics", "metrics:1"), "dep-metrics"),
        ]));
    let actions = DaemonScheduler.decide(&snap);
    assert_eq!(actions.len(), 1);
    let Action::Start(s) = &actions[0] else {
        panic!()
    };
    assert_eq!(
        (s.started_by.as_str(), s.task_definition.as_str()),
        ("dep-metrics", "metrics:1")
    );
}

#[test]
fn a_thousand_joining_instances_produce_exactly_one_hundred_start_batches() {
    let snap = prod()
        .instances(1000, "i", |_, i| i)
        .build(one(env("logs", "logs:1"), "dep-1"));
    let actions = DaemonScheduler.decide(&snap);
    assert_eq!(actions.len(), 100);
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::Start(s) if s.instances.len() == MAX_INSTANCES_PER_START))
    );
    assert_eq!(split_starts(&actions, MAX_INSTANCES_PER_START).len(), 100);
    let mut all = starts(&actions);
    assert_eq!(all.len(), 1000);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000, "every instance exactly once");
}

#[test]
fn split_starts_cuts_large_starts_into_batches_and_keeps_stops() {
    let s = Action::start(
        prod().cluster_arn(),
        "x:1",
        (0..25).map(|k| ia(&format!("i{k}"))).collect(),
        "d",
        "r",
    );
    let st = Action::stop(prod().cluster_arn(), ta("t"), "r");
    let out = split_starts(&[s, st.clone()], 10);
    let sizes: Vec<usize> = out
        .iter()
        .filter_map(|a| match a {
            Action::Start(s) => Some(s.instances.len()),
            Action::Stop(_) => None,
        })
        .collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(out.last(), Some(&st));
}
