//! Focused tests of `EtcdStore` against a real etcd (one shared throwaway
//! server; every test writes under its own key prefix).
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "etcd", feature = "testing"))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use blox_core::model::{Arn, ContainerInstance, Entity, EntityKind, Task, TaskStatus, Timestamp};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{
    ApplyOutcome, Change, Expiry, Filter, KvExpect, KvOp, KvTxn, KvTxnOutcome, Revision,
    StaleReason, StateStore, StoreError, WatchEvent,
};
use blox_state::testing::etcd_server::EtcdServer;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::OnceCell;

static SERVER: OnceCell<EtcdServer> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(0);

async fn store() -> EtcdStore {
    EtcdStore::connect(options().await).await.unwrap()
}

/// Options for a store under a prefix of its own on the shared server.
async fn options() -> EtcdOptions {
    let server = SERVER
        .get_or_init(|| async { EtcdServer::start().await.expect("start etcd") })
        .await;
    let prefix = format!(
        "/test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    EtcdOptions::new([server.endpoint()]).with_prefix(prefix)
}

/// The raw bytes etcd holds for an entity of a store.
async fn raw_value(s: &EtcdStore, arn: &Arn) -> Vec<u8> {
    let key = format!("{}/e/task/{arn}", s.options().prefix);
    let mut kv = s.client().kv_client();
    let resp = kv.get(key, None).await.unwrap();
    resp.kvs()[0].value().to_vec()
}

const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/c1";

fn task_arn(id: &str) -> Arn {
    Arn::parse(&format!("arn:aws:ecs:us-east-1:123456789012:task/c1/{id}")).unwrap()
}

fn task(id: &str, version: Option<u64>) -> Task {
    let mut t = Task::new(task_arn(id), Arn::parse(CLUSTER).unwrap(), "td:1");
    t.version = version;
    t
}

fn instance(id: &str, version: u64) -> ContainerInstance {
    let arn = Arn::parse(&format!(
        "arn:aws:ecs:us-east-1:123456789012:container-instance/c1/{id}"
    ))
    .unwrap();
    let mut i = ContainerInstance::new(arn, Arn::parse(CLUSTER).unwrap());
    i.version = Some(version);
    i
}

fn version_of(e: &Entity) -> Option<u64> {
    e.version()
}

async fn next_event(s: &mut blox_state::store::WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("no error")
}

async fn next_kv(w: &mut blox_state::store::KvWatchStream) -> blox_state::store::KvEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("an event within 10 s")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test]
async fn newer_versions_apply_and_equal_or_older_are_stale() {
    let s = store().await;
    let r1 = s.apply(Change::put(task("a", Some(2)))).await.unwrap();
    assert!(r1.is_applied());
    for v in [2, 1] {
        assert_eq!(
            s.apply(Change::put(task("a", Some(v)))).await.unwrap(),
            ApplyOutcome::Stale {
                reason: StaleReason::Version,
                stored_version: Some(2)
            }
        );
    }
    let r3 = s.apply(Change::put(task("a", Some(3)))).await.unwrap();
    let ApplyOutcome::Applied { revision } = r3 else {
        panic!("{r3:?}")
    };
    let got = s.get(&task_arn("a")).await.unwrap().unwrap();
    assert_eq!(version_of(&got.entity), Some(3));
    assert_eq!(got.revision, revision);
    assert_eq!(revision.epoch, s.epoch());
    assert!(s.get(&task_arn("missing")).await.unwrap().is_none());
}

#[tokio::test]
async fn a_fresh_client_without_cache_sees_the_stored_version() {
    let s = store().await;
    s.apply(Change::put(task("a", Some(5)))).await.unwrap();
    let other = EtcdStore::connect(s.options().clone()).await.unwrap();
    let out = other.apply(Change::put(task("a", Some(4)))).await.unwrap();
    assert!(!out.is_applied());
    // The first client's cache is now behind nothing, but another writer
    // moves the key: its cached state must not decide a wrong outcome.
    other.apply(Change::put(task("a", Some(9)))).await.unwrap();
    let out = s.apply(Change::put(task("a", Some(7)))).await.unwrap();
    assert_eq!(
        out,
        ApplyOutcome::Stale {
            reason: StaleReason::Version,
            stored_version: Some(9)
        }
    );
}

