use blox_core::model::{Arn, ContainerInstance, Entity, InstanceStatus, Task, TaskStatus};

use super::*;

fn rev(seq: u64) -> Revision {
    Revision::new(7, seq)
}

fn arn(s: &str) -> Arn {
    Arn::parse(s).unwrap()
}

fn cluster(account: &str, name: &str) -> Arn {
    arn(&format!("arn:aws:ecs:us-east-1:{account}:cluster/{name}"))
}

fn instance(account: &str, c: &str, id: &str, status: InstanceStatus) -> ContainerInstance {
    let mut i = ContainerInstance::new(
        arn(&format!(
            "arn:aws:ecs:us-east-1:{account}:container-instance/{c}/{id}"
        )),
        cluster(account, c),
    );
    i.status = status;
    i
}

fn task(
    account: &str,
    c: &str,
    id: &str,
    status: TaskStatus,
    on: Option<&ContainerInstance>,
    by: Option<&str>,
) -> Task {
    let mut t = Task::new(
        arn(&format!("arn:aws:ecs:us-east-1:{account}:task/{c}/{id}")),
        cluster(account, c),
        "arn:aws:ecs:us-east-1:1:task-definition/web:1",
    );
    t.last_status = status;
    t.container_instance_arn = on.map(|i| i.container_instance_arn.clone());
    t.started_by = by.map(str::to_owned);
    t
}

fn put(w: &mut CacheWriter, e: impl Into<Entity>, seq: u64) -> bool {
    w.apply(&WatchEvent::Put(Versioned {
        entity: e.into(),
        revision: rev(seq),
    }))
}

fn ids<T: serde::de::DeserializeOwned>(
    entries: &[Entry<T>],
    arn: impl Fn(&T) -> &Arn,
) -> Vec<String> {
    entries
        .iter()
        .map(|e| arn(&e.value()).id().to_owned())
        .collect()
}

#[test]
fn get_returns_the_shared_entity_not_a_copy() {
    let (reader, mut w) = cache();
    let i = instance("1", "prod", "i1", InstanceStatus::Active);
    put(&mut w, i.clone(), 1);
    let a = reader
        .get_instance(i.container_instance_arn.as_str())
        .unwrap();
    let b = reader
        .get_instance(i.container_instance_arn.as_str())
        .unwrap();
    assert!(Arc::ptr_eq(&a.value(), &b.value()));
    assert_eq!(a.revision, rev(1));
}

#[test]
fn filters_by_cluster_name_or_arn_status_instance_and_started_by() {
    let (reader, mut w) = cache();
    let i1 = instance("1", "prod", "i1", InstanceStatus::Active);
    let i2 = instance("1", "prod", "i2", InstanceStatus::Draining);
    let i3 = instance("1", "dev", "i3", InstanceStatus::Active);
    for (n, i) in [&i1, &i2, &i3].into_iter().enumerate() {
        put(&mut w, i.clone(), n as u64 + 1);
    }
    put(
        &mut w,
        task(
            "1",
            "prod",
            "t1",
            TaskStatus::Running,
            Some(&i1),
            Some("dep-a"),
        ),
        10,
    );
    put(
        &mut w,
        task(
            "1",
            "prod",
            "t2",
            TaskStatus::Pending,
            Some(&i1),
            Some("dep-b"),
        ),
        11,
    );
    put(
        &mut w,
        task(
            "1",
            "prod",
            "t3",
            TaskStatus::Running,
            Some(&i2),
            Some("dep-a"),
        ),
        12,
    );
    put(
        &mut w,
        task("1", "dev", "t4", TaskStatus::Running, Some(&i3), None),
        13,
    );

    let f = |cluster: Option<&str>, status: Option<&str>| Filter {
        cluster: cluster.map(Into::into),
        status: status.map(Into::into),
        ..Filter::default()
    };
    fn iarn(e: &ContainerInstance) -> &Arn {
        &e.container_instance_arn
    }
    fn tarn(e: &Task) -> &Arn {
        &e.task_arn
    }
    assert_eq!(
        ids(&reader.list_instances(&f(Some("prod"), None)), iarn),
        ["i1", "i2"]
    );
    assert_eq!(
        ids(
            &reader.list_instances(&f(Some("prod"), Some("draining"))),
            iarn
        ),
        ["i2"]
    );
    assert_eq!(
        ids(&reader.list_instances(&f(None, Some("ACTIVE"))), iarn),
        ["i3", "i1"],
        "ARN order: dev/ before prod/"
    );
    let by_arn = f(Some("arn:aws:ecs:us-east-1:1:cluster/dev"), None);
    assert_eq!(ids(&reader.list_instances(&by_arn), iarn), ["i3"]);

    assert_eq!(
        ids(&reader.list_tasks(&f(Some("prod"), Some("RUNNING"))), tarn),
        ["t1", "t3"]
    );
    assert_eq!(
        ids(&reader.list_tasks(&f(None, Some("running"))), tarn),
        ["t4", "t1", "t3"]
    );
    let by_sb = Filter {
        started_by: Some("dep-a".into()),
        status: Some("RUNNING".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&reader.list_tasks(&by_sb), tarn), ["t1", "t3"]);
    let on_i1 = Filter {
        container_instance: Some(i1.container_instance_arn.clone()),
        cluster: Some("prod".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&reader.list_tasks(&on_i1), tarn), ["t1", "t2"]);
    assert!(reader.list_tasks(&f(Some("nope"), None)).is_empty());
}

