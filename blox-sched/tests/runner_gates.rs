//! The runner acts only on a complete view: cache, bootstrap, leadership,
//! and the previous leader's intents resolved first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use blox_core::model::Timestamp;
use blox_sched::runner::{IntentRecord, RunnerGates, WaitingFor, intent_prefix};
use blox_sched::scheduler::Fixed;
use bytes::Bytes;
use support::{TAG, World, options, pump, wait_until};
use tokio::sync::watch;

#[tokio::test(start_paused = true)]
async fn the_runner_waits_for_bootstrap_and_leadership_before_acting() {
    let w = World::new(3).await;
    w.bootstrapped.send_replace(None);
    w.leadership.send_replace(None);
    let r = w.spawn("web:1", options());

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(r.handle.status().waiting_for, Some(WaitingFor::Bootstrap));
    assert_eq!(w.start_calls(), 0);

    w.bootstrapped
        .send_replace(Some(blox_sched::runner::BootstrapDone::UNGATED));
    let mut status = r.handle.watch_status();
    status
        .wait_for(|s| s.waiting_for == Some(WaitingFor::Leadership))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(w.start_calls(), 0);
    assert!(!r.handle.status().leader);

    w.leadership.send_replace(Some(w.term.clone()));
    wait_until(60, "starts", || w.started_instances().len() == 3).await;
    let s = r.handle.status();
    assert!(s.leader);
    assert_eq!(s.waiting_for, None);
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_runner_waits_for_its_own_terms_bootstrap_and_the_view_of_its_writes() {
    use blox_sched::runner::BootstrapDone;
    use blox_state::store::Revision;
    let w = World::new(2).await;
    let term = w.term.revision;
    // A bootstrap made for an earlier term says nothing of this one.
    w.bootstrapped.send_replace(Some(BootstrapDone {
        view: Revision::default(),
        term: Revision::new(term.epoch, term.seq - 1),
        pending: Vec::new(),
        covered: None,
    }));
    let r = w.spawn("web:1", options());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(r.handle.status().waiting_for, Some(WaitingFor::Bootstrap));
    // This term's, but its writes are past what the cache holds.
    let ahead = Revision::new(term.epoch, w.cache.revision().seq.max(term.seq) + 1000);
    w.bootstrapped.send_replace(Some(BootstrapDone {
        view: ahead,
        term,
        pending: Vec::new(),
        covered: None,
    }));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(r.handle.status().waiting_for, Some(WaitingFor::View));
    assert_eq!(w.start_calls(), 0);
    // Once the view holds them, it acts.
    w.bootstrapped.send_replace(Some(BootstrapDone {
        view: w.cache.revision(),
        term,
        pending: Vec::new(),
        covered: None,
    }));
    wait_until(60, "starts", || w.started_instances().len() == 2).await;
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_runner_waits_for_the_cache_to_load() {
    let w = World::new(2).await;
    let (cache, writer) = blox_state::cache::cache();
    let runner = blox_sched::runner::Runner::new(
        w.scheduler.clone(),
        Arc::new(Fixed("web:1".to_owned())),
        cache,
        Arc::new(w.ecs.clone()),
        Arc::clone(&w.store),
        RunnerGates {
            bootstrapped: watch::channel(Some(blox_sched::runner::BootstrapDone::UNGATED)).1,
            leadership: w.leadership.subscribe(),
        },
        options(),
    );
    let handle = runner.handle();
    let task = tokio::spawn(runner.run(std::future::pending()));
    let mut status = handle.watch_status();
    status
        .wait_for(|s| s.waiting_for == Some(WaitingFor::Cache))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(w.start_calls(), 0);

    tokio::spawn(blox_state::cache::follow(Arc::clone(&w.store), writer));
    wait_until(60, "starts", || w.started_instances().len() == 2).await;
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_resolves_inherited_intents_before_starting_anything() {
    let w = World::new(3).await;
    let cluster = w.fake.cluster_arn("c").unwrap();
    // The previous leader started a task on instance 0 that the view does
    // not show yet, and left an intent for it; it also left an old intent
    // for instance 1 whose start never happened.
    w.fake
        .run_tasks("c", "web:1", &w.instances[..1], Some(TAG))
        .unwrap();
    let held_back = w.fake.take_events();
    let prefix = intent_prefix("one-per-instance");
    for (i, since) in [(0, Timestamp::now()), (1, Timestamp::from_millis(0))] {
        let record = IntentRecord {
            cluster: cluster.clone(),
            instance: w.instances[i].clone(),
            task_definition: "web:1".into(),
            started_by: TAG.into(),
            since,
            leader: "old".into(),
            layout: blox_state::store::LAYOUT_VERSION,
            task: None,
            before: Vec::new(),
        };
        let key = format!("{prefix}old-{i}");
        w.store
            .kv_put(
                &key,
                Bytes::from(serde_json::to_vec(&record).unwrap()),
                None,
            )
            .await
            .unwrap();
    }

    let r = w.spawn("web:1", options());
    wait_until(60, "starts", || w.started_instances().len() == 2).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut started = w.started_instances();
    started.sort();
    let mut expected = vec![w.instances[1].clone(), w.instances[2].clone()];
    expected.sort();
    assert_eq!(started, expected);
    assert_eq!(support::live_tagged(&w.fake, &w.instances[0]), 1);
    assert!(
        w.fake.calls("ListTasks") >= 2,
        "intents checked against ListTasks"
    );
    assert!(r.handle.counters().values().intents_resolved >= 1);

    // Once the view shows the inherited task, its intent is resolved too.
    support::apply_events(w.store.as_ref(), held_back).await;
    let store = Arc::clone(&w.store);
    let mut left = usize::MAX;
    for _ in 0..100 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
        pump(&w.fake, w.store.as_ref()).await;
        left = store.kv_list(&prefix).await.unwrap().items.len();
        if left == 0 {
            break;
        }
    }
    assert_eq!(
        left, 0,
        "every intent resolved once the view shows the tasks"
    );
    assert_eq!(support::live_tagged(&w.fake, &w.instances[0]), 1);
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_keeps_a_young_inherited_intent_whose_task_ecs_does_not_list_yet() {
    // ListTasks lags (as ECS's does): a task started just now is not listed.
    let fake = blox_core::testing::FakeEcs::with_config(blox_core::testing::FakeEcsConfig {
        listing_lag: Duration::from_secs(100 * 24 * 3600),
        ..blox_core::testing::FakeEcsConfig::seeded(7)
    });
    let w = World::with_fake(fake, 1, blox_core::testing::InstanceSpec::new()).await;
    let cluster = w.fake.cluster_arn("c").unwrap();
    // The previous leader started a task, learnt its ARN from the reply and
    // recorded it in its intent; the view does not show it yet.
    let started = w
        .fake
        .run_tasks("c", "web:1", &w.instances[..1], Some(TAG))
        .unwrap();
    let _held_back = w.fake.take_events();
    let record = IntentRecord {
        cluster,
        instance: w.instances[0].clone(),
        task_definition: "web:1".into(),
        started_by: TAG.into(),
        since: Timestamp::now(),
        leader: "old".into(),
        layout: blox_state::store::LAYOUT_VERSION,
        task: Some(started.tasks[0].task_arn.clone()),
        before: Vec::new(),
    };
    let key = format!("{}old-1", intent_prefix("one-per-instance"));
    w.store
        .kv_put(
            &key,
            Bytes::from(serde_json::to_vec(&record).unwrap()),
            None,
        )
        .await
        .unwrap();

    let r = w.spawn("web:1", options());
    let mut status = r.handle.watch_status();
    status
        .wait_for(|s| s.leader && s.waiting_for.is_none())
        .await
        .unwrap();
    for _ in 0..10 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(w.start_calls(), 0, "the inherited intent holds the start");
    assert_eq!(support::live_tagged(&w.fake, &w.instances[0]), 1);
    assert!(w.store.kv_get(&key).await.unwrap().is_some());
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_cluster_does_not_hold_back_acting_on_the_others() {
    use blox_core::testing::InstanceSpec;
    use blox_state::reconcile::{ReconcileOptions, Reconciler};
    let w = World::new(2).await;
    w.fake.create_cluster("d").unwrap();
    let on_d = w.fake.add_instances("d", 2, &InstanceSpec::new()).unwrap();
    pump(&w.fake, w.store.as_ref()).await;
    // "d" refuses its listing (AccessDenied), "gone" was deleted.
    w.ecs.denied.lock().unwrap().push("d".to_owned());
    let clusters: Vec<String> = ["c", "d", "gone"].map(str::to_owned).to_vec();
    let reconciler = Reconciler::new(
        Arc::new(w.ecs.clone()),
        Arc::clone(&w.store),
        ReconcileOptions {
            clusters: clusters.clone(),
            ..ReconcileOptions::default()
        },
    );
    let done = reconciler.bootstrap_done();
    let (_lead, leading) = watch::channel(Some(w.term.clone()));
    tokio::spawn(reconciler.run(leading, std::future::pending()));
    let runner = blox_sched::runner::Runner::new(
        w.scheduler.clone(),
        Arc::new(Fixed("web:1".to_owned())),
        w.cache.clone(),
        Arc::new(w.ecs.clone()),
        Arc::clone(&w.store),
        RunnerGates {
            bootstrapped: done.clone(),
            leadership: w.leadership.subscribe(),
        },
        blox_sched::runner::RunnerOptions {
            clusters,
            ..options()
        },
    );
    let handle = runner.handle();
    let task = tokio::spawn(runner.run(std::future::pending()));

    wait_until(600, "starts on c", || w.started_instances().len() == 2).await;
    assert!(w.started_instances().iter().all(|i| !on_d.contains(i)));
    let pending = done.borrow().clone().unwrap().pending;
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(handle.status().waiting_for, None);
    // Once "d" can be listed, its bootstrap completes and it is acted on.
    w.ecs.denied.lock().unwrap().clear();
    wait_until(600, "starts on d", || w.started_instances().len() == 4).await;
    let mut on: Vec<_> = w.started_instances();
    on.sort();
    on.dedup();
    assert_eq!(on.len(), 4, "one start per instance");
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_new_term_without_a_visible_loss_of_leadership_waits_for_its_own_bootstrap() {
    use blox_core::testing::InstanceSpec;
    use blox_sched::election::{LeaderElection, LocalElection, Signals};
    use blox_state::reconcile::{ReconcileOptions, Reconciler};
    let w = World::new(2).await;
    let reconciler = Reconciler::new(
        Arc::new(w.ecs.clone()),
        Arc::clone(&w.store),
        ReconcileOptions {
            clusters: vec!["c".to_owned()],
            ..ReconcileOptions::default()
        },
    );
    let signals = Signals::new();
    tokio::spawn(
        reconciler
            .clone()
            .run(signals.term(), std::future::pending()),
    );
    let runner = blox_sched::runner::Runner::new(
        w.scheduler.clone(),
        Arc::new(Fixed("web:1".to_owned())),
        w.cache.clone(),
        Arc::new(w.ecs.clone()),
        Arc::clone(&w.store),
        RunnerGates {
            bootstrapped: reconciler.bootstrap_done(),
            leadership: signals.term(),
        },
        options(),
    );
    let handle = runner.handle();
    let task = tokio::spawn(runner.run(std::future::pending()));
    signals.elect(w.term.clone());
    wait_until(600, "the first term's starts", || {
        w.started_instances().len() == 2
    })
    .await;

    // A new instance, and a new term whose bootstrap cannot list "c" yet
    // (no complete reconcile recorded, so it cannot be skipped). The
    // deposition and the new election coalesce: the leader flag never
    // visibly drops.
    let more = w.fake.add_instances("c", 1, &InstanceSpec::new()).unwrap();
    pump(&w.fake, w.store.as_ref()).await;
    let forget = blox_state::store::KvTxn {
        checks: Vec::new(),
        ops: vec![blox_state::store::KvOp::Delete {
            key: blox_state::reconcile::record::COMPLETE_RECONCILE_KEY.to_owned(),
        }],
    };
    w.store.kv_txn(forget).await.unwrap();
    w.ecs.denied.lock().unwrap().push("c".to_owned());
    let again = LocalElection::start(Arc::clone(&w.store), "test", "me")
        .await
        .unwrap();
    let second = again.term().borrow().clone().unwrap();
    assert_ne!(second.revision, w.term.revision);
    signals.elect(second);
    for _ in 0..60 {
        handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        w.started_instances().len(),
        2,
        "nothing acted on before the new term's own bootstrap"
    );
    // Once "c" can be listed, the new term's bootstrap completes and the
    // runner acts on it.
    w.ecs.denied.lock().unwrap().clear();
    wait_until(600, "a start on the new instance", || {
        w.started_instances().contains(&more[0])
    })
    .await;
    assert_eq!(handle.status().waiting_for, None);
    task.abort();
}