#[tokio::test]
async fn list_returns_live_entities_of_a_kind_matching_the_filter() {
    let s = store().await;
    let mut running = task("r", Some(1));
    running.last_status = TaskStatus::Running;
    s.apply_batch(vec![
        Change::put(running),
        Change::put(task("p", Some(1))),
        Change::put(task("gone", Some(1))),
        Change::put(instance("i1", 1)),
    ])
    .await
    .unwrap();
    s.apply(Change::delete(task_arn("gone"), Some(2)))
        .await
        .unwrap();
    let all = s.list(EntityKind::Task, &Filter::default()).await.unwrap();
    let mut ids: Vec<String> = all
        .items
        .iter()
        .map(|v| v.entity.arn().id().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["p", "r"]);
    // Other tests write to the shared server, so only bound it.
    let now = s.current_revision().await.unwrap();
    assert!(all.revision.seq <= now.seq && all.revision.epoch == now.epoch);
    let filter = Filter {
        status: Some("running".into()),
        ..Filter::default()
    };
    let running = s.list(EntityKind::Task, &filter).await.unwrap();
    assert_eq!(running.items.len(), 1);
    let instances = s
        .list(EntityKind::Instance, &Filter::default())
        .await
        .unwrap();
    assert_eq!(instances.items.len(), 1);
}

#[tokio::test]
async fn a_list_larger_than_one_page_is_complete() {
    let s = store().await;
    let changes: Vec<Change> = (0..2500)
        .map(|i| Change::put(task(&format!("t{i:05}"), Some(1))))
        .collect();
    let out = s.apply_batch(changes).await.unwrap();
    assert!(out.iter().all(ApplyOutcome::is_applied));
    let all = s.list(EntityKind::Task, &Filter::default()).await.unwrap();
    assert_eq!(all.items.len(), 2500);
}

#[tokio::test]
async fn a_tombstone_blocks_late_states_but_not_newer_ones() {
    let s = store().await;
    s.apply(Change::put(task("a", Some(3)))).await.unwrap();
    assert!(
        s.apply(Change::delete(task_arn("a"), Some(3)))
            .await
            .unwrap()
            .is_applied()
    );
    assert!(s.get(&task_arn("a")).await.unwrap().is_none());
    assert_eq!(
        s.apply(Change::put(task("a", Some(3)))).await.unwrap(),
        ApplyOutcome::Stale {
            reason: StaleReason::Tombstone,
            stored_version: Some(3)
        }
    );
    assert!(
        !s.apply(Change::put(task("a", None)))
            .await
            .unwrap()
            .is_applied()
    );
    assert!(
        s.apply(Change::put(task("a", Some(4))))
            .await
            .unwrap()
            .is_applied()
    );
    assert!(s.get(&task_arn("a")).await.unwrap().is_some());
}

#[tokio::test]
async fn a_delete_older_than_the_stored_state_is_stale() {
    let s = store().await;
    s.apply(Change::put(task("a", Some(5)))).await.unwrap();
    assert_eq!(
        s.apply(Change::delete(task_arn("a"), Some(4)))
            .await
            .unwrap(),
        ApplyOutcome::Stale {
            reason: StaleReason::Version,
            stored_version: Some(5)
        }
    );
    assert!(s.get(&task_arn("a")).await.unwrap().is_some());
}

