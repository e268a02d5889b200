//! The stream routes through real HTTP: puts and deletes as lines, resuming
//! from an `entityVersion` (from the cache's history or the store's),
//! cluster filters, relist errors, disconnects, shutdown, and one store
//! watch whatever the number of streams.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use blox_core::model::{Entity, TaskStatus};
use blox_state::Change;
use std::sync::atomic::Ordering;

use blox_state::cache::{CacheOptions, FeedOptions};
use blox_state::store::memory::MemoryOptions;
use http_support::{PREFIX, Server, instance, task};

#[tokio::test]
async fn a_task_stream_carries_puts_and_deletes_with_the_last_entity() {
    let s = Server::start().await;
    let mut stream = s.stream("/v1/stream/tasks").await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.header("content-type"),
        Some("application/octet-stream")
    );
    s.wait_for_readers(|n| n == 1).await;

    let put_rev = s.put_task("prod", "t-1", TaskStatus::Running).await;
    // An instance change is not on the task stream.
    s.put(vec![Entity::from(instance("prod", "i-1", 1))]).await;
    let arn = blox_core::model::Arn::parse(&format!("{PREFIX}:task/prod/t-1")).unwrap();
    let delete_rev = s.apply(vec![Change::delete(arn.clone(), Some(1))]).await;

    let put = stream.next_line().await.unwrap();
    assert_eq!(put["metadata"]["entityVersion"], put_rev.to_string());
    assert!(put["metadata"].get("deleted").is_none());
    assert_eq!(put["entity"]["taskARN"], arn.as_str());
    assert_eq!(put["entity"]["lastStatus"], "RUNNING");

    let delete = stream.next_line().await.unwrap();
    assert_eq!(delete["metadata"]["entityVersion"], delete_rev.to_string());
    assert_eq!(delete["metadata"]["deleted"], true);
    assert_eq!(delete["entity"]["taskARN"], arn.as_str());
    assert_eq!(
        delete["entity"]["lastStatus"], "RUNNING",
        "the last known state"
    );
}

#[tokio::test]
async fn a_stream_resumes_right_after_an_entity_version() {
    let s = Server::start().await;
    let first = s.put_task("prod", "t-1", TaskStatus::Pending).await;
    let mut running = task("prod", "t-1", TaskStatus::Running, None);
    running.version = Some(2);
    let second = s.put(vec![Entity::from(running)]).await;
    let third = s.put_task("prod", "t-2", TaskStatus::Pending).await;

    let mut stream = s
        .stream(&format!("/v1/stream/tasks?entityVersion={first}"))
        .await;
    assert_eq!(stream.status, 200);
    let a = stream.next_line().await.unwrap();
    assert_eq!(a["metadata"]["entityVersion"], second.to_string());
    assert_eq!(a["entity"]["lastStatus"], "RUNNING");
    let b = stream.next_line().await.unwrap();
    assert_eq!(b["metadata"]["entityVersion"], third.to_string());
    assert!(b["entity"]["taskARN"].as_str().unwrap().ends_with("/t-2"));
}

