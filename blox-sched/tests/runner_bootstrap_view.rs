//! The runner acts on a revision, not a flag, on a real etcd: the store
//! lacks the task keys of tasks ECS runs (as if restored from an older
//! backup), the bootstrap reconcile re-adds them, and the runner starts no
//! duplicate even while its cache has not yet seen those writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use blox_core::testing::{FakeEcs, InstanceSpec};
use blox_sched::election::{LeaderElection, LocalElection};
use blox_sched::runner::{Runner, RunnerGates, RunnerOptions, RunnerStatus, WaitingFor};
use blox_sched::scheduler::Fixed;
use blox_state::reconcile::{ReconcileOptions, Reconciler};
use blox_state::store::StateStore;
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::FaultyStore;
use blox_state::testing::etcd_server::EtcdServer;
use support::{OnePerInstance, TAG, apply_events, live_tagged};

async fn connect(endpoint: &str, prefix: &str) -> Arc<dyn StateStore> {
    Arc::new(
        EtcdStore::connect(EtcdOptions::new([endpoint.to_owned()]).with_prefix(prefix))
            .await
            .unwrap(),
    )
}

/// Waits (up to a minute) for a status that `done` accepts.
async fn status_until(
    status: &mut tokio::sync::watch::Receiver<RunnerStatus>,
    done: impl FnMut(&RunnerStatus) -> bool,
) -> RunnerStatus {
    tokio::time::timeout(Duration::from_secs(60), status.wait_for(done))
        .await
        .expect("runner status")
        .expect("runner alive")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_the_bootstrap_re_adds_are_not_started_again_while_the_cache_lags() {
    let server = EtcdServer::start().await.unwrap();
    let endpoint = server.endpoint();
    let store = connect(&endpoint, "/boot-view").await;

    // ECS runs a task of the scheduler on every instance; the store knows
    // the instances but none of the tasks (an older backup).
    let fake = FakeEcs::with_seed(5);
    fake.create_cluster("c").unwrap();
    let instances = fake.add_instances("c", 3, &InstanceSpec::new()).unwrap();
    fake.run_tasks("c", "web:1", &instances, Some(TAG)).unwrap();
    let events: Vec<String> = fake
        .take_events()
        .into_iter()
        .filter(|e| !e.contains("ECS Task State Change"))
        .collect();
    assert!(apply_events(store.as_ref(), events).await > 0);

    // The runner's cache follows the store through a watch held back, so
    // the bootstrap's writes reach the store but not the view.
    let lagging = Arc::new(FaultyStore::new(Arc::clone(&store)));
    let (cache, _follower) = blox_state::cache::spawn_follower(lagging.clone());
    cache.wait_until_ready().await;
    lagging.hold_watches(true);

    let election = LocalElection::start(Arc::clone(&store), "boot-view", "me")
        .await
        .unwrap();
    let reconciler = Reconciler::new(
        Arc::new(fake.clone()),
        Arc::clone(&store),
        ReconcileOptions {
            clusters: vec!["c".to_owned()],
            ..ReconcileOptions::default()
        },
    );
    let mut done = reconciler.bootstrap_done();
    let runner = Runner::new(
        OnePerInstance::default(),
        Arc::new(Fixed("web:1".to_owned())),
        cache.clone(),
        Arc::new(fake.clone()),
        Arc::clone(&store),
        RunnerGates {
            bootstrapped: reconciler.bootstrap_done(),
            leadership: election.term(),
        },
        RunnerOptions {
            clusters: vec!["c".to_owned()],
            debounce: Duration::from_millis(50),
            interval: Duration::from_millis(200),
            ..RunnerOptions::default()
        },
    );
    let handle = runner.handle();
    let mut status = handle.watch_status();
    let runner = tokio::spawn(runner.run(std::future::pending()));
    tokio::spawn(reconciler.run(election.term(), std::future::pending()));

    let boot = tokio::time::timeout(Duration::from_secs(60), done.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap()
        .clone()
        .unwrap();
    assert!(
        !boot.reached_by(cache.revision()),
        "the cache must lag behind the bootstrap's writes for this test"
    );
    // The first cycle after the bootstrap: it either acts on the stale view
    // (the bug) or waits for the view to reach the bootstrap's revision.
    let seen = status_until(&mut status, |s| {
        s.waiting_for.is_none() || s.waiting_for == Some(WaitingFor::View)
    })
    .await;
    assert_eq!(seen.waiting_for, Some(WaitingFor::View), "{seen:?}");
    assert_eq!(fake.calls("StartTask"), 0, "a task was started again");

    // Once the view catches up the runner acts, and starts nothing.
    lagging.hold_watches(false);
    let acted = status_until(&mut status, |s| s.waiting_for.is_none()).await;
    assert_eq!(acted.last_error, None);
    handle.trigger();
    status.mark_unchanged();
    status_until(&mut status, |s| s.waiting_for.is_none()).await;
    assert_eq!(fake.calls("StartTask"), 0, "a task was started again");
    for i in &instances {
        assert_eq!(live_tagged(&fake, i), 1, "{i}");
    }
    runner.abort();
}
