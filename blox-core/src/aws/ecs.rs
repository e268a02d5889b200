//! [`EcsApi`] over `aws-sdk-ecs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::config::retry::RetryConfig;
use aws_sdk_ecs::config::timeout::TimeoutConfig;
use aws_sdk_ecs::types::{ContainerInstanceStatus, DesiredStatus, Failure as SdkFailure};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::convert::{self, ConvertError};
use super::error::classify;
use super::operation::Operation;
use super::ratelimit::{RateLimit, RateLimiter};
use super::retry::RetryPolicy;
use crate::model::{
    Arn, Cluster, ContainerInstance, InstanceStatus, ResourceKind, Task, TaskDefinition,
};
use crate::ports::{
    EcsApi, EcsError, MAX_DESCRIBE_BATCH, MAX_START_TASK_INSTANCES, Page, StartTaskOutput,
    StartTaskRequest, TaskListFilter,
};

/// ECS's limit on container instances per `UpdateContainerInstancesState` call.
pub const MAX_UPDATE_STATE_INSTANCES: usize = 10;

/// The page size blox asks `List*` calls for (ECS's maximum).
const PAGE_SIZE: i32 = 100;

/// The reason ECS gives in `failures` for an ARN it does not know.
const MISSING: &str = "MISSING";

const LIST_CLUSTERS: Operation = Operation::idempotent("ListClusters", "ecs:ListClusters");
const DESCRIBE_CLUSTERS: Operation =
    Operation::idempotent("DescribeClusters", "ecs:DescribeClusters");
const LIST_CONTAINER_INSTANCES: Operation =
    Operation::idempotent("ListContainerInstances", "ecs:ListContainerInstances");
const DESCRIBE_CONTAINER_INSTANCES: Operation =
    Operation::idempotent("DescribeContainerInstances", "ecs:DescribeContainerInstances");
const LIST_TASKS: Operation = Operation::idempotent("ListTasks", "ecs:ListTasks");
const DESCRIBE_TASKS: Operation = Operation::idempotent("DescribeTasks", "ecs:DescribeTasks");
const START_TASK: Operation = Operation::non_idempotent("StartTask", "ecs:StartTask");
const STOP_TASK: Operation = Operation::idempotent("StopTask", "ecs:StopTask");
const DESCRIBE_TASK_DEFINITION: Operation =
    Operation::idempotent("DescribeTaskDefinition", "ecs:DescribeTaskDefinition");
const UPDATE_CONTAINER_INSTANCES_STATE: Operation = Operation::idempotent(
    "UpdateContainerInstancesState",
    "ecs:UpdateContainerInstancesState",
);

/// The [`EcsApi`] port over the ECS API.
///
/// Every call takes a token from a shared [`RateLimiter`] (per attempt) and is
/// retried by a [`RetryPolicy`] on throttling and transport errors; the SDK's
/// own retries are off. `StartTask` is retried only when throttled: after a
/// lost answer it may have started tasks, which the caller resolves through
/// `ListTasks(startedBy)`.
///
/// Cloning is cheap and clones share the rate limiter.
#[derive(Debug, Clone)]
pub struct EcsAdapter {
    client: aws_sdk_ecs::Client,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    #[cfg(test)]
    called: Arc<std::sync::Mutex<std::collections::BTreeSet<&'static str>>>,
}

