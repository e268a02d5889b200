//! The ECS domain model: clusters, container instances, tasks, their
//! resources and attributes, typed ARNs, timestamps and the version rule.

mod arn;
mod cluster;
mod instance;
pub mod lenient;
mod resource;
mod status;
mod task;
mod timestamp;
mod version;

pub use arn::{Arn, ArnError, ResourceKind};
pub use cluster::{Cluster, TaskDefinition};
pub use instance::ContainerInstance;
pub use resource::{Attribute, Resource, VersionInfo, resource_number};
pub use status::{InstanceStatus, LaunchType, TaskStatus};
pub use task::{Container, ContainerOverride, KeyValuePair, NetworkBinding, Task, TaskOverride};
pub use timestamp::{Timestamp, TimestampError};
pub use version::{blocked_by_soft_tombstone, blocked_by_tombstone, supersedes};

/// Either kind of entity the state service stores, behind a shared pointer
/// (cloning is cheap; readers and watchers share one allocation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "entity", rename_all = "lowercase")]
pub enum Entity {
    /// A container instance.
    Instance(std::sync::Arc<ContainerInstance>),
    /// A task.
    Task(std::sync::Arc<Task>),
}

/// The two kinds of stored entity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// Container instances.
    Instance,
    /// Tasks.
    Task,
}

impl EntityKind {
    /// `instance` or `task`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Instance => "instance",
            EntityKind::Task => "task",
        }
    }
}

impl std::fmt::Display for EntityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Entity {
    /// The entity's ARN (its key).
    pub fn arn(&self) -> &Arn {
        match self {
            Entity::Instance(i) => &i.container_instance_arn,
            Entity::Task(t) => &t.task_arn,
        }
    }

    /// The cluster it belongs to.
    pub fn cluster_arn(&self) -> &Arn {
        match self {
            Entity::Instance(i) => &i.cluster_arn,
            Entity::Task(t) => &t.cluster_arn,
        }
    }

    /// ECS's version of this state.
    pub fn version(&self) -> Option<u64> {
        match self {
            Entity::Instance(i) => i.version,
            Entity::Task(t) => t.version,
        }
    }

    /// Which kind of entity this is.
    pub fn kind(&self) -> EntityKind {
        match self {
            Entity::Instance(_) => EntityKind::Instance,
            Entity::Task(_) => EntityKind::Task,
        }
    }
}

impl From<ContainerInstance> for Entity {
    fn from(i: ContainerInstance) -> Self {
        Entity::Instance(std::sync::Arc::new(i))
    }
}

impl From<Task> for Entity {
    fn from(t: Task) -> Self {
        Entity::Task(std::sync::Arc::new(t))
    }
}

impl EntityKind {
    /// The kind of entity an ARN names, if it names a stored kind.
    pub fn of_arn(arn: &Arn) -> Option<EntityKind> {
        match arn.kind() {
            ResourceKind::ContainerInstance => Some(EntityKind::Instance),
            ResourceKind::Task => Some(EntityKind::Task),
            _ => None,
        }
    }
}
