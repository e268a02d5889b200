//! Daemon scheduler decision time.
//!
//! Run with `cargo bench -p blox-benches --bench daemon_decide`. Scenarios:
//! * steady: 5,000 instances (3 zones), 50,000 tasks (one daemon task and
//!   nine other tasks per instance); nothing to do. Target: under 10 ms.
//! * draining: the same with 50 instances DRAINING (the worst case: other
//!   tasks must be located too). Target: under 10 ms.
//! * rollout: the same cluster just after a new deployment (bound 50).
//! * join: 1,000 instances join at once: exactly 100 StartTask batches of 10.
//!
//! Prints the median and worst of the timed runs; exits non-zero if a
//! decision is wrong (the time target is reported, not enforced: machines differ).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use blox_core::model::InstanceStatus;
use blox_sched::daemon::{
    DaemonDesired, DaemonScheduler, Environment, EnvironmentState, MAX_INSTANCES_PER_START,
    split_starts,
};
use blox_sched::scheduler::{Action, Scheduler, Snapshot};
use blox_sched::testing::SnapshotBuilder;

const INSTANCES: usize = 5_000;
const TASKS_PER_INSTANCE: usize = 10;
const RUNS: usize = 100;

fn env(bound: u32) -> Environment {
    let mut e = Environment::new("logs", "prod", "logs:1", "t", SnapshotBuilder::EPOCH);
    e.max_unavailable = bound;
    e
}

fn cluster(instances: usize, daemon: bool, desired: DaemonDesired) -> Snapshot<DaemonDesired> {
    let zones = ["us-east-1a", "us-east-1b", "us-east-1c"];
    let mut b = SnapshotBuilder::new()
        .cluster("prod")
        .instances(instances, "i", |k, i| {
            i.az(zones[k % 3]).instance_type("m5.large")
        });
    for k in 0..instances {
        let inst = format!("i{k}");
        for j in 0..TASKS_PER_INSTANCE {
            let id = format!("t{k}-{j}");
            b = if j == 0 && daemon {
                b.task(&id, &inst, |t| {
                    t.task_definition("logs:1").started_by("dep-1")
                })
            } else {
                b.task(&id, &inst, |t| {
                    t.task_definition("app:7").started_by("ecs-svc/app")
                })
            };
        }
    }
    b.build(desired)
}

/// CPU time (user + system) of this thread, from /proc (Linux); `None` elsewhere.
/// Wall time on a busy machine includes time spent descheduled.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Some(Duration::from_millis(ticks * 10))
}

fn time(label: &str, snap: &Snapshot<DaemonDesired>) -> (Duration, Vec<Action>) {
    let mut times = Vec::with_capacity(RUNS);
    let mut actions = Vec::new();
    // A new snapshot per run, as the runner builds one per cycle: its
    // indexes are built by the timed decision, not reused. The copy is made
    // right before each run (so its lists are as warm as a runner's) and
    // left out of the times; its CPU time, measured alone, is subtracted.
    let copy = || {
        Snapshot::new(
            snap.instances().cloned().collect(),
            snap.tasks().cloned().collect(),
            snap.pending_starts().cloned().collect(),
            snap.backoff.clone(),
            snap.desired.clone(),
            snap.now,
        )
    };
    let copies0 = thread_cpu_time();
    for _ in 0..RUNS {
        drop(std::hint::black_box(copy()));
    }
    let copies = thread_cpu_time().zip(copies0).map(|(b, a)| b - a);
    let cpu0 = thread_cpu_time();
    for _ in 0..RUNS {
        let fresh = copy();
        let t0 = Instant::now();
        actions = DaemonScheduler.decide(&fresh);
        times.push(t0.elapsed());
    }
    let cpu = thread_cpu_time()
        .zip(cpu0)
        .zip(copies)
        .map(|((b, a), c)| {
            let decide = (b - a).saturating_sub(c);
            format!("{:.1} ms", decide.as_secs_f64() * 1e3 / RUNS as f64)
        })
        .unwrap_or_else(|| "n/a".into());
    times.sort();
    let median = times[RUNS / 2];
    println!(
        "{label:<8} instances={:>5} tasks={:>6} actions={:>4} wall: min={:>7.3} ms median={:>7.3} ms worst={:>7.3} ms; cpu mean={cpu}",
        snap.instances().len(),
        snap.tasks().len(),
        actions.len(),
        times[0].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3,
    );
    (median, actions)
}

fn main() -> ExitCode {
    let mut ok = true;

    let steady = cluster(
        INSTANCES,
        true,
        DaemonDesired::new(vec![EnvironmentState::deployed(env(1), "dep-1")]),
    );
    let (median, actions) = time("steady", &steady);
    if !actions.is_empty() {
        println!(
            "FAIL: a converged cluster produced {} actions",
            actions.len()
        );
        ok = false;
    }
    println!(
        "target: steady decision under 10 ms: {}",
        if median < Duration::from_millis(10) {
            "met"
        } else {
            "MISSED"
        }
    );

    // 50 instances DRAINING (their other tasks still run): the scheduler
    // must also locate every other task, its worst case.
    let mut instances: Vec<_> = steady.instances().cloned().collect();
    for i in instances.iter_mut().step_by(100) {
        let mut x = (**i).clone();
        x.status = InstanceStatus::Draining;
        *i = std::sync::Arc::new(x);
    }
    let draining = Snapshot::new(
        instances,
        steady.tasks().cloned().collect(),
        steady.pending_starts().cloned().collect(),
        steady.backoff.clone(),
        steady.desired.clone(),
        steady.now,
    );
    let (median, actions) = time("draining", &draining);
    if !actions.is_empty() {
        println!("FAIL: daemon tasks on busy draining instances must stay");
        ok = false;
    }
    println!(
        "target: draining decision under 10 ms: {}",
        if median < Duration::from_millis(10) {
            "met"
        } else {
            "MISSED"
        }
    );

    let rolled = DaemonDesired::new(vec![
        EnvironmentState::deployed(env(50), "dep-1").redeploy("dep-2", "logs:2"),
    ]);
    let rollout = steady.with_desired(rolled);
    let (_, actions) = time("rollout", &rollout);
    if actions.len() != 50 || actions.iter().any(|a| !matches!(a, Action::Stop(_))) {
        println!("FAIL: a rollout with bound 50 should stop exactly 50 old tasks");
        ok = false;
    }

    let join = cluster(
        1_000,
        false,
        DaemonDesired::new(vec![EnvironmentState::deployed(env(1), "dep-1")]),
    );
    let (_, actions) = time("join", &join);
    let batches = split_starts(&actions, MAX_INSTANCES_PER_START);
    let instances: usize = batches
        .iter()
        .map(|a| match a {
            Action::Start(s) => s.instances.len(),
            Action::Stop(_) => 0,
        })
        .sum();
    println!(
        "join: 1,000 instances -> {} StartTask batches covering {instances} instances",
        batches.len()
    );
    if batches.len() != 100 || instances != 1_000 {
        println!("FAIL: expected exactly 100 StartTask calls");
        ok = false;
    }

    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
