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
use super::operation::{CallLog, Operation};
use super::ratelimit::{RateLimit, RateLimiter};
use crate::model::{
    Arn, Cluster, ContainerInstance, InstanceStatus, ResourceKind, Task, TaskDefinition,
};
use crate::ports::{
    Described, EcsApi, EcsError, MAX_DESCRIBE_BATCH, MAX_START_TASK_INSTANCES, Page,
    StartTaskOutput, StartTaskRequest, TaskListFilter,
};
use crate::retry::RetryPolicy;

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
const DESCRIBE_CONTAINER_INSTANCES: Operation = Operation::idempotent(
    "DescribeContainerInstances",
    "ecs:DescribeContainerInstances",
);
const LIST_TASKS: Operation = Operation::idempotent("ListTasks", "ecs:ListTasks");
const DESCRIBE_TASKS: Operation = Operation::idempotent("DescribeTasks", "ecs:DescribeTasks");
const START_TASK: Operation = Operation::non_idempotent("StartTask", "ecs:StartTask");
const STOP_TASK: Operation = Operation::idempotent("StopTask", "ecs:StopTask");
/// Not called on its own: ECS authorizes the tags of a `StartTask` with
/// `ecs:TagResource` on the new tasks (tagging on create).
const TAG_ON_START: Operation = Operation::non_idempotent("StartTask", "ecs:TagResource");
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
/// own retries are off. `StartTask` is never retried here: after a lost
/// answer it may have started tasks, which the caller resolves through
/// `ListTasks(startedBy)`, and its caller (the runner) retries throttled
/// starts itself, re-checking its leader term before each attempt, so the
/// attempts do not multiply.
///
/// Cloning is cheap and clones share the rate limiter.
#[derive(Debug, Clone)]
pub struct EcsAdapter {
    client: aws_sdk_ecs::Client,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    calls: CallLog,
}

impl EcsAdapter {
    /// The IAM actions this adapter may call (`ecs:TagResource` authorizes
    /// the tags of a `StartTask`). A role running blox needs these
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
        TAG_ON_START.iam_action,
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
            calls: CallLog::default(),
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
        self.calls.note(op, Self::IAM_ACTIONS, "EcsAdapter");
        let send = &send;
        let limiter = &self.limiter;
        // A non-idempotent call is never repeated here: its caller retries
        // it (the runner, re-checking its leader term before each attempt).
        let policy = if op.idempotent {
            self.retry
        } else {
            RetryPolicy::NONE
        };
        policy
            .run(
                op.name,
                || async move {
                    limiter.acquire().await;
                    send().await.map_err(|e| classify(e).into_ecs(op.name))
                },
                EcsError::is_retryable,
            )
            .await
    }

    /// The IAM actions called so far (tests check them against `IAM_ACTIONS`).
    #[cfg(test)]
    pub(crate) fn called_actions(&self) -> std::collections::BTreeSet<&'static str> {
        self.calls.actions()
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

