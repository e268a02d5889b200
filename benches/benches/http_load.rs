//! Load on the HTTP API: `GET /v1/tasks?cluster=..&status=RUNNING` (1,000
//! tasks per response) on a 100,000-task view, driven by `wrk` on loopback.
//! Run: `cargo bench -p blox-benches --bench http_load` (needs `wrk`:
//! `apt-get install wrk`).

use std::process::Command;
use std::sync::Arc;

use blox_benches::{instance, report, task};
use blox_core::model::{Entity, TaskStatus};
use blox_state::cache::cache;
use blox_state::http::{ApiState, router};
use blox_state::store::memory::MemoryStore;
use blox_state::{Revision, Versioned};

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    rt.block_on(async {
        let (reader, mut writer) = cache();
        let mut items = Vec::new();
        let mut put = |e: Entity| {
            let seq = items.len() as u64 + 1;
            items.push(Versioned {
                entity: e,
                revision: Revision::new(1, seq),
            });
        };
        for c in 0..10 {
            for n in 0..1_000 {
                put(instance(c, n).into());
            }
            for n in 0..10_000 {
                let status = if n < 1_000 {
                    TaskStatus::Running
                } else {
                    TaskStatus::Stopped
                };
                put(task(c, n, n % 1_000, status, 1).into());
            }
        }
        let revision = Revision::new(1, items.len() as u64);
        writer.replace(items, revision);
        let app = router(ApiState::new(reader.clone(), Arc::new(MemoryStore::new())));
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        report(
            "view",
            format!("{} instances, {} tasks", reader.len().0, reader.len().1),
            "",
        );
        let url = format!("http://{addr}/v1/tasks?cluster=bench-03&status=RUNNING");
        let out = tokio::task::spawn_blocking(move || {
            Command::new("wrk")
                .args(["-t2", "-c16", "-d20s", "--latency", &url])
                .output()
        })
        .await;
        match out {
            Ok(Ok(o)) => print!("{}", String::from_utf8_lossy(&o.stdout)),
            _ => eprintln!("wrk is not installed: apt-get install wrk"),
        }
    });
}
