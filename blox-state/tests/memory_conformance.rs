//! The conformance suite against [`MemoryStore`], plus the checks that need
//! the memory store's own knobs (a small change log).
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blox_state::store::memory::{MemoryOptions, MemoryStore};
use blox_state::testing::conformance::{self, RandomSize};
use blox_state::{Change, StateStore, StoreError};

async fn make_store() -> MemoryStore {
    MemoryStore::new()
}

blox_state::testing::conformance_tests!(make_store);

/// The macro's other form (attributes for every test, a smaller randomized
/// run), as a backend that needs a server would use it.
mod small_random_run {
    use super::RandomSize;
    blox_state::testing::conformance_tests!(
        #[cfg_attr(miri, ignore = "no tokio under miri")]
        super::make_store,
        random_size = RandomSize::small(),
    );
}

#[tokio::test]
async fn watch_from_before_a_small_log_is_compacted() {
    let store = MemoryStore::with_options(MemoryOptions {
        log_capacity: 8,
        ..Default::default()
    });
    let writer = store.clone();
    conformance::watch_from_compacted_revision_is_an_error(&store, || async move {
        conformance::write_filler(&writer, 20).await;
    })
    .await;
}

#[tokio::test]
async fn a_large_randomized_delivery_converges() {
    let store = MemoryStore::new();
    conformance::randomized_delivery_converges_with(
        &store,
        RandomSize {
            entities: 8_000,
            max_versions: 8,
            seeds: 3,
            max_batch: 64,
        },
    )
    .await;
}

#[tokio::test]
async fn run_all_passes_on_fresh_memory_stores() {
    conformance::run_all(make_store).await;
}

#[tokio::test]
async fn a_watcher_that_falls_behind_the_log_ends_with_compacted_and_never_blocks_writers() {
    use futures::StreamExt;
    let store = MemoryStore::with_options(MemoryOptions {
        log_capacity: 16,
        ..Default::default()
    });
    let from = store.current_revision().await.unwrap();
    let mut slow = store.watch(from).await.unwrap();
    // The watcher reads one event, then stalls while writers go far ahead.
    conformance::write_filler(&store, 1).await;
    let first = conformance::next_item(&mut slow).await.unwrap();
    assert_eq!(first.revision().seq, from.seq + 1);
    conformance::write_filler(&store, 1_000).await;
    let mut items = Vec::new();
    while let Some(item) = slow.next().await {
        items.push(item);
    }
    let (last, delivered) = items.split_last().expect("at least the error item");
    assert!(
        matches!(last, Err(StoreError::Compacted { .. })),
        "expected Compacted, got {last:?}"
    );
    assert!(delivered.iter().all(Result::is_ok));
}

#[tokio::test]
async fn a_revision_of_an_earlier_store_is_an_epoch_mismatch() {
    let earlier = MemoryStore::with_options(MemoryOptions {
        epoch: Some(7),
        ..Default::default()
    });
    conformance::write_filler(&earlier, 3).await;
    let kept = earlier.current_revision().await.unwrap();
    let restarted = MemoryStore::new();
    conformance::write_filler(&restarted, 5).await;
    assert_ne!(restarted.epoch(), 0);
    assert_ne!(restarted.epoch(), 7);
    assert!(matches!(
        restarted.watch(kept).await.err(),
        Some(StoreError::EpochMismatch { current, .. }) if current == restarted.epoch()
    ));
    let guarded = Change::put(conformance::task("web", "t", Some(1))).unchanged_since(kept);
    assert!(matches!(
        restarted.apply(guarded).await,
        Err(StoreError::EpochMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_on_several_threads_and_a_watcher_agree_on_one_history() {
    let store = MemoryStore::new();
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch(from).await.unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut applied = Vec::new();
                for v in 1..=500u64 {
                    let t = conformance::task("mt", &format!("w{w}-{}", v % 50), Some(v));
                    let outcome = store.apply(Change::put(t)).await.unwrap();
                    if let blox_state::ApplyOutcome::Applied { revision } = outcome {
                        applied.push(revision.seq);
                    }
                }
                applied
            })
        })
        .collect();
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    written.sort_unstable();
    assert_eq!(
        written,
        (from.seq + 1..=from.seq + 2_000).collect::<Vec<_>>()
    );
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        let event = conformance::next_item(&mut watch).await.unwrap();
        seen.push(event.revision().seq);
    }
    assert_eq!(seen, written);
    let listed = store
        .list(blox_core::EntityKind::Task, &Default::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 200);
    assert!(listed.items.iter().all(|v| v.entity.version() > Some(450)));
}
