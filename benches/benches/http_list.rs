//! Lists and gets of the cluster-state API, in process (no socket, no
//! `wrk`): the router answers each request and the whole body is read, one
//! request at a time, so the figure is the server's own work per response.
//! The view is 10 clusters of 500 tasks (400 RUNNING) and 50 instances,
//! tasks of about 1.8 KB of JSON: the shapes of issue 17's table.
//!
//! - `all tasks, first list`: `GET /v1/tasks` right after the view was
//!   (re)loaded, so every entity is encoded on the way.
//! - `all tasks`: the same list again (with encode-once: copies).
//! - `cluster+status`: `?cluster=bench-03&status=RUNNING`, 400 tasks.
//! - `all instances`: `GET /v1/instances`, 500 instances.
//! - `one task`: a get by ARN.
//! - `resident memory per task kept once served`: what the process grew by
//!   while every task of the loaded view was served once (by gets), per
//!   task: the plain JSON the cache keeps (within its budget).
//! - `... nothing kept plain`: the same requests to a cache whose budget of
//!   plain items is 0, so that every packed task is decompressed per
//!   request (what a view larger than the budget pays for the rest).
//!
//! Run: `cargo bench -p blox-benches --bench http_list`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use blox_benches::{instance, percentile, report, resident_bytes, task};
use blox_core::model::{Entity, TaskStatus};
use blox_state::cache::{CacheOptions, cache, cache_with};
use blox_state::http::{ApiState, router};
use blox_state::store::memory::MemoryStore;
use blox_state::{CacheWriter, Revision, Versioned};
use tower::ServiceExt;

const CLUSTERS: usize = 10;
const TASKS_PER_CLUSTER: usize = 500;
const RUNNING_PER_CLUSTER: usize = 400;
const INSTANCES_PER_CLUSTER: usize = 50;

/// The view: every entity at its own revision.
fn view() -> Vec<Versioned> {
    let mut items = Vec::new();
    let mut put = |e: Entity| {
        let seq = items.len() as u64 + 1;
        items.push(Versioned {
            entity: e,
            revision: Revision::new(1, seq),
        });
    };
    for c in 0..CLUSTERS {
        for n in 0..INSTANCES_PER_CLUSTER {
            put(instance(c, n).into());
        }
        for n in 0..TASKS_PER_CLUSTER {
            let status = if n < RUNNING_PER_CLUSTER {
                TaskStatus::Running
            } else {
                TaskStatus::Stopped
            };
            put(task(c, n, n % INSTANCES_PER_CLUSTER, status, 1).into());
        }
    }
    items
}

fn load(writer: &mut CacheWriter, items: &[Versioned]) {
    writer.replace(items.to_vec(), Revision::new(1, items.len() as u64));
}

/// The time to answer `uri` and read the whole body, and the body's size.
async fn answer(app: &Router, uri: &str) -> (Duration, usize) {
    let start = Instant::now();
    let request = match Request::get(uri).body(Body::empty()) {
        Ok(r) => r,
        Err(e) => panic!("request: {e}"),
    };
    let response = match app.clone().oneshot(request).await {
        Ok(r) => r,
        Err(e) => panic!("router: {e}"),
    };
    assert!(
        response.status().is_success(),
        "{uri}: {}",
        response.status()
    );
    let body = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(e) => panic!("body: {e}"),
    };
    (start.elapsed(), body.len())
}

/// Prints the median and p90 of `runs` answers to `uri` (after `before`
/// each time, untimed).
async fn measure(
    name: &str,
    app: &Router,
    uri: &str,
    runs: usize,
    mut before: impl FnMut(),
) -> Duration {
    let mut samples = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        before();
        let (d, n) = answer(app, uri).await;
        samples.push(d);
        size = n;
    }
    let median = percentile(&mut samples, 50);
    let p90 = percentile(&mut samples, 90);
    report(
        name,
        format!(
            "median {:.4} ms, p90 {:.4} ms, {} bytes, {:.2} GB/s",
            median.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3,
            size,
            size as f64 / median.as_secs_f64() / 1e9
        ),
        "",
    );
    median
}

fn main() {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    rt.block_on(async {
        let items = view();
        let (reader, mut writer) = cache();
        load(&mut writer, &items);
        let app = router(ApiState::new(reader.clone(), Arc::new(MemoryStore::new())));
        let (i, t) = reader.len();
        report("view", format!("{i} instances, {t} tasks"), "");
        let one = task(3, 7, 7, TaskStatus::Running, 1).task_arn;
        // Every task served once (by gets, whose buffers are small and
        // reused, so the growth is what the cache keeps).
        let before = resident_bytes();
        for c in 0..CLUSTERS {
            for n in 0..TASKS_PER_CLUSTER {
                let arn = task(c, n, 0, TaskStatus::Running, 1).task_arn;
                answer(&app, &format!("/v1/tasks/bench-{c:02}/{arn}")).await;
            }
        }
        if let (Some(b), Some(a)) = (before, resident_bytes()) {
            report(
                "resident memory per task kept once served",
                a.saturating_sub(b) / t as u64,
                "bytes",
            );
        }
        measure("all tasks, first list", &app, "/v1/tasks", 15, || {
            load(&mut writer, &items)
        })
        .await;
        measure("all tasks", &app, "/v1/tasks", 50, || ()).await;
        measure(
            "cluster+status (400 tasks)",
            &app,
            "/v1/tasks?cluster=bench-03&status=RUNNING",
            500,
            || (),
        )
        .await;
        measure("all instances (500)", &app, "/v1/instances", 500, || ()).await;
        measure(
            "one task",
            &app,
            &format!("/v1/tasks/bench-03/{one}"),
            20_000,
            || (),
        )
        .await;
        let (cold, mut cold_writer) = cache_with(CacheOptions {
            hot_items: 0,
            ..CacheOptions::default()
        });
        load(&mut cold_writer, &items);
        let cold_app = router(ApiState::new(cold, Arc::new(MemoryStore::new())));
        measure(
            "all tasks, nothing kept plain",
            &cold_app,
            "/v1/tasks",
            50,
            || (),
        )
        .await;
        measure(
            "one task, nothing kept plain",
            &cold_app,
            &format!("/v1/tasks/bench-03/{one}"),
            20_000,
            || (),
        )
        .await;
    });
}
