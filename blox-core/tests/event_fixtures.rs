//! Every recorded ECS event in `fixtures/ecs-events/` parses: task and
//! container instance state changes into entities, everything else as an
//! ignorable detail-type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use blox_core::event::{EcsEvent, parse_event};
use blox_core::model::{InstanceStatus, TaskStatus};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ecs-events")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).expect("fixture exists")
}

#[test]
fn every_fixture_parses_into_an_entity_or_an_ignorable_event() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = parse_event(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name} failed to parse: {e}"));
        match (&parsed.event, name.as_str()) {
            (EcsEvent::Task(_), n) => assert!(n.starts_with("task_"), "{n}"),
            (EcsEvent::Instance(_), n) => assert!(n.starts_with("container_instance_"), "{n}"),
            (EcsEvent::Ignored { detail_type }, n) => {
                assert!(
                    n.starts_with("service_action") || n.starts_with("deployment_state_change"),
                    "{n} was ignored as {detail_type}"
                );
                assert!(detail_type.starts_with("ECS "), "{detail_type}");
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 10, "all ten fixtures were checked");
}

#[test]
fn task_fixture_has_every_field_blox_uses() {
    let parsed = parse_event(&fixture("task_state_change.json")).unwrap();
    assert_eq!(parsed.id, "3317b2af-7005-947d-b652-f55e762e571a");
    assert_eq!(parsed.account.as_deref(), Some("111122223333"));
    let EcsEvent::Task(task) = parsed.event else {
        panic!("not a task")
    };
    assert_eq!(
        task.task_arn.as_str(),
        "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad"
    );
    assert_eq!(task.task_arn.cluster_name(), Some("FargateCluster"));
    assert_eq!(task.cluster_arn.cluster_name(), Some("FargateCluster"));
    assert_eq!(task.version, Some(4));
    assert_eq!(task.last_status, TaskStatus::Running);
    assert_eq!(task.desired_status, TaskStatus::Running);
    assert_eq!(task.cpu.as_deref(), Some("256"));
    assert_eq!(task.memory.as_deref(), Some("512"));
    assert_eq!(task.group.as_deref(), Some("family:sample-fargate"));
    assert_eq!(
        task.launch_type.as_ref().map(|l| l.as_str()),
        Some("FARGATE")
    );
    assert_eq!(task.containers.len(), 1);
    assert_eq!(task.containers[0].name, "FargateApp");
    assert_eq!(task.containers[0].cpu.as_deref(), Some("0"));
    let overrides = task.overrides.as_ref().unwrap();
    assert_eq!(
        overrides.container_overrides[0].name.as_deref(),
        Some("FargateApp")
    );
    assert_eq!(
        task.started_at.unwrap().to_string(),
        "2020-01-23T17:57:58.103Z"
    );
    assert_eq!(
        task.created_at.unwrap().to_string(),
        "2020-01-23T17:57:34.402Z"
    );
    assert!(task.container_instance_arn.is_none());
}

#[test]
fn container_instance_fixture_has_resources_attributes_and_version() {
    let parsed = parse_event(&fixture("container_instance_state_change.json")).unwrap();
    let EcsEvent::Instance(ci) = parsed.event else {
        panic!("not an instance")
    };
    assert_eq!(ci.version, Some(14801));
    assert_eq!(ci.status, InstanceStatus::Active);
    assert!(ci.agent_connected);
    assert_eq!(ci.ec2_instance_id.as_deref(), Some("i-f3a8506b"));
    assert!(
        !ci.container_instance_arn.is_long_format(),
        "old-format ARN"
    );
    assert_eq!(ci.container_instance_arn.cluster_name(), None);
    assert_eq!(ci.cluster_arn.cluster_name(), Some("default"));
    assert_eq!(ci.attributes.len(), 14);
    assert!(ci.has_attribute("com.amazonaws.ecs.capability.task-iam-role"));
    assert_eq!(ci.remaining_cpu(), Some(1988));
    assert_eq!(ci.remaining_memory(), Some(767));
    let ports = ci
        .registered_resources
        .iter()
        .find(|r| r.name == "PORTS")
        .unwrap();
    assert_eq!(ports.string_set_value.len(), 5);
    assert_eq!(
        ci.version_info.as_ref().unwrap().agent_version.as_deref(),
        Some("1.13.0")
    );
    assert_eq!(
        ci.updated_at.unwrap().to_string(),
        "2016-12-06T16:41:06.991Z"
    );
}

#[test]
fn parsed_entities_survive_a_json_round_trip() {
    for name in [
        "task_state_change.json",
        "container_instance_state_change.json",
    ] {
        let parsed = parse_event(&fixture(name)).unwrap();
        match parsed.event {
            EcsEvent::Task(t) => {
                let json = serde_json::to_string(&t).unwrap();
                let back: blox_core::Task = serde_json::from_str(&json).unwrap();
                assert_eq!(back, *t);
            }
            EcsEvent::Instance(i) => {
                let json = serde_json::to_string(&i).unwrap();
                let back: blox_core::ContainerInstance = serde_json::from_str(&json).unwrap();
                assert_eq!(back, *i);
            }
            EcsEvent::Ignored { .. } => panic!("{name} should carry an entity"),
        }
    }
}

#[test]
fn unknown_fields_are_tolerated() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("task_state_change.json")).unwrap();
    v["brandNewTopLevelField"] = serde_json::json!({"x": 1});
    v["detail"]["someFutureField"] = serde_json::json!([1, 2, 3]);
    v["detail"]["containers"][0]["anotherNewField"] = serde_json::json!("y");
    let parsed = parse_event(v.to_string().as_bytes()).unwrap();
    assert!(matches!(parsed.event, EcsEvent::Task(_)));
}

#[test]
fn string_typed_numbers_and_integer_versions_are_both_accepted() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("container_instance_state_change.json")).unwrap();
    v["detail"]["version"] = serde_json::json!("14802");
    v["detail"]["remainingResources"][0]["integerValue"] = serde_json::json!("1000");
    let EcsEvent::Instance(ci) = parse_event(v.to_string().as_bytes()).unwrap().event else {
        panic!()
    };
    assert_eq!(ci.version, Some(14802));
    assert_eq!(ci.remaining_cpu(), Some(1000));
}

#[test]
fn network_bindings_keep_ecs_spelling_of_bind_ip() {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("task_state_change.json")).unwrap();
    v["detail"]["containers"][0]["networkBindings"] = serde_json::json!([{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": "32768", "protocol": "tcp"}]);
    let EcsEvent::Task(t) = parse_event(v.to_string().as_bytes()).unwrap().event else {
        panic!()
    };
    let b = &t.containers[0].network_bindings[0];
    assert_eq!(b.bind_ip.as_deref(), Some("0.0.0.0"));
    assert_eq!(b.host_port, Some(32768));
    let out = serde_json::to_value(&t.containers[0]).unwrap();
    assert_eq!(out["networkBindings"][0]["bindIP"], "0.0.0.0");
}
