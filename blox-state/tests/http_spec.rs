//! Real responses checked against the Blox v0.3 cluster-state-service spec
//! (`spec/blox-v0.3/cluster-state-service.swagger.json`): required
//! properties and types, recursively through `$ref`s; extra fields allowed.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use blox_core::model::{
    Attribute, Container, ContainerInstance, ContainerOverride, Entity, KeyValuePair, LaunchType,
    NetworkBinding, Resource, Task, TaskOverride, TaskStatus, VersionInfo,
};
use blox_state::Change;
use http_support::spec::Spec;
use http_support::{PREFIX, Server, encode, instance, task};
use serde_json::json;

/// An instance with everything ECS reports filled in.
fn full_instance() -> ContainerInstance {
    let mut i = instance("prod", "i-full", 4);
    i.ec2_instance_id = Some("i-0123456789abcdef0".into());
    i.agent_update_status = Some("UPDATED".into());
    i.attributes = vec![
        Attribute::new("ecs.instance-type", "t3.large"),
        Attribute {
            name: "com.amazonaws.ecs.capability.docker-remote-api.1.17".into(),
            value: None,
            target_type: None,
            target_id: None,
        },
    ];
    i.registered_resources = vec![
        Resource::integer("CPU", 2048),
        Resource::integer("MEMORY", 7680),
        Resource::string_set("PORTS", vec!["22".into(), "2376".into()]),
    ];
    i.remaining_resources = i.registered_resources.clone();
    i.version_info = Some(VersionInfo {
        agent_hash: Some("abc".into()),
        agent_version: Some("1.80.0".into()),
        docker_version: Some("DockerVersion: 20.10".into()),
    });
    i
}

/// A task with containers, bindings and overrides.
fn full_task() -> Task {
    let mut t = task("prod", "t-full", TaskStatus::Stopped, Some("deploy-a"));
    t.container_instance_arn = Some(
        blox_core::model::Arn::parse(&format!("{PREFIX}:container-instance/prod/i-full")).unwrap(),
    );
    t.started_at = t.created_at;
    t.stopped_at = t.created_at;
    t.stopped_reason = Some("Essential container in task exited".into());
    t.containers = vec![Container {
        container_arn: Some(format!("{PREFIX}:container/abc")),
        name: "web".into(),
        last_status: Some(TaskStatus::Stopped),
        exit_code: Some(1),
        reason: Some("OutOfMemory".into()),
        image: Some("nginx".into()),
        network_bindings: vec![NetworkBinding {
            bind_ip: Some("0.0.0.0".into()),
            container_port: Some(80),
            host_port: Some(32768),
            protocol: Some("tcp".into()),
        }],
        cpu: None,
        memory: None,
    }];
    t.overrides = Some(TaskOverride {
        container_overrides: vec![ContainerOverride {
            name: Some("web".into()),
            command: vec!["serve".into()],
            environment: vec![KeyValuePair {
                name: Some("MODE".into()),
                value: Some("prod".into()),
            }],
            ..ContainerOverride::default()
        }],
        task_role_arn: Some("arn:aws:iam::123456789012:role/web".into()),
        ..TaskOverride::default()
    });
    t
}

/// A Fargate task with what blox may not know left out.
fn sparse_task() -> Task {
    let mut t = task("prod", "t-sparse", TaskStatus::Pending, None);
    t.launch_type = Some(LaunchType::Fargate);
    t.created_at = None;
    t.containers = vec![Container {
        container_arn: None,
        name: "app".into(),
        last_status: None,
        exit_code: None,
        reason: None,
        image: None,
        network_bindings: vec![NetworkBinding {
            bind_ip: None,
            container_port: Some(8080),
            host_port: None,
            protocol: None,
        }],
        cpu: None,
        memory: None,
    }];
    t.overrides = Some(TaskOverride {
        container_overrides: vec![ContainerOverride {
            environment: vec![KeyValuePair {
                name: Some("X".into()),
                value: None,
            }],
            ..ContainerOverride::default()
        }],
        ..TaskOverride::default()
    });
    t
}

async fn populated() -> Server {
    let s = Server::start().await;
    s.put(vec![
        Entity::from(full_instance()),
        Entity::from(instance("prod", "i-bare", 1)),
        Entity::from(full_task()),
        Entity::from(sparse_task()),
    ])
    .await;
    s
}

