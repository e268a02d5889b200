//! Conversions between `aws-sdk-ecs` types and blox's domain model.
//!
//! The service's answers are data from outside the process: a missing or
//! malformed ARN or status is a [`ConvertError`] (reported by the adapter as
//! `EcsError::InvalidResponse`), never a panic. Optional details are carried
//! over as they are; a `version` of 0 or less, as emulators send, is unknown.

use aws_sdk_ecs::types as sdk;
use aws_smithy_types::DateTime;

use crate::model::{
    Arn, ArnError, Attribute, Cluster, Container, ContainerInstance, ContainerOverride,
    InstanceStatus, KeyValuePair, LaunchType, NetworkBinding, Resource, ResourceKind, Task,
    TaskDefinition, TaskOverride, TaskStatus, Timestamp, VersionInfo,
};
use crate::ports::PlacementFailure;

/// Why an SDK value cannot become a domain value (or the reverse).
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A required field is absent.
    #[error("missing {field}")]
    Missing {
        /// The field, in ECS's spelling.
        field: &'static str,
    },
    /// A field that must be an ECS ARN is not one.
    #[error("{field}: {source}")]
    InvalidArn {
        /// The field, in ECS's spelling.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: ArnError,
    },
    /// An ARN names a different kind of resource than the field requires.
    #[error("{field}: expected a {expected} ARN, got {arn}")]
    WrongKind {
        /// The field, in ECS's spelling.
        field: &'static str,
        /// The kind the field requires.
        expected: ResourceKind,
        /// The ARN found.
        arn: Arn,
    },
    /// A number does not fit the API's type.
    #[error("{field}: {value} is out of range")]
    OutOfRange {
        /// The field, in ECS's spelling.
        field: &'static str,
        /// The value.
        value: i64,
    },
}

type Result<T, E = ConvertError> = std::result::Result<T, E>;

/// Parses a required ARN of the given kind.
pub(crate) fn arn(value: Option<&str>, field: &'static str, kind: ResourceKind) -> Result<Arn> {
    let s = value.ok_or(ConvertError::Missing { field })?;
    let arn = Arn::parse(s).map_err(|source| ConvertError::InvalidArn { field, source })?;
    if arn.kind() != kind {
        return Err(ConvertError::WrongKind {
            field,
            expected: kind,
            arn,
        });
    }
    Ok(arn)
}

/// Parses a list of ARNs of one kind (a `List*` page).
pub(crate) fn arns(values: &[String], field: &'static str, kind: ResourceKind) -> Result<Vec<Arn>> {
    values.iter().map(|s| arn(Some(s), field, kind)).collect()
}

