//! The list and get routes through real HTTP: happy paths, filters,
//! pagination and every 4xx.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use std::collections::BTreeSet;

use blox_core::model::{Entity, InstanceStatus, TaskStatus};
use http_support::{PREFIX, Server, encode, instance, task};
use serde_json::Value;

/// Three instances (two in prod, one draining) and four tasks.
async fn populated() -> Server {
    let s = Server::start().await;
    let mut draining = instance("prod", "i-2", 3);
    draining.status = InstanceStatus::Draining;
    s.put(vec![
        Entity::from(instance("prod", "i-1", 1)),
        Entity::from(draining),
        Entity::from(instance("staging", "i-3", 1)),
        Entity::from(task("prod", "t-1", TaskStatus::Running, Some("deploy-a"))),
        Entity::from(task("prod", "t-2", TaskStatus::Pending, Some("deploy-a"))),
        Entity::from(task("prod", "t-3", TaskStatus::Running, Some("deploy-b"))),
        Entity::from(task(
            "staging",
            "t-4",
            TaskStatus::Running,
            Some("deploy-a"),
        )),
    ])
    .await;
    s
}

/// The ids (last ARN segment) of a list response's items, in order.
fn ids(body: &Value, arn_field: &str) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let arn = i["entity"][arn_field].as_str().unwrap();
            arn.rsplit('/').next().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn listing_instances_returns_every_instance_with_metadata() {
    let s = populated().await;
    let r = s.get("/v1/instances").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = r.json();
    assert_eq!(ids(&body, "containerInstanceARN"), ["i-1", "i-2", "i-3"]);
    assert_eq!(
        body["metadata"]["entityVersion"],
        s.cache.revision().to_string()
    );
    assert!(body.get("nextToken").is_none());
    let first = &body["items"][0];
    let stored = s
        .cache
        .get_instance(&format!("{PREFIX}:container-instance/prod/i-1"))
        .unwrap();
    assert_eq!(
        first["metadata"]["entityVersion"],
        stored.revision.to_string()
    );
    assert_eq!(first["entity"]["version"], 1);
    assert_eq!(first["entity"]["status"], "ACTIVE");
}

#[tokio::test]
async fn instance_filters_combine_and_accept_draining_and_cluster_arns() {
    let s = populated().await;
    let r = s.get("/v1/instances?status=draining").await.json();
    assert_eq!(ids(&r, "containerInstanceARN"), ["i-2"]);
    let r = s.get("/v1/instances?cluster=staging").await.json();
    assert_eq!(ids(&r, "containerInstanceARN"), ["i-3"]);
    let by_arn = format!(
        "/v1/instances?cluster={}",
        encode(&format!("{PREFIX}:cluster/prod"))
    );
    let r = s.get(&by_arn).await.json();
    assert_eq!(ids(&r, "containerInstanceARN"), ["i-1", "i-2"]);
    let r = s
        .get("/v1/instances?cluster=prod&status=ACTIVE")
        .await
        .json();
    assert_eq!(ids(&r, "containerInstanceARN"), ["i-1"]);
    let r = s.get("/v1/instances?cluster=nowhere").await.json();
    assert_eq!(r["items"], serde_json::json!([]));
}

#[tokio::test]
async fn task_filters_combine_in_any_combination() {
    let s = populated().await;
    let cases: &[(&str, &[&str])] = &[
        ("", &["t-1", "t-2", "t-3", "t-4"]),
        ("?status=running", &["t-1", "t-3", "t-4"]),
        ("?cluster=prod", &["t-1", "t-2", "t-3"]),
        ("?startedBy=deploy-a", &["t-1", "t-2", "t-4"]),
        ("?status=RUNNING&cluster=prod", &["t-1", "t-3"]),
        ("?status=running&startedBy=deploy-a", &["t-1", "t-4"]),
        ("?cluster=prod&startedBy=deploy-a", &["t-1", "t-2"]),
        ("?cluster=prod&startedBy=deploy-a&status=pending", &["t-2"]),
        ("?startedBy=nobody", &[]),
    ];
    for (query, expected) in cases {
        let r = s.get(&format!("/v1/tasks{query}")).await;
        assert_eq!(r.status, 200, "{query}");
        assert_eq!(ids(&r.json(), "taskARN"), *expected, "{query}");
    }
}

