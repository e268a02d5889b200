//! What formatting timestamps costs on the hot path: encoding tasks as JSON
//! (HTTP lists, stream lines). Each realistic task carries three timestamps
//! (created, started, updated). Reports the median time to serialize one
//! `Timestamp` and one task, and the timestamps' share of the task.
//! Run: `cargo bench -p blox-benches --bench timestamp_format`.

use blox_benches::{percentile, report, sample, task};
use blox_core::model::{TaskStatus, Timestamp};

/// Items serialized per timed sample.
const BATCH: usize = 1_000;
/// Timed samples per figure.
const RUNS: usize = 300;

/// Median nanoseconds to serialize one of `items` (cycled) into a reused buffer.
fn median_ns<T: serde::Serialize>(items: &[T]) -> f64 {
    let mut buf = Vec::with_capacity(4096);
    let mut k = 0usize;
    let mut samples = sample(RUNS, || {
        for _ in 0..BATCH {
            buf.clear();
            k = (k + 1) % items.len();
            if serde_json::to_writer(&mut buf, &items[k]).is_err() {
                return;
            }
            std::hint::black_box(&buf);
        }
    });
    percentile(&mut samples, 50).as_secs_f64() * 1e9 / BATCH as f64
}

fn main() {
    // Instants spread over a few years, milliseconds varying.
    let stamps: Vec<Timestamp> = (0..4_096i64)
        .map(|n| Timestamp::from_millis(1_600_000_000_000 + n * 37_123_457))
        .collect();
    let tasks: Vec<_> = (0..256)
        .map(|n| task(0, n, n % 16, TaskStatus::Running, 1))
        .collect();
    let per_stamp = median_ns(&stamps);
    let per_task = median_ns(&tasks);
    report(
        "serialize one Timestamp, median",
        format!("{per_stamp:.1}"),
        "ns",
    );
    report(
        "serialize one task (3 timestamps), median",
        format!("{per_task:.0}"),
        "ns",
    );
    report(
        "timestamps' share of a task's serialization",
        format!("{:.1}", 300.0 * per_stamp / per_task),
        "%",
    );
}
