//! Throughput of versioned writes to etcd.
//!
//! Starts a throwaway etcd (the `etcd` binary must be installed:
//! `scripts/install-deps.sh test`), then measures, with the same number of
//! concurrent callers on one client:
//!
//! 1. raw etcd-client `put`s of ~1.7 KB task records as JSON (the floor:
//!    one round trip and one raft entry per write, no versioning);
//! 2. `EtcdStore::apply_batch` of a realistic event stream (many tasks, each
//!    seen at several versions, some states delivered twice, shuffled), in
//!    batches of a few sizes: compare-and-swap on every key, yet far fewer
//!    raft entries, because the store's writer merges the callers' batches
//!    into transactions of up to 127 keys, and fewer bytes, because it
//!    stores records compressed.
//!
//! Run with `cargo bench -p blox-benches --bench etcd_apply` (release build).
//! Sizes can be passed as `-- CALLERS RAW_PUTS STREAM_TASKS ROUNDS` (default
//! 32, 40,000, 10,000 and 5). Raw puts and the larger batch sizes are
//! measured in alternating rounds and reported as medians of the per-round
//! ratios, so a noisy moment on the machine does not decide the figure.
//! `BLOX_BENCH_WRITE_CONCURRENCY` overrides
//! [`EtcdOptions::write_concurrency`]; `BLOX_BENCH_COMPRESS=0` turns off
//! [`EtcdOptions::compress_records`]. etcd keeps its data on disk (under
//! the build's target directory), as in production; set
//! `BLOX_TEST_ETCD_DIR=/dev/shm` to measure with data in memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use blox_core::model::{
    Arn, Container, ContainerOverride, KeyValuePair, NetworkBinding, Task, TaskOverride,
    TaskStatus, Timestamp,
};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{Change, StateStore};
use blox_state::testing::etcd_server::{DATA_DIR_VAR, EtcdServer};

/// A task as ECS reports a typical service task: two containers with
/// ports, overrides with environment, timestamps.
fn realistic_task(i: usize, version: u64) -> Task {
    let account = "123456789012";
    let cluster = format!("arn:aws:ecs:us-east-1:{account}:cluster/production-web");
    let id = format!("{:032x}", i as u128 * 0x9e37_79b9_7f4a_7c15);
    let arn = Arn::parse(&format!(
        "arn:aws:ecs:us-east-1:{account}:task/production-web/{id}"
    ))
    .unwrap();
    let mut t = Task::new(
        arn,
        Arn::parse(&cluster).unwrap(),
        format!("arn:aws:ecs:us-east-1:{account}:task-definition/web-frontend:42"),
    );
    t.container_instance_arn = Some(
        Arn::parse(&format!(
            "arn:aws:ecs:us-east-1:{account}:container-instance/production-web/{:032x}",
            i % 97
        ))
        .unwrap(),
    );
    t.last_status = if version > 2 {
        TaskStatus::Running
    } else {
        TaskStatus::Pending
    };
    t.started_by = Some("blox-deployment/7f3c9a1e".into());
    t.group = Some("service:web-frontend".into());
    t.cpu = Some("512".into());
    t.memory = Some("1024".into());
    t.availability_zone = Some("us-east-1b".into());
    t.version = Some(version);
    t.created_at = Some(Timestamp::from_millis(1_700_000_000_000 + i as i64));
    t.started_at = Some(Timestamp::from_millis(1_700_000_005_000 + i as i64));
    t.updated_at = Some(Timestamp::from_millis(1_700_000_006_000 + version as i64));
    for (n, name) in ["web", "sidecar-proxy"].iter().enumerate() {
        t.containers.push(Container {
            container_arn: Some(format!(
                "arn:aws:ecs:us-east-1:{account}:container/production-web/{id}/{n:08x}-0000-4000-8000-{i:012x}"
            )),
            name: (*name).into(),
            last_status: Some(t.last_status.clone()),
            exit_code: None,
            reason: None,
            image: Some(format!("{account}.dkr.ecr.us-east-1.amazonaws.com/{name}:v1.24.{n}")),
            network_bindings: vec![NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(8080 + n as i64),
                host_port: Some(32768 + (i % 20000) as i64),
                protocol: Some("tcp".into()),
            }],
            cpu: Some("128".into()),
            memory: Some("256".into()),
        });
    }
    t.overrides = Some(TaskOverride {
        container_overrides: vec![ContainerOverride {
            name: Some("web".into()),
            command: vec!["/app/server".into(), "--port=8080".into()],
            environment: vec![
                KeyValuePair {
                    name: Some("DEPLOYMENT".into()),
                    value: Some("7f3c9a1e".into()),
                },
                KeyValuePair {
                    name: Some("LOG_LEVEL".into()),
                    value: Some("info".into()),
                },
            ],
            ..ContainerOverride::default()
        }],
        task_role_arn: Some(format!("arn:aws:iam::{account}:role/web-frontend-task")),
        execution_role_arn: Some(format!("arn:aws:iam::{account}:role/ecsTaskExecutionRole")),
        ..TaskOverride::default()
    });
    t
}