/// ECS's version: positive values are versions, 0 or less (what the SDK
/// reports when the service sent none) is unknown.
pub(crate) fn version(v: i64) -> Option<u64> {
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// Rounded to the nearest millisecond: ECS sends fractional epoch seconds
/// (`1579802278.103`), which parse to a hair below the intended millisecond.
fn timestamp(t: Option<&DateTime>) -> Option<Timestamp> {
    let t = t?;
    let millis = t
        .secs()
        .checked_mul(1000)?
        .checked_add(i64::from((t.subsec_nanos() + 500_000) / 1_000_000))?;
    Some(Timestamp::from_millis(millis))
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

/// The ARN of the cluster a container instance belongs to. `DescribeContainerInstances`
/// does not return it: take the cluster argument if it is an ARN, else the
/// cluster named in a long-format instance ARN, else build it from the
/// instance ARN's partition, region and account and the cluster name.
pub(crate) fn cluster_arn_of(instance: &Arn, cluster: &str) -> Result<Arn> {
    if let Ok(arn) = Arn::parse(cluster)
        && arn.kind() == ResourceKind::Cluster
    {
        return Ok(arn);
    }
    if let Some(arn) = instance.cluster_arn() {
        return Ok(arn);
    }
    let name = if cluster.is_empty() {
        "default"
    } else {
        cluster
    };
    Arn::build(
        instance.partition(),
        instance.region(),
        instance.account(),
        ResourceKind::Cluster,
        name,
    )
    .map_err(|source| ConvertError::InvalidArn {
        field: "cluster",
        source,
    })
}

/// A cluster from `DescribeClusters`.
pub(crate) fn cluster(c: &sdk::Cluster) -> Result<Cluster> {
    let cluster_arn = arn(c.cluster_arn(), "clusterArn", ResourceKind::Cluster)?;
    let cluster_name = c
        .cluster_name()
        .map(str::to_owned)
        .or_else(|| cluster_arn.cluster_name().map(str::to_owned))
        .ok_or(ConvertError::Missing {
            field: "clusterName",
        })?;
    Ok(Cluster {
        cluster_arn,
        cluster_name,
        status: c.status().unwrap_or_default().to_owned(),
        registered_container_instances_count: Some(i64::from(
            c.registered_container_instances_count,
        )),
        running_tasks_count: Some(i64::from(c.running_tasks_count)),
        pending_tasks_count: Some(i64::from(c.pending_tasks_count)),
    })
}

fn attribute(a: &sdk::Attribute) -> Attribute {
    Attribute {
        name: a.name().to_owned(),
        value: owned(a.value()),
        target_type: a.target_type().map(|t| t.as_str().to_owned()),
        target_id: owned(a.target_id()),
    }
}

/// A resource: the value field that `type` names is kept; without a type,
/// whichever value is set.
fn resource(r: &sdk::Resource) -> Resource {
    let kind = r.r#type().map(str::to_owned);
    let (mut integer_value, mut long_value, mut double_value) = (None, None, None);
    match kind.as_deref() {
        Some("INTEGER") => integer_value = Some(i64::from(r.integer_value)),
        Some("LONG") => long_value = Some(r.long_value),
        Some("DOUBLE") => double_value = Some(r.double_value),
        Some("STRINGSET") => {}
        _ => {
            integer_value = Some(i64::from(r.integer_value)).filter(|v| *v != 0);
            long_value = Some(r.long_value).filter(|v| *v != 0);
            double_value = Some(r.double_value).filter(|v| *v != 0.0);
        }
    }
    Resource {
        name: r.name().unwrap_or_default().to_owned(),
        kind,
        integer_value,
        long_value,
        double_value,
        string_set_value: r.string_set_value().to_vec(),
    }
}

/// A container instance from `DescribeContainerInstances` (or
/// `UpdateContainerInstancesState`) of `cluster` (name or ARN).
pub(crate) fn container_instance(
    ci: &sdk::ContainerInstance,
    cluster: &str,
) -> Result<ContainerInstance> {
    let container_instance_arn = arn(
        ci.container_instance_arn(),
        "containerInstanceArn",
        ResourceKind::ContainerInstance,
    )?;
    let cluster_arn = cluster_arn_of(&container_instance_arn, cluster)?;
    let status = InstanceStatus::parse(
        ci.status()
            .ok_or(ConvertError::Missing { field: "status" })?,
    );
    Ok(ContainerInstance {
        container_instance_arn,
        cluster_arn,
        ec2_instance_id: owned(ci.ec2_instance_id()),
        status,
        status_reason: owned(ci.status_reason()),
        agent_connected: ci.agent_connected,
        agent_update_status: ci.agent_update_status().map(|s| s.as_str().to_owned()),
        attributes: ci.attributes().iter().map(attribute).collect(),
        registered_resources: ci.registered_resources().iter().map(resource).collect(),
        remaining_resources: ci.remaining_resources().iter().map(resource).collect(),
        version_info: ci.version_info().map(|v| VersionInfo {
            agent_hash: owned(v.agent_hash()),
            agent_version: owned(v.agent_version()),
            docker_version: owned(v.docker_version()),
        }),
        running_tasks_count: Some(i64::from(ci.running_tasks_count)),
        pending_tasks_count: Some(i64::from(ci.pending_tasks_count)),
        capacity_provider_name: owned(ci.capacity_provider_name()),
        version: version(ci.version),
        registered_at: timestamp(ci.registered_at()),
        updated_at: None,
    })
}

fn network_binding(b: &sdk::NetworkBinding) -> NetworkBinding {
    NetworkBinding {
        bind_ip: owned(b.bind_ip()),
        container_port: b.container_port().map(i64::from),
        host_port: b.host_port().map(i64::from),
        protocol: b.protocol().map(|p| p.as_str().to_owned()),
    }
}

fn container(c: &sdk::Container) -> Container {
    Container {
        container_arn: owned(c.container_arn()),
        name: c.name().unwrap_or_default().to_owned(),
        last_status: c.last_status().map(TaskStatus::parse),
        exit_code: c.exit_code().map(i64::from),
        reason: owned(c.reason()),
        image: owned(c.image()),
        network_bindings: c.network_bindings().iter().map(network_binding).collect(),
        cpu: owned(c.cpu()),
        memory: owned(c.memory()),
    }
}

fn key_value(kv: &sdk::KeyValuePair) -> KeyValuePair {
    KeyValuePair {
        name: owned(kv.name()),
        value: owned(kv.value()),
    }
}

fn container_override(o: &sdk::ContainerOverride) -> ContainerOverride {
    ContainerOverride {
        name: owned(o.name()),
        command: o.command().to_vec(),
        environment: o.environment().iter().map(key_value).collect(),
        cpu: o.cpu().map(i64::from),
        memory: o.memory().map(i64::from),
        memory_reservation: o.memory_reservation().map(i64::from),
    }
}

fn task_override(o: &sdk::TaskOverride) -> TaskOverride {
    TaskOverride {
        container_overrides: o
            .container_overrides()
            .iter()
            .map(container_override)
            .collect(),
        cpu: owned(o.cpu()),
        memory: owned(o.memory()),
        task_role_arn: owned(o.task_role_arn()),
        execution_role_arn: owned(o.execution_role_arn()),
    }
}

/// A task from `DescribeTasks`, `StartTask` or `StopTask` of `cluster` (name or ARN).
pub(crate) fn task(t: &sdk::Task, cluster: &str) -> Result<Task> {
    let task_arn = arn(t.task_arn(), "taskArn", ResourceKind::Task)?;
    let cluster_arn = match t.cluster_arn() {
        Some(_) => arn(t.cluster_arn(), "clusterArn", ResourceKind::Cluster)?,
        None => cluster_arn_of(&task_arn, cluster)?,
    };
    let container_instance_arn = match t.container_instance_arn() {
        Some(s) => Some(arn(
            Some(s),
            "containerInstanceArn",
            ResourceKind::ContainerInstance,
        )?),
        None => None,
    };
    let last_status = TaskStatus::parse(t.last_status().ok_or(ConvertError::Missing {
        field: "lastStatus",
    })?);
    let desired_status = TaskStatus::parse(t.desired_status().ok_or(ConvertError::Missing {
        field: "desiredStatus",
    })?);
    Ok(Task {
        task_arn,
        cluster_arn,
        task_definition_arn: t.task_definition_arn().unwrap_or_default().to_owned(),
        container_instance_arn,
        last_status,
        desired_status,
        containers: t.containers().iter().map(container).collect(),
        overrides: t.overrides().map(task_override),
        started_by: owned(t.started_by()),
        group: owned(t.group()),
        launch_type: t.launch_type().map(|l| LaunchType::parse(l.as_str())),
        cpu: owned(t.cpu()),
        memory: owned(t.memory()),
        availability_zone: owned(t.availability_zone()),
        stopped_reason: owned(t.stopped_reason()),
        stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
        version: version(t.version),
        created_at: timestamp(t.created_at()),
        started_at: timestamp(t.started_at()),
        stopping_at: timestamp(t.stopping_at()),
        stopped_at: timestamp(t.stopped_at()),
        updated_at: None,
    })
}

/// A task definition from `DescribeTaskDefinition`, with its containers'
/// CPU and memory summed (memory: the hard limit, else the reservation).
pub(crate) fn task_definition(td: &sdk::TaskDefinition) -> Result<TaskDefinition> {
    let task_definition_arn = td.task_definition_arn().ok_or(ConvertError::Missing {
        field: "taskDefinitionArn",
    })?;
    arn(
        Some(task_definition_arn),
        "taskDefinitionArn",
        ResourceKind::TaskDefinition,
    )?;
    let family = td
        .family()
        .ok_or(ConvertError::Missing { field: "family" })?
        .to_owned();
    let defs = td.container_definitions();
    Ok(TaskDefinition {
        task_definition_arn: task_definition_arn.to_owned(),
        family,
        revision: i64::from(td.revision()),
        status: td
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        cpu: owned(td.cpu()),
        memory: owned(td.memory()),
        container_cpu: defs.iter().map(|c| i64::from(c.cpu())).sum(),
        container_memory: defs
            .iter()
            .map(|c| i64::from(c.memory().or(c.memory_reservation()).unwrap_or(0)))
            .sum(),
    })
}

/// A `failures` entry of `StartTask`.
pub(crate) fn placement_failure(f: &sdk::Failure) -> PlacementFailure {
    PlacementFailure {
        arn: owned(f.arn()),
        reason: f.reason().unwrap_or("UNKNOWN").to_owned(),
        detail: owned(f.detail()),
    }
}

fn to_i32(value: Option<i64>, field: &'static str) -> Result<Option<i32>> {
    value
        .map(|v| i32::try_from(v).map_err(|_| ConvertError::OutOfRange { field, value: v }))
        .transpose()
}

/// The SDK form of overrides a caller passes to `StartTask`.
pub(crate) fn task_override_to_sdk(o: &TaskOverride) -> Result<sdk::TaskOverride> {
    let mut container_overrides = Vec::with_capacity(o.container_overrides.len());
    for c in &o.container_overrides {
        let environment = c
            .environment
            .iter()
            .map(|kv| {
                sdk::KeyValuePair::builder()
                    .set_name(kv.name.clone())
                    .set_value(kv.value.clone())
                    .build()
            })
            .collect::<Vec<_>>();
        container_overrides.push(
            sdk::ContainerOverride::builder()
                .set_name(c.name.clone())
                .set_command((!c.command.is_empty()).then(|| c.command.clone()))
                .set_environment((!environment.is_empty()).then_some(environment))
                .set_cpu(to_i32(c.cpu, "containerOverrides.cpu")?)
                .set_memory(to_i32(c.memory, "containerOverrides.memory")?)
                .set_memory_reservation(to_i32(
                    c.memory_reservation,
                    "containerOverrides.memoryReservation",
                )?)
                .build(),
        );
    }
    Ok(sdk::TaskOverride::builder()
        .set_container_overrides((!container_overrides.is_empty()).then_some(container_overrides))
        .set_cpu(o.cpu.clone())
        .set_memory(o.memory.clone())
        .set_task_role_arn(o.task_role_arn.clone())
        .set_execution_role_arn(o.execution_role_arn.clone())
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_versions_are_unknown() {
        assert_eq!(version(0), None);
        assert_eq!(version(-3), None);
        assert_eq!(version(7), Some(7));
    }

    #[test]
    fn fractional_epoch_seconds_round_to_the_intended_millisecond() {
        let t = DateTime::from_fractional_secs(1_579_802_278, 0.103);
        assert_eq!(timestamp(Some(&t)).unwrap().as_millis(), 1_579_802_278_103);
        assert_eq!(timestamp(None), None);
    }

    #[test]
    fn the_cluster_of_an_instance_comes_from_the_argument_or_the_long_arn() {
        let old = Arn::parse("arn:aws-cn:ecs:cn-north-1:1:container-instance/ci").unwrap();
        let long = Arn::parse("arn:aws:ecs:us-east-1:1:container-instance/web/ci").unwrap();
        let given = "arn:aws:ecs:us-east-1:1:cluster/other";
        assert_eq!(cluster_arn_of(&long, given).unwrap().as_str(), given);
        assert_eq!(
            cluster_arn_of(&long, "web").unwrap().as_str(),
            "arn:aws:ecs:us-east-1:1:cluster/web"
        );
        assert_eq!(
            cluster_arn_of(&old, "prod").unwrap().as_str(),
            "arn:aws-cn:ecs:cn-north-1:1:cluster/prod"
        );
        assert_eq!(
            cluster_arn_of(&old, "").unwrap().as_str(),
            "arn:aws-cn:ecs:cn-north-1:1:cluster/default"
        );
        assert!(cluster_arn_of(&old, "bad/name").is_err());
    }

    #[test]
    fn a_resource_without_a_type_keeps_whichever_value_is_set() {
        let r = sdk::Resource::builder().name("GPU").long_value(2).build();
        let r = resource(&r);
        assert_eq!(
            (r.integer_value, r.long_value, r.double_value),
            (None, Some(2), None)
        );
        assert_eq!(r.number(), Some(2));
    }

    #[test]
    fn missing_required_fields_are_errors_not_panics() {
        let t = sdk::Task::builder()
            .task_arn("arn:aws:ecs:us-east-1:1:task/c/t")
            .desired_status("RUNNING")
            .build();
        assert!(matches!(
            task(&t, "c"),
            Err(ConvertError::Missing {
                field: "lastStatus"
            })
        ));
        let ci = sdk::ContainerInstance::builder().status("ACTIVE").build();
        assert!(matches!(
            container_instance(&ci, "c"),
            Err(ConvertError::Missing {
                field: "containerInstanceArn"
            })
        ));
        let c = sdk::Cluster::builder()
            .cluster_arn("arn:aws:ecs:r:1:task/x")
            .build();
        assert!(matches!(cluster(&c), Err(ConvertError::WrongKind { .. })));
    }

    #[test]
    fn overrides_convert_to_the_sdk_and_reject_numbers_out_of_range() {
        let o = TaskOverride {
            container_overrides: vec![ContainerOverride {
                name: Some("web".into()),
                environment: vec![KeyValuePair {
                    name: Some("A".into()),
                    value: Some("1".into()),
                }],
                cpu: Some(256),
                ..Default::default()
            }],
            task_role_arn: Some("arn:aws:iam::1:role/r".into()),
            ..Default::default()
        };
        let s = task_override_to_sdk(&o).unwrap();
        assert_eq!(task_override(&s), o);
        let mut big = o.clone();
        big.container_overrides[0].memory = Some(i64::from(i32::MAX) + 1);
        assert!(matches!(
            task_override_to_sdk(&big),
            Err(ConvertError::OutOfRange { .. })
        ));
    }
}
