//! Entities for the HTTP tests: one with every field of the model set
//! (written out whole, so that a field added to the model does not compile
//! until the fixtures carry it), and minimal ones that leave everything
//! optional out; and the encoding the API used before issue 17, kept as the
//! oracle the encode-once path is compared with.
#![allow(clippy::unwrap_used)]

use blox_core::model::{
    Arn, Attribute, Container, ContainerInstance, ContainerOverride, InstanceStatus, KeyValuePair,
    LaunchType, NetworkBinding, Resource, Task, TaskOverride, TaskStatus, Timestamp, VersionInfo,
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use super::shape::{Metadata, Wrapped};
use super::v03::V03;
use crate::store::Revision;

/// The account and region of fixture ARNs.
pub(crate) const PREFIX: &str = "arn:aws:ecs:us-east-1:123456789012";

fn arn(s: &str) -> Arn {
    Arn::parse(s).unwrap()
}

/// A task with every field of the model set, `n` in its ARN; text with
/// characters JSON escapes.
pub(crate) fn full_task(n: usize) -> Task {
    let ts = Timestamp::from_millis(1_714_557_600_123 + n as i64);
    Task {
        task_arn: arn(&format!("{PREFIX}:task/prod/{n:08x}aaaabbbbcccc")),
        cluster_arn: arn(&format!("{PREFIX}:cluster/prod")),
        task_definition_arn: format!("{PREFIX}:task-definition/web:3"),
        container_instance_arn: Some(arn(&format!("{PREFIX}:container-instance/prod/i-{n}"))),
        last_status: TaskStatus::Running,
        desired_status: TaskStatus::Stopped,
        containers: vec![Container {
            container_arn: Some(format!("{PREFIX}:container/prod/{n}/web")),
            name: "web \"main\"".into(),
            last_status: Some(TaskStatus::Stopped),
            exit_code: Some(137),
            reason: Some("OutOfMemoryError: container killed\n\tby the kernel".into()),
            image: Some("nginx:1.27 \u{e9}\u{1f600}".into()),
            network_bindings: vec![NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(80),
                host_port: Some(32_768),
                protocol: Some("tcp".into()),
            }],
            cpu: Some("256".into()),
            memory: Some("512".into()),
        }],
        overrides: Some(TaskOverride {
            container_overrides: vec![ContainerOverride {
                name: Some("web".into()),
                command: vec!["/bin/sh".into(), "-c".into(), "echo \\\"hi\\\"".into()],
                environment: vec![KeyValuePair {
                    name: Some("MODE".into()),
                    value: Some("blue/green".into()),
                }],
                cpu: Some(128),
                memory: Some(256),
                memory_reservation: Some(200),
            }],
            cpu: Some("512".into()),
            memory: Some("1024".into()),
            task_role_arn: Some("arn:aws:iam::123456789012:role/task".into()),
            execution_role_arn: Some("arn:aws:iam::123456789012:role/exec".into()),
        }),
        started_by: Some("ecs-svc/123".into()),
        group: Some("service:web".into()),
        launch_type: Some(LaunchType::Ec2),
        cpu: Some("512".into()),
        memory: Some("1024".into()),
        availability_zone: Some("us-east-1a".into()),
        stopped_reason: Some("Essential container exited".into()),
        stop_code: Some("EssentialContainerExited".into()),
        version: Some(9),
        created_at: Some(ts),
        started_at: Some(ts),
        stopping_at: Some(ts),
        stopped_at: Some(ts),
        updated_at: Some(ts),
    }
}

/// A task with nothing optional: what v0.3 requires is filled in.
pub(crate) fn bare_task(n: usize) -> Task {
    let mut t = Task::new(
        arn(&format!("{PREFIX}:task/prod/{n:08x}dddd")),
        arn(&format!("{PREFIX}:cluster/prod")),
        "web:1",
    );
    t.containers.push(Container {
        container_arn: None,
        name: "bare".into(),
        last_status: None,
        exit_code: None,
        reason: None,
        image: None,
        network_bindings: vec![NetworkBinding {
            bind_ip: None,
            container_port: None,
            host_port: None,
            protocol: None,
        }],
        cpu: None,
        memory: None,
    });
    t.overrides = Some(TaskOverride {
        container_overrides: vec![ContainerOverride {
            environment: vec![KeyValuePair {
                name: None,
                value: None,
            }],
            ..ContainerOverride::default()
        }],
        ..TaskOverride::default()
    });
    t
}