#[test]
fn indexes_follow_status_changes() {
    let (reader, mut w) = cache();
    let i1 = instance("1", "prod", "i1", InstanceStatus::Active);
    put(
        &mut w,
        task("1", "prod", "t1", TaskStatus::Pending, Some(&i1), Some("d")),
        1,
    );
    put(
        &mut w,
        task("1", "prod", "t1", TaskStatus::Running, Some(&i1), Some("d")),
        2,
    );
    let pending = Filter {
        status: Some("PENDING".into()),
        cluster: Some("prod".into()),
        ..Filter::default()
    };
    let running = Filter {
        status: Some("RUNNING".into()),
        ..pending.clone()
    };
    assert!(reader.list_tasks(&pending).is_empty());
    assert_eq!(reader.list_tasks(&running).len(), 1);
}

#[test]
fn a_replayed_older_write_does_not_replace_a_newer_one() {
    let (reader, mut w) = cache();
    let t_new = task("1", "prod", "t1", TaskStatus::Running, None, None);
    let t_old = task("1", "prod", "t1", TaskStatus::Pending, None, None);
    assert!(put(&mut w, t_new, 5));
    assert!(!put(&mut w, t_old, 3));
    let got = reader
        .get_task("arn:aws:ecs:us-east-1:1:task/prod/t1")
        .unwrap();
    assert_eq!(got.value().last_status, TaskStatus::Running);
    assert_eq!(reader.revision(), rev(5));
}

#[test]
fn deletes_remove_from_every_index_but_not_a_later_write() {
    let (reader, mut w) = cache();
    let i1 = instance("1", "prod", "i1", InstanceStatus::Active);
    let t = task("1", "prod", "t1", TaskStatus::Running, Some(&i1), Some("d"));
    put(&mut w, t.clone(), 5);
    // A delete older than the cached write is ignored.
    assert!(!w.apply(&WatchEvent::Delete {
        arn: t.task_arn.clone(),
        last: None,
        revision: rev(4)
    }));
    assert!(w.apply(&WatchEvent::Delete {
        arn: t.task_arn.clone(),
        last: None,
        revision: rev(6)
    }));
    assert!(reader.get_task(t.task_arn.as_str()).is_none());
    for f in [
        Filter::default(),
        Filter {
            started_by: Some("d".into()),
            ..Filter::default()
        },
        Filter {
            container_instance: Some(i1.container_instance_arn.clone()),
            ..Filter::default()
        },
        Filter {
            cluster: Some("prod".into()),
            status: Some("RUNNING".into()),
            ..Filter::default()
        },
    ] {
        assert!(reader.list_tasks(&f).is_empty(), "{f:?}");
    }
}