#[tokio::test]
async fn a_guard_rejects_changes_to_keys_modified_after_its_revision() {
    let s = store().await;
    s.apply(Change::put(task("a", Some(1)))).await.unwrap();
    let listed = s.current_revision().await.unwrap();
    // Unchanged since the listing: applies.
    assert!(
        s.apply(Change::put(task("a", Some(2))).unchanged_since(listed))
            .await
            .unwrap()
            .is_applied()
    );
    // Modified after `listed` (by the write above): rejected, also deletes.
    assert_eq!(
        s.apply(Change::delete(task_arn("a"), None).unchanged_since(listed))
            .await
            .unwrap(),
        ApplyOutcome::Stale {
            reason: StaleReason::ModifiedSince,
            stored_version: Some(2)
        }
    );
    // An absent key has never been modified.
    assert!(
        s.apply(Change::put(task("new", Some(1))).unchanged_since(listed))
            .await
            .unwrap()
            .is_applied()
    );
    let foreign = Revision::new(s.epoch() ^ 1, listed.seq);
    let err = s
        .apply(Change::put(task("a", Some(9))).unchanged_since(foreign))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EpochMismatch { .. }), "{err}");
}

#[tokio::test]
async fn changes_to_one_arn_in_a_batch_apply_in_order() {
    let s = store().await;
    let before = s.current_revision().await.unwrap();
    let out = s
        .apply_batch(vec![
            Change::put(task("a", Some(2))),
            Change::put(task("b", Some(1))),
            Change::put(task("a", Some(1))),
            Change::put(task("a", Some(3))),
            Change::delete(task_arn("b"), Some(1)),
            // Guarded on a revision before the batch: the earlier change of
            // this batch modified the key, so it is rejected.
            Change::put(task("a", Some(4))).unchanged_since(before),
        ])
        .await
        .unwrap();
    assert!(out[0].is_applied());
    assert!(out[1].is_applied());
    assert_eq!(
        out[2],
        ApplyOutcome::Stale {
            reason: StaleReason::Version,
            stored_version: Some(2)
        }
    );
    assert!(out[3].is_applied());
    assert!(out[4].is_applied());
    assert_eq!(
        out[5],
        ApplyOutcome::Stale {
            reason: StaleReason::ModifiedSince,
            stored_version: Some(3)
        }
    );
    let a = s.get(&task_arn("a")).await.unwrap().unwrap();
    assert_eq!(a.entity.version(), Some(3));
    assert!(s.get(&task_arn("b")).await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_writers_never_lose_the_highest_version() {
    let s1 = store().await;
    let s2 = EtcdStore::connect(s1.options().clone()).await.unwrap();
    let mut handles = Vec::new();
    for (n, s) in [s1.clone(), s2.clone()].into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            for v in 0..60u64 {
                let changes = (0..5)
                    .map(|k| Change::put(task(&format!("k{k}"), Some(v * 2 + n as u64))))
                    .collect();
                s.apply_batch(changes).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    for k in 0..5 {
        let got = s1.get(&task_arn(&format!("k{k}"))).await.unwrap().unwrap();
        assert_eq!(got.entity.version(), Some(59 * 2 + 1));
    }
}

#[tokio::test]
async fn watch_reports_puts_and_deletes_with_the_last_state() {
    let s = store().await;
    let start = s.current_revision().await.unwrap();
    let mut w = s.watch(start).await.unwrap();
    s.apply(Change::put(task("a", Some(1)))).await.unwrap();
    // A delete of an entity the store never had leaves a tombstone but no event.
    s.apply(Change::delete(task_arn("ghost"), Some(1)))
        .await
        .unwrap();
    let del = s.apply(Change::delete(task_arn("a"), None)).await.unwrap();
    s.apply(Change::put(task("b", Some(1)))).await.unwrap();
    // Purging the tombstones yields no event either.
    let purged = s
        .expire(Expiry {
            retired_before: None,
            deleted_before: Some(Timestamp::now().plus(Duration::from_secs(60))),
        })
        .await
        .unwrap()
        .purged;
    assert_eq!(purged, 2);
    s.apply(Change::put(task("c", Some(1)))).await.unwrap();

    match next_event(&mut w).await {
        WatchEvent::Put(v) => assert_eq!(v.entity.arn(), &task_arn("a")),
        e => panic!("{e:?}"),
    }
    match next_event(&mut w).await {
        WatchEvent::Delete {
            arn,
            last,
            revision,
        } => {
            assert_eq!(arn, task_arn("a"));
            assert_eq!(last.unwrap().version(), Some(1));
            assert_eq!(ApplyOutcome::Applied { revision }, del);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(next_event(&mut w).await.arn(), &task_arn("b"));
    assert_eq!(next_event(&mut w).await.arn(), &task_arn("c"));

    // Resuming after the first event replays the rest, with no duplicate.
    let ApplyOutcome::Applied { revision: del_rev } = del else {
        panic!()
    };
    let mut again = s
        .watch(Revision::new(del_rev.epoch, del_rev.seq - 1))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut again).await,
        WatchEvent::Delete { .. }
    ));
}

#[tokio::test]
async fn watching_from_a_compacted_revision_fails_with_compacted() {
    // Its own server: compaction is cluster-wide and would break the other
    // tests' watches.
    let server = EtcdServer::start().await.unwrap();
    let s = EtcdStore::connect(EtcdOptions::new([server.endpoint()]))
        .await
        .unwrap();
    let start = s.current_revision().await.unwrap();
    for v in 1..=5 {
        s.apply(Change::put(task("a", Some(v)))).await.unwrap();
    }
    let compacted = s.compact(1).await.unwrap().expect("compacted");
    assert!(compacted.seq > start.seq);
    let err = match s.watch(start).await {
        Err(e) => e,
        Ok(mut w) => w.next().await.unwrap().unwrap_err(),
    };
    assert!(matches!(err, StoreError::Compacted { .. }), "{err}");
    assert!(err.needs_relist());
    // From the compacted revision itself on, watching works.
    let mut w = s.watch(compacted).await.unwrap();
    s.apply(Change::put(task("a", Some(6)))).await.unwrap();
    assert_eq!(next_event(&mut w).await.arn(), &task_arn("a"));
}

#[tokio::test]
async fn maintenance_compacts_history() {
    // Its own server: compaction is cluster-wide.
    let server = EtcdServer::start().await.unwrap();
    let mut options = EtcdOptions::new([server.endpoint()]);
    options.keep_revisions = 2;
    options.compaction_interval = Duration::from_millis(50);
    let s = EtcdStore::connect(options).await.unwrap();
    let start = s.current_revision().await.unwrap();
    for i in 0..5 {
        s.apply(Change::put(task(&format!("t{i}"), Some(1))))
            .await
            .unwrap();
    }
    s.apply(Change::delete(task_arn("t0"), Some(1)))
        .await
        .unwrap();
    let report = s.maintain().await.unwrap();
    let compacted = report.compacted_to.expect("compacted");
    assert!(compacted.seq > start.seq);
    assert!(matches!(
        s.watch(start).await.err(),
        Some(StoreError::Compacted { .. })
    ));
    assert_eq!(
        s.list(EntityKind::Task, &Filter::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );

    // The scheduled task does the same on its own.
    let before = s.current_revision().await.unwrap();
    for v in 2..6 {
        s.apply(Change::put(task("t1", Some(v)))).await.unwrap();
    }
    let handle = s.spawn_maintenance();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match s.watch(before).await {
            Err(StoreError::Compacted { .. }) => break,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected Compacted, got {:?}", other.err()),
        }
    }
    handle.abort();
}

#[tokio::test]
async fn watching_from_another_epoch_or_the_future_needs_a_relist() {
    let s = store().await;
    let now = s.current_revision().await.unwrap();
    let err = s
        .watch(Revision::new(now.epoch ^ 1, now.seq))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::EpochMismatch { .. }), "{err}");
    let err = s
        .watch(Revision::new(now.epoch, now.seq + 1000))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err}");
}

