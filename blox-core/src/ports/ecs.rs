//! The ECS API port.

use async_trait::async_trait;

use crate::model::{
    Arn, Cluster, ContainerInstance, InstanceStatus, Task, TaskDefinition, TaskOverride, TaskStatus,
};

/// ECS's limit on ARNs per `Describe*` call and page size of `List*` calls.
pub const MAX_DESCRIBE_BATCH: usize = 100;
/// ECS's limit on container instances per `StartTask` call.
pub const MAX_START_TASK_INSTANCES: usize = 10;

/// One page of a `List*` call: the items and the token of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// The token to pass for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// What `ListTasks` should return. ECS lists tasks of one desired status per
/// call (RUNNING when none is given).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskListFilter {
    /// The cluster (name or ARN).
    pub cluster: String,
    /// Only tasks with this desired status (ECS accepts RUNNING, PENDING, STOPPED).
    pub desired_status: Option<TaskStatus>,
    /// Only tasks on this container instance.
    pub container_instance: Option<Arn>,
    /// Only tasks started with this `startedBy`.
    pub started_by: Option<String>,
    /// Only tasks of this family.
    pub family: Option<String>,
}

/// A `StartTask` call: one task definition on up to ten chosen instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTaskRequest {
    /// The cluster (name or ARN).
    pub cluster: String,
    /// `family:revision` or a task definition ARN.
    pub task_definition: String,
    /// The instances to start one task on each (at most [`MAX_START_TASK_INSTANCES`]).
    pub container_instances: Vec<Arn>,
    /// The `startedBy` tag (ECS allows up to 36 characters).
    pub started_by: Option<String>,
    /// The task group.
    pub group: Option<String>,
    /// Overrides.
    pub overrides: Option<TaskOverride>,
    /// Tags of the started tasks, key to value (tagging on create needs
    /// `ecs:TagResource`; empty sends none).
    pub tags: std::collections::BTreeMap<String, String>,
}

/// The answer of a `Describe*` call: what ECS described, and the ARNs it
/// reported as `MISSING` (it does not have them, or no longer does).
///
/// An ARN in neither list is unknown: the call gave no evidence about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Described<T> {
    /// What ECS described.
    pub found: Vec<T>,
    /// The ARNs ECS answered with a `MISSING` failure.
    pub missing: Vec<Arn>,
}

impl<T> Default for Described<T> {
    fn default() -> Self {
        Described {
            found: Vec::new(),
            missing: Vec::new(),
        }
    }
}

/// A placement ECS refused, with its reason (`RESOURCE:MEMORY`, `AGENT`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementFailure {
    /// The ARN of the resource that failed (usually a container instance).
    pub arn: Option<String>,
    /// ECS's reason.
    pub reason: String,
    /// ECS's detail, if any.
    pub detail: Option<String>,
}

/// The result of a `StartTask` call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StartTaskOutput {
    /// The tasks ECS created.
    pub tasks: Vec<Task>,
    /// The instances ECS could not place a task on.
    pub failures: Vec<PlacementFailure>,
}

/// An error from the ECS API.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    /// ECS throttled the call (after the adapter's own retries ran out).
    #[error("ECS throttled {operation}: {message}")]
    Throttled {
        /// The ECS operation.
        operation: &'static str,
        /// ECS's message.
        message: String,
    },
    /// The cluster, instance, task or task definition does not exist.
    #[error("ECS {operation}: not found: {message}")]
    NotFound {
        /// The ECS operation.
        operation: &'static str,
        /// ECS's message.
        message: String,
    },
    /// ECS rejected the request (bad parameter, access denied, ...).
    #[error("ECS {operation} failed with {code}: {message}")]
    Service {
        /// The ECS operation.
        operation: &'static str,
        /// ECS's error code (`InvalidParameterException`, `AccessDeniedException`, ...).
        code: String,
        /// ECS's message.
        message: String,
    },
    /// The request did not get an answer (connection, timeout, dispatch).
    #[error("ECS {operation} request failed")]
    Transport {
        /// The ECS operation.
        operation: &'static str,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// ECS answered with something blox cannot use.
    #[error("ECS {operation} returned an invalid response: {message}")]
    InvalidResponse {
        /// The ECS operation.
        operation: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The caller asked for something the API cannot do (e.g. more than ten instances in one StartTask).
    #[error("invalid {operation} request: {message}")]
    InvalidRequest {
        /// The ECS operation.
        operation: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl EcsError {
    /// Whether ECS throttled the call.
    pub fn is_throttling(&self) -> bool {
        matches!(self, EcsError::Throttled { .. })
    }

    /// Whether trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EcsError::Throttled { .. } | EcsError::Transport { .. }
        )
    }

    /// The ECS operation that failed.
    pub fn operation(&self) -> &'static str {
        match self {
            EcsError::Throttled { operation, .. }
            | EcsError::NotFound { operation, .. }
            | EcsError::Service { operation, .. }
            | EcsError::Transport { operation, .. }
            | EcsError::InvalidResponse { operation, .. }
            | EcsError::InvalidRequest { operation, .. } => operation,
        }
    }
}

