//! [`EventSource`] over `aws-sdk-sqs`.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::error::classify;
use super::operation::Operation;
use super::retry::RetryPolicy;
use crate::ports::{DeleteFailure, EventSource, Message, SourceError};

const GET_QUEUE_URL: Operation = Operation::idempotent("GetQueueUrl", "sqs:GetQueueUrl");
/// Receiving again after a lost answer only delays those messages until their
/// visibility timeout ends; they are then delivered again.
const RECEIVE_MESSAGE: Operation = Operation::idempotent("ReceiveMessage", "sqs:ReceiveMessage");
/// SQS authorizes `DeleteMessageBatch` with the `sqs:DeleteMessage` action.
const DELETE_MESSAGE_BATCH: Operation =
    Operation::idempotent("DeleteMessageBatch", "sqs:DeleteMessage");

/// SQS's limit on messages per receive and entries per batch delete.
pub const MAX_BATCH: usize = 10;

/// How a queue is named in configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRef {
    /// A queue URL (`https://sqs.us-east-1.amazonaws.com/123456789012/blox`), used as is.
    Url(String),
    /// A queue name, resolved with `GetQueueUrl` in the configured region.
    Name {
        /// The queue name.
        name: String,
        /// The account that owns the queue, when it is not the caller's.
        owner: Option<String>,
    },
}

impl QueueRef {
    /// Parses a queue given as a URL (`http://` or `https://`), `sqs://name`,
    /// a queue ARN (`arn:aws:sqs:region:account:name`, resolved by name and
    /// owner account), or a bare name.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        let s = s.trim();
        let invalid = |message: String| SourceError::InvalidRequest {
            operation: GET_QUEUE_URL.name,
            message,
        };
        if s.starts_with("https://") || s.starts_with("http://") {
            return Ok(QueueRef::Url(s.to_owned()));
        }
        let (name, owner) = if let Some(name) = s.strip_prefix("sqs://") {
            (name, None)
        } else if let Some(rest) = s.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.as_slice() {
                [_, "sqs", _, account, name] if !account.is_empty() => (*name, Some(*account)),
                _ => return Err(invalid(format!("not an SQS queue ARN: {s:?}"))),
            }
        } else {
            (s, None)
        };
        let valid = !name.is_empty()
            && name.len() <= 80
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !valid {
            return Err(invalid(format!(
                "not a queue name (1-80 of A-Z a-z 0-9 - _, optionally .fifo): {name:?}"
            )));
        }
        Ok(QueueRef::Name {
            name: name.to_owned(),
            owner: owner.map(str::to_owned),
        })
    }
}

/// The [`EventSource`] port over an SQS queue (of ECS events forwarded by an
/// EventBridge rule).
///
/// Receives ask for the `ApproximateReceiveCount` attribute and long-poll up
/// to [`MAX_WAIT`](Self::MAX_WAIT); the client's request timeout is longer
/// than that wait. Deletes use `DeleteMessageBatch` and report per-message
/// failures. Throttling and transport errors are retried by a [`RetryPolicy`];
/// the SDK's own retries are off.
#[derive(Debug, Clone)]
pub struct SqsEventSource {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    retry: RetryPolicy,
    #[cfg(test)]
    called: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<&'static str>>>,
}

