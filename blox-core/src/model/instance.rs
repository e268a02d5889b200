//! Container instances.

use serde::{Deserialize, Serialize};

use super::lenient;
use super::{Arn, Attribute, InstanceStatus, Resource, Timestamp, VersionInfo, resource_number};

/// An ECS container instance, as events and `DescribeContainerInstances`
/// report it (JSON field names follow ECS's camelCase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstance {
    /// The instance's ARN (the store key).
    pub container_instance_arn: Arn,
    /// The ARN of the cluster it is registered in.
    pub cluster_arn: Arn,
    /// The EC2 instance id (none for external instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_instance_id: Option<String>,
    /// The status.
    pub status: InstanceStatus,
    /// Why the status is what it is, when ECS says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Whether the ECS agent is connected.
    #[serde(default, deserialize_with = "lenient::lenient_bool")]
    pub agent_connected: bool,
    /// The agent's update status, when an update is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_update_status: Option<String>,
    /// Attributes (instance type, availability zone, capabilities, custom).
    #[serde(default, deserialize_with = "lenient::null_as_empty")]
    pub attributes: Vec<Attribute>,
    /// Resources registered with ECS.
    #[serde(default, deserialize_with = "lenient::null_as_empty")]
    pub registered_resources: Vec<Resource>,
    /// Resources not used by tasks.
    #[serde(default, deserialize_with = "lenient::null_as_empty")]
    pub remaining_resources: Vec<Resource>,
    /// Agent and Docker versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
    /// Running tasks, as `DescribeContainerInstances` counts them.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub running_tasks_count: Option<i64>,
    /// Pending tasks, as `DescribeContainerInstances` counts them.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub pending_tasks_count: Option<i64>,
    /// The capacity provider, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// ECS's version of this state; `None` where an emulator sends none.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<u64>,
    /// When the instance registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Timestamp>,
    /// When this state was produced (events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl ContainerInstance {
    /// A minimal ACTIVE, connected instance with no attributes or resources.
    pub fn new(container_instance_arn: Arn, cluster_arn: Arn) -> Self {
        ContainerInstance {
            container_instance_arn,
            cluster_arn,
            ec2_instance_id: None,
            status: InstanceStatus::Active,
            status_reason: None,
            agent_connected: true,
            agent_update_status: None,
            attributes: Vec::new(),
            registered_resources: Vec::new(),
            remaining_resources: Vec::new(),
            version_info: None,
            running_tasks_count: None,
            pending_tasks_count: None,
            capacity_provider_name: None,
            version: None,
            registered_at: None,
            updated_at: None,
        }
    }

    /// The value of the attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.as_deref())
    }

    /// Whether the attribute `name` is present (with or without a value).
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a.name == name)
    }

    /// Remaining CPU units, if reported.
    pub fn remaining_cpu(&self) -> Option<i64> {
        resource_number(&self.remaining_resources, "CPU")
    }

    /// Remaining memory in MiB, if reported.
    pub fn remaining_memory(&self) -> Option<i64> {
        resource_number(&self.remaining_resources, "MEMORY")
    }

    /// The availability zone (`ecs.availability-zone` attribute), if reported.
    pub fn availability_zone(&self) -> Option<&str> {
        self.attribute("ecs.availability-zone")
    }
}