/// A deterministic shuffle (xorshift), so runs are comparable.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// The event stream: every task at versions 1..=4 in order per task but
/// interleaved across tasks, with one in ten states delivered twice.
fn stream(tasks: usize) -> Vec<Change> {
    let mut changes = Vec::new();
    for round in 1..=4u64 {
        let mut wave: Vec<Change> = (0..tasks)
            .map(|i| Change::put(realistic_task(i, round)))
            .collect();
        let dups: Vec<Change> = wave.iter().step_by(10).cloned().collect();
        wave.extend(dups);
        shuffle(&mut wave, 0x2545_f491_4f6c_dd1d ^ round);
        changes.extend(wave);
    }
    changes
}

async fn raw_puts(store: &EtcdStore, callers: usize, puts: usize, value: Vec<u8>) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let value = Arc::new(value);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..callers {
        let mut kv = store.client().kv_client();
        let next = next.clone();
        let value = value.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= puts {
                    return;
                }
                kv.put(format!("/bench-raw/{i}"), value.as_slice(), None)
                    .await
                    .expect("put");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    puts as f64 / start.elapsed().as_secs_f64()
}

/// Applies the stream in batches of `batch` with `callers` concurrent
/// callers; returns (changes per second, how many were applied).
async fn versioned(
    store: &EtcdStore,
    callers: usize,
    batch: usize,
    changes: Vec<Change>,
) -> (f64, usize) {
    let total = changes.len();
    let batches: Vec<Vec<Change>> = changes.chunks(batch).map(<[Change]>::to_vec).collect();
    let batches = Arc::new(std::sync::Mutex::new(batches.into_iter()));
    let applied = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..callers {
        let store = store.clone();
        let batches = batches.clone();
        let applied = applied.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let Some(b) = batches.lock().unwrap().next() else {
                    return;
                };
                let out = store.apply_batch(b).await.expect("apply_batch");
                applied.fetch_add(
                    out.iter().filter(|o| o.is_applied()).count(),
                    Ordering::Relaxed,
                );
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    (
        total as f64 / start.elapsed().as_secs_f64(),
        applied.load(Ordering::Relaxed),
    )
}

/// The median of some figures.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let callers = args.first().copied().unwrap_or(32);
    let raw_n = args.get(1).copied().unwrap_or(40_000);
    let tasks = args.get(2).copied().unwrap_or(10_000);
    let rounds = args.get(3).copied().unwrap_or(5).max(1);
    let write_concurrency = std::env::var("BLOX_BENCH_WRITE_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EtcdOptions::default().write_concurrency);
    let compress_records = std::env::var("BLOX_BENCH_COMPRESS").map_or(true, |v| v != "0");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // etcd's data on disk, as in production (fsyncs cost what they
        // cost), unless BLOX_TEST_ETCD_DIR says where.
        let server = if std::env::var_os(DATA_DIR_VAR).is_some() {
            EtcdServer::start().await
        } else {
            EtcdServer::start_in(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))).await
        }
        .expect("start etcd");
        let connect = |prefix: String| {
            EtcdStore::connect(EtcdOptions {
                write_concurrency,
                compress_records,
                ..EtcdOptions::new([server.endpoint()]).with_prefix(prefix)
            })
        };
        let value = serde_json::to_vec(&realistic_task(1, 3)).unwrap();
        let changes = stream(tasks);
        let n = changes.len();
        println!(
            "etcd_apply: {callers} concurrent callers on one client, task records of {} bytes, \
             {n} changes over {tasks} tasks, write_concurrency {write_concurrency}, \
             compressed records {compress_records}, etcd data in {}",
            value.len(),
            server.data_dir().display()
        );
        // Warm up the connection.
        let store = connect("/bench-warm-up".into()).await.unwrap();
        raw_puts(&store, callers, 2_000, value.clone()).await;
        for batch in [1, 16] {
            let store = connect(format!("/bench-versioned-{batch}")).await.unwrap();
            let (rate, applied) = versioned(&store, callers, batch, changes.clone()).await;
            println!(
                "versioned apply_batch({batch:>3}): {rate:>9.0} changes/s ({applied} applied, {} stale)",
                n - applied
            );
        }
        // Rounds of raw puts then versioned batches, back to back, so that
        // each ratio compares figures taken under the same conditions.
        const SIZES: [usize; 2] = [64, 128];
        let mut raws = Vec::new();
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); SIZES.len()];
        for round in 1..=rounds {
            let store = connect(format!("/bench-raw-{round}")).await.unwrap();
            let raw = raw_puts(&store, callers, raw_n, value.clone()).await;
            raws.push(raw);
            let mut line = format!("round {round}: raw put {raw:>6.0}/s");
            for (k, batch) in SIZES.iter().enumerate() {
                let store = connect(format!("/bench-versioned-{batch}-{round}")).await.unwrap();
                let (rate, _) = versioned(&store, callers, *batch, changes.clone()).await;
                rates[k].push(rate);
                ratios[k].push(rate / raw);
                line.push_str(&format!(
                    "; apply_batch({batch}) {rate:>6.0}/s = {:.2}x",
                    rate / raw
                ));
            }
            println!("{line}");
        }
        println!(
            "median raw etcd put:             {:>9.0} puts/s ({raw_n} puts per round, {rounds} rounds)",
            median(raws)
        );
        for (k, batch) in SIZES.iter().enumerate() {
            println!(
                "median versioned apply_batch({batch:>3}): {:>9.0} changes/s, median ratio to raw put {:.2}x",
                median(rates[k].clone()),
                median(ratios[k].clone())
            );
        }
        drop(server);
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
