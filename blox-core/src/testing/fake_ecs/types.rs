//! The public types of the fake's test controls.

use crate::model::{Arn, ArnError, InstanceStatus};
use crate::ports::PlacementFailure;

use super::InstanceSpec;

/// An error of a test control of the fake.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// No cluster of that name or ARN.
    #[error("unknown cluster {0:?}")]
    UnknownCluster(String),
    /// No container instance with that ARN.
    #[error("unknown container instance {0}")]
    UnknownInstance(Arn),
    /// No task with that ARN.
    #[error("unknown task {0}")]
    UnknownTask(Arn),
    /// A cluster or family name ECS would refuse.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// An operation name the fake does not know.
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// A task definition that cannot be resolved.
    #[error("task definition {0:?} cannot be resolved")]
    TaskDefinition(String),
    /// The configured partition, region or account makes invalid ARNs.
    #[error(transparent)]
    Arn(#[from] ArnError),
}

/// A start or stop the fake was asked to perform through the API, in call order.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeAction {
    /// A `StartTask` call.
    Start {
        /// The cluster as given.
        cluster: String,
        /// The task definition as given.
        task_definition: String,
        /// Who asked (the `startedBy` tag).
        started_by: Option<String>,
        /// The task group.
        group: Option<String>,
        /// The overrides given.
        overrides: Option<Box<crate::model::TaskOverride>>,
        /// The tags given.
        tags: std::collections::BTreeMap<String, String>,
        /// The instances asked for.
        instances: Vec<Arn>,
        /// The tasks started.
        started: Vec<Arn>,
        /// The placements refused.
        failures: Vec<PlacementFailure>,
    },
    /// A `StopTask` call.
    Stop {
        /// The cluster as given.
        cluster: String,
        /// The task.
        task: Arn,
        /// The reason given.
        reason: String,
    },
    /// An `UpdateContainerInstancesState` call.
    UpdateInstancesState {
        /// The cluster as given.
        cluster: String,
        /// The instances.
        instances: Vec<Arn>,
        /// The requested status.
        status: InstanceStatus,
    },
}

/// One step of instance and task churn for a simulation.
#[derive(Debug, Clone, Default)]
pub struct ChurnPlan {
    /// Instances to register.
    pub join: usize,
    /// Random instances to terminate (their tasks stop, they turn INACTIVE).
    pub leave: usize,
    /// Random RUNNING tasks to crash.
    pub crash: usize,
    /// What joining instances look like.
    pub spec: InstanceSpec,
}

/// What a churn step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnReport {
    /// Instances registered.
    pub joined: Vec<Arn>,
    /// Instances terminated.
    pub left: Vec<Arn>,
    /// Tasks crashed.
    pub crashed: Vec<Arn>,
}