#[tokio::test]
async fn kv_transactions_check_absence_presence_and_revision() {
    let s = store().await;
    let v = |x: &str| Bytes::from(x.to_owned());
    let KvTxnOutcome::Applied(r1) = s
        .kv_put("sched/a", v("1"), Some(KvExpect::Absent))
        .await
        .unwrap()
    else {
        panic!("absent put failed")
    };
    assert_eq!(
        s.kv_put("sched/a", v("2"), Some(KvExpect::Absent))
            .await
            .unwrap(),
        KvTxnOutcome::Conflict
    );
    assert!(matches!(
        s.kv_put("sched/a", v("2"), Some(KvExpect::Revision(r1)))
            .await
            .unwrap(),
        KvTxnOutcome::Applied(_)
    ));
    assert_eq!(
        s.kv_put("sched/a", v("3"), Some(KvExpect::Revision(r1)))
            .await
            .unwrap(),
        KvTxnOutcome::Conflict
    );
    assert_eq!(
        s.kv_delete("sched/none", Some(KvExpect::Present))
            .await
            .unwrap(),
        KvTxnOutcome::Conflict
    );
    let got = s.kv_get("sched/a").await.unwrap().unwrap();
    assert_eq!(got.value, v("2"));
    // Multi-key all-or-nothing.
    let out = s
        .kv_txn(KvTxn {
            checks: vec![("sched/a".into(), KvExpect::Present)],
            ops: vec![
                KvOp::Put {
                    key: "sched/b".into(),
                    value: v("b"),
                },
                KvOp::Delete {
                    key: "sched/a".into(),
                },
            ],
        })
        .await
        .unwrap();
    assert!(matches!(out, KvTxnOutcome::Applied(_)));
    s.kv_put("other", v("x"), None).await.unwrap();
    let listed = s.kv_list("sched/").await.unwrap();
    let keys: Vec<&str> = listed.items.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["sched/b"]);
    let dup = s
        .kv_txn(KvTxn {
            checks: vec![],
            ops: vec![
                KvOp::Delete { key: "x".into() },
                KvOp::Delete { key: "x".into() },
            ],
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Invalid(_))));
}