#[tokio::test]
async fn listing_then_streaming_from_the_list_revision_misses_nothing() {
    let s = Server::start().await;
    s.put(vec![Entity::from(instance("prod", "i-1", 1))]).await;
    let list = s.get("/v1/instances").await.json();
    let rev = list["metadata"]["entityVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Written after the list, before the stream opens.
    let later = s.put(vec![Entity::from(instance("prod", "i-2", 1))]).await;
    let mut stream = s
        .stream(&format!("/v1/stream/instances?entityVersion={rev}"))
        .await;
    let line = stream.next_line().await.unwrap();
    assert_eq!(line["metadata"]["entityVersion"], later.to_string());
    assert!(
        line["entity"]["containerInstanceARN"]
            .as_str()
            .unwrap()
            .ends_with("/i-2")
    );
}

#[tokio::test]
async fn a_cluster_filter_keeps_only_that_clusters_changes() {
    let s = Server::start().await;
    let start = s.cache.revision();
    s.put(vec![
        Entity::from(instance("staging", "i-1", 1)),
        Entity::from(instance("prod", "i-2", 1)),
        Entity::from(instance("staging", "i-3", 1)),
    ])
    .await;
    let prod_arn = format!("{PREFIX}:cluster/prod");
    let mut streams = Vec::new();
    for cluster in ["prod", prod_arn.as_str()] {
        let stream = s
            .stream(&format!(
                "/v1/stream/instances?cluster={}&entityVersion={start}",
                http_support::encode(cluster)
            ))
            .await;
        assert_eq!(stream.status, 200);
        streams.push(stream);
    }
    let later = s.put(vec![Entity::from(instance("prod", "i-4", 1))]).await;
    for stream in &mut streams {
        let line = stream.next_line().await.unwrap();
        assert!(
            line["entity"]["containerInstanceARN"]
                .as_str()
                .unwrap()
                .ends_with("/i-2")
        );
        // The prod change comes next: staging's i-3 was skipped.
        let next = stream.next_line().await.unwrap();
        assert_eq!(next["metadata"]["entityVersion"], later.to_string());
        assert!(
            next["entity"]["containerInstanceARN"]
                .as_str()
                .unwrap()
                .ends_with("/i-4")
        );
    }
}

#[tokio::test]
async fn a_stream_without_entity_version_starts_from_now() {
    let s = Server::start().await;
    s.put_task("prod", "old", TaskStatus::Running).await;
    let mut stream = s.stream("/v1/stream/tasks").await;
    s.wait_for_readers(|n| n == 1).await;
    s.put_task("prod", "new", TaskStatus::Running).await;
    let line = stream.next_line().await.unwrap();
    assert!(
        line["entity"]["taskARN"]
            .as_str()
            .unwrap()
            .ends_with("/new")
    );
}

#[tokio::test]
async fn a_revision_from_another_epoch_or_the_future_is_410_telling_to_relist() {
    let s = Server::start_with(MemoryOptions {
        epoch: Some(42),
        ..Default::default()
    })
    .await;
    for rev in ["7:1", "42:999"] {
        let r = s
            .get(&format!("/v1/stream/tasks?entityVersion={rev}"))
            .await;
        assert!(r.error_message(410).contains("relist"), "{rev}");
    }
}

#[tokio::test]
async fn a_revision_older_than_both_histories_is_410() {
    let s = Server::start_with_cache(
        MemoryOptions {
            log_capacity: 4,
            epoch: Some(5),
            ..MemoryOptions::default()
        },
        small_history(),
    )
    .await;
    for n in 0..10 {
        s.put_task("prod", &format!("t-{n}"), TaskStatus::Running)
            .await;
    }
    let r = s.get("/v1/stream/tasks?entityVersion=5:1").await;
    let m = r.error_message(410);
    assert!(m.starts_with("Entity version is out of range"), "{m}");
    assert!(m.contains("relist"), "{m}");
}

/// A cache keeping at most two events of history.
fn small_history() -> CacheOptions {
    CacheOptions {
        feed: FeedOptions {
            history_events: 2,
            ..FeedOptions::default()
        },
        ..CacheOptions::default()
    }
}

#[tokio::test]
async fn a_revision_in_the_caches_history_resumes_without_a_store_watch() {
    let s = Server::start_with(MemoryOptions {
        log_capacity: 4,
        ..MemoryOptions::default()
    })
    .await;
    let from = s.put_task("prod", "t-0", TaskStatus::Running).await;
    for n in 1..10 {
        s.put_task("prod", &format!("t-{n}"), TaskStatus::Running)
            .await;
    }
    // The store's log no longer has `from`; the cache's history does.
    let mut stream = s
        .stream(&format!("/v1/stream/tasks?entityVersion={from}"))
        .await;
    assert_eq!(stream.status, 200);
    for n in 1..10 {
        let line = stream.next_line().await.unwrap();
        let arn = line["entity"]["taskARN"].as_str().unwrap().to_owned();
        assert!(arn.ends_with(&format!("/t-{n}")), "{arn}");
    }
    assert_eq!(s.live_watches.load(Ordering::SeqCst), 1, "the cache's only");
}

#[tokio::test]
async fn a_revision_older_than_the_caches_history_catches_up_from_the_store() {
    let s = Server::start_with_cache(MemoryOptions::default(), small_history()).await;
    let from = s.put_task("prod", "t-0", TaskStatus::Running).await;
    for n in 1..6 {
        s.put_task("prod", &format!("t-{n}"), TaskStatus::Running)
            .await;
    }
    let mut stream = s
        .stream(&format!("/v1/stream/tasks?entityVersion={from}"))
        .await;
    assert_eq!(stream.status, 200);
    for n in 1..6 {
        let line = stream.next_line().await.unwrap();
        let arn = line["entity"]["taskARN"].as_str().unwrap().to_owned();
        assert!(arn.ends_with(&format!("/t-{n}")), "{arn}");
    }
    // Caught up: live changes come from the feed, and the store watch the
    // catch-up used is released.
    let later = s.put_task("prod", "t-6", TaskStatus::Running).await;
    let line = stream.next_line().await.unwrap();
    assert_eq!(line["metadata"]["entityVersion"], later.to_string());
    s.wait_for_watches(|n| n == 1).await;
}

#[tokio::test]
async fn bad_stream_parameters_are_400_with_v03_text() {
    let s = Server::start().await;
    for (path, text) in [
        (
            "/v1/stream/tasks?entityVersion=yesterday",
            "Invalid entity version",
        ),
        (
            "/v1/stream/tasks?entityVersion=1:2&entityVersion=1:3",
            "At least one of the filters provided is specified multiple times",
        ),
        (
            "/v1/stream/tasks?status=running",
            "At least one of the filters provided is unsupported",
        ),
        (
            "/v1/stream/instances?cluster=a%20b",
            "Invalid cluster ARN or name",
        ),
    ] {
        let m = s.get(path).await.error_message(400);
        assert!(m.starts_with(text), "{path}: {m}");
    }
}

#[tokio::test]
async fn a_stream_ends_when_the_client_disconnects() {
    let s = Server::start().await;
    let stream = s.stream("/v1/stream/tasks").await;
    s.wait_for_readers(|n| n == 1).await;
    drop(stream);
    // The server notices at the latest when it writes the next change.
    s.put_task("prod", "t-1", TaskStatus::Running).await;
    s.put_task("prod", "t-2", TaskStatus::Running).await;
    s.wait_for_readers(|n| n == 0).await;
}

#[tokio::test]
async fn a_relist_of_the_view_mid_stream_aborts_the_response_instead_of_ending_it() {
    // The cache's own watch (the only one) breaks as compacted: it relists.
    let s = Server::start_breakable(true).await;
    s.put_task("prod", "t-0", TaskStatus::Running).await;
    let mut stream = s.stream("/v1/stream/tasks").await;
    assert_eq!(stream.status, 200);
    s.put_task("prod", "t-1", TaskStatus::Running).await;
    assert!(stream.next_line().await.is_some());
    s.faults.break_watches();
    let end = stream.try_next_line().await;
    assert!(
        end.is_err(),
        "a relist must not look like a clean end: {end:?}"
    );
}

#[tokio::test]
async fn a_store_failure_mid_stream_does_not_end_streams_the_view_resumes() {
    let s = Server::start_breakable(false).await;
    s.put_task("prod", "t-0", TaskStatus::Running).await;
    let mut stream = s.stream("/v1/stream/tasks").await;
    s.wait_for_readers(|n| n == 1).await;
    s.faults.breakable.store(false, Ordering::SeqCst);
    s.faults.break_watches();
    let later = s.put_task("prod", "t-1", TaskStatus::Running).await;
    let line = stream.next_line().await.unwrap();
    assert_eq!(line["metadata"]["entityVersion"], later.to_string());
}

#[tokio::test]
async fn a_store_outage_when_a_stream_needs_the_store_is_503() {
    let s = Server::start().await;
    s.faults.down.store(true, Ordering::SeqCst);
    // Another epoch: only the store can say (here: it cannot).
    let r = s.get("/v1/stream/instances?entityVersion=1:1").await;
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error_message(503).contains("unavailable"));
    // From now: the cache serves it without the store.
    let stream = s.stream("/v1/stream/tasks").await;
    assert_eq!(stream.status, 200);
}

