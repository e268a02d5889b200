//! Ingest throughput from an in-process event source into the memory store,
//! and a reconcile of 5,000 instances and 50,000 tasks against the fake ECS
//! (ECS calls, wall time, writes of a second unchanged run).
//! Run: `cargo bench -p blox-benches --bench reconcile_ingest`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use blox_benches::{report, task, task_event};
use blox_core::model::TaskStatus;
use blox_core::ports::{DeleteFailure, EventSource, Message, SourceError};
use blox_core::testing::{FakeEcs, FakeEcsConfig, InstanceSpec};
use blox_state::ingest::{IngestOptions, Ingester};
use blox_state::reconcile::{ReconcileOptions, Reconciler};
use blox_state::store::memory::MemoryStore;

/// Pre-rendered messages served in batches; deletes are counted.
struct Preloaded {
    queue: Mutex<VecDeque<Message>>,
    deleted: Mutex<usize>,
}

#[async_trait]
impl EventSource for Preloaded {
    async fn receive(&self, max: usize, _wait: Duration) -> Result<Vec<Message>, SourceError> {
        let mut q = self.queue.lock().map_err(|_| SourceError::InvalidRequest {
            operation: "ReceiveMessage",
            message: "poisoned".into(),
        })?;
        let n = max.min(q.len());
        Ok(q.drain(..n).collect())
    }
    async fn delete(&self, receipts: &[String]) -> Result<Vec<DeleteFailure>, SourceError> {
        if let Ok(mut d) = self.deleted.lock() {
            *d += receipts.len();
        }
        Ok(Vec::new())
    }
}

const EVENTS: usize = 200_000;

async fn ingest_memory() {
    // 50,000 tasks, 4 versions each, delivered in order with 10% duplicates.
    let mut messages = VecDeque::with_capacity(EVENTS);
    let mut n = 0;
    'outer: for version in 1..=4u64 {
        for id in 0..50_000usize {
            let status = if version < 3 {
                TaskStatus::Pending
            } else {
                TaskStatus::Running
            };
            let body = task_event(&task(id % 10, id, id % 5_000, status, version));
            let copies = if id % 10 == 0 { 2 } else { 1 };
            for _ in 0..copies {
                messages.push_back(Message {
                    id: format!("m{n}"),
                    receipt_handle: format!("r{n}"),
                    body: body.clone(),
                    receive_count: Some(1),
                });
                n += 1;
                if n == EVENTS {
                    break 'outer;
                }
            }
        }
    }
    let source = Arc::new(Preloaded {
        queue: Mutex::new(messages),
        deleted: Mutex::new(0),
    });
    let store = Arc::new(MemoryStore::new());
    let ingester = Ingester::new(source.clone(), store, IngestOptions::default());
    let start = Instant::now();
    loop {
        match ingester.run_once().await {
            Ok(r) if r.received == 0 => break,
            Ok(_) => {}
            Err(e) => panic!("ingest failed: {e}"),
        }
    }
    let elapsed = start.elapsed();
    let stats = ingester.counters().snapshot();
    report("ingest events (memory store)", stats.received, "");
    report(
        "ingest applied / stale",
        format!("{} / {}", stats.applied, stats.stale),
        "",
    );
    report(
        "ingest throughput, memory store, one receiver",
        format!("{:.0}", stats.received as f64 / elapsed.as_secs_f64()),
        "events/s",
    );
}

async fn reconcile_large() {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        seed: Some(1),
        emit_events: false,
        ..FakeEcsConfig::default()
    });
    if let Err(e) = ecs.create_cluster("big") {
        panic!("{e}");
    }
    let spec = InstanceSpec::new().cpu(100_000).memory(100_000);
    let arns = match ecs.add_instances("big", 5_000, &spec) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    for _ in 0..10 {
        if let Err(e) = ecs.run_tasks("big", "web:1", &arns, Some("bench")) {
            panic!("{e}");
        }
    }
    let store = Arc::new(MemoryStore::new());
    let rec = Reconciler::new(
        Arc::new(ecs.clone()),
        store,
        ReconcileOptions {
            clusters: vec!["big".into()],
            ..ReconcileOptions::default()
        },
    );
    ecs.reset_calls();
    let start = Instant::now();
    let first = match rec.reconcile_once().await {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let t1 = start.elapsed();
    let calls = ecs.total_calls();
    report(
        "reconcile 5,000 instances + 50,000 tasks: entities added",
        first.added,
        "",
    );
    report(
        "reconcile: ECS calls",
        calls,
        "(minimum: 1 + 50 + 50 + 500 + 1 + 500 = 1,102)",
    );
    report(
        "reconcile: first run wall time",
        format!("{:.0}", t1.as_secs_f64() * 1e3),
        "ms",
    );
    let start = Instant::now();
    let second = match rec.reconcile_once().await {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    report(
        "reconcile: second (unchanged) run wall time",
        format!("{:.0}", start.elapsed().as_secs_f64() * 1e3),
        "ms",
    );
    report("reconcile: second run store writes", second.writes(), "");
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
        ingest_memory().await;
        reconcile_large().await;
    });
}
