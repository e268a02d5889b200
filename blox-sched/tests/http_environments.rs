//! The environment routes over real HTTP: create, list, get, update,
//! delete, and every 4xx with its JSON message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_sched_support;

use std::sync::Arc;

use http_sched_support::{Server, create_body};
use serde_json::json;

#[tokio::test]
async fn ping_answers_ok() {
    let s = Server::start().await;
    let r = s.get("/v1/ping").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
}

#[tokio::test]
async fn creating_an_environment_returns_it_with_a_token_and_no_deployment() {
    let s = Server::start().await;
    let body = json!({
        "name": "logs",
        "instanceGroup": {
            "cluster": "prod",
            "attributes": [{"name": "ecs.instance-type", "value": "m5.large"}]
        },
        "taskDefinition": "logs:1",
        "drainingPolicy": "stop-immediately",
        "maxUnavailable": 2
    });
    let r = s.post("/v1/environments", &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let env = r.json();
    assert_eq!(env["name"], "logs");
    assert_eq!(env["instanceGroup"]["cluster"], "prod");
    assert_eq!(env["instanceGroup"]["attributes"][0]["value"], "m5.large");
    assert_eq!(env["taskDefinition"], "logs:1");
    assert_eq!(env["health"], "healthy");
    assert_eq!(env["drainingPolicy"], "stop-immediately");
    assert_eq!(env["maxUnavailable"], 2);
    assert_eq!(env["deploymentToken"].as_str().unwrap().len(), 32);
    assert!(env.get("activeDeployment").is_none());
    // It is stored, and creating did not deploy.
    let stored = s.envs.get("logs").await.unwrap();
    assert_eq!(stored.deployment_token, env["deploymentToken"]);
    assert!(s.envs.list_deployments("logs").await.unwrap().is_empty());
}

#[tokio::test]
async fn getting_an_environment_returns_its_current_token() {
    let s = Server::start().await;
    let created = s.create_env("web", "prod", "web:1").await;
    let r = s.get("/v1/environments/web").await;
    assert_eq!(r.status, 200);
    let got = r.json();
    assert_eq!(got["name"], "web");
    assert_eq!(got["deploymentToken"], created["deploymentToken"]);
}

#[tokio::test]
async fn listing_filters_by_cluster_name_or_arn_and_pages() {
    let s = Server::start().await;
    s.create_env("a", "prod", "a:1").await;
    s.create_env("b", "dev", "b:1").await;
    s.create_env(
        "c",
        "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
        "c:1",
    )
    .await;
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = s.get("/v1/environments").await;
    assert_eq!(all.status, 200);
    let all = all.json();
    assert_eq!(names(&all), ["a", "b", "c"]);
    assert!(all["metadata"]["entityVersion"].is_string());
    assert!(all.get("nextToken").is_none());

    let prod = s.get("/v1/environments?cluster=prod").await.json();
    assert_eq!(names(&prod), ["a", "c"]);
    let by_arn = s
        .get("/v1/environments?cluster=arn%3Aaws%3Aecs%3Aus-east-1%3A123456789012%3Acluster%2Fprod")
        .await
        .json();
    assert_eq!(names(&by_arn), ["a", "c"]);

    let first = s.get("/v1/environments?maxResults=2").await.json();
    assert_eq!(names(&first), ["a", "b"]);
    let token = first["nextToken"].as_str().unwrap();
    let second = s
        .get(&format!("/v1/environments?maxResults=2&nextToken={token}"))
        .await
        .json();
    assert_eq!(names(&second), ["c"]);
    assert!(second.get("nextToken").is_none());
}

#[tokio::test]
async fn putting_a_task_definition_changes_it_and_the_token() {
    let s = Server::start().await;
    let created = s.create_env("web", "prod", "web:1").await;
    let r = s
        .put_raw("/v1/environments/web", r#"{"taskDefinition": "web:2"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let updated = r.json();
    assert_eq!(updated["taskDefinition"], "web:2");
    assert_ne!(updated["deploymentToken"], created["deploymentToken"]);
    assert_eq!(
        s.get("/v1/environments/web").await.json()["taskDefinition"],
        "web:2"
    );
}

#[tokio::test]
async fn putting_settings_changes_only_those_and_the_token() {
    let s = Server::start().await;
    let created = s.create_env("web", "prod", "web:1").await;
    let body = r#"{
        "instanceGroup": {"cluster": "prod", "attributes": [{"name": "role", "value": "edge"}]},
        "drainingPolicy": "stop-immediately",
        "maxUnavailable": 4
    }"#;
    let r = s.put_raw("/v1/environments/web", body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let updated = r.json();
    assert_eq!(updated["instanceGroup"]["cluster"], "prod");
    assert_eq!(updated["instanceGroup"]["attributes"][0]["name"], "role");
    assert_eq!(updated["instanceGroup"]["attributes"][0]["value"], "edge");
    assert_eq!(updated["drainingPolicy"], "stop-immediately");
    assert_eq!(updated["maxUnavailable"], 4);
    assert_eq!(updated["taskDefinition"], "web:1", "not given: unchanged");
    assert_ne!(updated["deploymentToken"], created["deploymentToken"]);
    assert_eq!(s.get("/v1/environments/web").await.json(), updated);

    // An empty attribute list clears the selector.
    let r = s
        .put_raw(
            "/v1/environments/web",
            r#"{"instanceGroup": {"cluster": "prod", "attributes": []}}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["instanceGroup"].get("attributes").is_none());
    assert_eq!(r.json()["maxUnavailable"], 4);
}

#[tokio::test]
async fn an_update_that_moves_or_changes_nothing_is_400() {
    let s = Server::start().await;
    s.create_env("web", "prod", "web:1").await;
    let m = s
        .put_raw(
            "/v1/environments/web",
            r#"{"instanceGroup": {"cluster": "staging"}}"#,
        )
        .await
        .error_message(400);
    assert!(m.contains("cluster cannot change"), "{m}");
    let m = s
        .put_raw("/v1/environments/web", "{}")
        .await
        .error_message(400);
    assert!(m.contains("nothing to update"), "{m}");
    let m = s
        .put_raw("/v1/environments/web", r#"{"maxUnavailable": 0}"#)
        .await
        .error_message(400);
    assert!(m.contains("maxUnavailable"), "{m}");
    let m = s
        .put_raw("/v1/environments/web", r#"{"name": "other"}"#)
        .await
        .error_message(400);
    assert!(m.contains("unknown field"), "{m}");
    let m = s
        .put_raw("/v1/environments/web", r#"{"drainingPolicy": "never"}"#)
        .await
        .error_message(400);
    assert!(m.contains("drainingPolicy") || m.contains("variant"), "{m}");
    // Nothing changed.
    let env = s.get("/v1/environments/web").await.json();
    assert_eq!(env["maxUnavailable"], 1);
    assert_eq!(env["drainingPolicy"], "stop-when-last");
    // The cluster may be named by ARN or name alike.
    s.post(
        "/v1/environments",
        &create_body(
            "arn-env",
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
            "a:1",
        ),
    )
    .await;
    let r = s
        .put_raw(
            "/v1/environments/arn-env",
            r#"{"instanceGroup": {"cluster": "prod"}, "maxUnavailable": 2}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn deleting_removes_the_environment_and_leaves_tasks_by_default() {
    let s = Server::start().await;
    s.create_and_deploy("web", "prod", "web:1").await;
    let r = s.delete("/v1/environments/web").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "v0.3 answered an empty 200");
    assert_eq!(s.get("/v1/environments/web").await.status, 404);
    // Gone entirely: the name can be used again.
    s.create_env("web", "prod", "web:1").await;
}

#[tokio::test]
async fn deleting_with_stop_tasks_hides_it_until_its_tasks_are_stopped() {
    let s = Server::start().await;
    s.create_and_deploy("web", "prod", "web:1").await;
    let r = s.delete("/v1/environments/web?stopTasks=true").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(s.get("/v1/environments/web").await.status, 404);
    assert!(
        s.get("/v1/environments").await.json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Still marked in the desired state, so the scheduler stops its tasks.
    let desired = s.envs.load().await.unwrap();
    assert!(desired.environment("web").unwrap().environment.deleting);
    // Re-creating meanwhile is refused like a duplicate (v0.3's 400).
    let m = s
        .post("/v1/environments", &create_body("web", "prod", "web:1"))
        .await
        .error_message(400);
    assert!(m.starts_with("Environment web already exists"), "{m}");
    assert!(m.contains("being deleted"), "{m}");
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_message() {
    let s = Server::start().await;
    let m = s
        .post_raw("/v1/environments", Some("{not json"))
        .await
        .error_message(400);
    assert!(m.contains("invalid request body"), "{m}");
    let m = s
        .post_raw("/v1/environments", None)
        .await
        .error_message(400);
    assert!(m.contains("invalid request body"), "{m}");
    let m = s
        .post(
            "/v1/environments",
            &json!({"name": "a", "instanceGroup": {"cluster": "prod"}}),
        )
        .await
        .error_message(400);
    assert!(m.contains("missing field `taskDefinition`"), "{m}");
    let m = s
        .post(
            "/v1/environments",
            &json!({"name": "a", "instanceGroup": {"cluster": "prod"}, "taskDefinition": "a:1", "size": 3}),
        )
        .await
        .error_message(400);
    assert!(m.contains("unknown field `size`"), "{m}");
    let m = s
        .put_raw("/v1/environments/a", "[]")
        .await
        .error_message(400);
    assert!(m.contains("invalid request body"), "{m}");
}

#[tokio::test]
async fn invalid_fields_are_400_with_the_validation_message() {
    let s = Server::start().await;
    let m = s
        .post("/v1/environments", &create_body("a", "prod", "latest"))
        .await
        .error_message(400);
    assert!(m.contains("invalid task definition \"latest\""), "{m}");
    let m = s
        .post("/v1/environments", &create_body("a/b", "prod", "a:1"))
        .await
        .error_message(400);
    assert!(m.contains("invalid environment name"), "{m}");
    let m = s
        .post("/v1/environments", &create_body("a", "no spaces", "a:1"))
        .await
        .error_message(400);
    assert!(m.contains("invalid cluster"), "{m}");
    let mut zero = create_body("a", "prod", "a:1");
    zero["maxUnavailable"] = json!(0);
    let m = s.post("/v1/environments", &zero).await.error_message(400);
    assert!(m.contains("maxUnavailable"), "{m}");

    s.create_env("web", "prod", "web:1").await;
    let m = s
        .put_raw("/v1/environments/web", r#"{"taskDefinition": "web"}"#)
        .await
        .error_message(400);
    assert!(m.contains("invalid task definition"), "{m}");
}

#[tokio::test]
async fn a_duplicate_environment_is_400_as_in_v03() {
    let s = Server::start().await;
    s.create_env("web", "prod", "web:1").await;
    let m = s
        .post("/v1/environments", &create_body("web", "dev", "web:2"))
        .await
        .error_message(400);
    assert_eq!(m, "Environment web already exists");
}

#[tokio::test]
async fn unknown_environments_are_404_on_every_route_but_delete() {
    let s = Server::start().await;
    // Deleting is idempotent, as in v0.3 (whose spec declares no 404 there).
    for path in [
        "/v1/environments/nope",
        "/v1/environments/nope?stopTasks=true",
    ] {
        let r = s.delete(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.is_empty(), "{path}");
    }
    for m in [
        s.get("/v1/environments/nope").await.error_message(404),
        s.put_raw("/v1/environments/nope", r#"{"taskDefinition": "a:1"}"#)
            .await
            .error_message(404),
        s.get("/v1/environments/nope/deployments")
            .await
            .error_message(404),
        s.get("/v1/environments/nope/instances")
            .await
            .error_message(404),
        s.post_raw("/v1/environments/nope/deployments?deploymentToken=x", None)
            .await
            .error_message(404),
    ] {
        assert_eq!(m, "Environment nope does not exist");
    }
    // An invalid name in a path is simply not found.
    s.get("/v1/environments/a%20b").await.error_message(404);
}

#[tokio::test]
async fn unknown_repeated_empty_and_invalid_query_parameters_are_400() {
    let s = Server::start().await;
    s.create_env("web", "prod", "web:1").await;
    let m = s.get("/v1/environments?bogus=1").await.error_message(400);
    assert!(m.contains("unknown query parameter \"bogus\""), "{m}");
    let m = s
        .get("/v1/environments?cluster=a&cluster=b")
        .await
        .error_message(400);
    assert!(m.contains("more than once"), "{m}");
    let m = s.get("/v1/environments?cluster=").await.error_message(400);
    assert!(m.contains("empty value"), "{m}");
    let m = s
        .get("/v1/environments?cluster=has%20space")
        .await
        .error_message(400);
    assert!(m.contains("invalid cluster"), "{m}");
    let m = s
        .get("/v1/environments?maxResults=0")
        .await
        .error_message(400);
    assert!(m.contains("maxResults"), "{m}");
    let m = s
        .get("/v1/environments?nextToken=zz")
        .await
        .error_message(400);
    assert!(m.contains("nextToken"), "{m}");
    let m = s.get("/v1/environments/web?x=1").await.error_message(400);
    assert!(m.contains("allowed: none"), "{m}");
    let m = s
        .delete("/v1/environments/web?stopTasks=yes")
        .await
        .error_message(400);
    assert!(m.contains("true or false"), "{m}");
    let m = s
        .post(
            "/v1/environments?dryRun=true",
            &create_body("x", "prod", "x:1"),
        )
        .await
        .error_message(400);
    assert!(m.contains("unknown query parameter"), "{m}");
    // Nothing was deleted or created by the rejected requests.
    assert_eq!(s.get("/v1/environments/web").await.status, 200);
    assert_eq!(s.get("/v1/environments/x").await.status, 404);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let s = Server::start().await;
    let m = s.get("/v1/nothing-here").await.error_message(404);
    assert!(m.contains("/v1/nothing-here"), "{m}");
    let m = s.delete("/v1/environments").await.error_message(405);
    assert!(m.contains("DELETE"), "{m}");
    // A path parameter that does not decode to UTF-8 is a JSON 400 too.
    let m = s.get("/v1/environments/%FF").await.error_message(400);
    assert!(m.contains("invalid path"), "{m}");
}

#[tokio::test]
async fn both_v03_services_share_one_port_when_merged() {
    use std::sync::Arc;

    use blox_sched::http::SchedApiState;
    use blox_state::http::ApiState;
    use blox_state::store::StateStore;
    use blox_state::store::memory::MemoryStore;

    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let (cache, follower) = blox_state::cache::spawn_follower(Arc::clone(&store));
    tokio::time::timeout(std::time::Duration::from_secs(10), cache.wait_until_ready())
        .await
        .unwrap();
    let app = blox_state::http::router(ApiState::new(cache.clone(), Arc::clone(&store)))
        .merge(blox_sched::http::router(SchedApiState::new(cache, store)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    use http_sched_support::client;
    assert_eq!(client::get(addr, "/v1/instances").await.status, 200);
    assert_eq!(client::get(addr, "/v1/environments").await.status, 200);
    assert_eq!(client::get(addr, "/v1/ping").await.status, 200);
    client::get(addr, "/v1/nowhere").await.error_message(404);
    server.abort();
    follower.abort();
}

#[tokio::test]
async fn with_ecs_clusters_and_task_definitions_are_checked_and_stored_as_arns() {
    use blox_core::testing::{FakeEcs, FakeEcsConfig};
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        auto_register_task_definitions: false,
        ..FakeEcsConfig::default()
    });
    let cluster = ecs.create_cluster("prod").unwrap();
    let web1 = ecs.register_task_definition("web", 256, 512).unwrap();
    let web2 = ecs.register_task_definition("web", 256, 512).unwrap();
    let s = Server::start_with_ecs(Arc::new(ecs)).await;

    let env = s.create_env("web", "prod", "web:1").await;
    assert_eq!(env["instanceGroup"]["cluster"], cluster.as_str());
    assert_eq!(env["taskDefinition"], web1.task_definition_arn.as_str());
    // The stored form, for every reader.
    let stored = s.envs.get("web").await.unwrap();
    assert_eq!(stored.cluster(), cluster.as_str());
    assert_eq!(stored.task_definition, web1.task_definition_arn);
    // The list filter takes a name or the ARN.
    for c in ["prod", cluster.as_str()] {
        let listed = s.get(&format!("/v1/environments?cluster={c}")).await.json();
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{c}");
    }
    // A new task definition is resolved too; the cluster may be named.
    let r = s
        .put_raw(
            "/v1/environments/web",
            r#"{"taskDefinition": "web:2", "instanceGroup": {"cluster": "prod"}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["taskDefinition"],
        web2.task_definition_arn.as_str()
    );

    // What ECS does not have is a 404 with its message; nothing is stored.
    let m = s
        .post("/v1/environments", &create_body("other", "nope", "web:1"))
        .await
        .error_message(404);
    assert!(m.starts_with("Cluster nope is missing"), "{m}");
    let m = s
        .post("/v1/environments", &create_body("other", "prod", "web:9"))
        .await
        .error_message(404);
    assert!(m.contains("not found"), "{m}");
    let r = s
        .put_raw("/v1/environments/web", r#"{"taskDefinition": "db:1"}"#)
        .await;
    r.error_message(404);
    s.get("/v1/environments/other").await.error_message(404);
    // A malformed request is a 400 before ECS is asked.
    s.post(
        "/v1/environments",
        &create_body("bad name", "nope", "web:1"),
    )
    .await
    .error_message(400);
}