#[test]
fn same_names_in_two_accounts_are_two_entities_and_both_match_a_name_filter() {
    let (reader, mut w) = cache();
    put(
        &mut w,
        task("111", "prod", "t1", TaskStatus::Running, None, None),
        1,
    );
    put(
        &mut w,
        task("222", "prod", "t1", TaskStatus::Running, None, None),
        2,
    );
    assert_eq!(reader.len(), (0, 2));
    let by_name = Filter {
        cluster: Some("prod".into()),
        ..Filter::default()
    };
    assert_eq!(reader.list_tasks(&by_name).len(), 2);
    let by_arn = Filter {
        cluster: Some("arn:aws:ecs:us-east-1:222:cluster/prod".into()),
        ..Filter::default()
    };
    assert_eq!(reader.list_tasks(&by_arn).len(), 1);
}

#[test]
fn pages_walk_every_match_exactly_once_in_arn_order() {
    let (reader, mut w) = cache();
    for n in 0..25u64 {
        put(
            &mut w,
            task(
                "1",
                "prod",
                &format!("t{n:02}"),
                TaskStatus::Running,
                None,
                None,
            ),
            n + 1,
        );
    }
    let f = Filter {
        cluster: Some("prod".into()),
        ..Filter::default()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = reader.list_tasks_page(&f, after.as_ref(), 10);
        assert!(page.items.len() <= 10);
        seen.extend(
            page.items
                .iter()
                .map(|e| e.value().task_arn.id().to_owned()),
        );
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|n| format!("t{n:02}")).collect();
    assert_eq!(seen, expected);
    // An exact multiple of the page size ends without an empty extra page.
    let page = reader.list_tasks_page(&f, None, 25);
    assert_eq!(page.items.len(), 25);
    assert!(page.next_after.is_none());
}

#[tokio::test]
async fn replace_swaps_the_view_atomically_and_marks_ready() {
    let (reader, mut w) = cache();
    assert!(!reader.is_ready());
    put(
        &mut w,
        task("1", "prod", "gone", TaskStatus::Running, None, None),
        1,
    );
    let kept = task("1", "prod", "kept", TaskStatus::Running, None, None);
    w.replace(
        vec![Versioned {
            entity: kept.clone().into(),
            revision: rev(9),
        }],
        rev(10),
    );
    reader.wait_until_ready().await;
    assert!(reader.is_ready());
    assert!(
        reader
            .get_task("arn:aws:ecs:us-east-1:1:task/prod/gone")
            .is_none()
    );
    assert!(reader.get_task(kept.task_arn.as_str()).is_some());
    assert_eq!(reader.revision(), rev(10));
    assert_eq!(*reader.changes().borrow(), rev(10));
}

mod following_a_store {
    use std::time::Duration;

    use super::*;
    use crate::store::memory::{MemoryOptions, MemoryStore};
    use crate::store::{Change, StateStore};
    use crate::testing::FaultyStore;

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..2000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    #[tokio::test]
    async fn follower_loads_the_store_then_tracks_puts_and_deletes() {
        let store = Arc::new(MemoryStore::new());
        let t1 = task("1", "prod", "t1", TaskStatus::Running, None, None);
        store.apply(Change::put(t1.clone())).await.unwrap();
        let (reader, handle) = spawn_follower(store.clone());
        reader.wait_until_ready().await;
        assert!(reader.get_task(t1.task_arn.as_str()).is_some());

        let mut t2 = task("1", "prod", "t2", TaskStatus::Pending, None, None);
        t2.version = Some(1);
        store.apply(Change::put(t2.clone())).await.unwrap();
        eventually("t2 cached", || {
            reader.get_task(t2.task_arn.as_str()).is_some()
        })
        .await;

        store
            .apply(Change::delete(t1.task_arn.clone(), None))
            .await
            .unwrap();
        eventually("t1 removed", || {
            reader.get_task(t1.task_arn.as_str()).is_none()
        })
        .await;
        assert_eq!(reader.revision(), store.current_revision().await.unwrap());
        handle.abort();
    }

