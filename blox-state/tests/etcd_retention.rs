//! Issue 14 on a real etcd: what is gone stays gone, retention owned by the
//! store (its indexes, and the layout 1 to 2 migration that builds them),
//! back-pressure, and per-change outcomes.
#![cfg(all(feature = "etcd", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use blox_core::model::{Arn, Task, TaskStatus, Timestamp};
use blox_state::store::etcd::layout::{LAYOUT_VERSION, MIGRATIONS, migrate};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{ApplyOutcome, Change, Expiry, ExpiryReport, StateStore, StoreError};
use blox_state::testing::ManualClock;
use blox_state::testing::conformance::what_is_gone_stays_gone;
use blox_state::testing::etcd_server::EtcdServer;
use etcd_client::{AlarmAction, AlarmType, DeleteOptions, GetOptions};
use tokio::sync::OnceCell;

static SERVER: OnceCell<EtcdServer> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Options for a store under a prefix of its own on the shared server.
async fn options() -> EtcdOptions {
    let server = SERVER
        .get_or_init(|| async { EtcdServer::start().await.expect("start etcd") })
        .await;
    let prefix = format!("/retention-{}", NEXT.fetch_add(1, Ordering::SeqCst));
    EtcdOptions::new([server.endpoint()]).with_prefix(prefix)
}

fn task_arn(id: &str) -> Arn {
    Arn::parse(&format!("arn:aws:ecs:us-east-1:1:task/prod/{id}")).unwrap()
}

fn stopped(id: &str, version: u64, at: i64) -> Task {
    let mut t = Task::new(
        task_arn(id),
        Arn::parse("arn:aws:ecs:us-east-1:1:cluster/prod").unwrap(),
        "td:1",
    );
    t.version = Some(version);
    t.last_status = TaskStatus::Stopped;
    t.stopped_at = Some(Timestamp::from_millis(at));
    t
}

/// How many keys etcd holds under `prefix`.
async fn count(store: &EtcdStore, prefix: &str) -> i64 {
    let resp = store
        .client()
        .kv_client()
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    resp.count()
}

#[tokio::test]
async fn seen_a_redelivered_running_event_does_not_resurrect_a_removed_task() {
    let clock = ManualClock::starting_at(Timestamp::from_millis(1_704_067_200_000));
    let store = EtcdStore::connect(EtcdOptions {
        clock: clock.shared(),
        ..options().await
    })
    .await
    .unwrap();
    what_is_gone_stays_gone(Arc::new(store), &clock).await;
}

#[tokio::test]
async fn retention_reads_only_its_index_and_the_index_follows_every_write() {
    let store = EtcdStore::connect(options().await).await.unwrap();
    let prefix = store.options().prefix.clone();
    let retired = format!("{prefix}/i/retired/");
    let tombstones = format!("{prefix}/i/tombstone/");
    store
        .apply(Change::put(stopped("a", 3, 1_000)))
        .await
        .unwrap();
    store
        .apply(Change::put(stopped("a", 4, 2_000)))
        .await
        .unwrap();
    // Two entries for a: the one of its first stop is stale, and found so.
    assert_eq!(count(&store, &retired).await, 2);
    let report = store
        .expire(Expiry {
            retired_before: Some(Timestamp::from_millis(1_500)),
            deleted_before: None,
        })
        .await
        .unwrap();
    assert_eq!(report, ExpiryReport::default());
    assert_eq!(count(&store, &retired).await, 1, "the stale entry is gone");
    let report = store
        .expire(Expiry {
            retired_before: Some(Timestamp::from_millis(2_500)),
            deleted_before: None,
        })
        .await
        .unwrap();
    assert_eq!(report.retired, 1);
    assert_eq!(count(&store, &retired).await, 0);
    assert_eq!(count(&store, &tombstones).await, 1);
    let report = store
        .expire(Expiry {
            retired_before: None,
            deleted_before: Some(Timestamp::now().plus(Duration::from_secs(60))),
        })
        .await
        .unwrap();
    assert_eq!(report.purged, 1);
    assert_eq!(count(&store, &tombstones).await, 0);
    assert_eq!(count(&store, &format!("{prefix}/e/")).await, 0);
}

