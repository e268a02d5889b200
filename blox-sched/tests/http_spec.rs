//! Every success response of the daemon-scheduler routes validates against
//! Blox v0.3's `spec/blox-v0.3/daemon-scheduler.swagger.json` (extra fields
//! allowed), so a v0.3 client works unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_sched_support;

use std::collections::HashMap;
use std::sync::Arc;

use blox_core::model::Timestamp;
use blox_sched::daemon::DeploymentTracker;
use blox_sched::scheduler::{InstanceBackoff, Snapshot};
use http_sched_support::spec::Spec;
use http_sched_support::{Server, create_body, instance};
use serde_json::{Value, json};

#[tokio::test]
async fn every_success_response_matches_the_v03_spec() {
    let spec = Spec::daemon_scheduler();
    let s = Server::start().await;

    let r = s.get("/v1/ping").await;
    assert_eq!(r.status, 200);

    // POST /environments, with and without blox's extensions.
    let r = s
        .post("/v1/environments", &create_body("web", "prod", "web:1"))
        .await;
    assert_eq!(r.status, 200);
    spec.assert_valid(
        spec.operation_schema("post", "/environments", 200),
        &r.json(),
    );
    let mut extended = create_body("logs", "prod", "logs:1");
    extended["instanceGroup"]["attributes"] = json!([{"name": "gpu"}]);
    extended["maxUnavailable"] = json!(3);
    let r = s.post("/v1/environments", &extended).await;
    assert_eq!(r.status, 200);
    spec.assert_valid(
        spec.operation_schema("post", "/environments", 200),
        &r.json(),
    );

    // GET /environments (all, filtered, paged) and GET /environments/{name}.
    for path in [
        "/v1/environments",
        "/v1/environments?cluster=prod",
        "/v1/environments?maxResults=1",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200);
        spec.assert_valid(spec.response_schema("/environments", 200), &r.json());
    }
    let r = s.get("/v1/environments/web").await;
    assert_eq!(r.status, 200);
    let env = r.json();
    spec.assert_valid(spec.response_schema("/environments/{name}", 200), &env);

    // POST /environments/{name}/deployments.
    let token = env["deploymentToken"].as_str().unwrap();
    let r = s
        .post_raw(
            &format!("/v1/environments/web/deployments?deploymentToken={token}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let dep = r.json();
    spec.assert_valid(
        spec.operation_schema("post", "/environments/{name}/deployments", 200),
        &dep,
    );
    let id = dep["id"].as_str().unwrap();

    // PUT (beyond v0.3) answers an Environment.
    let r = s
        .put_raw("/v1/environments/web", r#"{"taskDefinition": "web:2"}"#)
        .await;
    assert_eq!(r.status, 200);
    spec.assert_valid(spec.definition("Environment"), &r.json());

    // A running deployment with a failed instance: v0.3's status and ARNs.
    let i1 = instance("prod", "i1");
    s.put(vec![i1.clone().into()]).await;
    let now = Timestamp::now();
    let mut backoff = HashMap::new();
    backoff.insert(
        i1.container_instance_arn.clone(),
        InstanceBackoff {
            until: now.plus(std::time::Duration::from_secs(60)),
            failures: 1,
            last_reason: Some("CannotPullContainerError".into()),
        },
    );
    let snap = Snapshot::new(
        vec![Arc::new(i1)],
        Vec::new(),
        Vec::new(),
        backoff,
        s.envs.load().await.unwrap(),
        now,
    );
    DeploymentTracker::new(s.envs.clone())
        .sync(&snap)
        .await
        .unwrap();
    let r = s
        .get(&format!("/v1/environments/web/deployments/{id}"))
        .await;
    assert_eq!(r.status, 200);
    let failed = r.json();
    assert_eq!(failed["failedInstances"].as_array().unwrap().len(), 1);
    spec.assert_valid(
        spec.response_schema("/environments/{name}/deployments/{id}", 200),
        &failed,
    );
    let r = s.get("/v1/environments/web/deployments").await;
    assert_eq!(r.status, 200);
    spec.assert_valid(
        spec.response_schema("/environments/{name}/deployments", 200),
        &r.json(),
    );

    // DELETE answers 200 (v0.3 declares no body).
    assert_eq!(s.delete("/v1/environments/logs").await.status, 200);
}

#[tokio::test]
async fn stream_entities_match_the_spec_definitions() {
    let spec = Spec::daemon_scheduler();
    let s = Server::start().await;
    let mut st = s.stream("/v1/stream/environments").await;
    s.create_and_deploy("web", "prod", "web:1").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = st.next_line().await.unwrap();
        let kind = line["type"].as_str().unwrap().to_owned();
        let definition = match kind.as_str() {
            "environment" => "Environment",
            "deployment" => "Deployment",
            other => panic!("unexpected line type {other}"),
        };
        spec.assert_valid(spec.definition(definition), &line["entity"]);
        if !seen.contains(&kind) {
            seen.push(kind);
        }
    }
}

#[test]
fn the_checker_rejects_a_status_v03_does_not_know() {
    let spec = Spec::daemon_scheduler();
    let bad: Value = json!({
        "id": "x", "status": "failed", "taskDefinition": "web:1", "environmentName": "web"
    });
    let v = spec.violations(spec.definition("Deployment"), &bad);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("status"), "{v:?}");
}