impl SqsEventSource {
    /// The IAM actions this source may call.
    pub const IAM_ACTIONS: &'static [&'static str] = &[
        GET_QUEUE_URL.iam_action,
        RECEIVE_MESSAGE.iam_action,
        DELETE_MESSAGE_BATCH.iam_action,
    ];

    /// The longest long-poll wait SQS allows.
    pub const MAX_WAIT: Duration = Duration::from_secs(20);

    /// The timeout of one SQS request: the longest wait plus time to answer.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// A source reading the queue at `queue_url`, with a client built from `config`.
    pub fn new(config: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        Self::from_client(Self::client_for(config), queue_url)
    }

    /// A source reading `queue` (see [`QueueRef::parse`]); a name is resolved
    /// to its URL with `GetQueueUrl`.
    pub async fn connect(config: &aws_config::SdkConfig, queue: &str) -> Result<Self, SourceError> {
        Self::connect_with(Self::client_for(config), queue).await
    }

    /// Like [`connect`](Self::connect), over a client configured by the caller.
    pub async fn connect_with(
        client: aws_sdk_sqs::Client,
        queue: &str,
    ) -> Result<Self, SourceError> {
        let mut source = Self::from_client(client, String::new());
        source.queue_url = match QueueRef::parse(queue)? {
            QueueRef::Url(url) => url,
            QueueRef::Name { name, owner } => source.resolve(&name, owner.as_deref()).await?,
        };
        Ok(source)
    }

    /// Applies the source's client settings to an SQS config: SDK retries off
    /// and a request timeout longer than the longest long-poll wait.
    pub fn configure(builder: aws_sdk_sqs::config::Builder) -> aws_sdk_sqs::Config {
        builder
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Self::REQUEST_TIMEOUT)
                    .operation_attempt_timeout(Self::REQUEST_TIMEOUT)
                    .operation_timeout(Self::REQUEST_TIMEOUT)
                    .build(),
            )
            .build()
    }

    fn client_for(config: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(Self::configure(aws_sdk_sqs::config::Builder::from(
            config,
        )))
    }

    /// A source over a client configured by the caller (use
    /// [`configure`](Self::configure), or long polls may time out and retries multiply).
    pub fn from_client(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsEventSource {
            client,
            queue_url: queue_url.into(),
            retry: RetryPolicy::default(),
            #[cfg(test)]
            called: Default::default(),
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The URL of the queue this source reads.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    async fn resolve(&self, name: &str, owner: Option<&str>) -> Result<String, SourceError> {
        let out = self
            .call(GET_QUEUE_URL, || {
                self.client
                    .get_queue_url()
                    .queue_name(name)
                    .set_queue_owner_aws_account_id(owner.map(str::to_owned))
                    .send()
            })
            .await?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| SourceError::Service {
                operation: GET_QUEUE_URL.name,
                code: "InvalidResponse".to_owned(),
                message: "GetQueueUrl returned no URL".to_owned(),
            })
    }

    /// The one way every method calls SQS: checks that `op` is declared in
    /// [`IAM_ACTIONS`](Self::IAM_ACTIONS), then retries under the policy and
    /// maps the SDK's errors.
    async fn call<T, E, F, Fut>(&self, op: Operation, send: F) -> Result<T, SourceError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        debug_assert!(
            Self::IAM_ACTIONS.contains(&op.iam_action),
            "{} is not declared in SqsEventSource::IAM_ACTIONS",
            op.iam_action
        );
        #[cfg(test)]
        self.called
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(op.iam_action);
        let send = &send;
        self.retry
            .run(
                op.name,
                || async move { send().await.map_err(|e| classify(e).into_source(op.name)) },
                SourceError::is_retryable,
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

/// Long-poll wait in whole seconds: rounded up, at most 20.
fn wait_seconds(wait: Duration) -> i32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    i32::try_from(secs.min(SqsEventSource::MAX_WAIT.as_secs())).unwrap_or(20)
}

#[async_trait]
impl EventSource for SqsEventSource {
    /// Waits are rounded up to whole seconds and capped at 20 s (a longer wait
    /// returns an empty batch after 20 s). A message without a receipt handle
    /// (which SQS never sends) could not be deleted and is skipped with a warning.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, SourceError> {
        if max == 0 || max > MAX_BATCH {
            return Err(SourceError::InvalidRequest {
                operation: RECEIVE_MESSAGE.name,
                message: format!("max must be 1 to {MAX_BATCH}, not {max}"),
            });
        }
        let max_messages = i32::try_from(max).unwrap_or(10);
        let wait = wait_seconds(wait);
        let out = self
            .call(RECEIVE_MESSAGE, || {
                self.client
                    .receive_message()
                    .queue_url(&self.queue_url)
                    .max_number_of_messages(max_messages)
                    .wait_time_seconds(wait)
                    .message_system_attribute_names(
                        MessageSystemAttributeName::ApproximateReceiveCount,
                    )
                    .send()
            })
            .await?;
        let mut messages = Vec::with_capacity(out.messages().len());
        for m in out.messages() {
            let Some(receipt_handle) = m.receipt_handle() else {
                tracing::warn!(message_id = ?m.message_id(), "SQS message without a receipt handle skipped");
                continue;
            };
            messages.push(Message {
                id: m.message_id().unwrap_or_default().to_owned(),
                receipt_handle: receipt_handle.to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok()),
            });
        }
        Ok(messages)
    }

    /// Entries SQS reports neither as deleted nor as failed count as failed
    /// (code `Unknown`), so a caller never assumes a delete it cannot confirm.
    async fn delete(&self, receipt_handles: &[String]) -> Result<Vec<DeleteFailure>, SourceError> {
        if receipt_handles.len() > MAX_BATCH {
            return Err(SourceError::InvalidRequest {
                operation: DELETE_MESSAGE_BATCH.name,
                message: format!(
                    "{} receipt handles given, at most {MAX_BATCH} per call",
                    receipt_handles.len()
                ),
            });
        }
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SourceError::InvalidRequest {
                operation: DELETE_MESSAGE_BATCH.name,
                message: e.to_string(),
            })?;
        let out = self
            .call(DELETE_MESSAGE_BATCH, || {
                self.client
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries.clone()))
                    .send()
            })
            .await?;
        let handle_of = |id: &str| {
            id.parse::<usize>()
                .ok()
                .and_then(|i| receipt_handles.get(i))
        };
        let mut failures = Vec::new();
        let mut settled = vec![false; receipt_handles.len()];
        for ok in out.successful() {
            if let Ok(i) = ok.id().parse::<usize>() {
                if let Some(s) = settled.get_mut(i) {
                    *s = true;
                }
            }
        }
        for failed in out.failed() {
            if let Some(handle) = handle_of(failed.id()) {
                if let Ok(i) = failed.id().parse::<usize>() {
                    if let Some(s) = settled.get_mut(i) {
                        *s = true;
                    }
                }
                failures.push(DeleteFailure {
                    receipt_handle: handle.clone(),
                    code: failed.code().to_owned(),
                    message: failed.message().unwrap_or_default().to_owned(),
                });
            }
        }
        for (i, handle) in receipt_handles.iter().enumerate() {
            if !settled[i] {
                failures.push(DeleteFailure {
                    receipt_handle: handle.clone(),
                    code: "Unknown".to_owned(),
                    message: "SQS reported neither success nor failure".to_owned(),
                });
            }
        }
        Ok(failures)
    }
}
