//! Tasks and their containers.

use serde::{Deserialize, Serialize};

use super::lenient;
use super::{Arn, LaunchType, TaskStatus, Timestamp};

/// A port mapping of a running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    /// The host IP the port is bound to (ECS spells the field `bindIP`).
    #[serde(
        rename = "bindIP",
        alias = "bindIp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bind_ip: Option<String>,
    /// The container port.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_port: Option<i64>,
    /// The host port.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub host_port: Option<i64>,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A container of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// The container's ARN.
    #[serde(
        alias = "containerARN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub container_arn: Option<String>,
    /// The container name from the task definition.
    #[serde(default)]
    pub name: String,
    /// Its last known status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<TaskStatus>,
    /// The exit code once stopped.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub exit_code: Option<i64>,
    /// Why it stopped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Port mappings.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub network_bindings: Vec<NetworkBinding>,
    /// CPU units, as ECS reports them (a string).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu: Option<String>,
    /// Hard memory limit in MiB, as ECS reports it (a string).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<String>,
}

/// A name/value pair of a container override's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValuePair {
    /// The variable name.
    #[serde(default)]
    pub name: Option<String>,
    /// The value.
    #[serde(default)]
    pub value: Option<String>,
}

/// Overrides of one container of a task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    /// The container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The command.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub environment: Vec<KeyValuePair>,
    /// CPU units.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu: Option<i64>,
    /// Hard memory limit in MiB.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<i64>,
    /// Soft memory limit in MiB.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_reservation: Option<i64>,
}

/// Overrides a task was started with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverride {
    /// Per-container overrides.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub container_overrides: Vec<ContainerOverride>,
    /// Task-level CPU.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu: Option<String>,
    /// Task-level memory.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<String>,
    /// The task role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// The execution role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
}

/// An ECS task, as events and `DescribeTasks` report it.
///
/// It also reads Blox v0.3's spellings of its ARN fields (`taskARN`,
/// `clusterARN`, `taskDefinitionARN`, `containerInstanceARN`, and a
/// container's `containerARN`), and `""` as an unknown container instance
/// or creation time, so that a task the HTTP API wrote reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// The task's ARN (the store key).
    #[serde(alias = "taskARN")]
    pub task_arn: Arn,
    /// The cluster it runs in.
    #[serde(alias = "clusterARN")]
    pub cluster_arn: Arn,
    /// The task definition (`arn:...:task-definition/family:revision`).
    #[serde(alias = "taskDefinitionARN", default)]
    pub task_definition_arn: String,
    /// The container instance it was placed on (none on Fargate).
    #[serde(
        alias = "containerInstanceARN",
        default,
        deserialize_with = "lenient::empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_instance_arn: Option<Arn>,
    /// Its last known status.
    pub last_status: TaskStatus,
    /// The status ECS is driving it to.
    pub desired_status: TaskStatus,
    /// Its containers.
    #[serde(default, deserialize_with = "lenient::null_as_empty")]
    pub containers: Vec<Container>,
    /// Overrides it was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<TaskOverride>,
    /// Who started it (a blox deployment id, a service, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// Its group (`family:web`, `service:api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// How it was launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    /// Task-level CPU, as ECS reports it (a string).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu: Option<String>,
    /// Task-level memory, as ECS reports it (a string).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<String>,
    /// The availability zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// The stop code (`EssentialContainerExited`, `UserInitiated`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    /// ECS's version of this state; `None` where an emulator sends none.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<u64>,
    /// When it was created.
    #[serde(
        default,
        deserialize_with = "lenient::empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<Timestamp>,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it began stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<Timestamp>,
    /// When it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    /// When this state was produced (events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl Task {
    /// A minimal PENDING task desired RUNNING.
    pub fn new(task_arn: Arn, cluster_arn: Arn, task_definition_arn: impl Into<String>) -> Self {
        Task {
            task_arn,
            cluster_arn,
            task_definition_arn: task_definition_arn.into(),
            container_instance_arn: None,
            last_status: TaskStatus::Pending,
            desired_status: TaskStatus::Running,
            containers: Vec::new(),
            overrides: None,
            started_by: None,
            group: None,
            launch_type: None,
            cpu: None,
            memory: None,
            availability_zone: None,
            stopped_reason: None,
            stop_code: None,
            version: None,
            created_at: None,
            started_at: None,
            stopping_at: None,
            stopped_at: None,
            updated_at: None,
        }
    }

    /// Whether the task is running or on its way to run (not stopping or stopped).
    pub fn is_live(&self) -> bool {
        !self.last_status.is_terminal() && !matches!(self.desired_status, TaskStatus::Stopped)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_task_in_blox_v03_spelling_reads_with_empty_strings_as_unknown() {
        let json = r#"{
            "taskARN": "arn:aws:ecs:us-east-1:1:task/prod/t1",
            "clusterARN": "arn:aws:ecs:us-east-1:1:cluster/prod",
            "taskDefinitionARN": "arn:aws:ecs:us-east-1:1:task-definition/web:1",
            "containerInstanceARN": "",
            "createdAt": "",
            "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING",
            "containers": [{"containerARN": "arn:aws:ecs:us-east-1:1:container/c1", "name": "web"}]
        }"#;
        let t: Task = serde_json::from_str(json).unwrap();
        assert_eq!(t.task_arn.id(), "t1");
        assert_eq!(t.cluster_arn.cluster_name(), Some("prod"));
        assert!(t.task_definition_arn.ends_with("web:1"));
        assert_eq!(t.container_instance_arn, None);
        assert_eq!(t.created_at, None);
        assert_eq!(
            t.containers[0].container_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:1:container/c1")
        );
        let bad = json.replace(r#""createdAt": """#, r#""createdAt": "yesterday""#);
        assert!(serde_json::from_str::<Task>(&bad).is_err());
    }
}
