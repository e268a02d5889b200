//! Fault tolerance of `EtcdStore`: a 3-member etcd cluster on loopback, a
//! stream of applies through a client configured with all three endpoints,
//! and the leader killed mid-stream. Every apply must succeed (the store
//! retries past the dead member), every entity must be stored at the end,
//! and a watch running across the failure must see every entity.
//!
//! One test function: it starts three etcd members and must not run
//! alongside other heavy etcd tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "etcd", feature = "testing"))]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use blox_core::model::{Arn, EntityKind, Task};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{Change, Filter, StateStore, WatchEvent};
use blox_state::testing::etcd_server::EtcdCluster;
use futures::StreamExt;

const ENTITIES: usize = 600;
const BATCH: usize = 10;
const WRITERS: usize = 4;

fn task(i: usize, version: u64) -> Task {
    let arn = Arn::parse(&format!(
        "arn:aws:ecs:us-east-1:123456789012:task/fault/t{i:05}"
    ))
    .unwrap();
    let mut t = Task::new(
        arn,
        Arn::parse("arn:aws:ecs:us-east-1:123456789012:cluster/fault").unwrap(),
        "td:1",
    );
    t.version = Some(version);
    t
}

/// The index of the member that is the raft leader.
async fn leader(cluster: &EtcdCluster) -> usize {
    for _ in 0..100 {
        for (i, endpoint) in cluster.endpoints().iter().enumerate() {
            let Ok(mut c) = etcd_client::Client::connect([endpoint], None).await else {
                continue;
            };
            if let Ok(status) = c.status().await
                && let Some(h) = status.header()
                && h.member_id() == status.leader()
            {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_survive_the_death_of_the_leader() {
    let mut cluster = EtcdCluster::start(3).await.unwrap();
    let mut options = EtcdOptions::new(cluster.endpoints());
    options.request_timeout = Duration::from_secs(3);
    options.retry_attempts = 20;
    let store = EtcdStore::connect(options).await.unwrap();

    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch(start).await.unwrap();
    let watcher = tokio::spawn(async move {
        let mut seen = HashSet::new();
        while seen.len() < ENTITIES {
            match tokio::time::timeout(Duration::from_secs(60), watch.next()).await {
                Ok(Some(Ok(WatchEvent::Put(v)))) => {
                    seen.insert(v.entity.arn().clone());
                }
                other => panic!("watch ended early: {other:?} after {} entities", seen.len()),
            }
        }
        seen.len()
    });

    // Writers take batches off a shared counter: each entity is put at
    // version 1 then 2 (the second in a later batch).
    let done = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        let done = done.clone();
        let next = next.clone();
        writers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            loop {
                let first = next.fetch_add(BATCH, Ordering::SeqCst);
                if first >= ENTITIES {
                    return errors;
                }
                for version in [1, 2] {
                    let batch: Vec<Change> = (first..(first + BATCH).min(ENTITIES))
                        .map(|i| Change::put(task(i, version)))
                        .collect();
                    match store.apply_batch(batch).await {
                        Ok(outcomes) => assert_eq!(outcomes.len(), BATCH),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                done.fetch_add(BATCH, Ordering::SeqCst);
            }
        }));
    }

    // Kill the leader once about a third of the stream is written.
    while done.load(Ordering::SeqCst) < ENTITIES / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let victim = leader(&cluster).await;
    cluster.kill(victim).unwrap();
    let killed_at = done.load(Ordering::SeqCst);
    assert!(
        killed_at < ENTITIES,
        "the stream ended before the kill; make it longer"
    );

    for w in writers {
        let errors = w.await.unwrap();
        assert!(errors.is_empty(), "applies failed: {errors:?}");
    }
    let listed = store
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), ENTITIES);
    assert!(listed.items.iter().all(|v| v.entity.version() == Some(2)));
    assert_eq!(watcher.await.unwrap(), ENTITIES);

    // The member comes back and catches up.
    cluster.restart(victim).await.unwrap();
    let only = EtcdStore::connect(EtcdOptions::new([cluster.endpoint(victim).unwrap()]))
        .await
        .unwrap();
    let mut caught_up = false;
    for _ in 0..100 {
        let n = only
            .list(EntityKind::Task, &Filter::default())
            .await
            .map(|l| l.items.len());
        if n.ok() == Some(ENTITIES) {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "the restarted member did not catch up");
}
