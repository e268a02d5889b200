//! A settled runner works in O(change): it loads its view once, applies
//! each later change to it, and asks the scheduler to decide for the
//! instances a change touched; the timer still brings a full decision.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blox_core::model::Arn;
use blox_sched::daemon::{DaemonDesired, DaemonScheduler, Environment, EnvironmentState};
use blox_sched::scheduler::{Action, Changes, Scheduler, Snapshot};
use blox_sched::testing::SnapshotBuilder;
use support::{World, options, pump, wait_until};

const DEPLOYMENT: &str = "dep-1";

fn desired() -> DaemonDesired {
    let env = Environment::new("logs", "c", "logs:1", "t", SnapshotBuilder::EPOCH);
    DaemonDesired::new(vec![EnvironmentState::deployed(env, DEPLOYMENT)])
}

/// One call of `decide_changed`: `None` when full, else the instances named.
type Call = Option<HashSet<Arn>>;

/// The daemon scheduler, recording what the runner told it.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Call>>>);

impl Recorded {
    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
}

impl Scheduler for Recorded {
    type Desired = DaemonDesired;
    fn name(&self) -> &str {
        "recorded-daemon"
    }
    fn decide(&self, snap: &Snapshot<DaemonDesired>) -> Vec<Action> {
        DaemonScheduler::new().decide(snap)
    }
    fn decide_changed(
        &self,
        snap: &Snapshot<DaemonDesired>,
        changes: &Changes<'_, DaemonDesired>,
    ) -> Vec<Action> {
        let call = (!changes.is_full()).then(|| changes.instances().cloned().collect());
        self.0.lock().unwrap().push(call);
        DaemonScheduler::new().decide_changed(snap, changes)
    }
}

fn live_daemons(w: &World, instance: &Arn) -> usize {
    support::live_started_by(&w.fake, instance, DEPLOYMENT)
}

#[tokio::test(start_paused = true)]
async fn a_settled_runner_decides_from_the_changed_instance_without_loading_its_view_again() {
    let w = World::new(20).await;
    let recorded = Recorded::default();
    let r = w.spawn_with(recorded.clone(), desired(), options());
    wait_until(10, "a daemon task on every instance", || {
        w.instances.iter().all(|i| live_daemons(&w, i) == 1)
    })
    .await;
    // The view catches up with the starts, then settles.
    for _ in 0..5 {
        pump(&w.fake, w.store.as_ref()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled = r.handle.counters().values();
    assert_eq!(settled.view_loads, 1, "{settled:?}");
    let calls_before = recorded.calls().len();

    // One daemon task crashes.
    let victim = w.instances[7].clone();
    let task = w.fake.tasks_on(&victim)[0].task_arn.clone();
    w.fake.crash_task(&task).unwrap();
    pump(&w.fake, w.store.as_ref()).await;
    wait_until(5, "a new daemon task on the instance", || {
        live_daemons(&w, &victim) == 1
    })
    .await;
    let after = r.handle.counters().values();
    assert_eq!(after.view_loads, 1, "the view is never loaded again");
    assert!(
        after.view_changes > settled.view_changes && after.view_changes <= settled.view_changes + 3,
        "only the change is applied: {settled:?} -> {after:?}"
    );
    let calls = recorded.calls();
    let incremental: Vec<&HashSet<Arn>> = calls[calls_before..].iter().flatten().collect();
    assert!(
        incremental.iter().any(|c| c.contains(&victim)),
        "the crash was decided from the changed instance: {calls:?}"
    );
    assert!(
        incremental.iter().all(|c| c.len() <= 1),
        "no other instance was named: {incremental:?}"
    );
    assert_eq!(
        w.fake.calls("StartTask"),
        2 + 1,
        "two batches of ten, then one"
    );

    // The timer brings a full decision, even while the view keeps
    // changing (other tasks start every 50 ms, faster than the debounce).
    let full_before = r.handle.counters().values().full_decisions;
    for n in 0..700 {
        let on = &w.instances[n % w.instances.len()];
        w.fake
            .run_tasks("c", "other:1", std::slice::from_ref(on), Some("someone"))
            .unwrap();
        pump(&w.fake, w.store.as_ref()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = r.handle.counters().values();
    assert!(
        after.full_decisions > full_before,
        "a full pass within 35 s of changes: {after:?}"
    );
    assert!(after.cycles > settled.cycles + 30, "{after:?}");
    r.shutdown().await;
}