impl EcsAdapter {
    /// The IAM actions this adapter may call. A role running blox needs these
    /// (and `iam:PassRole` for any task role its task definitions use, which
    /// `StartTask` checks).
    pub const IAM_ACTIONS: &'static [&'static str] = &[
        LIST_CLUSTERS.iam_action,
        DESCRIBE_CLUSTERS.iam_action,
        LIST_CONTAINER_INSTANCES.iam_action,
        DESCRIBE_CONTAINER_INSTANCES.iam_action,
        LIST_TASKS.iam_action,
        DESCRIBE_TASKS.iam_action,
        START_TASK.iam_action,
        STOP_TASK.iam_action,
        DESCRIBE_TASK_DEFINITION.iam_action,
        UPDATE_CONTAINER_INSTANCES_STATE.iam_action,
    ];

    /// The timeout of one ECS request.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// An adapter over an ECS client built from `config`, with the default
    /// [`RateLimit`] and [`RetryPolicy`].
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_ecs::Client::from_conf(Self::configure(
            aws_sdk_ecs::config::Builder::from(config),
        )))
    }

    /// Applies the adapter's client settings to an ECS config: SDK retries
    /// off (the adapter retries itself) and request timeouts.
    pub fn configure(builder: aws_sdk_ecs::config::Builder) -> aws_sdk_ecs::Config {
        builder
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Self::REQUEST_TIMEOUT)
                    .operation_timeout(Self::REQUEST_TIMEOUT)
                    .build(),
            )
            .build()
    }

    /// An adapter over a client configured by the caller (use
    /// [`configure`](Self::configure) to turn the SDK's retries off, or
    /// retries will multiply).
    pub fn from_client(client: aws_sdk_ecs::Client) -> Self {
        EcsAdapter {
            client,
            limiter: Arc::new(RateLimiter::default()),
            retry: RetryPolicy::default(),
            #[cfg(test)]
            called: Arc::default(),
        }
    }

    /// Replaces the rate limit (a new bucket, not shared with earlier clones).
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.limiter = Arc::new(RateLimiter::new(limit));
        self
    }

    /// Shares a rate limiter with other adapters (e.g. one per region and account).
    pub fn with_rate_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &aws_sdk_ecs::Client {
        &self.client
    }

    /// The one way every method calls ECS: checks that `op` is declared in
    /// [`IAM_ACTIONS`](Self::IAM_ACTIONS), then makes rate-limited attempts
    /// under the retry policy and maps the SDK's errors.
    async fn call<T, E, F, Fut>(&self, op: Operation, send: F) -> Result<T, EcsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        debug_assert!(
            Self::IAM_ACTIONS.contains(&op.iam_action),
            "{} is not declared in EcsAdapter::IAM_ACTIONS",
            op.iam_action
        );
        #[cfg(test)]
        self.called
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(op.iam_action);
        let send = &send;
        let limiter = &self.limiter;
        self.retry
            .run(
                op.name,
                || async move {
                    limiter.acquire().await;
                    send().await.map_err(|e| classify(e).into_ecs(op.name))
                },
                |e| {
                    if op.idempotent {
                        e.is_retryable()
                    } else {
                        e.is_throttling()
                    }
                },
            )
            .await
    }

    /// The IAM actions called so far (tests check them against `IAM_ACTIONS`).
    #[cfg(test)]
    pub(crate) fn called_actions(&self) -> std::collections::BTreeSet<&'static str> {
        self.called
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn invalid_response(op: Operation) -> impl Fn(ConvertError) -> EcsError {
    move |e| EcsError::InvalidResponse {
        operation: op.name,
        message: e.to_string(),
    }
}

fn check_batch(op: Operation, len: usize, max: usize, what: &str) -> Result<(), EcsError> {
    if len > max {
        return Err(EcsError::InvalidRequest {
            operation: op.name,
            message: format!("{len} {what} given, at most {max} per call"),
        });
    }
    Ok(())
}

/// Describe calls report unknown ARNs as `MISSING` failures: those items are
/// simply absent from the result. Any other failure fails the call, so a
/// caller never mistakes an item ECS could not describe for one it does not have.
fn check_describe_failures(op: Operation, failures: &[SdkFailure]) -> Result<(), EcsError> {
    match failures.iter().find(|f| f.reason() != Some(MISSING)) {
        None => Ok(()),
        Some(f) => Err(EcsError::Service {
            operation: op.name,
            code: f.reason().unwrap_or("UNKNOWN").to_owned(),
            message: format!(
                "{}: {}",
                f.arn().unwrap_or("?"),
                f.detail().unwrap_or("no detail")
            ),
        }),
    }
}

fn arn_strings(arns: &[Arn]) -> Vec<String> {
    arns.iter().map(|a| a.as_str().to_owned()).collect()
}