#[tokio::test]
async fn list_responses_match_the_spec() {
    let spec = Spec::cluster_state_service();
    let s = populated().await;
    for (route, spec_path, count) in [
        ("/v1/instances", "/instances", 2),
        ("/v1/tasks", "/tasks", 2),
        ("/v1/instances?maxResults=1", "/instances", 1),
        ("/v1/tasks?status=stopped&cluster=prod", "/tasks", 1),
    ] {
        let r = s.get(route).await;
        assert_eq!(r.status, 200, "{route}");
        let body = r.json();
        assert_eq!(body["items"].as_array().unwrap().len(), count, "{route}");
        spec.assert_valid(spec.response_schema(spec_path, 200), &body);
    }
}

#[tokio::test]
async fn get_responses_match_the_spec() {
    let spec = Spec::cluster_state_service();
    let s = populated().await;
    for (route, spec_path) in [
        (
            format!("/v1/instances/prod/{PREFIX}:container-instance/prod/i-full"),
            "/instances/{cluster}/{arn}",
        ),
        (
            format!("/v1/instances/prod/{PREFIX}:container-instance/prod/i-bare"),
            "/instances/{cluster}/{arn}",
        ),
        (
            format!(
                "/v1/tasks/prod/{}",
                encode(&format!("{PREFIX}:task/prod/t-full"))
            ),
            "/tasks/{cluster}/{arn}",
        ),
        (
            format!("/v1/tasks/prod/{PREFIX}:task/prod/t-sparse"),
            "/tasks/{cluster}/{arn}",
        ),
    ] {
        let r = s.get(&route).await;
        assert_eq!(r.status, 200, "{route}");
        spec.assert_valid(spec.response_schema(spec_path, 200), &r.json());
    }
}

#[tokio::test]
async fn stream_lines_match_the_item_definitions_of_the_spec() {
    let spec = Spec::cluster_state_service();
    let s = Server::start().await;
    let start = s.cache.revision();
    s.put(vec![
        Entity::from(full_instance()),
        Entity::from(full_task()),
        Entity::from(sparse_task()),
    ])
    .await;
    s.apply(vec![Change::delete(full_task().task_arn, Some(1))])
        .await;

    let mut tasks = s
        .stream(&format!("/v1/stream/tasks?entityVersion={start}"))
        .await;
    for _ in 0..3 {
        let line = tasks.next_line().await.unwrap();
        spec.assert_valid(spec.definition("Task"), &line);
    }
    let mut instances = s
        .stream(&format!("/v1/stream/instances?entityVersion={start}"))
        .await;
    let line = instances.next_line().await.unwrap();
    spec.assert_valid(spec.definition("ContainerInstance"), &line);
}

#[tokio::test]
async fn error_responses_are_plain_text_that_starts_with_v03_text() {
    let s = populated().await;
    for (path, status, text) in [
        (
            "/v1/tasks?bogus=1".to_owned(),
            400,
            "At least one of the filters provided is unsupported",
        ),
        (
            format!("/v1/tasks/prod/{PREFIX}:task/prod/missing"),
            404,
            "Task not found",
        ),
        (
            "/v1/stream/tasks?entityVersion=1:1".to_owned(),
            410,
            "Entity version is out of range",
        ),
    ] {
        let message = s.get(&path).await.error_message(status);
        assert!(message.starts_with(text), "{path}: {message}");
    }
}

#[test]
fn the_spec_checker_rejects_what_the_spec_forbids() {
    let spec = Spec::cluster_state_service();
    let task_def = spec.definition("Task");
    // Missing required properties deep inside, through two `$ref`s.
    let missing = json!({
        "metadata": {"entityVersion": "1:1"},
        "entity": {
            "clusterARN": "c", "containerInstanceARN": "i", "createdAt": "t",
            "desiredStatus": "RUNNING", "lastStatus": "RUNNING", "taskARN": "a",
            "taskDefinitionARN": "d", "overrides": {"containerOverrides": [{}]},
            "containers": [{"containerARN": "x", "lastStatus": "RUNNING", "name": "n",
                            "networkBindings": [{"bindIP": "0", "containerPort": 1}]}]
        }
    });
    let v = spec.violations(task_def, &missing);
    assert!(
        v.iter()
            .any(|m| m.contains("containerOverrides[0]") && m.contains("name")),
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|m| m.contains("networkBindings[0]") && m.contains("hostPort")),
        "{v:?}"
    );
    // Wrong types.
    let wrong = json!({"metadata": {"entityVersion": 7}, "entity": "x"});
    assert_eq!(spec.violations(task_def, &wrong).len(), 2);
    // A list without items.
    assert!(
        !spec
            .violations(spec.response_schema("/tasks", 200), &json!({}))
            .is_empty()
    );
    // Extra fields are fine.
    assert!(
        spec.violations(
            spec.definition("Metadata"),
            &json!({"entityVersion": "1:1", "deleted": true})
        )
        .is_empty()
    );
}
