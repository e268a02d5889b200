//! Time from one task change to the daemon scheduler's decision for it:
//! the change applied to a kept view, a snapshot of it, and the decision
//! from the changed instance (`Scheduler::decide_changed`), as the runner
//! makes them.
//!
//! Run with `cargo bench -p blox-benches --bench change_decide`. The view:
//! 10,000 instances and 1,000,000 tasks (one daemon task and 99 other tasks
//! per instance), one environment, settled. Each run crashes one daemon
//! task; the decision must be exactly one start on its instance. Target:
//! under 1 ms. Prints the median and worst of the timed runs; exits
//! non-zero if a decision is wrong.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blox_core::model::TaskStatus;
use blox_sched::daemon::{DaemonDesired, DaemonScheduler, Environment, EnvironmentState};
use blox_sched::scheduler::{Changes, Scheduler};
use blox_sched::testing::{ChangingView, SnapshotBuilder, starts};

const INSTANCES: usize = 10_000;
const TASKS_PER_INSTANCE: usize = 100;
const RUNS: usize = 200;

fn main() -> ExitCode {
    let env = Environment::new("logs", "prod", "logs:1", "t", SnapshotBuilder::EPOCH);
    let desired = DaemonDesired::new(vec![EnvironmentState::deployed(env, "dep-1")]);
    let built = Instant::now();
    let mut b = SnapshotBuilder::new()
        .cluster("prod")
        .instances(INSTANCES, "i", |_, i| i.instance_type("m5.large"));
    for k in 0..INSTANCES {
        let inst = format!("i{k}");
        for j in 0..TASKS_PER_INSTANCE {
            let id = format!("t{k}-{j}");
            b = if j == 0 {
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
    let first = b.build(desired.clone());
    let probe = SnapshotBuilder::new().cluster("prod");
    let mut view = ChangingView::of(&first);
    println!(
        "view: {} instances, {} tasks, built in {:.1} s",
        first.instances().len(),
        first.tasks().len(),
        built.elapsed().as_secs_f64()
    );
    if !DaemonScheduler.decide(&first).is_empty() {
        eprintln!("the settled view wants actions");
        return ExitCode::FAILURE;
    }
    drop(first);
    let now = SnapshotBuilder::EPOCH;
    let mut times = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let k = (run * 7_919) % INSTANCES;
        let arn = probe.task_arn(&format!("t{k}-0"));
        let Some(task) = view.task(&arn) else {
            eprintln!("no task t{k}-0");
            return ExitCode::FAILURE;
        };
        let mut crashed = (**task).clone();
        crashed.last_status = TaskStatus::Stopped;
        crashed.desired_status = TaskStatus::Stopped;
        let crashed = Arc::new(crashed);
        let restore = Arc::clone(task);

        let start = Instant::now();
        let touched = view.put_task(crashed);
        let snap = view.snapshot(Vec::new(), HashMap::new(), desired.clone(), now);
        let actions = DaemonScheduler.decide_changed(&snap, &Changes::since(&desired, &touched));
        times.push(start.elapsed());

        if starts(&actions) != vec![probe.instance_arn(&format!("i{k}"))] || actions.len() != 1 {
            eprintln!("run {run}: wrong decision {actions:?}");
            return ExitCode::FAILURE;
        }
        drop(snap);
        view.put_task(restore);
    }
    times.sort();
    let median = times[RUNS / 2];
    let worst = times[RUNS - 1];
    println!(
        "change to decision: median {:.3} ms, worst {:.3} ms over {RUNS} runs (target < 1 ms)",
        ms(median),
        ms(worst)
    );
    ExitCode::SUCCESS
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
