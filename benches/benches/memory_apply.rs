//! Apply throughput of the in-memory store on a realistic event stream.
//!
//! 50,000 tasks on 500 container instances in 20 clusters go through their
//! lifecycle (6 versions each, PENDING to STOPPED), interleaved the way
//! events from many tasks arrive; 5% of the events are delivered twice and 2%
//! are late (an older version after a newer one), and a tenth of the stopped
//! tasks are deleted at the end. The stream is applied on a single-threaded
//! runtime: one change per call, in batches of 10 (what the ingester does
//! with an SQS receive), and in batches of 10 while a watcher follows the
//! store. Prints events/s per scenario.
//!
//! `cargo bench -p blox-benches --bench memory_apply`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use blox_core::model::{Arn, Container, ResourceKind, Task, TaskStatus};
use blox_state::StateStore;
use blox_state::store::memory::MemoryStore;
use blox_state::{ApplyOutcome, Change, Revision};
use futures::StreamExt;

const TASKS: usize = 50_000;
const INSTANCES: usize = 500;
const CLUSTERS: usize = 20;
const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

/// A tiny deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn arn(kind: ResourceKind, path: &str) -> Arn {
    Arn::build("aws", REGION, ACCOUNT, kind, path).unwrap()
}

/// The state of task `i` at lifecycle step `v` (1..=6).
fn task_state(i: usize, v: u64) -> Task {
    let cluster = format!("cluster-{}", i % CLUSTERS);
    let mut t = Task::new(
        arn(ResourceKind::Task, &format!("{cluster}/{i:032x}")),
        arn(ResourceKind::Cluster, &cluster),
        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/web:3"),
    );
    let status = match v {
        1 => TaskStatus::Provisioning,
        2 => TaskStatus::Pending,
        3 => TaskStatus::Running,
        4 => TaskStatus::Deactivating,
        5 => TaskStatus::Stopping,
        _ => TaskStatus::Stopped,
    };
    t.version = Some(v);
    t.last_status = status.clone();
    t.started_by = Some(format!("daemon-{}", i % 7));
    t.container_instance_arn = Some(arn(
        ResourceKind::ContainerInstance,
        &format!("{cluster}/{:032x}", i % INSTANCES),
    ));
    t.containers = vec![Container {
        container_arn: Some(format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:container/{cluster}/{i:032x}/web"
        )),
        name: "web".into(),
        last_status: Some(status),
        exit_code: None,
        reason: None,
        image: Some("public.ecr.aws/nginx/nginx:1.27".into()),
        network_bindings: Vec::new(),
        cpu: Some("256".into()),
        memory: Some("512".into()),
    }];
    t
}

/// The event stream: lifecycles interleaved, with duplicates, late events and deletes.
fn event_stream() -> Vec<Change> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next_step = vec![1u64; TASKS];
    let mut open: Vec<usize> = (0..TASKS).collect();
    let mut changes = Vec::with_capacity(TASKS * 7);
    while !open.is_empty() {
        let slot = rng.below(open.len());
        let i = open[slot];
        let v = next_step[i];
        let change = Change::put(task_state(i, v));
        if rng.chance(5) {
            changes.push(change.clone());
        }
        changes.push(change);
        if v > 1 && rng.chance(2) {
            changes.push(Change::put(task_state(i, v - 1)));
        }
        if v == 6 {
            open.swap_remove(slot);
        } else {
            next_step[i] = v + 1;
        }
    }
    for i in (0..TASKS).step_by(10) {
        changes.push(Change::delete(task_state(i, 6).task_arn, Some(6)));
    }
    changes
}

struct Run {
    events: usize,
    applied: usize,
    elapsed: Duration,
}

impl Run {
    fn report(&self, name: &str) {
        let rate = self.events as f64 / self.elapsed.as_secs_f64();
        println!(
            "{name:<34} {:>8} events ({:>7} applied) in {:>8.1} ms: {:>10.0} events/s",
            self.events,
            self.applied,
            self.elapsed.as_secs_f64() * 1e3,
            rate
        );
    }
}

async fn one_by_one(stream: &[Change]) -> Run {
    let store = MemoryStore::new();
    let changes = stream.to_vec();
    let started = Instant::now();
    let mut applied = 0;
    for change in changes {
        applied += usize::from(store.apply(change).await.unwrap().is_applied());
    }
    Run {
        events: stream.len(),
        applied,
        elapsed: started.elapsed(),
    }
}

async fn batched(stream: &[Change], batch: usize) -> Run {
    let store = MemoryStore::new();
    let batches: Vec<Vec<Change>> = stream.chunks(batch).map(<[Change]>::to_vec).collect();
    let started = Instant::now();
    let mut applied = 0;
    for b in batches {
        let out = store.apply_batch(b).await.unwrap();
        applied += out.iter().filter(|o| o.is_applied()).count();
    }
    Run {
        events: stream.len(),
        applied,
        elapsed: started.elapsed(),
    }
}

/// Applies in batches while a watcher on the same thread follows every
/// change; the time includes the watcher catching up with the last write.
async fn batched_with_watcher(stream: &[Change], batch: usize) -> (Run, usize) {
    let store = MemoryStore::new();
    let from: Revision = store.current_revision().await.unwrap();
    let mut watch = store.watch(from).await.unwrap();
    let batches: Vec<Vec<Change>> = stream.chunks(batch).map(<[Change]>::to_vec).collect();
    let end = Rc::new(Cell::new(u64::MAX));
    let watcher_end = end.clone();
    let started = Instant::now();
    let watcher = tokio::task::spawn_local(async move {
        let mut seen = 0usize;
        let mut last = 0u64;
        while let Some(event) = watch.next().await {
            let event = event.expect("the watcher keeps up");
            assert!(event.revision().seq > last);
            last = event.revision().seq;
            seen += 1;
            if last >= watcher_end.get() {
                break;
            }
        }
        seen
    });
    let mut applied = 0;
    for (n, b) in batches.into_iter().enumerate() {
        let out = store.apply_batch(b).await.unwrap();
        applied += out.iter().filter(|o| o.is_applied()).count();
        if n % 16 == 15 {
            tokio::task::yield_now().await;
        }
    }
    let marker = store
        .apply(Change::put(task_state(TASKS + 1, 1)))
        .await
        .unwrap();
    if let ApplyOutcome::Applied { revision } = marker {
        end.set(revision.seq);
    }
    let seen = watcher.await.unwrap();
    let elapsed = started.elapsed();
    (
        Run {
            events: stream.len(),
            applied,
            elapsed,
        },
        seen,
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = event_stream();
    println!(
        "memory_apply: {} events for {TASKS} tasks (single-threaded runtime)",
        stream.len()
    );
    runtime.block_on(async {
        // Warm up allocators and caches once.
        batched(&stream, 10).await;
        one_by_one(&stream)
            .await
            .report("apply, one change per call");
        batched(&stream, 10).await.report("apply_batch of 10");
        batched(&stream, 100).await.report("apply_batch of 100");
        let local = tokio::task::LocalSet::new();
        let (run, seen) = local.run_until(batched_with_watcher(&stream, 10)).await;
        run.report("apply_batch of 10, one watcher");
        println!("  (the watcher received {seen} events, the last being a marker write)");
    });
}