#[tokio::test]
async fn ending_streams_ends_open_and_later_streams_cleanly() {
    let s = Server::start().await;
    let mut stream = s.stream("/v1/stream/tasks").await;
    s.wait_for_readers(|n| n == 1).await;
    s.cache.end_streams();
    assert_eq!(stream.try_next_line().await, Ok(None), "a clean end");
    // A stream opened after ends at once, cleanly.
    let mut late = s.stream("/v1/stream/tasks").await;
    assert_eq!(late.try_next_line().await, Ok(None));
}

#[tokio::test]
async fn a_hundred_streams_share_the_caches_one_store_watch() {
    let s = Server::start().await;
    let mut streams = Vec::new();
    for n in 0..100 {
        let path = if n % 2 == 0 {
            "/v1/stream/tasks"
        } else {
            "/v1/stream/instances"
        };
        streams.push(s.stream(path).await);
    }
    s.wait_for_readers(|n| n == 100).await;
    let rev = s.put_task("prod", "t-1", TaskStatus::Running).await;
    for stream in streams.iter_mut().step_by(2) {
        let line = stream.next_line().await.unwrap();
        assert_eq!(line["metadata"]["entityVersion"], rev.to_string());
    }
    assert_eq!(
        s.live_watches.load(Ordering::SeqCst),
        1,
        "one store watch for the whole process"
    );
}
