//! `gen-events`: writes the load benchmark's event set, one SQS message body
//! (an ECS state change event as EventBridge delivers it) per line.
//!
//! For `N` tasks over 10 clusters it writes `N / 10` container instance
//! events, then one RUNNING event per task (about 1.8 KB each), so 5,000
//! tasks make 5,500 messages. Events carry the current time, so they are
//! within any tombstone horizon when the benchmark replays them.
//!
//! Usage: `gen-events <tasks> <out.jsonl>`.

use std::io::{BufWriter, Write};

use blox_benches::{instance, instance_event_at, task, task_event_at};
use blox_core::model::{TaskStatus, Timestamp};

const CLUSTERS: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(tasks), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: gen-events <tasks> <out.jsonl>".into());
    };
    let tasks: usize = tasks.parse()?;
    let per_cluster_instances = (tasks / CLUSTERS / 10).max(1);
    let now = Timestamp::now().to_string();
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    let mut bytes = 0usize;
    for c in 0..CLUSTERS {
        for n in 0..per_cluster_instances {
            let line = instance_event_at(&instance(c, n), &now);
            bytes += line.len();
            writeln!(w, "{line}")?;
        }
    }
    for n in 0..tasks {
        let c = n % CLUSTERS;
        let on = (n / CLUSTERS) % per_cluster_instances;
        let line = task_event_at(&task(c, n, on, TaskStatus::Running, 2), &now);
        bytes += line.len();
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    let messages = CLUSTERS * per_cluster_instances + tasks;
    eprintln!(
        "gen-events: {messages} messages, {} bytes per message on average, in {out}",
        bytes / messages.max(1)
    );
    Ok(())
}