/// The ECS API as blox uses it.
///
/// `List*` calls return one [`Page`] at a time (up to 100 items, ECS's
/// maximum) so callers control pacing and can count calls; the provided
/// `list_all_*` methods follow the tokens to the end. `Describe*` calls take
/// at most [`MAX_DESCRIBE_BATCH`] ARNs; implementations reject more.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait EcsApi: Send + Sync {
    /// One page of the account's cluster ARNs.
    async fn list_clusters(&self, next_token: Option<String>) -> Result<Page<Arn>, EcsError>;

    /// Describes up to 100 clusters (names or ARNs).
    async fn describe_clusters(&self, clusters: &[String]) -> Result<Vec<Cluster>, EcsError>;

    /// One page of a cluster's container instance ARNs (every status).
    async fn list_container_instances(
        &self,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError>;

    /// Describes up to 100 container instances of a cluster (those ECS
    /// found; see [`EcsApi::describe_container_instances_with_missing`]).
    async fn describe_container_instances(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        Ok(self
            .describe_container_instances_with_missing(cluster, instances)
            .await?
            .found)
    }

    /// Describes up to 100 container instances of a cluster, with the ARNs
    /// ECS reports `MISSING`: the reconciler's evidence that an instance
    /// is gone (see [`EcsApi::describe_tasks_with_missing`]).
    async fn describe_container_instances_with_missing(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Described<ContainerInstance>, EcsError>;

    /// One page of task ARNs matching a filter.
    async fn list_tasks(
        &self,
        filter: &TaskListFilter,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError>;

    /// Describes up to 100 tasks of a cluster (those ECS found; see
    /// [`EcsApi::describe_tasks_with_missing`]).
    async fn describe_tasks(&self, cluster: &str, tasks: &[Arn]) -> Result<Vec<Task>, EcsError> {
        Ok(self
            .describe_tasks_with_missing(cluster, tasks)
            .await?
            .found)
    }

    /// Describes up to 100 tasks of a cluster, with the ARNs ECS reports
    /// `MISSING` (its `failures` with reason `MISSING`): the reconciler's
    /// evidence that a task is gone. Report an ARN missing only on ECS's
    /// word; one that is neither found nor missing proves nothing.
    async fn describe_tasks_with_missing(
        &self,
        cluster: &str,
        tasks: &[Arn],
    ) -> Result<Described<Task>, EcsError>;

    /// Starts one task on each of up to ten container instances.
    async fn start_task(&self, request: &StartTaskRequest) -> Result<StartTaskOutput, EcsError>;

    /// Stops a task; returns its state after the call.
    async fn stop_task(&self, cluster: &str, task: &Arn, reason: &str) -> Result<Task, EcsError>;

    /// Describes a task definition (`family:revision`, `family`, or ARN).
    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinition, EcsError>;

    /// Sets container instances to ACTIVE or DRAINING; returns their new states.
    async fn update_container_instances_state(
        &self,
        cluster: &str,
        instances: &[Arn],
        status: InstanceStatus,
    ) -> Result<Vec<ContainerInstance>, EcsError>;
}

/// Follows page tokens of a `List*` call (one page per call of `page`)
/// to the end.
pub async fn collect_pages<T, F, Fut>(mut page: F) -> Result<Vec<T>, EcsError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, EcsError>>,
{
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let p = page(token).await?;
        all.extend(p.items);
        match p.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(all),
        }
    }
}

/// Whole-list helpers over any [`EcsApi`].
#[async_trait]
pub trait EcsApiExt: EcsApi {
    /// Every cluster ARN of the account.
    async fn list_all_clusters(&self) -> Result<Vec<Arn>, EcsError> {
        collect_pages(|t| self.list_clusters(t)).await
    }

    /// Every container instance ARN of a cluster.
    async fn list_all_container_instances(&self, cluster: &str) -> Result<Vec<Arn>, EcsError> {
        collect_pages(|t| self.list_container_instances(cluster, t)).await
    }

    /// Every task ARN matching a filter.
    async fn list_all_tasks(&self, filter: &TaskListFilter) -> Result<Vec<Arn>, EcsError> {
        collect_pages(|t| self.list_tasks(filter, t)).await
    }
}

impl<T: EcsApi + ?Sized> EcsApiExt for T {}