#[tokio::test]
async fn getting_an_entity_accepts_raw_and_url_encoded_arns_and_cluster_arns() {
    let s = populated().await;
    let task_arn = format!("{PREFIX}:task/prod/t-1");
    let cluster_arn = format!("{PREFIX}:cluster/prod");
    for path in [
        format!("/v1/tasks/prod/{task_arn}"),
        format!("/v1/tasks/prod/{}", encode(&task_arn)),
        format!("/v1/tasks/{}/{}", encode(&cluster_arn), encode(&task_arn)),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        let body = r.json();
        assert_eq!(body["entity"]["taskARN"], task_arn.as_str(), "{path}");
        assert!(
            body["entity"].get("taskArn").is_none(),
            "{path}: one spelling"
        );
        let stored = s.cache.get_task(&task_arn).unwrap();
        assert_eq!(
            body["metadata"]["entityVersion"],
            stored.revision.to_string()
        );
    }
    let instance_arn = format!("{PREFIX}:container-instance/prod/i-2");
    let r = s.get(&format!("/v1/instances/prod/{instance_arn}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entity"]["status"], "DRAINING");
}

#[tokio::test]
async fn unknown_entities_and_cluster_mismatches_are_404_with_v03_text() {
    let s = populated().await;
    let missing = format!("/v1/tasks/prod/{PREFIX}:task/prod/nope");
    assert!(
        s.get(&missing)
            .await
            .error_message(404)
            .starts_with("Task not found")
    );
    let wrong_cluster = format!("/v1/tasks/staging/{PREFIX}:task/prod/t-1");
    assert!(
        s.get(&wrong_cluster)
            .await
            .error_message(404)
            .contains("staging")
    );
    let wrong_kind = format!("/v1/instances/prod/{PREFIX}:task/prod/t-1");
    s.get(&wrong_kind).await.error_message(404);
    let missing_instance = format!("/v1/instances/prod/{PREFIX}:container-instance/prod/i-9");
    s.get(&missing_instance).await.error_message(404);
    let instance_wrong_cluster =
        format!("/v1/instances/staging/{PREFIX}:container-instance/prod/i-1");
    s.get(&instance_wrong_cluster).await.error_message(404);
}

#[tokio::test]
async fn a_path_that_names_no_entity_is_404_the_only_error_v03_declares_for_gets() {
    let s = populated().await;
    let m = s.get("/v1/tasks/prod/not-an-arn").await.error_message(404);
    assert!(m.starts_with("Task not found"), "{m}");
    let bad_cluster = format!("/v1/tasks/bad%20name/{PREFIX}:task/prod/t-1");
    s.get(&bad_cluster).await.error_message(404);
    // A client that leaves the cluster empty.
    for path in [
        format!("/v1/tasks/{PREFIX}:task/prod/t-1"),
        format!("/v1/tasks//{PREFIX}:task/prod/t-1"),
    ] {
        let m = s.get(&path).await.error_message(404);
        assert!(m.starts_with("Task not found"), "{path}: {m}");
    }
    let m = s
        .get(&format!(
            "/v1/instances/{PREFIX}:container-instance/prod/i-1"
        ))
        .await
        .error_message(404);
    assert!(m.starts_with("Instance not found"), "{m}");
}

#[tokio::test]
async fn bad_filters_are_400_with_v03_text() {
    let s = populated().await;
    let cases = [
        ("/v1/tasks?colour=red", "unknown query parameter"),
        ("/v1/instances?startedBy=x", "unknown query parameter"),
        ("/v1/tasks?status=running&status=pending", "more than once"),
        ("/v1/tasks?cluster=prod&cluster=prod", "more than once"),
        ("/v1/tasks?status=sleeping", "Invalid status: task status"),
        ("/v1/tasks?status=draining", "Invalid status: task status"),
        (
            "/v1/instances?status=running",
            "Invalid status: instance status",
        ),
        ("/v1/instances?status=", "empty value"),
        ("/v1/tasks?cluster=a%20b", "Invalid cluster ARN or name"),
        ("/v1/tasks?maxResults=0", "maxResults"),
        ("/v1/tasks?maxResults=1001", "maxResults"),
        ("/v1/tasks?maxResults=many", "maxResults"),
        ("/v1/instances?maxResults=-5", "maxResults"),
        ("/v1/tasks?nextToken=zzzz", "nextToken"),
        ("/v1/tasks?nextToken=abc", "nextToken"),
    ];
    for (path, expected) in cases {
        let message = s.get(path).await.error_message(400);
        assert!(message.contains(expected), "{path}: {message}");
    }
}

