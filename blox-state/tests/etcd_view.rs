//! The view over a real etcd, where the writer commits up to 127 keys in
//! one revision: every list the cache answers is the store at the list's
//! revision, list-then-stream clients end exactly equal to the store, and
//! an undecodable record is skipped without losing the rest of its
//! revision.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "etcd", feature = "testing", feature = "http"))]

mod http_support;
mod view_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use blox_core::model::{Arn, Task};
use blox_state::cache::spawn_follower;
use blox_state::http::{ApiState, router};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{Change, StateStore};
use blox_state::testing::etcd_server::EtcdServer;
use etcd_client::{Txn, TxnOp};
use tokio::sync::OnceCell;

static SERVER: OnceCell<EtcdServer> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(0);

async fn store() -> EtcdStore {
    let server = SERVER
        .get_or_init(|| async { EtcdServer::start().await.expect("start etcd") })
        .await;
    let prefix = format!(
        "/view-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    EtcdStore::connect(EtcdOptions::new([server.endpoint()]).with_prefix(prefix))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_is_the_store_at_its_revision_while_many_keys_commit_per_revision() {
    let store: Arc<dyn StateStore> = Arc::new(store().await);
    let (wrong, checked) = view_support::lists_under_churn(store, 300).await;
    assert!(
        wrong.is_empty(),
        "{} of {checked} lists did not match the store at their revision: {wrong:#?}",
        wrong.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_stream_clients_end_exactly_equal_to_the_store() {
    let store: Arc<dyn StateStore> = Arc::new(store().await);
    let (cache, follower) = spawn_follower(Arc::clone(&store));
    cache.wait_until_ready().await;
    let addr = http_support::serve(router(ApiState::new(cache.clone(), Arc::clone(&store)))).await;
    let wrong = view_support::streams_under_churn(store, cache, addr, 200, 20).await;
    follower.abort();
    assert!(
        wrong.is_empty(),
        "views that are not the store's: {wrong:#?}"
    );
}

const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/c1";

fn task(id: &str) -> Task {
    let arn = Arn::parse(&format!("arn:aws:ecs:us-east-1:123456789012:task/c1/{id}")).unwrap();
    let mut t = Task::new(arn, Arn::parse(CLUSTER).unwrap(), "td:1");
    t.version = Some(1);
    t
}

/// Writes, in one etcd transaction (one revision) under `s`'s prefix, the
/// tasks `ids` as valid records (copied from a scratch store) with a
/// garbage value under an entity key in the middle.
async fn write_with_garbage(s: &EtcdStore, ids: &[&str], garbage_id: &str) {
    let scratch = store().await;
    let tasks: Vec<Task> = ids.iter().map(|id| task(id)).collect();
    scratch
        .apply_batch(tasks.iter().cloned().map(Change::put).collect())
        .await
        .unwrap();
    let mut kv = s.client().kv_client();
    let mut ops = Vec::new();
    for (n, t) in tasks.iter().enumerate() {
        let from = format!("{}/e/task/{}", scratch.options().prefix, t.task_arn);
        let value = kv.get(from, None).await.unwrap().kvs()[0].value().to_vec();
        let to = format!("{}/e/task/{}", s.options().prefix, t.task_arn);
        ops.push(TxnOp::put(to, value, None));
        if n == ids.len() / 2 {
            let bad = format!(
                "{}/e/task/{}",
                s.options().prefix,
                task(garbage_id).task_arn
            );
            ops.push(TxnOp::put(bad, b"{not a record".to_vec(), None));
        }
    }
    let resp = kv.txn(Txn::new().and_then(ops)).await.unwrap();
    assert!(resp.succeeded());
}

#[tokio::test]
async fn an_undecodable_record_mid_revision_is_skipped_and_the_rest_of_the_revision_applied() {
    let s = store().await;
    let store: Arc<dyn StateStore> = Arc::new(s.clone());
    let (cache, follower) = spawn_follower(Arc::clone(&store));
    cache.wait_until_ready().await;
    write_with_garbage(&s, &["a", "b", "c", "d"], "zz-garbage").await;
    // A later write shows the follower went on past the bad revision.
    let later = store.apply(Change::put(task("e"))).await.unwrap();
    let blox_state::ApplyOutcome::Applied { revision } = later else {
        panic!("not applied: {later:?}");
    };
    let mut changes = cache.changes();
    tokio::time::timeout(
        Duration::from_secs(30),
        changes.wait_for(|r| r.seq >= revision.seq),
    )
    .await
    .expect("the cache went on")
    .unwrap();
    for id in ["a", "b", "c", "d", "e"] {
        assert!(
            cache.get_task(task(id).task_arn.as_str()).is_some(),
            "{id} is in the cache"
        );
    }
    assert_eq!(cache.len(), (0, 5));
    assert_eq!(store.undecodable_records(), 1);
    follower.abort();
}

#[tokio::test]
async fn an_undecodable_record_does_not_keep_the_cache_from_loading() {
    let s = store().await;
    write_with_garbage(&s, &["a", "b"], "zz-garbage").await;
    let store: Arc<dyn StateStore> = Arc::new(s);
    let (cache, follower) = spawn_follower(Arc::clone(&store));
    tokio::time::timeout(Duration::from_secs(30), cache.wait_until_ready())
        .await
        .expect("the cache loaded");
    assert_eq!(cache.len(), (0, 2));
    assert_eq!(store.undecodable_records(), 1);
    follower.abort();
}
