//! `GET /v1/environments/{name}/instances` over real HTTP: the daemon's
//! state on each eligible instance (running, pending, failed with ECS's
//! reason), and the progress the tracker records on the deployment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_sched_support;

use std::collections::HashMap;
use std::sync::Arc;

use blox_core::model::{InstanceStatus, TaskStatus, Timestamp};
use blox_sched::daemon::DeploymentTracker;
use blox_sched::http::{SchedApiState, router};
use blox_sched::scheduler::{InstanceBackoff, Snapshot};
use blox_state::store::StateStore;
use blox_state::store::memory::MemoryStore;
use http_sched_support::{Server, client, instance, task};
use serde_json::json;

#[tokio::test]
async fn each_eligible_instance_is_running_pending_or_failed_with_its_reason() {
    let s = Server::start().await;
    let dep = s.create_and_deploy("web", "prod", "web:1").await;
    let id = dep["id"].as_str().unwrap().to_owned();

    let i1 = instance("prod", "i1");
    let i2 = instance("prod", "i2");
    let i3 = instance("prod", "i3");
    let mut draining = instance("prod", "i4");
    draining.status = InstanceStatus::Draining;
    let elsewhere = instance("dev", "i5");
    let running = task("prod", "t1", "i1", &id, TaskStatus::Running);
    let foreign = task("prod", "t2", "i3", "someone-else", TaskStatus::Running);
    s.put(vec![
        i1.clone().into(),
        i2.clone().into(),
        i3.clone().into(),
        draining.clone().into(),
        elsewhere.clone().into(),
        running.clone().into(),
        foreign.clone().into(),
    ])
    .await;

    // The runner held i2 in backoff; the tracker records it on the deployment.
    let now = Timestamp::now();
    let mut backoff = HashMap::new();
    backoff.insert(
        i2.container_instance_arn.clone(),
        InstanceBackoff {
            until: now.plus(std::time::Duration::from_secs(60)),
            failures: 2,
            last_reason: Some("RESOURCE:MEMORY".into()),
        },
    );
    let snap = Snapshot::new(
        [&i1, &i2, &i3, &draining, &elsewhere]
            .into_iter()
            .map(|i| Arc::new(i.clone()))
            .collect(),
        vec![Arc::new(running.clone()), Arc::new(foreign)],
        Vec::new(),
        backoff,
        s.envs.load().await.unwrap(),
        now,
    );
    DeploymentTracker::new(s.envs.clone())
        .sync(&snap)
        .await
        .unwrap();

    let r = s.get("/v1/environments/web/instances").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["environmentName"], "web");
    assert_eq!(v["activeDeployment"], id.as_str());
    assert_eq!(v["taskDefinition"], "web:1");
    assert_eq!(
        v["summary"],
        json!({"running": 1, "pending": 1, "failed": 1})
    );
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        3,
        "only eligible instances of the cluster: {v:#}"
    );
    assert_eq!(items[0]["instance"], i1.container_instance_arn.as_str());
    assert_eq!(items[0]["state"], "running");
    assert_eq!(items[0]["task"], running.task_arn.as_str());
    assert_eq!(items[1]["instance"], i2.container_instance_arn.as_str());
    assert_eq!(items[1]["state"], "failed");
    assert_eq!(items[1]["reason"], "RESOURCE:MEMORY");
    assert_eq!(items[2]["instance"], i3.container_instance_arn.as_str());
    assert_eq!(items[2]["state"], "pending");
    assert!(items[2].get("task").is_none());

    // The deployment shows v0.3's status and failed ARNs, plus reasons and progress.
    let d = s
        .get(&format!("/v1/environments/web/deployments/{id}"))
        .await
        .json();
    assert_eq!(d["status"], "running");
    assert_eq!(
        d["failedInstances"],
        json!([i2.container_instance_arn.as_str()])
    );
    assert_eq!(
        d["failureReasons"][i2.container_instance_arn.as_str()],
        "RESOURCE:MEMORY"
    );
    assert_eq!(d["progress"], json!({"done": 1, "total": 3}));
}

#[tokio::test]
async fn an_environment_without_a_deployment_is_pending_everywhere() {
    let s = Server::start().await;
    s.create_env("web", "prod", "web:1").await;
    s.put(vec![instance("prod", "i1").into()]).await;
    let v = s.get("/v1/environments/web/instances").await.json();
    assert!(v.get("activeDeployment").is_none());
    assert_eq!(v["items"][0]["state"], "pending");
    assert_eq!(v["summary"]["pending"], 1);
}

#[tokio::test]
async fn ping_answers_before_the_cache_has_loaded_and_status_is_503_until_then() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let (cache, _writer) = blox_state::cache::cache();
    let app = router(SchedApiState::new(cache, Arc::clone(&store)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(client::get(addr, "/v1/ping").await.status, 200);
    let body = http_sched_support::create_body("web", "prod", "web:1").to_string();
    let r = client::request(addr, "POST", "/v1/environments", Some(&body)).await;
    assert_eq!(r.status, 200);
    let r = client::get(addr, "/v1/environments/web/instances").await;
    let m = r.error_message(503);
    assert!(m.contains("not loaded"), "{m}");
    assert_eq!(r.header("retry-after"), Some("1"));
    server.abort();
}
