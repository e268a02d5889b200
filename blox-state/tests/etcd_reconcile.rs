//! The reconciler against a real etcd: it deletes only on positive evidence,
//! and never across clusters of the same name.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "etcd", feature = "testing"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use blox_core::model::{Arn, EntityKind, Task, TaskStatus, Timestamp};
use blox_core::ports::{EcsApiExt, TaskListFilter};
use blox_core::testing::{FakeEcs, FakeEcsConfig, InstanceSpec};
use blox_state::reconcile::{ReconcileOptions, Reconciler};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{ApplyOutcome, Change, Filter, StaleReason, StateStore};
use blox_state::testing::etcd_server::EtcdServer;
use tokio::sync::OnceCell;

static SERVER: OnceCell<EtcdServer> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A store under a prefix of its own on the shared server.
async fn store() -> Arc<EtcdStore> {
    let server = SERVER
        .get_or_init(|| async { EtcdServer::start().await.expect("start etcd") })
        .await;
    let prefix = format!(
        "/reconcile-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    Arc::new(
        EtcdStore::connect(EtcdOptions::new([server.endpoint()]).with_prefix(prefix))
            .await
            .unwrap(),
    )
}

fn reconciler(ecs: &FakeEcs, store: &Arc<EtcdStore>, clusters: Vec<String>) -> Reconciler {
    Reconciler::new(
        Arc::new(ecs.clone()),
        store.clone(),
        ReconcileOptions {
            clusters,
            retention: Duration::from_secs(3600),
            ..ReconcileOptions::default()
        },
    )
}

/// Seen: a RUNNING event for a task ECS's ListTasks did not return yet was
/// deleted by the next reconcile, and the same event sent again was refused
/// as stale because of the tombstone.
#[tokio::test]
async fn a_started_task_listings_lag_behind_stays_and_its_event_applies_again() {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        seed: Some(11),
        listing_lag: Duration::from_secs(3600),
        ..FakeEcsConfig::default()
    });
    ecs.create_cluster("prod").unwrap();
    let on = ecs.add_instances("prod", 1, &InstanceSpec::new()).unwrap();
    let store = store().await;
    let rec = reconciler(&ecs, &store, vec!["prod".into()]);
    rec.reconcile_once().await.unwrap();

    let started = ecs.run_tasks("prod", "web:1", &on, None).unwrap().tasks[0].clone();
    let task: Task = ecs.task(&started.task_arn).unwrap();
    assert_eq!(task.last_status, TaskStatus::Running);
    assert!(
        store
            .apply(Change::put(task.clone()))
            .await
            .unwrap()
            .is_applied()
    );
    let listed = ecs
        .list_all_tasks(&TaskListFilter {
            cluster: "prod".into(),
            ..TaskListFilter::default()
        })
        .await
        .unwrap();
    assert!(!listed.contains(&task.task_arn), "ListTasks lags behind");

    let report = rec.reconcile_at(Timestamp::now()).await.unwrap();
    assert_eq!(report.removed, 0, "{report:?}");
    assert!(store.get(&task.task_arn).await.unwrap().is_some());
    let again = store.apply(Change::put(task.clone())).await.unwrap();
    assert!(
        !matches!(
            again,
            ApplyOutcome::Stale {
                reason: StaleReason::Tombstone,
                ..
            }
        ),
        "{again:?}"
    );
}

/// Two clusters named `prod` in two accounts share one etcd prefix; each
/// account's reconciler leaves the other's entities alone.
#[tokio::test]
async fn same_named_clusters_of_two_accounts_never_touch_each_other() {
    let fake = |account: &str, seed| {
        let ecs = FakeEcs::with_config(FakeEcsConfig {
            seed: Some(seed),
            account: account.into(),
            ..FakeEcsConfig::default()
        });
        ecs.create_cluster("prod").unwrap();
        let on = ecs.add_instances("prod", 1, &InstanceSpec::new()).unwrap();
        ecs.run_tasks("prod", "web:1", &on, None).unwrap();
        ecs
    };
    let (a, b) = (fake("111111111111", 1), fake("222222222222", 2));
    let store = store().await;
    let (rec_a, rec_b) = (
        reconciler(&a, &store, vec!["prod".into()]),
        reconciler(&b, &store, vec!["prod".into()]),
    );
    assert_eq!(rec_a.reconcile_once().await.unwrap().added, 2);
    assert_eq!(rec_b.reconcile_once().await.unwrap().added, 2);
    let before = store.current_revision().await.unwrap();
    for rec in [&rec_a, &rec_b] {
        let report = rec.reconcile_once().await.unwrap();
        assert_eq!(report.writes(), 0, "{report:?}");
    }
    assert_eq!(store.current_revision().await.unwrap(), before);
    for kind in [EntityKind::Instance, EntityKind::Task] {
        let accounts: Vec<String> = store
            .list(kind, &Filter::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|v| v.entity.arn().account().to_owned())
            .collect();
        assert_eq!(accounts.len(), 2, "{accounts:?}");
        assert_ne!(accounts[0], accounts[1]);
    }
}

/// A layout-1 tombstone (no `soft` field) still blocks its version.
#[tokio::test]
async fn a_layout_1_tombstone_still_blocks_its_version() {
    let store = store().await;
    let cluster = Arn::parse("arn:aws:ecs:us-east-1:123456789012:cluster/c1").unwrap();
    let arn = Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/c1/old").unwrap();
    let key = format!("{}/e/task/{arn}", store.options().prefix);
    let v1 = format!(
        r#"{{"tombstone":{{"arn":"{arn}","version":3,"deletedAt":"2024-01-01T00:00:00Z"}}}}"#
    );
    store.client().kv_client().put(key, v1, None).await.unwrap();
    let mut task = Task::new(arn, cluster, "td:1");
    task.version = Some(3);
    assert_eq!(
        store.apply(Change::put(task)).await.unwrap(),
        ApplyOutcome::Stale {
            reason: StaleReason::Tombstone,
            stored_version: Some(3)
        }
    );
}