#[tokio::test]
async fn kv_watch_reports_puts_and_deletes_under_the_prefix() {
    let s = store().await;
    let start = s.current_revision().await.unwrap();
    let mut w = s.kv_watch("sched/", start).await.unwrap();
    s.kv_put("other/x", Bytes::from_static(b"o"), None)
        .await
        .unwrap();
    s.kv_put("sched/a", Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    s.kv_delete("sched/a", None).await.unwrap();
    let e1 = next_kv(&mut w).await;
    assert_eq!(
        (e1.key.as_str(), e1.value),
        ("sched/a", Some(Bytes::from_static(b"1")))
    );
    let e2 = next_kv(&mut w).await;
    assert_eq!((e2.key.as_str(), e2.value), ("sched/a", None));
    assert!(e2.revision.seq > e1.revision.seq);
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = EtcdOptions::new([format!("127.0.0.1:{port}")]);
    opts.retry_attempts = 2;
    opts.request_timeout = Duration::from_secs(1);
    let err = EtcdStore::connect(opts).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

/// Applies version `v` of the task "mixed".
async fn put_mixed(s: &EtcdStore, v: u64) -> ApplyOutcome {
    s.apply(Change::put(task("mixed", Some(v)))).await.unwrap()
}

#[tokio::test]
async fn records_written_plain_or_compressed_read_alike() {
    let opts = options().await;
    let plain = EtcdStore::connect(EtcdOptions {
        compress_records: false,
        ..opts.clone()
    })
    .await
    .unwrap();
    let compressed = EtcdStore::connect(opts).await.unwrap();
    let arn = task_arn("mixed");
    let mut w = plain.watch(Revision::new(plain.epoch(), 1)).await.unwrap();

    assert!(put_mixed(&plain, 1).await.is_applied());
    let plain_raw = raw_value(&plain, &arn).await;
    assert_eq!(plain_raw.first(), Some(&b'{'));
    let got = compressed.get(&arn).await.unwrap().unwrap();
    assert_eq!(version_of(&got.entity), Some(1));

    // The compressing store sees the plain record's version (its guard
    // holds) and writes the next one compressed.
    assert!(matches!(
        put_mixed(&compressed, 1).await,
        ApplyOutcome::Stale { .. }
    ));
    assert!(put_mixed(&compressed, 2).await.is_applied());
    let raw = raw_value(&plain, &arn).await;
    assert_eq!(raw[..2], [0xFF, b's']);
    assert!(
        raw.len() < plain_raw.len(),
        "{} >= {}",
        raw.len(),
        plain_raw.len()
    );

    // Both read it back: get, list and watch.
    for s in [&plain, &compressed] {
        let got = s.get(&arn).await.unwrap().unwrap();
        assert_eq!(version_of(&got.entity), Some(2));
        let listed = s.list(EntityKind::Task, &Filter::default()).await.unwrap();
        assert_eq!(listed.items.len(), 1);
        assert_eq!(version_of(&listed.items[0].entity), Some(2));
    }
    let versions: Vec<Option<u64>> = [next_event(&mut w).await, next_event(&mut w).await]
        .iter()
        .map(|e| match e {
            WatchEvent::Put(v) => version_of(&v.entity),
            WatchEvent::Delete { .. } => None,
        })
        .collect();
    assert_eq!(versions, [Some(1), Some(2)]);

    // And a delete over the compressed record leaves a readable tombstone.
    assert!(
        plain
            .apply(Change::delete(arn.clone(), Some(3)))
            .await
            .unwrap()
            .is_applied()
    );
    assert!(compressed.get(&arn).await.unwrap().is_none());
    assert!(matches!(
        put_mixed(&compressed, 3).await,
        ApplyOutcome::Stale { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_are_merged_into_shared_transactions() {
    let s = EtcdStore::connect(EtcdOptions {
        write_concurrency: 1,
        ..options().await
    })
    .await
    .unwrap();
    // Warm the connection so the first transaction is not the slow one.
    s.apply(Change::put(task("warm", Some(1)))).await.unwrap();
    const CALLERS: usize = 60;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut calls = Vec::new();
    for i in 0..CALLERS {
        let s = s.clone();
        let barrier = barrier.clone();
        calls.push(tokio::spawn(async move {
            barrier.wait().await;
            // Two versions of the caller's task, and one of a task shared
            // by every caller (at the caller's own version).
            s.apply_batch(vec![
                Change::put(task(&format!("own-{i}"), Some(1))),
                Change::put(task(&format!("own-{i}"), Some(2))),
                Change::put(task("shared", Some(i as u64 + 1))),
            ])
            .await
            .unwrap()
        }));
    }
    let mut revisions = std::collections::BTreeSet::new();
    let mut shared_applied = 0;
    for call in calls {
        let out = call.await.unwrap();
        assert_eq!(out.len(), 3);
        for o in &out[..2] {
            match o {
                ApplyOutcome::Applied { revision } => {
                    revisions.insert(revision.seq);
                }
                other => panic!("own task not applied: {other:?}"),
            }
        }
        shared_applied += usize::from(out[2].is_applied());
    }
    // Every caller's own task landed at its last version; the shared task
    // at the highest version any caller sent, whatever the arrival order.
    for i in 0..CALLERS {
        let got = s
            .get(&task_arn(&format!("own-{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version_of(&got.entity), Some(2));
    }
    let shared = s.get(&task_arn("shared")).await.unwrap().unwrap();
    assert_eq!(version_of(&shared.entity), Some(CALLERS as u64));
    assert!(shared_applied >= 1);
    // One transaction in flight at a time: callers that arrived while it
    // was out were written together, so far fewer revisions than callers.
    assert!(
        revisions.len() < CALLERS / 2,
        "{} revisions for {CALLERS} callers",
        revisions.len()
    );
}

#[tokio::test]
async fn an_invalid_change_fails_its_own_caller_only() {
    let s = store().await;
    let cluster = Arn::parse(CLUSTER).unwrap();
    let (bad, good) = tokio::join!(
        s.apply(Change::delete(cluster, Some(1))),
        s.apply(Change::put(task("fine", Some(1))))
    );
    assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
    assert!(good.unwrap().is_applied());
}

#[test]
fn a_store_used_after_its_runtime_is_gone_errors_instead_of_hanging() {
    let first = tokio::runtime::Runtime::new().unwrap();
    let s = first.block_on(store());
    drop(first);
    let second = tokio::runtime::Runtime::new().unwrap();
    let err = second
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(30),
                s.apply(Change::put(task("orphan", Some(1)))),
            )
            .await
        })
        .expect("an answer, not a hang")
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}

#[tokio::test]
async fn transactions_stay_within_the_byte_budget() {
    let batch = || -> Vec<Change> {
        (0..20)
            .map(|i| Change::put(task(&format!("sized-{i}"), Some(1))))
            .collect()
    };
    let revisions = |out: Vec<ApplyOutcome>| -> std::collections::BTreeSet<u64> {
        out.iter()
            .map(|o| match o {
                ApplyOutcome::Applied { revision } => revision.seq,
                other => panic!("not applied: {other:?}"),
            })
            .collect()
    };
    // A generous budget: one batch, one transaction, one revision.
    let roomy = store().await;
    assert_eq!(
        revisions(roomy.apply_batch(batch()).await.unwrap()).len(),
        1
    );
    // A budget smaller than one record: every key in its own transaction,
    // and still every change applied.
    let tight = EtcdStore::connect(EtcdOptions {
        max_txn_bytes: 1,
        ..options().await
    })
    .await
    .unwrap();
    assert_eq!(
        revisions(tight.apply_batch(batch()).await.unwrap()).len(),
        20
    );
    let listed = tight
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_key_fails_its_own_changes_only() {
    let s = store().await;
    let bad = task_arn("corrupt");
    let key = format!("{}/e/task/{bad}", s.options().prefix);
    s.client()
        .kv_client()
        .put(key, &b"\xFFsnot snappy"[..], None)
        .await
        .unwrap();
    let (mine, other) = tokio::join!(
        s.apply_batch(vec![
            Change::put(task("corrupt", Some(2))),
            Change::put(task("next-to-it", Some(1))),
        ]),
        s.apply(Change::put(task("bystander", Some(1))))
    );
    assert!(matches!(mine, Err(StoreError::Corrupt { .. })), "{mine:?}");
    assert!(other.unwrap().is_applied());
    // The other change of the failing batch still landed.
    let next = s.get(&task_arn("next-to-it")).await.unwrap().unwrap();
    assert_eq!(version_of(&next.entity), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_beyond_the_writers_queue_bound_wait_and_all_land() {
    // 20,000 changes at once: more than the writer holds (16,384), so some
    // callers wait to hand theirs over; none is lost or stuck.
    let s = store().await;
    let calls: Vec<_> = (0..1000)
        .map(|c| {
            let s = s.clone();
            tokio::spawn(async move {
                let batch = (0..20)
                    .map(|k| Change::put(task(&format!("flood-{c}-{k}"), Some(1))))
                    .collect();
                s.apply_batch(batch).await.unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for call in calls {
        let out = tokio::time::timeout(Duration::from_secs(300), call)
            .await
            .expect("every caller answered")
            .unwrap();
        applied += out.iter().filter(|o| o.is_applied()).count();
    }
    assert_eq!(applied, 20_000);
    let listed = s.list(EntityKind::Task, &Filter::default()).await.unwrap();
    assert_eq!(listed.items.len(), 20_000);
}
