//! The etcd side of two comparisons: reads from etcd against the cache
//! (get by key; a 1,000-key range read against a cache list of 1,000 tasks),
//! and ingest throughput from an in-process source into the etcd store.
//! Starts its own etcd (Debian's `etcd-server`).
//! Run: `cargo bench -p blox-benches --bench etcd_read_ingest`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use blox_benches::{percentile, report, task, task_event};
use blox_core::model::TaskStatus;
use blox_core::ports::{DeleteFailure, EventSource, Message, SourceError};
use blox_state::cache::cache;
use blox_state::ingest::{IngestOptions, Ingester};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdServer;
use blox_state::{Change, Filter, Revision, StateStore, Versioned, WatchEvent};
use etcd_client::GetOptions;

struct Preloaded(Mutex<VecDeque<Message>>);

#[async_trait]
impl EventSource for Preloaded {
    async fn receive(&self, max: usize, _wait: Duration) -> Result<Vec<Message>, SourceError> {
        let mut q = self.0.lock().map_err(|_| SourceError::InvalidRequest {
            operation: "ReceiveMessage",
            message: "poisoned".into(),
        })?;
        let n = max.min(q.len());
        Ok(q.drain(..n).collect())
    }
    async fn delete(&self, _r: &[String]) -> Result<Vec<DeleteFailure>, SourceError> {
        Ok(Vec::new())
    }
}

const CLUSTERS: usize = 10;
const PER_CLUSTER: usize = 10_000;

async fn reads(store: &EtcdStore) {
    // Load 100,000 tasks: 1,000 RUNNING per cluster.
    let mut changes = Vec::new();
    let (reader, mut writer) = cache();
    let mut seq = 0;
    for c in 0..CLUSTERS {
        for n in 0..PER_CLUSTER {
            let status = if n < 1_000 {
                TaskStatus::Running
            } else {
                TaskStatus::Stopped
            };
            let t = task(c, n, n % 1_000, status, 1);
            seq += 1;
            writer.apply(&WatchEvent::Put(Versioned {
                entity: t.clone().into(),
                revision: Revision::new(1, seq),
            }));
            changes.push(Change::put(t));
        }
    }
    for chunk in changes.chunks(127) {
        if let Err(e) = store.apply_batch(chunk.to_vec()).await {
            panic!("load: {e}");
        }
    }
    report("etcd loaded tasks", seq, "");

    let arns: Vec<_> = (0..1_000)
        .map(|n| task(3, n * 7 % PER_CLUSTER, 0, TaskStatus::Running, 1).task_arn)
        .collect();
    let mut etcd_gets = Vec::new();
    for a in &arns {
        let start = Instant::now();
        if let Err(e) = store.get(a).await {
            panic!("{e}");
        }
        etcd_gets.push(start.elapsed());
    }
    let mut cache_gets = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        for a in &arns {
            std::hint::black_box(reader.get_task(a.as_str()));
        }
        cache_gets.push(start.elapsed() / arns.len() as u32);
    }
    let e = percentile(&mut etcd_gets, 50);
    let c = percentile(&mut cache_gets, 50);
    report(
        "etcd get by key, median",
        format!("{:.1}", e.as_secs_f64() * 1e6),
        "µs",
    );
    report(
        "cache get by ARN, median",
        format!("{:.3}", c.as_secs_f64() * 1e6),
        "µs",
    );
    report(
        "get: etcd / cache",
        format!("{:.0}", e.as_secs_f64() / c.as_secs_f64().max(1e-12)),
        "x",
    );

    // The equivalent range read: 1,000 keys under the cluster's task prefix.
    let prefix = format!(
        "{}/e/task/arn:aws:ecs:us-east-1:123456789012:task/bench-03/",
        store.options().prefix
    );
    let mut client = store.client().clone();
    let mut ranges = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        match client
            .get(
                prefix.clone(),
                Some(GetOptions::new().with_prefix().with_limit(1_000)),
            )
            .await
        {
            Ok(r) => assert_eq!(r.kvs().len(), 1_000),
            Err(e) => panic!("{e}"),
        }
        ranges.push(start.elapsed());
    }
    let filter = Filter {
        cluster: Some("bench-03".into()),
        status: Some("RUNNING".into()),
        ..Filter::default()
    };
    let mut lists = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        std::hint::black_box(reader.list_tasks(&filter));
        lists.push(start.elapsed());
    }
    let r = percentile(&mut ranges, 50);
    let l = percentile(&mut lists, 50);
    report(
        "etcd range read of 1,000 keys, median",
        format!("{:.2}", r.as_secs_f64() * 1e3),
        "ms",
    );
    report(
        "cache list cluster+status (1,000 tasks), median",
        format!("{:.3}", l.as_secs_f64() * 1e3),
        "ms",
    );
    report(
        "list: etcd / cache",
        format!("{:.0}", r.as_secs_f64() / l.as_secs_f64().max(1e-12)),
        "x",
    );
}

async fn ingest(store: Arc<EtcdStore>) {
    const EVENTS: usize = 50_000;
    let mut q = VecDeque::with_capacity(EVENTS);
    for n in 0..EVENTS {
        // 25,000 tasks (fresh ARNs: cluster 9 of a different id range), 2 versions each.
        let id = 20_000 + n % 25_000;
        let version = 1 + (n / 25_000) as u64;
        let body = task_event(&task(9, id, id % 1_000, TaskStatus::Running, version + 10));
        q.push_back(Message {
            id: format!("m{n}"),
            receipt_handle: format!("r{n}"),
            body,
            receive_count: Some(1),
        });
    }
    let source = Arc::new(Preloaded(Mutex::new(q)));
    let ingester = Ingester::new(source, store, IngestOptions::default());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let i = ingester.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match i.run_once().await {
                    Ok(r) if r.received == 0 => break,
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            panic!("{e}");
        }
    }
    let s = ingester.counters().snapshot();
    report("ingest into etcd: events", s.received, "");
    report(
        "ingest throughput, etcd store, 8 receivers",
        format!("{:.0}", s.received as f64 / start.elapsed().as_secs_f64()),
        "events/s",
    );
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    rt.block_on(async {
        let server = match EtcdServer::start().await {
            Ok(s) => s,
            Err(e) => panic!("etcd: {e}"),
        };
        let store = match EtcdStore::connect(EtcdOptions::new([server.endpoint()])).await {
            Ok(s) => Arc::new(s),
            Err(e) => panic!("{e}"),
        };
        reads(&store).await;
        ingest(store).await;
    });
}
