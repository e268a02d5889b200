//! The daemon scheduler: Blox's environments and deployments, one task per
//! eligible instance.
//!
//! * [`EnvironmentStore`]: environments and deployments in the state store's
//!   key-value API (compare-and-swap updates); also the scheduler's
//!   [`DesiredSource`](crate::scheduler::DesiredSource).
//! * [`DaemonScheduler`]: the [`Scheduler`](crate::scheduler::Scheduler)
//!   (see [`scheduler`] for its rules).
//! * [`deployment_progress`], [`instance_statuses`]: pure functions of a
//!   snapshot; [`DeploymentTracker`] persists status transitions.

pub(crate) mod fasthash;
mod model;
mod progress;
pub mod scheduler;
mod store;
mod tracker;
pub(crate) mod validate;
mod view;

#[cfg(feature = "http")]
pub(crate) use model::same_cluster;
pub use model::{
    AttributeMatch, DaemonDesired, Deployment, DeploymentStatus, DrainingPolicy, Environment,
    EnvironmentState, InstanceGroup, InstanceSelector, Progress,
};
pub use progress::{
    DaemonInstanceState, DeploymentReport, InstanceDaemonStatus, UNKNOWN_FAILURE,
    deployment_progress, instance_statuses,
};
pub use scheduler::{DaemonScheduler, MAX_INSTANCES_PER_START, SCHEDULER_NAME, split_starts};
pub use store::{
    EnvironmentError, EnvironmentStore, EnvironmentUpdate, ErrorClass, NewEnvironment, StoreKey,
    new_deployment_id,
};
pub use tracker::{DEFAULT_DEPLOYMENT_HISTORY, DeploymentTracker, SyncReport, next_status};
pub use validate::ValidationError;