    #[tokio::test]
    async fn follower_relists_when_the_store_says_its_revision_was_compacted() {
        let store = Arc::new(FaultyStore::new(MemoryStore::with_options(MemoryOptions {
            log_capacity: 4,
            ..MemoryOptions::default()
        })));
        store.compact_next_watch();
        let (reader, handle) = spawn_follower(store.clone());
        reader.wait_until_ready().await;
        for n in 0..20 {
            store
                .apply(Change::put(task(
                    "1",
                    "prod",
                    &format!("t{n:02}"),
                    TaskStatus::Running,
                    None,
                    None,
                )))
                .await
                .unwrap();
        }
        eventually("all 20 tasks", || reader.len() == (0, 20)).await;
        assert!(
            store.list_calls() >= 2,
            "listed again after the compacted watch"
        );
        handle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn follower_waits_out_an_outage_and_catches_up() {
        let store = Arc::new(FaultyStore::new(MemoryStore::new()));
        store.set_down(true);
        let (reader, handle) = spawn_follower(store.clone());
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !reader.is_ready(),
            "not ready before the first complete list"
        );
        store.set_down(false);
        store
            .apply(Change::put(task(
                "1",
                "prod",
                "t1",
                TaskStatus::Running,
                None,
                None,
            )))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), reader.wait_until_ready())
            .await
            .unwrap();
        eventually("t1 cached", || reader.len() == (0, 1)).await;
        handle.abort();
    }

    #[tokio::test]
    async fn changes_receiver_ticks_on_every_applied_change() {
        let store = Arc::new(MemoryStore::new());
        let (reader, handle) = spawn_follower(store.clone());
        reader.wait_until_ready().await;
        let mut changes = reader.changes();
        changes.borrow_and_update();
        store
            .apply(Change::put(instance(
                "1",
                "prod",
                "i1",
                InstanceStatus::Active,
            )))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*changes.borrow(), store.current_revision().await.unwrap());
        handle.abort();
    }
}

mod listing_at_one_revision {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use blox_core::model::EntityKind;
    use futures::StreamExt;

    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{
        ApplyOutcome, Change, KvEntry, KvTxn, KvTxnOutcome, KvWatchStream, Listing, Result,
        RevisionStream, StateStore,
    };

    /// A memory store where a task is written right after the first list of
    /// instances returns (between a list of instances and a list of tasks),
    /// and whose watch never reports anything (the view stays as listed).
    struct WriteBetweenLists {
        inner: MemoryStore,
        written: AtomicBool,
    }

    #[async_trait]
    impl StateStore for WriteBetweenLists {
        async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>> {
            self.inner.apply_each(changes).await
        }
        async fn get(&self, arn: &Arn) -> Result<Option<Versioned>> {
            self.inner.get(arn).await
        }
        async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>> {
            let listing = self.inner.list(kind, filter).await?;
            if kind == EntityKind::Instance && !self.written.swap(true, Ordering::SeqCst) {
                let late = task("1", "prod", "late", TaskStatus::Running, None, None);
                self.inner.apply(Change::put(late)).await?;
            }
            Ok(listing)
        }
        async fn list_all(&self) -> Result<Listing<Versioned>> {
            self.inner.list_all().await
        }
        async fn watch_revisions(&self, _after: Revision) -> Result<RevisionStream> {
            Ok(futures::stream::pending().boxed())
        }
        async fn current_revision(&self) -> Result<Revision> {
            self.inner.current_revision().await
        }
        async fn expire(&self, expiry: crate::store::Expiry) -> Result<crate::store::ExpiryReport> {
            self.inner.expire(expiry).await
        }
        async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
            self.inner.kv_get(key).await
        }
        async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>> {
            self.inner.kv_list(prefix).await
        }
        async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
            self.inner.kv_txn(txn).await
        }
        async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream> {
            self.inner.kv_watch(prefix, after).await
        }
    }

    #[tokio::test]
    async fn a_loaded_cache_holds_nothing_newer_than_its_revision() {
        let inner = MemoryStore::new();
        inner
            .apply(Change::put(instance(
                "1",
                "prod",
                "i1",
                InstanceStatus::Active,
            )))
            .await
            .unwrap();
        let store = Arc::new(WriteBetweenLists {
            inner,
            written: AtomicBool::new(false),
        });
        let (reader, handle) = spawn_follower(store);
        reader.wait_until_ready().await;
        let revision = reader.revision();
        reader.with_view(|v| {
            for t in v.tasks() {
                assert!(
                    t.revision.seq <= revision.seq,
                    "the cache says {revision} but holds {} written at {}",
                    t.value().task_arn,
                    t.revision
                );
            }
        });
        handle.abort();
    }
}
