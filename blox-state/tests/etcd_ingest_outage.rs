//! Ingestion survives etcd going down: a real etcd is killed mid-ingest and
//! restarted; nothing is deleted from the queue while it is down, ingestion
//! resumes by itself, and every message sent ends up applied (every entity
//! of the fake ECS is stored at its latest version).
#![cfg(all(feature = "testing", feature = "etcd"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use blox_core::Entity;
use blox_core::backoff::Backoff;
use blox_core::testing::{FakeEcs, FakeEcsConfig, InstanceSpec};
use blox_state::StateStore;
use blox_state::ingest::{IngestOptions, Ingester};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdCluster;

async fn until(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every instance and task of the fake is stored with the fake's version.
async fn store_matches_ecs(ecs: &FakeEcs, store: &EtcdStore) -> Result<(), String> {
    for inst in ecs.instance_arns("prod").unwrap() {
        let want = ecs.instance(&inst).unwrap();
        match store
            .get(&inst)
            .await
            .map_err(|e| e.to_string())?
            .map(|v| v.entity)
        {
            Some(Entity::Instance(got)) if got.version == want.version => {}
            other => {
                return Err(format!(
                    "{inst}: stored {:?}, ECS has {:?}",
                    other.map(|e| e.version()),
                    want.version
                ));
            }
        }
        for task in ecs.tasks_on(&inst) {
            match store
                .get(&task.task_arn)
                .await
                .map_err(|e| e.to_string())?
                .map(|v| v.entity)
            {
                Some(Entity::Task(got)) if got.version == task.version => {}
                other => {
                    return Err(format!(
                        "{}: stored {:?}, ECS has {:?}",
                        task.task_arn,
                        other.map(|e| e.version()),
                        task.version
                    ));
                }
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_pauses_while_etcd_is_down_and_loses_nothing() {
    let mut etcd = EtcdCluster::start(1).await.unwrap();
    let store = Arc::new(
        EtcdStore::connect(EtcdOptions {
            request_timeout: Duration::from_secs(1),
            retry_attempts: 2,
            ..EtcdOptions::new(etcd.endpoints())
        })
        .await
        .unwrap(),
    );
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        seed: Some(11),
        visibility_timeout: Duration::from_secs(3),
        ..FakeEcsConfig::default()
    });
    ecs.create_cluster("prod").unwrap();
    let instances = ecs.add_instances("prod", 20, &InstanceSpec::new()).unwrap();
    ecs.run_tasks("prod", "web:1", &instances, Some("before"))
        .unwrap();

    let ingester = Ingester::new(
        Arc::new(ecs.clone()),
        store.clone(),
        IngestOptions {
            wait: Duration::from_millis(500),
            receivers: 2,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            ..IngestOptions::default()
        },
    );
    let mut recoveries = ingester.recoveries();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(ingester.clone().run(async {
        let _ = stop_rx.await;
    }));
    until(
        "the first events to be applied",
        Duration::from_secs(60),
        async || ingester.counters().snapshot().applied > 0,
    )
    .await;

    // etcd dies; ECS keeps changing and emitting events.
    etcd.kill(0).unwrap();
    let deleted_at_outage = ingester.counters().snapshot().deleted;
    ecs.run_tasks("prod", "web:1", &instances, Some("during"))
        .unwrap();
    for inst in &instances[..5] {
        let victim = ecs.tasks_on(inst)[0].task_arn.clone();
        ecs.crash_task(&victim).unwrap();
    }
    ecs.drain(&instances[7]).unwrap();
    until(
        "the ingester to notice the outage",
        Duration::from_secs(60),
        async || !ingester.store_is_up(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = ingester.counters().snapshot();
    assert!(stats.store_errors > 0, "{stats:?}");
    // A batch already applied before the kill may still be deleted; nothing more.
    assert!(
        stats.deleted <= deleted_at_outage + 20,
        "messages deleted while etcd was down: {} -> {}",
        deleted_at_outage,
        stats.deleted
    );
    let queued_during_outage = ecs.queued_events();
    assert!(queued_during_outage > 0, "events wait in the queue");

    // etcd returns: ingestion resumes without help and drains the queue.
    etcd.restart(0).await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), recoveries.changed())
        .await
        .expect("the ingester reports the store's recovery")
        .unwrap();
    until("the queue to drain", Duration::from_secs(120), async || {
        ecs.queued_events() == 0
    })
    .await;
    until(
        "the store to match ECS",
        Duration::from_secs(60),
        async || store_matches_ecs(&ecs, &store).await.is_ok(),
    )
    .await;
    if let Err(e) = store_matches_ecs(&ecs, &store).await {
        panic!("{e}");
    }
    let stats = ingester.counters().snapshot();
    assert_eq!(stats.malformed, 0);
    // Every delivery was either applied/stale (then deleted) or redelivered:
    // nothing was deleted without being durably applied first.
    assert!(
        stats.deleted <= stats.applied + stats.stale + stats.ignored,
        "{stats:?}"
    );
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
}
