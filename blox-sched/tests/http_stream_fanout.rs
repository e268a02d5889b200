//! One process, many streams: with 100 task streams and 100 environment
//! streams open, the process keeps one entity watch (the cache's) and one
//! key-value watch (the environment feed's) on the store, and every
//! stream still sees every change. Disconnected streams release their
//! place. (Counted, not timed; recorded in `benches/RESULTS.md`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_sched_support;

use std::sync::Arc;
use std::time::Duration;

use blox_core::model::{Arn, Task};
use blox_sched::daemon::EnvironmentStore;
use blox_sched::http::SchedApiState;
use blox_state::cache::{FeedOptions, KvFeed, spawn_follower};
use blox_state::http::ApiState;
use blox_state::store::memory::MemoryStore;
use blox_state::store::{Change, StateStore};
use blox_state::testing::CountingStore;
use http_sched_support::{client, create_body};

const STREAMS: usize = 100;

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn a_hundred_streams_of_each_kind_share_one_entity_watch_and_one_key_value_watch() {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let shared: Arc<dyn StateStore> = store.clone();
    let (cache, follower) = spawn_follower(Arc::clone(&shared));
    let (envs, env_follower) = KvFeed::spawn(
        Arc::clone(&shared),
        EnvironmentStore::KEY_PREFIX,
        FeedOptions::default(),
    );
    cache.wait_until_ready().await;
    envs.wait_until_ready().await;
    let app = blox_state::http::router(ApiState::new(cache.clone(), Arc::clone(&shared))).merge(
        blox_sched::http::router(
            SchedApiState::new(cache.clone(), Arc::clone(&shared))
                .with_environment_feed(envs.clone()),
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut tasks = Vec::new();
    let mut environments = Vec::new();
    for _ in 0..STREAMS {
        tasks.push(client::Stream::open(addr, "/v1/stream/tasks").await);
        environments.push(client::Stream::open(addr, "/v1/stream/environments").await);
    }
    until("every stream subscribed", || {
        cache.feed().readers() == STREAMS && envs.feed().readers() == STREAMS
    })
    .await;

    let cluster = Arn::parse("arn:aws:ecs:us-east-1:123456789012:cluster/prod").unwrap();
    let arn = Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/prod/t-1").unwrap();
    store
        .apply(Change::put(Task::new(arn.clone(), cluster, "web:1")))
        .await
        .unwrap();
    let created = client::request(
        addr,
        "POST",
        "/v1/environments",
        Some(&create_body("web", "prod", "web:1").to_string()),
    )
    .await;
    assert_eq!(created.status, 200);
    for s in &mut tasks {
        let line = s.next_line().await.unwrap();
        assert_eq!(line["entity"]["taskARN"], arn.as_str());
    }
    for s in &mut environments {
        let line = s.next_line().await.unwrap();
        assert_eq!(line["environmentName"], "web");
    }
    assert_eq!(store.entity_watches(), 1, "entity watches on the store");
    assert_eq!(store.kv_watches(), 1, "key-value watches on the store");

    // Disconnected streams release their place (noticed at the next write).
    drop(tasks);
    drop(environments);
    store.apply(Change::delete(arn, None)).await.unwrap();
    assert_eq!(
        client::request(addr, "DELETE", "/v1/environments/web", None)
            .await
            .status,
        200
    );
    until("every stream released", || {
        cache.feed().readers() == 0 && envs.feed().readers() == 0
    })
    .await;
    assert_eq!((store.entity_watches(), store.kv_watches()), (1, 1));
    server.abort();
    follower.abort();
    env_follower.abort();
}
