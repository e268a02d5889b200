//! The stored layout version on a real etcd: written with the prefix's
//! first transaction, a newer one refused before anything is written, an
//! older one refused until migrated, and a migration that stops half-way
//! resumed where it stopped.
#![cfg(all(feature = "etcd", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use blox_state::store::etcd::layout::{LAYOUT_VERSION, LayoutStatus, MigrationStep, migrate};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{StateStore, StoreError};
use blox_state::testing::etcd_server::EtcdServer;
use bytes::Bytes;
use futures::FutureExt;

fn options(server: &EtcdServer, prefix: &str) -> EtcdOptions {
    EtcdOptions::new([server.endpoint()]).with_prefix(prefix)
}

async fn raw_put(store: &EtcdStore, key: &str, value: &str) {
    store
        .client()
        .kv_client()
        .put(key, value, None)
        .await
        .unwrap();
}

async fn raw_get(store: &EtcdStore, key: &str) -> Option<String> {
    let resp = store.client().kv_client().get(key, None).await.unwrap();
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// A store that skips the check, to doctor a prefix.
async fn unchecked(server: &EtcdServer, prefix: &str) -> EtcdStore {
    EtcdStore::connect(EtcdOptions {
        check_layout: false,
        ..options(server, prefix)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_new_prefix_gets_the_current_layout_and_a_second_daemon_accepts_it() {
    let server = EtcdServer::start().await.unwrap();
    let first = EtcdStore::connect(options(&server, "/fresh"))
        .await
        .unwrap();
    assert_eq!(first.layout_status(), LayoutStatus::Initialised);
    assert_eq!(
        raw_get(&first, "/fresh/layout").await.as_deref(),
        Some(format!(r#"{{"version":{LAYOUT_VERSION}}}"#).as_str())
    );
    let second = EtcdStore::connect(options(&server, "/fresh"))
        .await
        .unwrap();
    assert_eq!(second.layout_status(), LayoutStatus::Current);
}

#[tokio::test]
async fn a_prefix_written_before_the_layout_record_is_layout_1_and_keeps_its_data() {
    let server = EtcdServer::start().await.unwrap();
    let old = unchecked(&server, "/old").await;
    old.kv_put("daemon/environments/logs", Bytes::from_static(b"{}"), None)
        .await
        .unwrap();
    assert_eq!(raw_get(&old, "/old/layout").await, None);
    let store = EtcdStore::connect(options(&server, "/old")).await.unwrap();
    assert_eq!(store.layout_status(), LayoutStatus::Initialised);
    assert!(
        store
            .kv_get("daemon/environments/logs")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_newer_layout_is_refused_naming_both_versions_and_nothing_is_written() {
    let server = EtcdServer::start().await.unwrap();
    let doctor = unchecked(&server, "/newer").await;
    let newer = LAYOUT_VERSION + 1;
    raw_put(
        &doctor,
        "/newer/layout",
        &format!(r#"{{"version":{newer}}}"#),
    )
    .await;
    let before = doctor.current_revision().await.unwrap();
    let err = EtcdStore::connect(options(&server, "/newer"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Layout { stored, supported, .. } if stored == newer && supported == LAYOUT_VERSION),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("version {newer}")), "{text}");
    assert!(
        text.contains(&format!("version {LAYOUT_VERSION}")),
        "{text}"
    );
    assert_eq!(doctor.current_revision().await.unwrap(), before);
}

static STEP_A: AtomicUsize = AtomicUsize::new(0);
static STEP_B: AtomicUsize = AtomicUsize::new(0);

fn step_a(store: &EtcdStore) -> futures::future::BoxFuture<'_, blox_state::store::Result<()>> {
    async move {
        STEP_A.fetch_add(1, Ordering::SeqCst);
        store
            .kv_put("migrated/a", Bytes::from_static(b"1"), None)
            .await
            .map(|_| ())
    }
    .boxed()
}

fn step_b(store: &EtcdStore) -> futures::future::BoxFuture<'_, blox_state::store::Result<()>> {
    async move {
        // The first run stops here, as a crash or an outage would.
        if STEP_B.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(StoreError::Unavailable {
                message: "stopped half-way".into(),
                source: None,
            });
        }
        store
            .kv_put("migrated/b", Bytes::from_static(b"1"), None)
            .await
            .map(|_| ())
    }
    .boxed()
}

#[tokio::test]
async fn an_older_layout_is_refused_until_migrated_and_a_stopped_migration_resumes() {
    let server = EtcdServer::start().await.unwrap();
    let tool = unchecked(&server, "/older").await;
    let older = LAYOUT_VERSION - 1;
    raw_put(&tool, "/older/layout", &format!(r#"{{"version":{older}}}"#)).await;
    let err = EtcdStore::connect(options(&server, "/older"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--migrate-layout"), "{err}");

    let steps = [
        MigrationStep {
            from: older,
            name: "a",
            run: step_a,
        },
        MigrationStep {
            from: older,
            name: "b",
            run: step_b,
        },
    ];
    assert!(migrate(&tool, &steps, LAYOUT_VERSION).await.is_err());
    let half = raw_get(&tool, "/older/layout").await.unwrap();
    assert!(half.contains(r#""done":["a"]"#), "{half}");
    let refused = EtcdStore::connect(options(&server, "/older"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("under way"), "{refused}");

    let report = migrate(&tool, &steps, LAYOUT_VERSION).await.unwrap();
    assert_eq!(report.steps_run, vec![format!("{older}:b")]);
    assert_eq!(report.to, LAYOUT_VERSION);
    assert_eq!(
        STEP_A.load(Ordering::SeqCst),
        1,
        "a finished step is not rerun"
    );
    assert!(tool.kv_get("migrated/a").await.unwrap().is_some());
    assert!(tool.kv_get("migrated/b").await.unwrap().is_some());
    let store = EtcdStore::connect(options(&server, "/older"))
        .await
        .unwrap();
    assert_eq!(store.layout_status(), LayoutStatus::Current);
}

/// A step from this layout to the next that changes nothing.
fn noop(_: &EtcdStore) -> futures::future::BoxFuture<'_, blox_state::store::Result<()>> {
    async { Ok(()) }.boxed()
}

/// Migrates `prefix` to the next layout version with a store of its own.
async fn migrate_to_next(server: &EtcdServer, prefix: &str) {
    let tool = unchecked(server, prefix).await;
    let steps = [MigrationStep {
        from: LAYOUT_VERSION,
        name: "next",
        run: noop,
    }];
    migrate(&tool, &steps, LAYOUT_VERSION + 1).await.unwrap();
}

#[tokio::test]
async fn a_store_whose_layout_is_migrated_under_it_writes_nothing_more_and_says_so() {
    use blox_state::store::Change;
    use blox_state::testing::conformance::task;
    let server = EtcdServer::start().await.unwrap();
    let store = EtcdStore::connect(options(&server, "/live")).await.unwrap();
    store
        .kv_put("env/a", Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    store
        .apply(Change::put(task("c", "t1", Some(1))))
        .await
        .unwrap();
    let watched = store.clone();
    let changed = tokio::spawn(async move { watched.layout_changed().await });

    migrate_to_next(&server, "/live").await;

    let put = store
        .kv_put("env/a", Bytes::from_static(b"2"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(put, StoreError::Layout { stored, .. } if stored == LAYOUT_VERSION + 1),
        "{put:?}"
    );
    assert!(put.to_string().contains("stored layout changed"), "{put}");
    let apply = store
        .apply(Change::put(task("c", "t2", Some(1))))
        .await
        .unwrap_err();
    assert!(matches!(apply, StoreError::Layout { .. }), "{apply:?}");
    // Nothing of either write landed.
    let tool = unchecked(&server, "/live").await;
    assert_eq!(
        tool.kv_get("env/a").await.unwrap().unwrap().value,
        Bytes::from_static(b"1")
    );
    assert_eq!(tool.list_all().await.unwrap().items.len(), 1);
    // And the store says so by itself (a daemon stops on it).
    let said = tokio::time::timeout(std::time::Duration::from_secs(30), changed)
        .await
        .expect("layout_changed did not resolve")
        .unwrap();
    // (It may have seen the migration start, or end.)
    assert!(matches!(said, StoreError::Layout { .. }), "{said:?}");
    assert!(said.to_string().contains("stored layout changed"), "{said}");
}
