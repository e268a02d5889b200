//! Clusters and task definitions.

use serde::{Deserialize, Serialize};

use super::{Arn, lenient};

/// An ECS cluster, as `DescribeClusters` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The cluster's ARN.
    pub cluster_arn: Arn,
    /// Its name.
    pub cluster_name: String,
    /// `ACTIVE`, `PROVISIONING`, `DEPROVISIONING`, `FAILED` or `INACTIVE`.
    #[serde(default)]
    pub status: String,
    /// Registered container instances.
    #[serde(default, deserialize_with = "lenient::opt_i64_or_string")]
    pub registered_container_instances_count: Option<i64>,
    /// Running tasks.
    #[serde(default, deserialize_with = "lenient::opt_i64_or_string")]
    pub running_tasks_count: Option<i64>,
    /// Pending tasks.
    #[serde(default, deserialize_with = "lenient::opt_i64_or_string")]
    pub pending_tasks_count: Option<i64>,
}

/// The parts of a task definition a scheduler needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    /// Its ARN (`...:task-definition/family:revision`).
    pub task_definition_arn: String,
    /// The family.
    pub family: String,
    /// The revision.
    pub revision: i64,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default)]
    pub status: String,
    /// Task-level CPU, if set.
    #[serde(default, deserialize_with = "lenient::opt_string_or_number")]
    pub cpu: Option<String>,
    /// Task-level memory, if set.
    #[serde(default, deserialize_with = "lenient::opt_string_or_number")]
    pub memory: Option<String>,
    /// Sum of the containers' CPU units.
    #[serde(default)]
    pub container_cpu: i64,
    /// Sum of the containers' memory (hard limit, else reservation), MiB.
    #[serde(default)]
    pub container_memory: i64,
}
