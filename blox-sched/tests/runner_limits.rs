//! Per-cycle cap, dry-run, pause and throttling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use blox_core::testing::InjectedError;
use blox_sched::runner::RunnerOptions;
use blox_sched::scheduler::{Action, Scheduler, Snapshot};
use support::{World, options, wait_until};

#[tokio::test(start_paused = true)]
async fn a_cycle_starts_at_most_the_cap_and_the_next_cycle_continues() {
    let w = World::new(25).await;
    let r = w.spawn(
        "web:1",
        RunnerOptions {
            max_actions_per_cycle: 10,
            interval: Duration::from_secs(30),
            ..options()
        },
    );
    wait_until(5, "first cycle", || w.started_instances().len() == 10).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        w.started_instances().len(),
        10,
        "nothing more before the next cycle"
    );
    assert_eq!(w.start_calls(), 1);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(w.started_instances().len(), 20);
    assert_eq!(w.start_calls(), 2, "batches of ten");
    wait_until(60, "the rest", || w.started_instances().len() == 25).await;
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dry_run_records_actions_and_makes_no_ecs_call() {
    let w = World::new(3).await;
    let r = w.spawn(
        "web:1",
        RunnerOptions {
            dry_run: true,
            ..options()
        },
    );
    let mut status = r.handle.watch_status();
    let s = status
        .wait_for(|s| !s.last_dry_run.is_empty())
        .await
        .unwrap()
        .clone();
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert!(s.dry_run);
    let Action::Start(start) = &s.last_dry_run[0] else {
        panic!("expected a start");
    };
    assert_eq!(start.instances.len(), 3);
    assert_eq!(w.fake.total_calls(), 0);
    assert!(r.handle.counters().values().dry_run >= 3);
    let prefix = blox_sched::runner::intent_prefix("one-per-instance");
    assert!(w.store.kv_list(&prefix).await.unwrap().items.is_empty());
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_runner_does_nothing_until_resumed() {
    let w = World::new(2).await;
    w.bootstrapped.send_replace(None);
    let r = w.spawn("web:1", options());
    r.handle.pause();
    w.bootstrapped
        .send_replace(Some(blox_sched::runner::BootstrapDone::UNGATED));
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(w.fake.total_calls(), 0);
    let s = r.handle.status();
    assert!(s.paused);
    assert_eq!(s.waiting_for, None);

    r.handle.resume();
    wait_until(10, "starts after resume", || {
        w.started_instances().len() == 2
    })
    .await;
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn throttled_starts_are_retried_with_backoff() {
    let w = World::new(2).await;
    w.fake
        .fail_next("StartTask", 3, InjectedError::Throttled)
        .unwrap();
    let r = w.spawn("web:1", options());
    wait_until(120, "start after throttling", || {
        support::live_tagged(&w.fake, &w.instances[0]) == 1
    })
    .await;
    assert_eq!(w.start_calls(), 4, "three throttled attempts, then success");
    let c = r.handle.counters().values();
    assert_eq!(c.throttled, 3);
    assert_eq!(c.started, 2);
    assert_eq!(c.failed, 0);
    let times = w.ecs.start_times();
    assert!(times[1] > times[0] && times[3] - times[2] >= times[1] - times[0]);
    r.shutdown().await;
}

/// Stops every task started by "legacy".
struct Reaper;

impl Scheduler for Reaper {
    type Desired = ();
    fn name(&self) -> &str {
        "reaper"
    }
    fn decide(&self, snap: &Snapshot<()>) -> Vec<Action> {
        snap.live_tasks()
            .filter(|t| t.started_by.as_deref() == Some("legacy"))
            .map(|t| Action::stop(t.cluster_arn.clone(), t.task_arn.clone(), "legacy task"))
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn stops_go_through_stop_task_within_the_cap() {
    let w = World::new(3).await;
    w.fake
        .run_tasks("c", "old:1", &w.instances, Some("legacy"))
        .unwrap();
    support::pump(&w.fake, w.store.as_ref()).await;
    let r = w.spawn_with(
        Reaper,
        (),
        RunnerOptions {
            max_actions_per_cycle: 2,
            interval: Duration::from_secs(30),
            ..options()
        },
    );
    wait_until(5, "first stops", || w.fake.calls("StopTask") == 2).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(w.fake.calls("StopTask"), 2, "capped at two per cycle");
    wait_until(60, "the last stop", || w.fake.calls("StopTask") == 3).await;
    for i in &w.instances {
        assert!(w.fake.tasks_on(i).iter().all(|t| !t.is_live()));
    }
    assert_eq!(r.handle.counters().values().stopped, 3);
    r.shutdown().await;
}

/// The daemon scheduler, counting its decisions.
#[derive(Clone, Default)]
struct CountedDaemon(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Scheduler for CountedDaemon {
    type Desired = blox_sched::daemon::DaemonDesired;
    fn name(&self) -> &str {
        "counted-daemon"
    }
    fn decide(&self, snap: &Snapshot<Self::Desired>) -> Vec<Action> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        blox_sched::daemon::DaemonScheduler::new().decide(snap)
    }
    fn is_idle(&self, desired: &Self::Desired) -> bool {
        blox_sched::daemon::DaemonScheduler::new().is_idle(desired)
    }
}

#[tokio::test(start_paused = true)]
async fn with_no_environment_the_daemon_runner_skips_its_cycles_without_reading_the_view() {
    let w = World::new(3).await;
    let decisions = CountedDaemon::default();
    let r = w.spawn_with(
        decisions.clone(),
        blox_sched::daemon::DaemonDesired::new(Vec::new()),
        options(),
    );
    // Cycles run on the timer and on every change of the view.
    for n in 0..5 {
        w.fake
            .add_instance("c", blox_core::testing::InstanceSpec::new())
            .unwrap();
        support::pump(&w.fake, w.store.as_ref()).await;
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert_eq!(r.handle.status().waiting_for, None, "cycle {n} acted");
    }
    let counters = r.handle.counters().values();
    assert!(counters.idle >= 5, "{counters:?}");
    assert_eq!(
        decisions.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no snapshot was built for a scheduler that wants nothing"
    );
    assert_eq!(w.fake.total_calls(), 0);
    r.shutdown().await;
}
