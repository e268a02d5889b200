//! The daemon scheduler's decision from changes alone
//! (`Scheduler::decide_changed`) equals its decision on the whole snapshot,
//! for every kind of single-instance change to a settled cluster, over many
//! seeded worlds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use blox_core::model::Arn;
use blox_sched::daemon::{
    AttributeMatch, DaemonDesired, DaemonScheduler, DrainingPolicy, Environment, EnvironmentState,
    InstanceSelector,
};
use blox_sched::scheduler::{Changes, Scheduler, Snapshot};
use blox_sched::testing::SnapshotBuilder;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A seeded generator: `below(n)` is in `0..n`.
struct Seeded(SmallRng);

impl Seeded {
    fn new(seed: u64) -> Self {
        Seeded(SmallRng::seed_from_u64(seed))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }
}

fn desired(policy: DrainingPolicy) -> DaemonDesired {
    let mut web = Environment::new("web", "prod", "web:1", "t", SnapshotBuilder::EPOCH);
    web.instance_group.attributes = InstanceSelector(vec![AttributeMatch::equals("role", "web")]);
    web.draining_policy = policy;
    let logs = Environment::new("logs", "prod", "logs:1", "t", SnapshotBuilder::EPOCH);
    DaemonDesired::new(vec![
        EnvironmentState::deployed(web, "dep-web"),
        EnvironmentState::deployed(logs, "dep-logs"),
    ])
}

/// What one instance holds in a world.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Inst {
    web: bool,
    draining: bool,
    /// Live daemon tasks of each environment.
    web_tasks: u8,
    logs_tasks: u8,
    /// Live tasks of no environment.
    foreign: u8,
    backoff: bool,
    present: bool,
}

fn build(world: &[Inst], policy: DrainingPolicy) -> Snapshot<DaemonDesired> {
    let mut b = SnapshotBuilder::new().cluster("prod");
    for (k, i) in world.iter().enumerate() {
        if !i.present {
            continue;
        }
        let id = format!("i{k}");
        let (web, draining) = (i.web, i.draining);
        b = b.instance(&id, move |x| {
            let x = if web { x.attr("role", "web") } else { x };
            if draining { x.draining() } else { x }
        });
        for (tag, n) in [("dep-web", i.web_tasks), ("dep-logs", i.logs_tasks)] {
            for c in 0..n {
                b = b.task(&format!("{id}-{tag}-{c}"), &id, |t| t.started_by(tag));
            }
        }
        for c in 0..i.foreign {
            b = b.task(&format!("{id}-other-{c}"), &id, |t| t.started_by("someone"));
        }
        if i.backoff {
            b = b.backoff(&id, "RESOURCE:MEMORY");
        }
    }
    b.build(desired(policy))
}

fn sorted(actions: Vec<blox_sched::scheduler::Action>) -> Vec<String> {
    // Start actions group instances; compare per instance.
    let mut out: Vec<String> = Vec::new();
    for a in actions {
        match a {
            blox_sched::scheduler::Action::Start(s) => {
                for i in s.instances {
                    out.push(format!(
                        "start {} {} on {i}",
                        s.task_definition, s.started_by
                    ));
                }
            }
            blox_sched::scheduler::Action::Stop(s) => out.push(format!("{s:?}")),
        }
    }
    out.sort();
    out
}

/// One random change to one instance.
fn mutate(i: &mut Inst, rng: &mut Seeded) {
    match rng.below(9) {
        0 => i.web_tasks = i.web_tasks.saturating_sub(1),
        1 => i.logs_tasks = i.logs_tasks.saturating_sub(1),
        2 => i.web_tasks += 1,
        3 => i.draining = !i.draining,
        4 => i.web = !i.web,
        5 => i.foreign = i.foreign.saturating_sub(1),
        6 => i.backoff = !i.backoff,
        7 => i.present = !i.present,
        _ => {
            i.logs_tasks = 0;
            i.web_tasks = 0;
        }
    }
}

#[test]
fn a_decision_from_one_changed_instance_equals_the_full_decision() {
    let scheduler = DaemonScheduler::new();
    let mut rng = Seeded::new(0x5eed);
    let mut compared = 0;
    for round in 0..300 {
        let policy = if round % 2 == 0 {
            DrainingPolicy::StopWhenLast
        } else {
            DrainingPolicy::StopImmediately
        };
        // A settled world: every instance holds what the daemon wants.
        let n = 3 + rng.below(8) as usize;
        let mut world: Vec<Inst> = (0..n)
            .map(|_| {
                let web = rng.below(2) == 0;
                Inst {
                    web,
                    draining: false,
                    web_tasks: u8::from(web),
                    logs_tasks: 1,
                    foreign: rng.below(3) as u8,
                    backoff: false,
                    present: true,
                }
            })
            .collect();
        let before = build(&world, policy);
        assert!(
            scheduler.decide(&before).is_empty(),
            "round {round}: the settled world wants nothing"
        );
        let k = rng.below(n as u64) as usize;
        mutate(&mut world[k], &mut rng);
        let after = build(&world, policy);
        let changed: HashSet<Arn> = [SnapshotBuilder::new()
            .cluster("prod")
            .instance_arn(&format!("i{k}"))]
        .into_iter()
        .collect();
        let previous = desired(policy);
        let from_changes = scheduler.decide_changed(&after, &Changes::since(&previous, &changed));
        assert_eq!(
            sorted(from_changes),
            sorted(scheduler.decide(&after)),
            "round {round}: instance i{k} became {:?}",
            world[k]
        );
        compared += 1;
    }
    assert_eq!(compared, 300);
}

#[test]
fn with_nothing_changed_the_decision_from_changes_is_empty_and_a_new_desired_state_decides_in_full()
{
    let scheduler = DaemonScheduler::new();
    let world = vec![
        Inst {
            web: true,
            draining: false,
            web_tasks: 0,
            logs_tasks: 1,
            foreign: 0,
            backoff: false,
            present: true,
        };
        3
    ];
    let snap = build(&world, DrainingPolicy::StopWhenLast);
    let none = HashSet::new();
    // The same desired state and no change: nothing to decide (the missing
    // web tasks were asked for by the previous decision).
    let same = desired(DrainingPolicy::StopWhenLast);
    assert!(
        scheduler
            .decide_changed(&snap, &Changes::since(&same, &none))
            .is_empty()
    );
    // Another desired state (here: another draining policy) is a full decision.
    let other = desired(DrainingPolicy::StopImmediately);
    assert_eq!(
        sorted(scheduler.decide_changed(&snap, &Changes::since(&other, &none))),
        sorted(scheduler.decide(&snap))
    );
    assert_eq!(
        scheduler.decide(&snap).len(),
        1,
        "one start of three instances"
    );
    assert_eq!(
        sorted(scheduler.decide_changed(&snap, &Changes::full())),
        sorted(scheduler.decide(&snap))
    );
}