#[tokio::test]
async fn a_next_token_of_the_other_kind_is_400() {
    let s = populated().await;
    let page = s.get("/v1/instances?maxResults=1").await.json();
    let token = page["nextToken"].as_str().unwrap();
    s.get(&format!("/v1/tasks?nextToken={token}"))
        .await
        .error_message(400);
}

#[tokio::test]
async fn pagination_walks_every_matching_entity_exactly_once() {
    let s = Server::start().await;
    let tasks: Vec<Entity> = (0..57)
        .map(|n| {
            let status = if n % 3 == 0 {
                TaskStatus::Stopped
            } else {
                TaskStatus::Running
            };
            Entity::from(task("prod", &format!("t-{n:03}"), status, None))
        })
        .collect();
    s.put(tasks).await;
    for (filter, expected) in [("", 57), ("&status=running", 38)] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/v1/tasks?maxResults=10{filter}");
            if let Some(t) = &token {
                path.push_str(&format!("&nextToken={t}"));
            }
            let r = s.get(&path).await;
            assert_eq!(r.status, 200);
            let body = r.json();
            let page = ids(&body, "taskARN");
            assert!(page.len() <= 10);
            seen.extend(page);
            pages += 1;
            match body.get("nextToken") {
                Some(t) => token = Some(t.as_str().unwrap().to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected, "{filter}");
        assert_eq!(
            seen.iter().collect::<BTreeSet<_>>().len(),
            expected,
            "duplicates"
        );
        assert_eq!(pages, expected.div_ceil(10));
        let full = match filter.strip_prefix('&') {
            Some(f) => format!("/v1/tasks?{f}"),
            None => "/v1/tasks".to_owned(),
        };
        let all = ids(&s.get(&full).await.json(), "taskARN");
        assert_eq!(seen, all, "pages in the same order as a full list");
    }
}

#[tokio::test]
async fn without_max_results_a_list_returns_everything() {
    let s = Server::start().await;
    let tasks: Vec<Entity> = (0..1200)
        .map(|n| {
            Entity::from(task(
                "prod",
                &format!("t-{n:04}"),
                TaskStatus::Running,
                None,
            ))
        })
        .collect();
    s.put(tasks).await;
    let body = s.get("/v1/tasks").await.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 1200);
    assert!(body.get("nextToken").is_none());
}

#[tokio::test]
async fn a_list_revision_advances_with_writes() {
    let s = populated().await;
    let before = s.get("/v1/tasks").await.json()["metadata"]["entityVersion"].clone();
    let rev = s.put_task("prod", "t-9", TaskStatus::Running).await;
    let after = s.get("/v1/tasks").await.json();
    assert_ne!(after["metadata"]["entityVersion"], before);
    assert_eq!(after["metadata"]["entityVersion"], rev.to_string());
}

#[tokio::test]
async fn lists_and_gets_are_503_until_the_cache_has_loaded() {
    let store = blox_state::store::memory::MemoryStore::new();
    let (cache, _writer) = blox_state::cache::cache();
    let app = blox_state::http::router(blox_state::http::ApiState::new(
        cache,
        std::sync::Arc::new(store),
    ));
    let addr = http_support::serve(app).await;
    for path in [
        "/v1/tasks".to_owned(),
        "/v1/instances?status=active".to_owned(),
        format!("/v1/tasks/prod/{PREFIX}:task/prod/t-1"),
    ] {
        let r = http_support::client::get(addr, &path).await;
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
        assert!(r.error_message(503).contains("loading"), "{path}");
    }
    // Bad requests are still told so.
    http_support::client::get(addr, "/v1/tasks?bogus=1")
        .await
        .error_message(400);
}

#[tokio::test]
async fn old_format_arns_without_the_cluster_work_in_paths_and_filters() {
    let s = Server::start().await;
    let mut t = task("prod", "x", TaskStatus::Running, None);
    t.task_arn = http_support::arn("task/0123456789abcdef");
    s.put(vec![Entity::from(t.clone())]).await;
    let r = s.get(&format!("/v1/tasks/prod/{}", t.task_arn)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["entity"]["taskARN"], t.task_arn.as_str());
    s.get(&format!("/v1/tasks/staging/{}", t.task_arn))
        .await
        .error_message(404);
    // A cluster ARN may also be given unencoded in the query string.
    let r = s
        .get(&format!("/v1/tasks?cluster={PREFIX}:cluster/prod"))
        .await
        .json();
    assert_eq!(ids(&r, "taskARN"), ["0123456789abcdef"]);
}
