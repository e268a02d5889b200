//! Intents: no double start while a task is not yet visible, and a deposed
//! leader cannot write one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use blox_sched::runner::{WaitingFor, intent_prefix};
use bytes::Bytes;
use support::{World, options, pump, wait_until};

#[tokio::test(start_paused = true)]
async fn a_task_not_yet_in_the_view_is_never_started_twice() {
    let w = World::new(4).await;
    let r = w.spawn(
        "web:1",
        blox_sched::runner::RunnerOptions {
            interval: Duration::from_secs(1),
            ..options()
        },
    );
    wait_until(60, "first starts", || w.started_instances().len() == 4).await;
    // Many cycles while events are held back: the view shows no task.
    for _ in 0..20 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(w.started_instances().len(), 4, "no second start");
    assert_eq!(w.start_calls(), 1, "one batch");
    assert_eq!(r.handle.status().pending_intents, 4);
    let prefix = intent_prefix("one-per-instance");
    assert_eq!(w.store.kv_list(&prefix).await.unwrap().items.len(), 4);

    // The view catches up: the intents are resolved, still no new start.
    pump(&w.fake, w.store.as_ref()).await;
    let mut status = r.handle.watch_status();
    status.wait_for(|s| s.pending_intents == 0).await.unwrap();
    assert!(w.store.kv_list(&prefix).await.unwrap().items.is_empty());
    for i in &w.instances {
        assert_eq!(support::live_tagged(&w.fake, i), 1);
    }
    assert_eq!(w.start_calls(), 1);
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_intent_whose_task_never_appears_is_dropped_after_the_timeout() {
    let w = World::new(1).await;
    // ECS accepts nothing silently: the first StartTask fails on transport
    // (outcome unknown), so the intent stays until ListTasks shows no task.
    w.fake
        .fail_next("StartTask", 1, blox_core::testing::InjectedError::Transport)
        .unwrap();
    let r = w.spawn(
        "web:1",
        blox_sched::runner::RunnerOptions {
            interval: Duration::from_secs(5),
            intent_timeout: Duration::from_secs(60),
            ..options()
        },
    );
    wait_until(30, "first attempt", || w.start_calls() == 1).await;
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(w.start_calls(), 1, "held by the intent within the timeout");
    wait_until(60, "second attempt", || w.start_calls() == 2).await;
    assert_eq!(support::live_tagged(&w.fake, &w.instances[0]), 1);
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_deposed_leader_cannot_write_an_intent_and_never_calls_ecs() {
    let w = World::new(2).await;
    // Another process took the leader key: our term's revision is stale.
    w.store
        .kv_put(&w.term.key, Bytes::from_static(b"usurper"), None)
        .await
        .unwrap();
    let r = w.spawn("web:1", options());
    let mut status = r.handle.watch_status();
    status
        .wait_for(|s| s.waiting_for == Some(WaitingFor::Leadership))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(w.start_calls(), 0);
    assert_eq!(r.handle.counters().values().fenced, 1);
    assert!(!r.handle.status().leader);
    let prefix = intent_prefix("one-per-instance");
    assert!(w.store.kv_list(&prefix).await.unwrap().items.is_empty());
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_never_takes_over_intents_written_under_another_layout() {
    let w = World::new(2).await;
    // An outstanding start of a daemon that reads another stored layout.
    let record = blox_sched::runner::IntentRecord {
        cluster: blox_core::model::Arn::parse("arn:aws:ecs:us-east-1:000000000000:cluster/c")
            .unwrap(),
        instance: w.instances[0].clone(),
        task_definition: "web:1".into(),
        started_by: support::TAG.into(),
        since: blox_core::model::Timestamp::from_millis(0),
        leader: "other".into(),
        layout: blox_state::store::LAYOUT_VERSION + 1,
        task: None,
        before: Vec::new(),
    };
    let key = format!("{}other-1", intent_prefix("one-per-instance"));
    w.store
        .kv_put(
            &key,
            Bytes::from(serde_json::to_vec(&record).unwrap()),
            None,
        )
        .await
        .unwrap();
    let r = w.spawn("web:1", options());
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(w.start_calls(), 0, "acts on nothing");
    assert_eq!(r.handle.status().waiting_for, Some(WaitingFor::Intents));
    assert!(w.store.kv_get(&key).await.unwrap().is_some(), "leaves it");
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_older_task_never_resolves_a_new_start_whose_reply_was_lost() {
    let w = World::new(1).await;
    let instance = w.instances[0].clone();
    // One copy already runs, and the view shows it.
    w.fake
        .run_tasks(
            "c",
            "web:1",
            std::slice::from_ref(&instance),
            Some(support::TAG),
        )
        .unwrap();
    pump(&w.fake, w.store.as_ref()).await;
    // The second copy starts, but its reply is lost and the view lags.
    w.ecs.lose_next_replies(1);
    let r = w.spawn_with(
        support::Copies(2),
        "web:1".to_owned(),
        blox_sched::runner::RunnerOptions {
            interval: Duration::from_secs(1),
            intent_timeout: Duration::from_secs(60),
            ..options()
        },
    );
    wait_until(30, "the second copy", || {
        support::live_tagged(&w.fake, &instance) == 2
    })
    .await;
    for _ in 0..120 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        support::live_tagged(&w.fake, &instance),
        2,
        "the older copy must not stand for the new start"
    );
    assert_eq!(w.start_calls(), 1);
    pump(&w.fake, w.store.as_ref()).await;
    let mut status = r.handle.watch_status();
    status.wait_for(|s| s.pending_intents == 0).await.unwrap();
    assert_eq!(support::live_tagged(&w.fake, &instance), 2);
    r.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_scheduler_may_place_several_copies_on_one_instance_in_one_cycle() {
    let w = World::new(2).await;
    let r = w.spawn_with(
        support::Copies(3),
        "web:1".to_owned(),
        blox_sched::runner::RunnerOptions {
            interval: Duration::from_secs(1),
            ..options()
        },
    );
    wait_until(5, "three copies everywhere", || {
        w.instances
            .iter()
            .all(|i| support::live_tagged(&w.fake, i) == 3)
    })
    .await;
    // One action per instance, and a StartTask never names an instance
    // twice: one call per copy.
    assert_eq!(w.start_calls(), 6);
    assert_eq!(r.handle.status().pending_intents, 6);
    // Cycles while the view lags, then once it has caught up: no more.
    for _ in 0..10 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    pump(&w.fake, w.store.as_ref()).await;
    let mut status = r.handle.watch_status();
    status.wait_for(|s| s.pending_intents == 0).await.unwrap();
    for _ in 0..5 {
        r.handle.trigger();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for i in &w.instances {
        assert_eq!(support::live_tagged(&w.fake, i), 3);
    }
    assert_eq!(w.start_calls(), 6);
    r.shutdown().await;
}
