//! Cache reads over 10,000 instances and 100,000 tasks: get by ARN, list by
//! cluster+status (about 1,000 tasks), and memory per cached task against its
//! JSON size. Run: `cargo bench -p blox-benches --bench cache_read`.

use std::time::Duration;

use blox_benches::{instance, percentile, report, resident_bytes, sample, task};
use blox_core::model::{Entity, TaskStatus};
use blox_state::cache::cache;
use blox_state::{Filter, Revision, Versioned, WatchEvent};

const CLUSTERS: usize = 10;
const INSTANCES_PER_CLUSTER: usize = 1_000;
const TASKS_PER_CLUSTER: usize = 10_000;
/// Of each cluster's tasks this many are RUNNING, the rest STOPPED.
const RUNNING_PER_CLUSTER: usize = 1_000;

fn main() {
    let (reader, mut writer) = cache();
    let mut seq = 0u64;
    let mut put = |e: Entity, w: &mut blox_state::CacheWriter| {
        seq += 1;
        w.apply(&WatchEvent::Put(Versioned {
            entity: e,
            revision: Revision::new(1, seq),
        }));
    };
    for c in 0..CLUSTERS {
        for n in 0..INSTANCES_PER_CLUSTER {
            put(instance(c, n).into(), &mut writer);
        }
    }
    let json_bytes: usize = serde_json::to_string(&task(0, 0, 0, TaskStatus::Running, 1))
        .map(|s| s.len())
        .unwrap_or(0);
    let before = resident_bytes();
    let mut task_arns = Vec::new();
    for c in 0..CLUSTERS {
        for n in 0..TASKS_PER_CLUSTER {
            let status = if n < RUNNING_PER_CLUSTER {
                TaskStatus::Running
            } else {
                TaskStatus::Stopped
            };
            let t = task(c, n, n % INSTANCES_PER_CLUSTER, status, 1);
            task_arns.push(t.task_arn.clone());
            put(t.into(), &mut writer);
        }
    }
    let after = resident_bytes();
    let (i, t) = reader.len();
    report("cached instances", i, "");
    report("cached tasks", t, "");
    report("task JSON size", json_bytes, "bytes");
    if let (Some(b), Some(a)) = (before, after) {
        report(
            "resident memory per cached task (incl. indexes)",
            (a.saturating_sub(b)) / t as u64,
            "bytes",
        );
    }

    // get by ARN: time batches of 1,000 lookups, report the per-lookup median.
    let mut k = 0usize;
    let mut gets = sample(200, || {
        for _ in 0..1_000 {
            k = (k + 7_919) % task_arns.len();
            let got = reader.get_task(task_arns[k].as_str());
            std::hint::black_box(got);
        }
    });
    let per_get = percentile(&mut gets, 50) / 1_000;
    report(
        "get task by ARN, median",
        format!("{:.3}", per_get.as_secs_f64() * 1e6),
        "µs",
    );

    let filter = Filter {
        cluster: Some("bench-03".into()),
        status: Some("RUNNING".into()),
        ..Filter::default()
    };
    let n = reader.list_tasks(&filter).len();
    let mut lists = sample(200, || {
        std::hint::black_box(reader.list_tasks(&filter));
    });
    report("list cluster+status result size", n, "tasks");
    report(
        "list cluster+status, median",
        format!("{:.3}", ms(percentile(&mut lists, 50))),
        "ms",
    );
    report(
        "list cluster+status, p99",
        format!("{:.3}", ms(percentile(&mut lists, 99))),
        "ms",
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
