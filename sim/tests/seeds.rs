//! The simulation's fixed seeds, which gate CI, and the seeds that found a
//! gap another issue fixes (ignored until then, each naming its issue).
//!
//! A failure prints the seed, the shape and the trace; rerun one seed with
//! `cargo run --release -p blox-sim --bin campaign -- --first SEED --seeds 1 ...`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use blox_sim::{FaultPlan, Shape, run_blocking};

fn assert_clean(seed: u64, shape: Shape) {
    let outcome = run_blocking(seed, shape);
    assert!(
        outcome.violations.is_empty(),
        "shape {shape:?}\n{}",
        outcome.report()
    );
}

/// Every fault but lagging listings (see the ignored test below).
fn ci_faults() -> FaultPlan {
    FaultPlan::all().without(&["lag"]).unwrap()
}

#[test]
fn memory_store_100_instances_3_environments_fixed_seeds() {
    for seed in 1..=8 {
        let shape = Shape {
            faults: ci_faults(),
            ..Shape::memory(100, 3, Duration::from_secs(600))
        };
        assert_clean(seed, shape);
    }
}

#[test]
fn memory_store_300_instances_5_environments_fixed_seed() {
    let shape = Shape {
        faults: ci_faults(),
        ..Shape::memory(300, 5, Duration::from_secs(600))
    };
    assert_clean(101, shape);
}

#[test]
fn memory_store_1000_instances_5_environments_fixed_seed() {
    let shape = Shape {
        faults: ci_faults(),
        ..Shape::memory(1000, 5, Duration::from_secs(300))
    };
    assert_clean(21, shape);
}

#[test]
fn a_run_without_faults_is_clean() {
    let shape = Shape {
        faults: FaultPlan::none(),
        ..Shape::memory(50, 3, Duration::from_secs(300))
    };
    assert_clean(7, shape);
}

#[test]
fn etcd_store_with_default_limits_fixed_seed() {
    // Real time on a real etcd: one short seed, no store outage (the
    // memory seeds cover outages; here etcd itself is the point).
    let shape = Shape {
        faults: ci_faults().without(&["outages"]).unwrap(),
        ..Shape::etcd(150, 3, Duration::from_secs(60))
    };
    assert_clean(11, shape);
}

/// Found by the simulation: with ECS's listings lagging, a reconcile
/// removes a task ECS has started but not listed yet, and its tombstone
/// then blocks ECS's own reports of that task at the same version; the
/// view never shows the task again (and the scheduler may start a second
/// one). Fixed by issue 14, "A view you can trust" (gone stays gone: delete
/// only on positive evidence; the reconciler's deletions never block ECS's
/// later report of the same version).
#[test]
#[ignore = "issue 14: the reconciler deletes tasks ECS has not listed yet"]
fn lagging_listings_never_lose_a_started_task() {
    let shape = Shape {
        faults: FaultPlan::all(),
        ..Shape::memory(30, 2, Duration::from_secs(300))
    };
    for seed in 1..=3 {
        assert_clean(seed, shape);
    }
}

#[test]
fn a_seed_replays_the_same_run_on_the_memory_store() {
    let shape = Shape {
        faults: ci_faults(),
        ..Shape::memory(40, 3, Duration::from_secs(300))
    };
    let a = run_blocking(5, shape);
    let b = run_blocking(5, shape);
    assert_eq!(
        (a.events, a.deployments, a.faults),
        (b.events, b.deployments, b.faults)
    );
    assert_eq!(a.trace, b.trace, "the same steps, in the same order");
    assert_eq!(a.report(), b.report());
}
