//! The daemon as a user first runs it at production shape: one process on a
//! real etcd with etcd's default limits (128 operations per transaction,
//! 1.5 MiB per request), `--simulate 200`, several environments deployed
//! one after another and then together. Every deployment completes with
//! exactly one task of its environment on every instance.
//!
//! This shape once stalled for good: resolved intents were deleted in one
//! transaction, and past 128 of them etcd refused it on every cycle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use blox_state::testing::etcd_server::EtcdServer;
use serde_json::Value;
use support::{client, create_and_deploy, daemon, free_port, items, local, wait_for};

const INSTANCES: usize = 200;

/// The entity of a list item (the item itself where it is not wrapped).
fn entity(item: &Value) -> &Value {
    item.get("entity").unwrap_or(item)
}

/// Waits until deployment `id` of `env` is `completed`.
async fn wait_completed(addr: SocketAddr, env: &str, id: &str) {
    let path = format!("/v1/environments/{env}/deployments/{id}");
    wait_for(
        &format!("deployment {id} of {env} to complete"),
        Duration::from_secs(180),
        async || client::get(addr, &path).await.json()["status"] == "completed",
    )
    .await;
}

/// Live tasks of each `startedBy` per instance.
async fn tasks_per_instance(addr: SocketAddr) -> HashMap<(String, String), usize> {
    let tasks = items(
        &client::get(addr, "/v1/tasks?cluster=sim&status=RUNNING")
            .await
            .json(),
    );
    let mut out = HashMap::new();
    for t in &tasks {
        let e = entity(t);
        let by = e["startedBy"].as_str().unwrap_or_default().to_owned();
        let on = e["containerInstanceARN"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        *out.entry((by, on)).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_on_200_instances_complete_on_etcd_with_default_limits() {
    let etcd = EtcdServer::start().await.unwrap();
    let addr = local(free_port());
    let _d = daemon(
        addr,
        &[
            "--simulate",
            &INSTANCES.to_string(),
            "--simulate-seed",
            "7",
            "--etcd-endpoint",
            &etcd.endpoint(),
        ],
    )
    .await;
    wait_for("readiness", Duration::from_secs(60), async || {
        client::get(addr, "/v1/ready").await.status == 200
    })
    .await;

    // One after another (the second once stopped at 160/200, the third at 0).
    let mut deployments = Vec::new();
    for env in ["logs", "metrics", "trace"] {
        let dep = create_and_deploy(addr, env, &format!("{env}:1")).await;
        let id = dep["id"].as_str().unwrap().to_owned();
        wait_completed(addr, env, &id).await;
        deployments.push((env, id));
    }
    // Then two at once.
    let mut together = Vec::new();
    for env in ["audit", "sidecar"] {
        let dep = create_and_deploy(addr, env, &format!("{env}:1")).await;
        together.push((env, dep["id"].as_str().unwrap().to_owned()));
    }
    for (env, id) in &together {
        wait_completed(addr, env, id).await;
    }
    deployments.extend(together);

    let counts = tasks_per_instance(addr).await;
    for (env, id) in &deployments {
        let on: Vec<usize> = counts
            .iter()
            .filter(|((by, _), _)| by == id)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(on.len(), INSTANCES, "{env}: a task on every instance");
        assert!(on.iter().all(|n| *n == 1), "{env}: one task per instance");
    }
    let status = client::get(addr, "/v1/environments/logs/instances").await;
    assert_eq!(status.status, 200);
}