fn page(
    op: Operation,
    arns: &[String],
    kind: ResourceKind,
    next_token: Option<&str>,
) -> Result<Page<Arn>, EcsError> {
    Ok(Page {
        items: convert::arns(arns, "arns", kind).map_err(invalid_response(op))?,
        next_token: next_token.filter(|t| !t.is_empty()).map(str::to_owned),
    })
}

#[async_trait]
impl EcsApi for EcsAdapter {
    async fn list_clusters(&self, next_token: Option<String>) -> Result<Page<Arn>, EcsError> {
        let out = self
            .call(LIST_CLUSTERS, || {
                self.client
                    .list_clusters()
                    .set_next_token(next_token.clone())
                    .max_results(PAGE_SIZE)
                    .send()
            })
            .await?;
        page(
            LIST_CLUSTERS,
            out.cluster_arns(),
            ResourceKind::Cluster,
            out.next_token(),
        )
    }

    async fn describe_clusters(&self, clusters: &[String]) -> Result<Vec<Cluster>, EcsError> {
        check_batch(DESCRIBE_CLUSTERS, clusters.len(), MAX_DESCRIBE_BATCH, "clusters")?;
        // An empty list would describe the account's default cluster.
        if clusters.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .call(DESCRIBE_CLUSTERS, || {
                self.client
                    .describe_clusters()
                    .set_clusters(Some(clusters.to_vec()))
                    .send()
            })
            .await?;
        check_describe_failures(DESCRIBE_CLUSTERS, out.failures())?;
        out.clusters()
            .iter()
            .map(|c| convert::cluster(c).map_err(invalid_response(DESCRIBE_CLUSTERS)))
            .collect()
    }

    /// Lists without a status filter, which ECS answers with ACTIVE and
    /// DRAINING instances (and those registering or deregistering).
    async fn list_container_instances(
        &self,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        let out = self
            .call(LIST_CONTAINER_INSTANCES, || {
                self.client
                    .list_container_instances()
                    .cluster(cluster)
                    .set_next_token(next_token.clone())
                    .max_results(PAGE_SIZE)
                    .send()
            })
            .await?;
        page(
            LIST_CONTAINER_INSTANCES,
            out.container_instance_arns(),
            ResourceKind::ContainerInstance,
            out.next_token(),
        )
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        let op = DESCRIBE_CONTAINER_INSTANCES;
        check_batch(op, instances.len(), MAX_DESCRIBE_BATCH, "container instances")?;
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .call(op, || {
                self.client
                    .describe_container_instances()
                    .cluster(cluster)
                    .set_container_instances(Some(arn_strings(instances)))
                    .send()
            })
            .await?;
        check_describe_failures(op, out.failures())?;
        out.container_instances()
            .iter()
            .map(|ci| convert::container_instance(ci, cluster).map_err(invalid_response(op)))
            .collect()
    }

    async fn list_tasks(
        &self,
        filter: &TaskListFilter,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        let out = self
            .call(LIST_TASKS, || {
                self.client
                    .list_tasks()
                    .cluster(&filter.cluster)
                    .set_desired_status(
                        filter
                            .desired_status
                            .as_ref()
                            .map(|s| DesiredStatus::from(s.as_str())),
                    )
                    .set_container_instance(
                        filter
                            .container_instance
                            .as_ref()
                            .map(|a| a.as_str().to_owned()),
                    )
                    .set_started_by(filter.started_by.clone())
                    .set_family(filter.family.clone())
                    .set_next_token(next_token.clone())
                    .max_results(PAGE_SIZE)
                    .send()
            })
            .await?;
        page(
            LIST_TASKS,
            out.task_arns(),
            ResourceKind::Task,
            out.next_token(),
        )
    }

    async fn describe_tasks(&self, cluster: &str, tasks: &[Arn]) -> Result<Vec<Task>, EcsError> {
        check_batch(DESCRIBE_TASKS, tasks.len(), MAX_DESCRIBE_BATCH, "tasks")?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .call(DESCRIBE_TASKS, || {
                self.client
                    .describe_tasks()
                    .cluster(cluster)
                    .set_tasks(Some(arn_strings(tasks)))
                    .send()
            })
            .await?;
        check_describe_failures(DESCRIBE_TASKS, out.failures())?;
        out.tasks()
            .iter()
            .map(|t| convert::task(t, cluster).map_err(invalid_response(DESCRIBE_TASKS)))
            .collect()
    }

