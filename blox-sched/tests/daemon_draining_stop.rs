//! A stale DRAINING status in the view never stops a daemon task on an
//! instance ECS says is ACTIVE again: the runner confirms the status with
//! ECS before the draining stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use blox_sched::daemon::{DaemonDesired, DaemonScheduler, Environment, EnvironmentState};
use blox_sched::testing::SnapshotBuilder;
use support::{World, apply_events, options, pump};

const DEPLOYMENT: &str = "dep-1";

fn desired() -> DaemonDesired {
    let env = Environment::new("logs", "c", "logs:1", "t", SnapshotBuilder::EPOCH);
    DaemonDesired::new(vec![EnvironmentState::deployed(env, DEPLOYMENT)])
}

fn live_daemons(w: &World) -> usize {
    support::live_started_by(&w.fake, &w.instances[0], DEPLOYMENT)
}

/// One instance whose only task is the daemon's; it drained and was
/// activated again, and the view got the DRAINING event but not the ACTIVE
/// one (returned: the late events).
async fn stale_draining() -> (World, Vec<String>) {
    let w = World::new(1).await;
    w.fake
        .run_tasks("c", "logs:1", &w.instances, Some(DEPLOYMENT))
        .unwrap();
    pump(&w.fake, w.store.as_ref()).await;
    w.fake.drain(&w.instances[0]).unwrap();
    pump(&w.fake, w.store.as_ref()).await;
    w.fake.activate(&w.instances[0]).unwrap();
    let late = w.fake.take_events();
    (w, late)
}

#[tokio::test(start_paused = true)]
async fn a_stale_draining_status_in_the_view_never_stops_the_daemon_task() {
    let (w, late) = stale_draining().await;
    let r = w.spawn_with(DaemonScheduler::new(), desired(), options());
    for _ in 0..30 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(w.fake.calls("StopTask"), 0, "no stop on an ACTIVE instance");
    assert_eq!(live_daemons(&w), 1);

    // Once ECS does say DRAINING, the draining policy applies.
    apply_events(w.store.as_ref(), late).await;
    w.fake.drain(&w.instances[0]).unwrap();
    pump(&w.fake, w.store.as_ref()).await;
    for _ in 0..30 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
        pump(&w.fake, w.store.as_ref()).await;
    }
    assert_eq!(live_daemons(&w), 0, "the draining instance is emptied");
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_draining_stop_ecs_did_not_confirm_is_decided_again_at_the_next_cycle() {
    // The view shows the instance DRAINING, but ECS describes it ACTIVE
    // again (its event is late).
    let (w, _late) = stale_draining().await;
    let r = w.spawn_with(DaemonScheduler::new(), desired(), options());
    for _ in 0..3 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(live_daemons(&w), 1, "not confirmed: not stopped");
    // ECS drains it again; the view already shows DRAINING and gets no
    // event of it (the view does not change at all).
    w.fake.drain(&w.instances[0]).unwrap();
    let _lost = w.fake.take_events();
    for _ in 0..5 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Asked again at the next cycle, not at the timer's full pass (30 s).
    assert_eq!(live_daemons(&w), 0, "the confirmed stop was issued");
    r.shutdown().await;
}
