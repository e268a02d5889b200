//! Per-instance backoff: crash loops and placement failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use blox_core::testing::InstanceSpec;
use support::{World, options, spawn_pump, wait_until};

#[tokio::test(start_paused = true)]
async fn a_crash_looping_instance_backs_off_1_2_4_8_seconds() {
    let w = World::new(1).await;
    let pump = spawn_pump(
        w.fake.clone(),
        Arc::clone(&w.store),
        Arc::new(AtomicBool::new(true)),
    );
    let r = w.spawn(
        "web:1",
        blox_sched::runner::RunnerOptions {
            interval: Duration::from_secs(600),
            ..options()
        },
    );
    let instance = w.instances[0].clone();
    for n in 1..=5 {
        wait_until(600, "a start", || w.start_calls() == n).await;
        let task = w
            .fake
            .tasks_on(&instance)
            .into_iter()
            .find(|t| t.is_live())
            .unwrap();
        w.fake.crash_task(&task.task_arn).unwrap();
    }
    let times = w.ecs.start_times();
    let gaps: Vec<Duration> = times.windows(2).map(|p| p[1] - p[0]).collect();
    for (gap, secs) in gaps.iter().zip([1u64, 2, 4, 8]) {
        let hold = Duration::from_secs(secs);
        assert!(
            *gap >= hold && *gap < hold + Duration::from_secs(1),
            "gaps {gaps:?}: expected about {secs}s"
        );
    }
    let backoff = w.scheduler.last_backoff.lock().unwrap().clone();
    let b = &backoff[&instance];
    assert!(b.failures >= 4);
    assert_eq!(
        b.last_reason.as_deref(),
        Some("Essential container in task exited")
    );
    pump.abort();
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn placement_failures_are_recorded_with_ecs_reason_and_backed_off() {
    let w = World::with_spec(2, InstanceSpec::new().memory(256)).await;
    let pump = spawn_pump(
        w.fake.clone(),
        Arc::clone(&w.store),
        Arc::new(AtomicBool::new(true)),
    );
    // Auto-registered task definitions need 512 MiB: no instance fits.
    let r = w.spawn("web:1", options());
    let mut status = r.handle.watch_status();
    status
        .wait_for(|s| s.instances_in_backoff == 2)
        .await
        .unwrap();
    assert_eq!(w.start_calls(), 1);
    assert_eq!(r.handle.counters().values().failed, 2);
    assert_eq!(
        r.handle.status().pending_intents,
        0,
        "failed intents removed"
    );

    // The next attempt comes after the hold-off, from a snapshot that
    // reports the failures with ECS's reason.
    wait_until(60, "a retry after the hold-off", || w.start_calls() == 2).await;
    let backoff = w.scheduler.last_backoff.lock().unwrap().clone();
    for i in &w.instances {
        assert_eq!(backoff[i].last_reason.as_deref(), Some("RESOURCE:MEMORY"));
        assert_eq!(backoff[i].failures, 1);
    }
    wait_until(60, "a third attempt", || w.start_calls() == 3).await;
    let times = w.ecs.start_times();
    assert!(times[1] - times[0] >= Duration::from_secs(1));
    assert!(
        times[2] - times[1] >= Duration::from_secs(2),
        "the hold-off doubled"
    );
    pump.abort();
    r.shutdown().await;
}
