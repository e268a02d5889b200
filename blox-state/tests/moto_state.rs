//! The state service against moto (an AWS emulator) through the real AWS
//! adapters: a cluster created through the ECS API is reconciled into the
//! store, and ECS events sent to an SQS queue are ingested and deleted.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use blox_core::Entity;
use blox_core::aws::{EcsAdapter, SqsEventSource};
use blox_core::model::{Arn, EntityKind, TaskStatus};
use blox_core::ports::{EcsApi, StartTaskRequest};
use blox_core::testing::moto::Moto;
use blox_state::ingest::{IngestOptions, Ingester};
use blox_state::reconcile::{ReconcileOptions, Reconciler};
use blox_state::store::memory::MemoryStore;
use blox_state::{Filter, StateStore};

const CLUSTER: &str = "moto-state";

fn task_event(task: &Arn, cluster: &Arn, version: u64, status: &str) -> String {
    serde_json::json!({
        "version": "0", "id": format!("ev-{version}"), "detail-type": "ECS Task State Change",
        "source": "aws.ecs", "account": "123456789012", "time": blox_core::model::Timestamp::now().to_string(),
        "region": "us-east-1", "resources": [task],
        "detail": {
            "taskArn": task, "clusterArn": cluster, "lastStatus": status, "desiredStatus": "RUNNING",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
            "version": version, "containers": [], "startedBy": "moto-test"
        }
    })
    .to_string()
}

#[tokio::test]
async fn a_moto_cluster_is_reconciled_then_kept_current_by_ingested_events() {
    let moto = Moto::start().await;
    moto.freeze_task_status().await;
    let instances = moto.ecs_cluster_with_instances(CLUSTER, 2).await;
    let ecs = Arc::new(EcsAdapter::new(&moto.sdk_config()));
    let started = ecs
        .start_task(&StartTaskRequest {
            cluster: CLUSTER.into(),
            task_definition: "web:1".into(),
            container_instances: instances.iter().map(|(a, _)| a.clone()).collect(),
            started_by: Some("moto-test".into()),
            group: None,
            overrides: None,
            tags: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(started.tasks.len(), 2);

    // Reconcile: the store learns the cluster from the ECS API alone.
    let store = Arc::new(MemoryStore::new());
    let reconciler = Reconciler::new(
        ecs.clone(),
        store.clone(),
        ReconcileOptions {
            clusters: vec![CLUSTER.into()],
            ..ReconcileOptions::default()
        },
    );
    let report = reconciler.reconcile_once().await.unwrap();
    assert_eq!(report.added, 4, "2 instances and 2 tasks: {report:?}");
    let tasks = store
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap()
        .items;
    assert_eq!(tasks.len(), 2);
    let instances_stored = store
        .list(EntityKind::Instance, &Filter::default())
        .await
        .unwrap()
        .items;
    assert_eq!(instances_stored.len(), 2);
    // moto sends no versions; an unchanged cluster still needs no writes.
    let again = reconciler.reconcile_once().await.unwrap();
    assert_eq!(again.writes(), 0, "{again:?}");

    // Ingest: events for one of the tasks arrive through SQS.
    let task = started.tasks[0].clone();
    let queue = moto.create_queue("moto-state-events", 30).await;
    moto.send_message(
        &queue,
        &task_event(&task.task_arn, &task.cluster_arn, 5, "RUNNING"),
    )
    .await;
    moto.send_message(
        &queue,
        &task_event(&task.task_arn, &task.cluster_arn, 4, "PENDING"),
    )
    .await;
    moto.send_message(&queue, "this is not an ECS event").await;
    let source = Arc::new(SqsEventSource::new(&moto.sdk_config(), queue.clone()));
    let ingester = Ingester::new(
        source,
        store.clone(),
        IngestOptions {
            wait: Duration::from_secs(1),
            ..IngestOptions::default()
        },
    );
    for _ in 0..20 {
        ingester.run_once().await.unwrap();
        if ingester.counters().snapshot().deleted >= 3 {
            break;
        }
    }
    let stats = ingester.counters().snapshot();
    assert_eq!(
        (stats.applied, stats.stale, stats.malformed, stats.deleted),
        (1, 1, 1, 3),
        "{stats:?}"
    );
    assert_eq!(moto.queue_depth(&queue).await, 0, "every message deleted");
    let Some(Entity::Task(t)) = store.get(&task.task_arn).await.unwrap().map(|v| v.entity) else {
        panic!("task stored")
    };
    assert_eq!(
        t.version,
        Some(5),
        "the known version from the event beats the unknown one from moto"
    );
    assert_eq!(t.last_status, TaskStatus::Running);
}
