//! `GET /v1/stream/environments` over real HTTP: creates, deployments and
//! deletes as NDJSON lines, resuming from a revision, and its 4xx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_sched_support;

use http_sched_support::Server;
use serde_json::Value;

/// Reads lines until one matches, returning it (fails after a generous wait).
async fn next_matching(
    stream: &mut http_sched_support::client::Stream,
    f: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let line = stream.next_line().await.expect("stream ended");
        if f(&line) {
            return line;
        }
    }
}

#[tokio::test]
async fn the_stream_sees_a_create_a_deployment_and_a_delete() {
    let s = Server::start().await;
    let mut st = s.stream("/v1/stream/environments").await;
    assert_eq!(st.status, 200);
    assert_eq!(st.header("content-type"), Some("application/octet-stream"));

    let dep = s.create_and_deploy("web", "prod", "web:1").await;
    let created = st.next_line().await.unwrap();
    assert_eq!(created["type"], "environment");
    assert_eq!(created["environmentName"], "web");
    assert_eq!(created["entity"]["taskDefinition"], "web:1");
    assert!(created["metadata"]["entityVersion"].is_string());
    assert!(created["metadata"].get("deleted").is_none());

    let deployed = next_matching(&mut st, |l| l["type"] == "deployment").await;
    assert_eq!(deployed["id"], dep["id"]);
    assert_eq!(deployed["entity"]["status"], "pending");

    assert_eq!(s.delete("/v1/environments/web").await.status, 200);
    let deleted = next_matching(&mut st, |l| {
        l["type"] == "environment" && l["metadata"]["deleted"] == true
    })
    .await;
    assert_eq!(deleted["environmentName"], "web");
    // A delete carries the last known entity.
    assert_eq!(deleted["entity"]["taskDefinition"], "web:1");
    assert_eq!(deleted["entity"]["activeDeployment"], dep["id"]);
    let dep_deleted = next_matching(&mut st, |l| l["type"] == "deployment").await;
    assert_eq!(dep_deleted["metadata"]["deleted"], true);
    assert_eq!(dep_deleted["entity"]["id"], dep["id"]);
}

#[tokio::test]
async fn a_delete_of_an_environment_created_before_the_stream_carries_it() {
    let s = Server::start().await;
    s.create_env("web", "prod", "web:7").await;
    let mut st = s.stream("/v1/stream/environments").await;
    assert_eq!(s.delete("/v1/environments/web").await.status, 200);
    let line = st.next_line().await.unwrap();
    assert_eq!(line["metadata"]["deleted"], true);
    assert_eq!(line["entity"]["taskDefinition"], "web:7");
}

#[tokio::test]
async fn the_stream_filters_by_cluster_name_or_arn() {
    let s = Server::start().await;
    let mut st = s
        .stream("/v1/stream/environments?cluster=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acluster%2Fprod")
        .await;
    assert_eq!(st.status, 200);
    s.create_and_deploy("dev-env", "dev", "a:1").await;
    s.create_and_deploy("prod-env", "prod", "a:1").await;
    for _ in 0..3 {
        let line = st.next_line().await.unwrap();
        assert_eq!(line["environmentName"], "prod-env", "{line}");
    }
}

#[tokio::test]
async fn a_delete_that_stops_tasks_is_first_seen_as_deleting() {
    let s = Server::start().await;
    s.create_and_deploy("web", "prod", "web:1").await;
    let mut st = s.stream("/v1/stream/environments?environment=web").await;
    assert_eq!(
        s.delete("/v1/environments/web?stopTasks=true").await.status,
        200
    );
    let line = st.next_line().await.unwrap();
    assert_eq!(line["type"], "environment");
    assert_eq!(line["entity"]["deleting"], true);
}

#[tokio::test]
async fn the_stream_resumes_after_a_list_revision_and_filters_by_environment() {
    let s = Server::start().await;
    s.create_env("a", "prod", "a:1").await;
    let listed = s.get("/v1/environments").await.json();
    let rev = listed["metadata"]["entityVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // Changes made after the list, before the stream opens, are not missed.
    s.create_env("b", "prod", "b:1").await;
    s.create_env("c", "prod", "c:1").await;
    let mut st = s
        .stream(&format!(
            "/v1/stream/environments?entityVersion={rev}&environment=c"
        ))
        .await;
    assert_eq!(st.status, 200);
    let line = st.next_line().await.unwrap();
    assert_eq!(line["environmentName"], "c", "b is filtered out: {line}");

    // A line's entityVersion resumes right after it.
    let after = line["metadata"]["entityVersion"].as_str().unwrap();
    let mut again = s
        .stream(&format!("/v1/stream/environments?entityVersion={after}"))
        .await;
    s.create_env("d", "prod", "d:1").await;
    assert_eq!(again.next_line().await.unwrap()["environmentName"], "d");
}

#[tokio::test]
async fn bad_stream_requests_are_4xx_with_v03_text() {
    let s = Server::start().await;
    let r = s.get("/v1/stream/environments?entityVersion=banana").await;
    let m = r.error_message(400);
    assert!(m.starts_with("Invalid entity version"), "{m}");
    let m = s
        .get("/v1/stream/environments?status=ACTIVE")
        .await
        .error_message(400);
    assert!(
        m.starts_with("At least one of the filters provided is not supported"),
        "{m}"
    );
    let m = s
        .get("/v1/stream/environments?cluster=a%20b")
        .await
        .error_message(400);
    assert!(m.starts_with("Invalid cluster ARN or name"), "{m}");
    // A revision of another store epoch cannot be resumed: relist.
    let m = s
        .get("/v1/stream/environments?entityVersion=999999:1")
        .await
        .error_message(410);
    assert!(m.starts_with("Entity version is out of range"), "{m}");
    assert!(m.contains("list environments"), "{m}");
}