#[tokio::test]
async fn migrating_a_version_1_prefix_builds_the_retention_indexes() {
    let opts = options().await;
    let prefix = opts.prefix.clone();
    let store = EtcdStore::connect(opts.clone()).await.unwrap();
    store
        .apply(Change::put(stopped("old", 3, 1_000)))
        .await
        .unwrap();
    store
        .apply(Change::put(stopped("new", 3, 9_000)))
        .await
        .unwrap();
    store
        .apply(Change::delete(task_arn("gone"), Some(2)))
        .await
        .unwrap();
    // Make it what a version-1 daemon leaves: the same records, no indexes.
    let mut kv = store.client().kv_client();
    kv.delete(
        format!("{prefix}/i/"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    kv.put(format!("{prefix}/layout"), r#"{"version":1}"#, None)
        .await
        .unwrap();
    drop(store);
    let err = EtcdStore::connect(opts.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::Layout { stored: 1, .. }), "{err}");

    let tool = EtcdStore::connect(EtcdOptions {
        check_layout: false,
        ..opts.clone()
    })
    .await
    .unwrap();
    let report = migrate(&tool, MIGRATIONS, LAYOUT_VERSION).await.unwrap();
    assert_eq!((report.from, report.to), (1, 2));
    assert!(
        report.steps_run.iter().any(|s| s == "1:retention-index"),
        "{:?}",
        report.steps_run
    );
    assert_eq!(count(&tool, &format!("{prefix}/i/")).await, 3);
    // Running the step again (a migration resumed after a crash) changes nothing.
    let step = MIGRATIONS
        .iter()
        .find(|s| s.name == "retention-index")
        .unwrap();
    (step.run)(&tool).await.unwrap();
    assert_eq!(count(&tool, &format!("{prefix}/i/")).await, 3);

    let store = EtcdStore::connect(opts).await.unwrap();
    let report = store
        .expire(Expiry {
            retired_before: Some(Timestamp::from_millis(5_000)),
            deleted_before: Some(Timestamp::now().plus(Duration::from_secs(60))),
        })
        .await
        .unwrap();
    assert_eq!(
        report,
        ExpiryReport {
            retired: 1,
            purged: 2
        },
        "old is retired, then its tombstone and gone's are purged"
    );
    assert!(store.get(&task_arn("new")).await.unwrap().is_some());
}

#[tokio::test]
async fn a_prefix_written_before_the_layout_record_gets_its_indexes() {
    let opts = options().await;
    let prefix = opts.prefix.clone();
    let store = EtcdStore::connect(opts.clone()).await.unwrap();
    store
        .apply(Change::put(stopped("old", 3, 1_000)))
        .await
        .unwrap();
    store
        .apply(Change::delete(task_arn("gone"), Some(2)))
        .await
        .unwrap();
    let mut kv = store.client().kv_client();
    kv.delete(
        format!("{prefix}/i/"),
        Some(DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    kv.delete(format!("{prefix}/layout"), None).await.unwrap();
    drop(store);
    let store = EtcdStore::connect(opts).await.unwrap();
    assert_eq!(count(&store, &format!("{prefix}/i/")).await, 2);
    let report = store
        .expire(Expiry {
            retired_before: Some(Timestamp::from_millis(5_000)),
            deleted_before: None,
        })
        .await
        .unwrap();
    assert_eq!(report.retired, 1);
}

#[tokio::test]
async fn an_unreadable_record_fails_only_its_own_change() {
    let store = EtcdStore::connect(options().await).await.unwrap();
    let prefix = store.options().prefix.clone();
    store
        .client()
        .kv_client()
        .put(
            format!("{prefix}/e/task/{}", task_arn("bad")),
            "{not json",
            None,
        )
        .await
        .unwrap();
    store.clear_cache();
    let out = store
        .apply_each(vec![
            Change::put(stopped("ok-1", 1, 1)),
            Change::put(stopped("bad", 2, 1)),
            Change::put(stopped("ok-2", 1, 1)),
        ])
        .await
        .unwrap();
    assert!(
        matches!(out[0], Ok(ApplyOutcome::Applied { .. })),
        "{out:?}"
    );
    assert!(matches!(out[1], Err(StoreError::Corrupt { .. })), "{out:?}");
    assert!(
        matches!(out[2], Ok(ApplyOutcome::Applied { .. })),
        "{out:?}"
    );
    assert!(store.get(&task_arn("ok-2")).await.unwrap().is_some());
}

#[tokio::test]
async fn a_nospace_alarm_is_back_pressure() {
    // Its own server: the alarm is cluster-wide.
    let server = EtcdServer::start().await.unwrap();
    let store = EtcdStore::connect(EtcdOptions::new([server.endpoint()]))
        .await
        .unwrap();
    store.apply(Change::put(stopped("a", 1, 1))).await.unwrap();
    let mut maintenance = store.client().maintenance_client();
    maintenance
        .alarm(AlarmAction::Activate, AlarmType::Nospace, None)
        .await
        .unwrap();
    let err = store
        .kv_put("k", bytes::Bytes::from_static(b"v"), None)
        .await
        .unwrap_err();
    assert!(err.is_exhausted(), "{err}");
    // etcd counts only a transaction's top-level puts against its quota, so
    // it may still take entity writes (nested transactions); if it refuses
    // one, that is back-pressure too.
    if let Err(err) = store.apply(Change::put(stopped("b", 1, 1))).await {
        assert!(err.is_exhausted(), "{err}");
    }
    // Reads still work.
    assert!(store.get(&task_arn("a")).await.unwrap().is_some());
    maintenance
        .alarm(AlarmAction::Deactivate, AlarmType::Nospace, None)
        .await
        .unwrap();
    store
        .kv_put("k", bytes::Bytes::from_static(b"v"), None)
        .await
        .unwrap();
}