/// The ARNs a describe call reported `MISSING` (after
/// [`check_describe_failures`]).
fn missing_arns(
    op: Operation,
    failures: &[SdkFailure],
    kind: ResourceKind,
) -> Result<Vec<Arn>, EcsError> {
    check_describe_failures(op, failures)?;
    let arns: Vec<String> = failures
        .iter()
        .map(|f| f.arn().unwrap_or_default().to_owned())
        .collect();
    convert::arns(&arns, "failures[].arn", kind).map_err(invalid_response(op))
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
        check_batch(
            DESCRIBE_CLUSTERS,
            clusters.len(),
            MAX_DESCRIBE_BATCH,
            "clusters",
        )?;
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

    async fn describe_container_instances_with_missing(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Described<ContainerInstance>, EcsError> {
        let op = DESCRIBE_CONTAINER_INSTANCES;
        check_batch(
            op,
            instances.len(),
            MAX_DESCRIBE_BATCH,
            "container instances",
        )?;
        if instances.is_empty() {
            return Ok(Described::default());
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
        Ok(Described {
            missing: missing_arns(op, out.failures(), ResourceKind::ContainerInstance)?,
            found: out
                .container_instances()
                .iter()
                .map(|ci| convert::container_instance(ci, cluster).map_err(invalid_response(op)))
                .collect::<Result<_, _>>()?,
        })
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

    async fn describe_tasks_with_missing(
        &self,
        cluster: &str,
        tasks: &[Arn],
    ) -> Result<Described<Task>, EcsError> {
        check_batch(DESCRIBE_TASKS, tasks.len(), MAX_DESCRIBE_BATCH, "tasks")?;
        if tasks.is_empty() {
            return Ok(Described::default());
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
        Ok(Described {
            missing: missing_arns(DESCRIBE_TASKS, out.failures(), ResourceKind::Task)?,
            found: out
                .tasks()
                .iter()
                .map(|t| convert::task(t, cluster).map_err(invalid_response(DESCRIBE_TASKS)))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn start_task(&self, request: &StartTaskRequest) -> Result<StartTaskOutput, EcsError> {
        let n = request.container_instances.len();
        check_batch(
            START_TASK,
            n,
            MAX_START_TASK_INSTANCES,
            "container instances",
        )?;
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
        let tags = (!request.tags.is_empty()).then(|| {
            request
                .tags
                .iter()
                .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
                .collect::<Vec<_>>()
        });
        if tags.is_some() {
            self.calls
                .note(TAG_ON_START, Self::IAM_ACTIONS, "EcsAdapter");
        }
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
                    .set_tags(tags.clone())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;
    use crate::ports::EcsApiExt;
    use aws_sdk_ecs::Client;
    use aws_sdk_ecs::operation::describe_clusters::DescribeClustersOutput;
    use aws_sdk_ecs::operation::describe_container_instances::DescribeContainerInstancesOutput;
    use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::list_clusters::{ListClustersError, ListClustersOutput};
    use aws_sdk_ecs::operation::list_container_instances::{
        ListContainerInstancesError, ListContainerInstancesOutput,
    };
    use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
    use aws_sdk_ecs::operation::start_task::{StartTaskError, StartTaskOutput as SdkStartOutput};
    use aws_sdk_ecs::operation::stop_task::StopTaskOutput;
    use aws_sdk_ecs::operation::update_container_instances_state::UpdateContainerInstancesStateOutput;
    use aws_sdk_ecs::types as sdk;
    use aws_smithy_mocks::{
        MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/prod";

    fn instance_arn(id: usize) -> String {
        format!("arn:aws:ecs:us-east-1:123456789012:container-instance/prod/ci-{id}")
    }

    fn task_arn(id: usize) -> String {
        format!("arn:aws:ecs:us-east-1:123456789012:task/prod/t-{id}")
    }

    /// An adapter over a client configured exactly as in production, except
    /// that its HTTP layer is replaced by the rules (in order) and the rate
    /// limit is off.
    fn adapter(rules: &[&Rule]) -> EcsAdapter {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        let conf = EcsAdapter::configure(
            aws_sdk_ecs::Config::builder()
                .with_test_defaults_v2()
                .http_client(create_mock_http_client())
                .interceptor(interceptor),
        );
        EcsAdapter::from_client(Client::from_conf(conf)).with_rate_limit(RateLimit::UNLIMITED)
    }

    fn throttling() -> ListClustersError {
        ListClustersError::generic(
            ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("Rate exceeded")
                .build(),
        )
    }

    fn json_response(status: u16, body: &'static str) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
    }

    fn arns(ids: std::ops::Range<usize>, f: fn(usize) -> String) -> Vec<Arn> {
        ids.map(|i| Arn::parse(&f(i)).unwrap()).collect()
    }

    #[tokio::test]
    async fn list_all_container_instances_follows_next_tokens_across_three_pages() {
        let page1 = mock!(Client::list_container_instances)
            .match_requests(|r| {
                r.next_token().is_none()
                    && r.max_results() == Some(100)
                    && r.cluster() == Some("prod")
            })
            .then_output(|| {
                ListContainerInstancesOutput::builder()
                    .set_container_instance_arns(Some((0..100).map(instance_arn).collect()))
                    .next_token("t1")
                    .build()
            });
        let page2 = mock!(Client::list_container_instances)
            .match_requests(|r| r.next_token() == Some("t1"))
            .then_output(|| {
                ListContainerInstancesOutput::builder()
                    .set_container_instance_arns(Some((100..200).map(instance_arn).collect()))
                    .next_token("t2")
                    .build()
            });
        let page3 = mock!(Client::list_container_instances)
            .match_requests(|r| r.next_token() == Some("t2"))
            .then_output(|| {
                ListContainerInstancesOutput::builder()
                    .set_container_instance_arns(Some((200..250).map(instance_arn).collect()))
                    .build()
            });
        let ecs = adapter(&[&page1, &page2, &page3]);
        let all = ecs.list_all_container_instances("prod").await.unwrap();
        assert_eq!(all, arns(0..250, instance_arn));
        assert_eq!(
            (page1.num_calls(), page2.num_calls(), page3.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn list_all_tasks_sends_the_filter_on_every_page() {
        let matches = |r: &aws_sdk_ecs::operation::list_tasks::ListTasksInput| {
            r.cluster() == Some("prod")
                && r.desired_status() == Some(&DesiredStatus::Stopped)
                && r.started_by() == Some("blox-d1")
                && r.container_instance() == Some(instance_arn(1).as_str())
                && r.family() == Some("web")
                && r.max_results() == Some(100)
        };
        let page1 = mock!(Client::list_tasks)
            .match_requests(move |r| matches(r) && r.next_token().is_none())
            .then_output(|| {
                ListTasksOutput::builder()
                    .task_arns(task_arn(1))
                    .next_token("n")
                    .build()
            });
        let page2 = mock!(Client::list_tasks)
            .match_requests(move |r| matches(r) && r.next_token() == Some("n"))
            .then_output(|| ListTasksOutput::builder().task_arns(task_arn(2)).build());
        let ecs = adapter(&[&page1, &page2]);
        let filter = TaskListFilter {
            cluster: "prod".into(),
            desired_status: Some(TaskStatus::Stopped),
            container_instance: Some(Arn::parse(&instance_arn(1)).unwrap()),
            started_by: Some("blox-d1".into()),
            family: Some("web".into()),
        };
        let all = ecs.list_all_tasks(&filter).await.unwrap();
        assert_eq!(all, arns(1..3, task_arn));
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_is_retried_until_the_call_succeeds() {
        let rule = mock!(Client::list_clusters)
            .sequence()
            .error(throttling)
            .times(3)
            .output(|| ListClustersOutput::builder().cluster_arns(CLUSTER).build())
            .build();
        let ecs = adapter(&[&rule]);
        let page = ecs.list_clusters(None).await.unwrap();
        assert_eq!(page.items, vec![Arn::parse(CLUSTER).unwrap()]);
        assert_eq!(rule.num_calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_gives_up_with_throttled_when_attempts_run_out() {
        let rule = mock!(Client::list_clusters)
            .sequence()
            .error(throttling)
            .times(3)
            .output(|| ListClustersOutput::builder().build())
            .build();
        let ecs = adapter(&[&rule]).with_retry_policy(RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        });
        let err = ecs.list_clusters(None).await.unwrap_err();
        assert!(
            matches!(&err, EcsError::Throttled { operation: "ListClusters", message } if message == "Rate exceeded"),
            "{err:?}"
        );
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn http_429_without_a_code_is_throttling() {
        let rule = mock!(Client::list_clusters)
            .sequence()
            .http_status(429, None)
            .build();
        let ecs = adapter(&[&rule]).with_retry_policy(RetryPolicy::NONE);
        let err = ecs.list_clusters(None).await.unwrap_err();
        assert!(err.is_throttling(), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_error_page_is_a_service_error_and_not_retried() {
        let rule = mock!(Client::list_clusters)
            .sequence()
            .http_status(500, Some("<html>Internal Server Error</html>".into()))
            .build();
        let ecs = adapter(&[&rule]);
        let err = ecs.list_clusters(None).await.unwrap_err();
        assert!(
            matches!(&err, EcsError::Service { code, .. } if code == "HTTP 500"),
            "{err:?}"
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_gateways_are_transport_errors_and_retried() {
        let rule = mock!(Client::list_clusters)
            .sequence()
            .http_status(503, None)
            .output(|| ListClustersOutput::builder().cluster_arns(CLUSTER).build())
            .build();
        let ecs = adapter(&[&rule]);
        assert_eq!(ecs.list_clusters(None).await.unwrap().items.len(), 1);
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn start_task_is_never_retried_by_the_adapter() {
        let request = StartTaskRequest {
            cluster: "prod".into(),
            task_definition: "web:3".into(),
            container_instances: arns(0..1, instance_arn),
            started_by: None,
            group: None,
            overrides: None,
            tags: Default::default(),
        };
        let lost = mock!(Client::start_task)
            .sequence()
            .http_status(503, None)
            .build();
        let ecs = adapter(&[&lost]);
        let err = ecs.start_task(&request).await.unwrap_err();
        assert!(matches!(err, EcsError::Transport { .. }), "{err:?}");
        assert_eq!(lost.num_calls(), 1);

        let throttled = mock!(Client::start_task)
            .sequence()
            .error(|| {
                StartTaskError::generic(
                    ErrorMetadata::builder().code("ThrottlingException").build(),
                )
            })
            .output(|| SdkStartOutput::builder().build())
            .build();
        let ecs = adapter(&[&throttled]);
        // Its caller retries, re-checking its leader term before each
        // attempt: a retry here would multiply the caller's attempts and
        // skip that check.
        let err = ecs.start_task(&request).await.unwrap_err();
        assert!(err.is_throttling(), "{err:?}");
        assert_eq!(throttled.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_missing_cluster_is_not_found_whether_modeled_or_on_the_wire() {
        let modeled = mock!(Client::list_container_instances).then_error(|| {
            ListContainerInstancesError::ClusterNotFoundException(
                sdk::error::ClusterNotFoundException::builder()
                    .message("Cluster not found.")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ClusterNotFoundException")
                            .message("Cluster not found.")
                            .build(),
                    )
                    .build(),
            )
        });
        let wire = mock!(Client::list_container_instances).then_http_response(|| {
            json_response(
                400,
                r#"{"__type":"ClusterNotFoundException","message":"Cluster not found."}"#,
            )
        });
        let ecs = adapter(&[&modeled, &wire]);
        for _ in 0..2 {
            let err = ecs
                .list_container_instances("nope", None)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, EcsError::NotFound { operation: "ListContainerInstances", message } if message == "Cluster not found."),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn other_service_errors_keep_their_code_and_are_not_retried() {
        let rule = mock!(Client::list_tasks).then_http_response(|| {
            json_response(
                400,
                r#"{"__type":"InvalidParameterException","message":"bad status"}"#,
            )
        });
        let ecs = adapter(&[&rule]);
        let err = ecs
            .list_tasks(&TaskListFilter::default(), None)
            .await
            .unwrap_err();
        match err {
            EcsError::Service { code, message, .. } => {
                assert_eq!(code, "InvalidParameterException");
                assert_eq!(message, "bad status");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rule.num_calls(), 1);
    }

    /// A DescribeTasks answer as ECS sends it (epoch-second timestamps,
    /// strings for cpu/memory, a failure for an unknown ARN).
    const DESCRIBE_TASKS_JSON: &str = r#"{
      "failures": [{"arn": "arn:aws:ecs:us-east-1:123456789012:task/prod/gone", "reason": "MISSING"}],
      "tasks": [{
        "attachments": [],
        "availabilityZone": "us-east-1a",
        "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
        "containerInstanceArn": "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/ci-1",
        "containers": [{
          "containerArn": "arn:aws:ecs:us-east-1:123456789012:container/prod/t-1/c-1",
          "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/prod/t-1",
          "name": "web",
          "image": "nginx:1.25",
          "lastStatus": "RUNNING",
          "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 32768, "protocol": "tcp"}],
          "cpu": "128",
          "memory": "256"
        }],
        "cpu": "256",
        "createdAt": 1579802278.103,
        "desiredStatus": "RUNNING",
        "group": "family:web",
        "lastStatus": "RUNNING",
        "launchType": "EC2",
        "memory": "512",
        "overrides": {
          "containerOverrides": [{"name": "web", "command": ["serve"], "environment": [{"name": "MODE", "value": "prod"}], "memory": 300}]
        },
        "startedAt": 1579802290,
        "startedBy": "blox-d1",
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/prod/t-1",
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
        "version": 4
      }]
    }"#;

    #[tokio::test]
    async fn a_realistic_describe_tasks_answer_converts_and_missing_tasks_are_absent() {
        let rule = mock!(Client::describe_tasks)
            .match_requests(|r| r.cluster() == Some("prod") && r.tasks().len() == 2)
            .then_http_response(|| json_response(200, DESCRIBE_TASKS_JSON));
        let ecs = adapter(&[&rule]);
        let wanted = vec![
            Arn::parse(&task_arn(1)).unwrap(),
            Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/prod/gone").unwrap(),
        ];
        let tasks = ecs.describe_tasks("prod", &wanted).await.unwrap();
        assert_eq!(tasks.len(), 1);
        let t = &tasks[0];
        assert_eq!(t.task_arn.as_str(), task_arn(1));
        assert_eq!(t.cluster_arn.as_str(), CLUSTER);
        assert_eq!(
            t.container_instance_arn.as_ref().unwrap().as_str(),
            instance_arn(1)
        );
        assert_eq!(t.last_status, TaskStatus::Running);
        assert_eq!(t.desired_status, TaskStatus::Running);
        assert_eq!(t.version, Some(4));
        assert_eq!(t.started_by.as_deref(), Some("blox-d1"));
        assert_eq!(t.group.as_deref(), Some("family:web"));
        assert_eq!(t.launch_type, Some(crate::model::LaunchType::Ec2));
        assert_eq!(t.cpu.as_deref(), Some("256"));
        assert_eq!(t.memory.as_deref(), Some("512"));
        assert_eq!(t.availability_zone.as_deref(), Some("us-east-1a"));
        assert_eq!(t.created_at.unwrap().as_millis(), 1_579_802_278_103);
        assert_eq!(t.started_at.unwrap().as_millis(), 1_579_802_290_000);
        assert_eq!(t.stopped_at, None);
        let c = &t.containers[0];
        assert_eq!(c.name, "web");
        assert_eq!(c.last_status, Some(TaskStatus::Running));
        assert_eq!(c.cpu.as_deref(), Some("128"));
        assert_eq!(
            c.network_bindings,
            vec![crate::model::NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(80),
                host_port: Some(32768),
                protocol: Some("tcp".into()),
            }]
        );
        let o = &t.overrides.as_ref().unwrap().container_overrides[0];
        assert_eq!(o.command, vec!["serve".to_owned()]);
        assert_eq!(o.memory, Some(300));
        assert_eq!(o.environment[0].value.as_deref(), Some("prod"));
    }

    #[tokio::test]
    async fn container_instances_convert_with_resources_attributes_and_unknown_version() {
        let rule = mock!(Client::describe_container_instances).then_output(|| {
            DescribeContainerInstancesOutput::builder()
                .container_instances(
                    sdk::ContainerInstance::builder()
                        // An old-format ARN: the cluster comes from the argument.
                        .container_instance_arn(
                            "arn:aws:ecs:us-east-1:123456789012:container-instance/ci-old",
                        )
                        .ec2_instance_id("i-0abc")
                        .status("DRAINING")
                        .agent_connected(true)
                        .version(0)
                        .running_tasks_count(2)
                        .registered_resources(
                            sdk::Resource::builder()
                                .name("CPU")
                                .r#type("INTEGER")
                                .integer_value(4096)
                                .build(),
                        )
                        .remaining_resources(
                            sdk::Resource::builder()
                                .name("MEMORY")
                                .r#type("INTEGER")
                                .integer_value(1000)
                                .build(),
                        )
                        .remaining_resources(
                            sdk::Resource::builder()
                                .name("PORTS")
                                .r#type("STRINGSET")
                                .string_set_value("22")
                                .string_set_value("2376")
                                .build(),
                        )
                        .attributes(
                            sdk::Attribute::builder()
                                .name("ecs.availability-zone")
                                .value("us-east-1b")
                                .build()
                                .unwrap(),
                        )
                        .version_info(sdk::VersionInfo::builder().agent_version("1.80.0").build())
                        .registered_at(aws_smithy_types::DateTime::from_millis(1_600_000_000_500))
                        .build(),
                )
                .build()
        });
        let ecs = adapter(&[&rule]);
        let wanted =
            [Arn::parse("arn:aws:ecs:us-east-1:123456789012:container-instance/ci-old").unwrap()];
        let got = ecs
            .describe_container_instances("prod", &wanted)
            .await
            .unwrap();
        let ci = &got[0];
        assert_eq!(ci.cluster_arn.as_str(), CLUSTER);
        assert_eq!(ci.status, InstanceStatus::Draining);
        assert_eq!(ci.version, None);
        assert_eq!(ci.ec2_instance_id.as_deref(), Some("i-0abc"));
        assert_eq!(ci.running_tasks_count, Some(2));
        assert_eq!(
            crate::model::resource_number(&ci.registered_resources, "CPU"),
            Some(4096)
        );
        assert_eq!(ci.remaining_memory(), Some(1000));
        assert_eq!(
            ci.remaining_resources[1].string_set_value,
            vec!["22", "2376"]
        );
        assert_eq!(ci.remaining_resources[1].integer_value, None);
        assert_eq!(ci.availability_zone(), Some("us-east-1b"));
        assert_eq!(
            ci.version_info.as_ref().unwrap().agent_version.as_deref(),
            Some("1.80.0")
        );
        assert_eq!(ci.registered_at.unwrap().as_millis(), 1_600_000_000_500);
    }

    #[tokio::test]
    async fn an_invalid_arn_from_the_service_is_an_invalid_response() {
        let list = mock!(Client::list_clusters).then_output(|| {
            ListClustersOutput::builder()
                .cluster_arns("not-an-arn")
                .build()
        });
        let describe = mock!(Client::describe_tasks).then_output(|| {
            DescribeTasksOutput::builder()
                .tasks(
                    sdk::Task::builder()
                        .task_arn(CLUSTER) // a cluster ARN where a task ARN belongs
                        .last_status("RUNNING")
                        .desired_status("RUNNING")
                        .build(),
                )
                .build()
        });
        let ecs = adapter(&[&list, &describe]);
        let err = ecs.list_clusters(None).await.unwrap_err();
        assert!(
            matches!(
                err,
                EcsError::InvalidResponse {
                    operation: "ListClusters",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = ecs
            .describe_tasks("prod", &arns(0..1, task_arn))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EcsError::InvalidResponse {
                    operation: "DescribeTasks",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn describe_failures_other_than_missing_fail_the_call() {
        let rule = mock!(Client::describe_container_instances).then_output(|| {
            DescribeContainerInstancesOutput::builder()
                .failures(
                    sdk::Failure::builder()
                        .arn(instance_arn(1))
                        .reason("ACCESS_DENIED")
                        .build(),
                )
                .build()
        });
        let ecs = adapter(&[&rule]);
        let err = ecs
            .describe_container_instances("prod", &arns(1..2, instance_arn))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EcsError::Service { code, .. } if code == "ACCESS_DENIED"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn describe_tasks_reports_the_arns_ecs_says_are_missing() {
        let rule = mock!(Client::describe_tasks)
            .then_http_response(|| json_response(200, DESCRIBE_TASKS_JSON));
        let ecs = adapter(&[&rule]);
        let asked = [
            Arn::parse(&task_arn(1)).unwrap(),
            Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/prod/gone").unwrap(),
        ];
        let out = ecs
            .describe_tasks_with_missing("prod", &asked)
            .await
            .unwrap();
        assert_eq!(out.found.len(), 1);
        assert_eq!(out.found[0].task_arn, asked[0]);
        assert_eq!(out.missing, vec![asked[1].clone()]);
    }

    #[tokio::test]
    async fn describe_container_instances_reports_the_arns_ecs_says_are_missing() {
        let rule = mock!(Client::describe_container_instances).then_output(|| {
            DescribeContainerInstancesOutput::builder()
                .failures(
                    sdk::Failure::builder()
                        .arn(instance_arn(2))
                        .reason("MISSING")
                        .build(),
                )
                .build()
        });
        let ecs = adapter(&[&rule]);
        let out = ecs
            .describe_container_instances_with_missing("prod", &arns(2..3, instance_arn))
            .await
            .unwrap();
        assert!(out.found.is_empty());
        assert_eq!(out.missing, arns(2..3, instance_arn));
    }

    #[tokio::test]
    async fn a_missing_failure_without_a_valid_arn_is_an_invalid_response() {
        let rule = mock!(Client::describe_tasks).then_output(|| {
            aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput::builder()
                .failures(sdk::Failure::builder().reason("MISSING").build())
                .build()
        });
        let ecs = adapter(&[&rule]);
        let err = ecs
            .describe_tasks_with_missing("prod", &arns(1..2, task_arn))
            .await
            .unwrap_err();
        assert!(matches!(err, EcsError::InvalidResponse { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn start_task_sends_the_request_and_reports_placement_failures() {
        let rule = mock!(Client::start_task)
            .match_requests(|r| {
                r.cluster() == Some("prod")
                    && r.task_definition() == Some("web:3")
                    && r.container_instances().len() == 2
                    && r.started_by() == Some("blox-d1")
                    && r.group() == Some("blox")
                    && r.tags().len() == 2
                    && r.tags()[0].key() == Some("env")
                    && r.tags()[0].value() == Some("prod")
                    && r.tags()[1].key() == Some("team")
                    && r.overrides().is_some_and(|o| {
                        o.container_overrides()[0].memory() == Some(300)
                            && o.container_overrides()[0].command() == ["serve"]
                    })
            })
            .then_output(|| {
                SdkStartOutput::builder()
                    .tasks(
                        sdk::Task::builder()
                            .task_arn(task_arn(7))
                            .cluster_arn(CLUSTER)
                            .container_instance_arn(instance_arn(0))
                            .task_definition_arn(
                                "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
                            )
                            .last_status("PENDING")
                            .desired_status("RUNNING")
                            .started_by("blox-d1")
                            .version(1)
                            .build(),
                    )
                    .failures(
                        sdk::Failure::builder()
                            .arn(instance_arn(1))
                            .reason("RESOURCE:MEMORY")
                            .build(),
                    )
                    .build()
            });
        let ecs = adapter(&[&rule]);
        let out = ecs
            .start_task(&StartTaskRequest {
                cluster: "prod".into(),
                task_definition: "web:3".into(),
                container_instances: arns(0..2, instance_arn),
                started_by: Some("blox-d1".into()),
                group: Some("blox".into()),
                overrides: Some(crate::model::TaskOverride {
                    container_overrides: vec![crate::model::ContainerOverride {
                        name: Some("web".into()),
                        command: vec!["serve".into()],
                        memory: Some(300),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                tags: [
                    ("team".to_owned(), "web".to_owned()),
                    ("env".to_owned(), "prod".to_owned()),
                ]
                .into(),
            })
            .await
            .unwrap();
        assert_eq!(out.tasks.len(), 1);
        assert_eq!(out.tasks[0].task_arn.as_str(), task_arn(7));
        assert_eq!(out.tasks[0].last_status, TaskStatus::Pending);
        assert_eq!(out.tasks[0].version, Some(1));
        assert_eq!(
            out.failures,
            vec![crate::ports::PlacementFailure {
                arn: Some(instance_arn(1)),
                reason: "RESOURCE:MEMORY".into(),
                detail: None,
            }]
        );
    }

    #[tokio::test]
    async fn requests_beyond_the_api_limits_are_rejected_without_calling_ecs() {
        let ecs = adapter(&[]);
        let err = ecs
            .describe_tasks("prod", &arns(0..101, task_arn))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            EcsError::InvalidRequest {
                operation: "DescribeTasks",
                ..
            }
        ));
        let err = ecs
            .describe_container_instances("prod", &arns(0..101, instance_arn))
            .await
            .unwrap_err();
        assert!(matches!(err, EcsError::InvalidRequest { .. }));
        let clusters: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        assert!(matches!(
            ecs.describe_clusters(&clusters).await.unwrap_err(),
            EcsError::InvalidRequest { .. }
        ));
        let mut request = StartTaskRequest {
            cluster: "prod".into(),
            task_definition: "web:3".into(),
            container_instances: arns(0..11, instance_arn),
            started_by: None,
            group: None,
            overrides: None,
            tags: Default::default(),
        };
        let err = ecs.start_task(&request).await.unwrap_err();
        assert!(matches!(
            err,
            EcsError::InvalidRequest {
                operation: "StartTask",
                ..
            }
        ));
        request.container_instances.clear();
        assert!(matches!(
            ecs.start_task(&request).await.unwrap_err(),
            EcsError::InvalidRequest { .. }
        ));
        let err = ecs
            .update_container_instances_state(
                "prod",
                &arns(0..11, instance_arn),
                InstanceStatus::Draining,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EcsError::InvalidRequest { .. }));
        let err = ecs
            .update_container_instances_state(
                "prod",
                &arns(0..1, instance_arn),
                InstanceStatus::Inactive,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, EcsError::InvalidRequest { .. }));
        // Empty describes answer at once (an empty DescribeClusters would describe "default").
        assert!(ecs.describe_tasks("prod", &[]).await.unwrap().is_empty());
        assert!(ecs.describe_clusters(&[]).await.unwrap().is_empty());
        assert!(ecs.called_actions().is_empty());
    }

    #[tokio::test]
    async fn every_method_calls_only_declared_actions_and_every_declared_action_is_used() {
        let rules = [
            mock!(Client::list_clusters)
                .then_output(|| ListClustersOutput::builder().cluster_arns(CLUSTER).build()),
            mock!(Client::describe_clusters).then_output(|| {
                DescribeClustersOutput::builder()
                    .clusters(
                        sdk::Cluster::builder()
                            .cluster_arn(CLUSTER)
                            .cluster_name("prod")
                            .status("ACTIVE")
                            .registered_container_instances_count(3)
                            .build(),
                    )
                    .build()
            }),
            mock!(Client::list_container_instances)
                .then_output(|| ListContainerInstancesOutput::builder().build()),
            mock!(Client::describe_container_instances)
                .then_output(|| DescribeContainerInstancesOutput::builder().build()),
            mock!(Client::list_tasks).then_output(|| ListTasksOutput::builder().build()),
            mock!(Client::describe_tasks).then_output(|| DescribeTasksOutput::builder().build()),
            mock!(Client::start_task).then_output(|| SdkStartOutput::builder().build()),
            mock!(Client::stop_task)
                .match_requests(|r| r.reason() == Some("scale down"))
                .then_output(|| {
                    StopTaskOutput::builder()
                        .task(
                            sdk::Task::builder()
                                .task_arn(task_arn(1))
                                .cluster_arn(CLUSTER)
                                .last_status("RUNNING")
                                .desired_status("STOPPED")
                                .build(),
                        )
                        .build()
                }),
            mock!(Client::describe_task_definition).then_output(|| {
                DescribeTaskDefinitionOutput::builder()
                    .task_definition(
                        sdk::TaskDefinition::builder()
                            .task_definition_arn(
                                "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3",
                            )
                            .family("web")
                            .revision(3)
                            .status(sdk::TaskDefinitionStatus::Active)
                            .container_definitions(
                                sdk::ContainerDefinition::builder()
                                    .cpu(128)
                                    .memory(256)
                                    .build(),
                            )
                            .container_definitions(
                                sdk::ContainerDefinition::builder()
                                    .cpu(64)
                                    .memory_reservation(100)
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            }),
            mock!(Client::update_container_instances_state)
                .match_requests(|r| r.status() == Some(&ContainerInstanceStatus::Draining))
                .then_output(|| UpdateContainerInstancesStateOutput::builder().build()),
        ];
        let refs: Vec<&Rule> = rules.iter().collect();
        let ecs = adapter(&refs);
        ecs.list_clusters(None).await.unwrap();
        let clusters = ecs.describe_clusters(&["prod".into()]).await.unwrap();
        assert_eq!(clusters[0].cluster_name, "prod");
        assert_eq!(clusters[0].registered_container_instances_count, Some(3));
        ecs.list_container_instances("prod", None).await.unwrap();
        ecs.describe_container_instances("prod", &arns(0..1, instance_arn))
            .await
            .unwrap();
        ecs.list_tasks(&TaskListFilter::default(), None)
            .await
            .unwrap();
        ecs.describe_tasks("prod", &arns(0..1, task_arn))
            .await
            .unwrap();
        ecs.start_task(&StartTaskRequest {
            cluster: "prod".into(),
            task_definition: "web:3".into(),
            container_instances: arns(0..1, instance_arn),
            started_by: None,
            group: None,
            overrides: None,
            tags: [("team".to_owned(), "web".to_owned())].into(),
        })
        .await
        .unwrap();
        let stopped = ecs
            .stop_task("prod", &arns(1..2, task_arn)[0], "scale down")
            .await
            .unwrap();
        assert_eq!(stopped.desired_status, TaskStatus::Stopped);
        let td = ecs.describe_task_definition("web:3").await.unwrap();
        assert_eq!(
            (td.family.as_str(), td.revision, td.status.as_str()),
            ("web", 3, "ACTIVE")
        );
        assert_eq!((td.container_cpu, td.container_memory), (192, 356));
        ecs.update_container_instances_state(
            "prod",
            &arns(0..1, instance_arn),
            InstanceStatus::Draining,
        )
        .await
        .unwrap();

        let declared: std::collections::BTreeSet<&str> =
            EcsAdapter::IAM_ACTIONS.iter().copied().collect();
        assert_eq!(ecs.called_actions(), declared);
        assert!(rules.iter().all(|r| r.num_calls() == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn every_call_and_every_retry_waits_for_the_rate_limit() {
        let rule = mock!(Client::list_clusters)
            .sequence()
            .error(throttling)
            .output(|| ListClustersOutput::builder().build())
            .repeatedly()
            .build();
        let ecs = adapter(&[&rule]).with_rate_limit(RateLimit {
            per_second: 2.0,
            burst: 1,
        });
        let clone = ecs.clone();
        let start = tokio::time::Instant::now();
        for _ in 0..2 {
            ecs.list_clusters(None).await.unwrap();
            clone.list_clusters(None).await.unwrap();
        }
        // Five attempts (one throttled and retried) through one bucket of
        // burst 1 at 2 per second: the last starts no earlier than 2 s in.
        assert_eq!(rule.num_calls(), 5);
        assert!(
            start.elapsed() >= Duration::from_millis(1990),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_client_has_sdk_retries_off_and_request_timeouts() {
        let ecs = adapter(&[]);
        let conf = ecs.client().config();
        assert_eq!(conf.retry_config().unwrap().max_attempts(), 1);
        let timeouts = conf.timeout_config().unwrap();
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(EcsAdapter::REQUEST_TIMEOUT)
        );
    }
}