    async fn start_task(&self, request: &StartTaskRequest) -> Result<StartTaskOutput, EcsError> {
        let n = request.container_instances.len();
        check_batch(START_TASK, n, MAX_START_TASK_INSTANCES, "container instances")?;
        if n == 0 {
            return Err(EcsError::InvalidRequest {
                operation: START_TASK.name,
                message: "no container instances given".to_owned(),
            });
        }
        let overrides = request
            .overrides
            .as_ref()
            .map(convert::task_override_to_sdk)
            .transpose()
            .map_err(|e| EcsError::InvalidRequest {
                operation: START_TASK.name,
                message: e.to_string(),
            })?;
        let out = self
            .call(START_TASK, || {
                self.client
                    .start_task()
                    .cluster(&request.cluster)
                    .task_definition(&request.task_definition)
                    .set_container_instances(Some(arn_strings(&request.container_instances)))
                    .set_started_by(request.started_by.clone())
                    .set_group(request.group.clone())
                    .set_overrides(overrides.clone())
                    .send()
            })
            .await?;
        let tasks = out
            .tasks()
            .iter()
            .map(|t| convert::task(t, &request.cluster))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid_response(START_TASK))?;
        Ok(StartTaskOutput {
            tasks,
            failures: out
                .failures()
                .iter()
                .map(convert::placement_failure)
                .collect(),
        })
    }

    async fn stop_task(&self, cluster: &str, task: &Arn, reason: &str) -> Result<Task, EcsError> {
        let out = self
            .call(STOP_TASK, || {
                self.client
                    .stop_task()
                    .cluster(cluster)
                    .task(task.as_str())
                    .reason(reason)
                    .send()
            })
            .await?;
        let t = out.task().ok_or_else(|| EcsError::InvalidResponse {
            operation: STOP_TASK.name,
            message: "no task in the response".to_owned(),
        })?;
        convert::task(t, cluster).map_err(invalid_response(STOP_TASK))
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinition, EcsError> {
        let out = self
            .call(DESCRIBE_TASK_DEFINITION, || {
                self.client
                    .describe_task_definition()
                    .task_definition(task_definition)
                    .send()
            })
            .await?;
        let td = out
            .task_definition()
            .ok_or_else(|| EcsError::InvalidResponse {
                operation: DESCRIBE_TASK_DEFINITION.name,
                message: "no task definition in the response".to_owned(),
            })?;
        convert::task_definition(td).map_err(invalid_response(DESCRIBE_TASK_DEFINITION))
    }

    /// Updates at most [`MAX_UPDATE_STATE_INSTANCES`] instances; unknown
    /// instances are absent from the result, as with describe calls.
    async fn update_container_instances_state(
        &self,
        cluster: &str,
        instances: &[Arn],
        status: InstanceStatus,
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        let op = UPDATE_CONTAINER_INSTANCES_STATE;
        check_batch(
            op,
            instances.len(),
            MAX_UPDATE_STATE_INSTANCES,
            "container instances",
        )?;
        if !matches!(status, InstanceStatus::Active | InstanceStatus::Draining) {
            return Err(EcsError::InvalidRequest {
                operation: op.name,
                message: format!("status must be ACTIVE or DRAINING, not {status}"),
            });
        }
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .call(op, || {
                self.client
                    .update_container_instances_state()
                    .cluster(cluster)
                    .set_container_instances(Some(arn_strings(instances)))
                    .status(ContainerInstanceStatus::from(status.as_str()))
                    .send()
            })
            .await?;
        check_describe_failures(op, out.failures())?;
        out.container_instances()
            .iter()
            .map(|ci| convert::container_instance(ci, cluster).map_err(invalid_response(op)))
            .collect()
    }
}