/// An instance with every field of the model set.
pub(crate) fn full_instance(n: usize) -> ContainerInstance {
    ContainerInstance {
        container_instance_arn: arn(&format!("{PREFIX}:container-instance/prod/i-{n:04}")),
        cluster_arn: arn(&format!("{PREFIX}:cluster/prod")),
        ec2_instance_id: Some(format!("i-{n:017x}")),
        status: InstanceStatus::Draining,
        status_reason: Some("draining \"for\" maintenance".into()),
        agent_connected: true,
        agent_update_status: Some("UPDATING".into()),
        attributes: vec![
            Attribute::new("ecs.instance-type", "m5.large"),
            Attribute {
                name: "ecs.capability.docker-remote-api.1.17".into(),
                value: None,
                target_type: Some("container-instance".into()),
                target_id: Some(format!("i-{n}")),
            },
        ],
        registered_resources: vec![
            Resource::integer("CPU", 2048),
            Resource {
                name: "MEMORY".into(),
                kind: None,
                integer_value: None,
                long_value: Some(7_482),
                double_value: None,
                string_set_value: Vec::new(),
            },
            Resource {
                name: "GPU".into(),
                kind: Some("DOUBLE".into()),
                integer_value: None,
                long_value: None,
                double_value: Some(0.5),
                string_set_value: Vec::new(),
            },
            Resource::string_set("PORTS", vec!["22".into(), "2376".into()]),
        ],
        remaining_resources: vec![Resource::integer("CPU", 1024)],
        version_info: Some(VersionInfo {
            agent_hash: Some("abc".into()),
            agent_version: Some("1.80.0".into()),
            docker_version: Some("25.0".into()),
        }),
        running_tasks_count: Some(3),
        pending_tasks_count: Some(1),
        capacity_provider_name: Some("spot".into()),
        version: Some(12),
        registered_at: Some(Timestamp::from_millis(1_714_557_600_000)),
        updated_at: Some(Timestamp::from_millis(1_714_557_600_456)),
    }
}

/// An instance with nothing optional.
pub(crate) fn bare_instance(n: usize) -> ContainerInstance {
    ContainerInstance::new(
        arn(&format!("{PREFIX}:container-instance/prod/b-{n:04}")),
        arn(&format!("{PREFIX}:cluster/prod")),
    )
}

/// Before issue 17: a task's entity as a `Value` (what gets served).
pub(crate) fn old_task(t: &Task) -> Value {
    serde_json::to_value(V03(t)).unwrap()
}

/// Before issue 17: an instance's entity, built as a `Value` tree.
pub(crate) fn old_instance(i: &ContainerInstance) -> Value {
    fn rename(obj: &mut Map<String, Value>, from: &str, to: &str) {
        if let Some(v) = obj.remove(from) {
            obj.insert(to.into(), v);
        }
    }
    fn require(obj: &mut Map<String, Value>, key: &str, default: Value) {
        if obj.get(key).is_none_or(Value::is_null) {
            obj.insert(key.into(), default);
        }
    }
    fn resources(list: &[Resource]) -> Value {
        Value::Array(
            list.iter()
                .map(|r| {
                    let (kind, value) = if let Some(v) = r.integer_value {
                        ("INTEGER", v.to_string())
                    } else if let Some(v) = r.long_value {
                        ("LONG", v.to_string())
                    } else if let Some(v) = r.double_value {
                        ("DOUBLE", v.to_string())
                    } else {
                        ("STRINGSET", r.string_set_value.join(","))
                    };
                    json!({
                        "name": r.name,
                        "type": r.kind.as_deref().unwrap_or(kind),
                        "value": value,
                    })
                })
                .collect(),
        )
    }
    let Value::Object(mut o) = serde_json::to_value(i).unwrap() else {
        panic!("an instance is an object");
    };
    rename(&mut o, "clusterArn", "clusterARN");
    rename(&mut o, "containerInstanceArn", "containerInstanceARN");
    rename(&mut o, "ec2InstanceId", "EC2InstanceID");
    require(&mut o, "versionInfo", json!({}));
    o.insert(
        "registeredResources".into(),
        resources(&i.registered_resources),
    );
    o.insert(
        "remainingResources".into(),
        resources(&i.remaining_resources),
    );
    if let Some(Value::Array(attrs)) = o.get_mut("attributes") {
        for a in attrs.iter_mut().filter_map(Value::as_object_mut) {
            require(a, "value", json!(""));
        }
    }
    Value::Object(o)
}

/// Before issue 17: a list body of tasks, serialized whole as it was
/// written (`{"items", "metadata", "nextToken"?}`).
pub(crate) fn old_task_list(
    items: &[(Task, Revision)],
    revision: Revision,
    next_token: Option<&str>,
) -> Vec<u8> {
    struct Items<'a>(&'a [(Task, Revision)]);
    impl Serialize for Items<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|(t, r)| Wrapped {
                metadata: Metadata {
                    revision: *r,
                    deleted: false,
                },
                entity: V03(t),
            }))
        }
    }
    struct Listing<'a>(&'a [(Task, Revision)], Revision, Option<&'a str>);
    impl Serialize for Listing<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2 + usize::from(self.2.is_some())))?;
            m.serialize_entry("items", &Items(self.0))?;
            let metadata = Metadata {
                revision: self.1,
                deleted: false,
            };
            m.serialize_entry("metadata", &metadata)?;
            if let Some(t) = self.2 {
                m.serialize_entry("nextToken", t)?;
            }
            m.end()
        }
    }
    serde_json::to_vec(&Listing(items, revision, next_token)).unwrap()
}
