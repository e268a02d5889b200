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
use super::operation::{CallLog, Operation};
use crate::ports::{DeleteFailure, EventSource, Message, SourceError};
use crate::retry::RetryPolicy;

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
    calls: CallLog,
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
        aws_sdk_sqs::Client::from_conf(Self::configure(aws_sdk_sqs::config::Builder::from(config)))
    }

    /// A source over a client configured by the caller (use
    /// [`configure`](Self::configure), or long polls may time out and retries multiply).
    pub fn from_client(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsEventSource {
            client,
            queue_url: queue_url.into(),
            retry: RetryPolicy::default(),
            calls: CallLog::default(),
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
        self.calls.note(op, Self::IAM_ACTIONS, "SqsEventSource");
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
        self.calls.actions()
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
        // Entry ids are indexes into `receipt_handles`.
        let index = |id: &str| {
            id.parse::<usize>()
                .ok()
                .filter(|i| *i < receipt_handles.len())
        };
        let mut settled = vec![false; receipt_handles.len()];
        let mut failures = Vec::new();
        for i in out.successful().iter().filter_map(|ok| index(ok.id())) {
            settled[i] = true;
        }
        for failed in out.failed() {
            if let Some(i) = index(failed.id()) {
                settled[i] = true;
                failures.push(DeleteFailure {
                    receipt_handle: receipt_handles[i].clone(),
                    code: failed.code().to_owned(),
                    message: failed.message().unwrap_or_default().to_owned(),
                });
            }
        }
        for (handle, _) in receipt_handles.iter().zip(&settled).filter(|(_, s)| !**s) {
            failures.push(DeleteFailure {
                receipt_handle: handle.clone(),
                code: "Unknown".to_owned(),
                message: "SQS reported neither success nor failure".to_owned(),
            });
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::Client;
    use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
    use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
    use aws_sdk_sqs::operation::receive_message::{ReceiveMessageError, ReceiveMessageOutput};
    use aws_sdk_sqs::types::{BatchResultErrorEntry, DeleteMessageBatchResultEntry};
    use aws_smithy_mocks::{
        MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock,
    };
    use aws_smithy_types::error::ErrorMetadata;

    const URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/blox-events";

    fn client(rules: &[&Rule]) -> Client {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        Client::from_conf(SqsEventSource::configure(
            aws_sdk_sqs::Config::builder()
                .with_test_defaults_v2()
                .http_client(create_mock_http_client())
                .interceptor(interceptor),
        ))
    }

    fn source(rules: &[&Rule]) -> SqsEventSource {
        SqsEventSource::from_client(client(rules), URL)
    }

    fn message(i: usize, count: Option<&str>) -> aws_sdk_sqs::types::Message {
        let mut b = aws_sdk_sqs::types::Message::builder()
            .message_id(format!("m-{i}"))
            .receipt_handle(format!("rh-{i}"))
            .body(format!("{{\"n\":{i}}}"));
        if let Some(c) = count {
            b = b.attributes(MessageSystemAttributeName::ApproximateReceiveCount, c);
        }
        b.build()
    }

    fn handles(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("rh-{i}")).collect()
    }

    #[tokio::test]
    async fn receive_long_polls_for_up_to_ten_and_maps_messages() {
        let rule = mock!(Client::receive_message)
            .match_requests(|r| {
                r.queue_url() == Some(URL)
                    && r.max_number_of_messages() == Some(10)
                    && r.wait_time_seconds() == Some(20)
                    && r.message_system_attribute_names()
                        == [MessageSystemAttributeName::ApproximateReceiveCount]
            })
            .then_output(|| {
                ReceiveMessageOutput::builder()
                    .messages(message(0, Some("1")))
                    .messages(message(1, Some("3")))
                    .messages(message(2, None))
                    .build()
            });
        let sqs = source(&[&rule]);
        let got = sqs.receive(10, Duration::from_secs(20)).await.unwrap();
        assert_eq!(
            got[1],
            Message {
                id: "m-1".into(),
                receipt_handle: "rh-1".into(),
                body: "{\"n\":1}".into(),
                receive_count: Some(3),
            }
        );
        assert_eq!(got[0].receive_count, Some(1));
        assert_eq!(got[2].receive_count, None);
    }

    #[tokio::test]
    async fn an_empty_receive_is_not_an_error() {
        let rule =
            mock!(Client::receive_message).then_output(|| ReceiveMessageOutput::builder().build());
        assert!(
            source(&[&rule])
                .receive(10, Duration::from_secs(1))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn waits_round_up_to_whole_seconds_and_cap_at_twenty() {
        assert_eq!(wait_seconds(Duration::ZERO), 0);
        assert_eq!(wait_seconds(Duration::from_millis(1)), 1);
        assert_eq!(wait_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(wait_seconds(Duration::from_secs(20)), 20);
        assert_eq!(wait_seconds(Duration::from_secs(3600)), 20);
    }

    #[tokio::test]
    async fn receive_rejects_batch_sizes_sqs_cannot_serve() {
        let sqs = source(&[]);
        for max in [0, 11] {
            let err = sqs.receive(max, Duration::ZERO).await.unwrap_err();
            assert!(matches!(
                err,
                SourceError::InvalidRequest {
                    operation: "ReceiveMessage",
                    ..
                }
            ));
        }
        assert!(sqs.called_actions().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_receives_are_retried_and_reported_when_attempts_run_out() {
        let throttled = || {
            ReceiveMessageError::generic(
                ErrorMetadata::builder()
                    .code("RequestThrottled")
                    .message("slow down")
                    .build(),
            )
        };
        let rule = mock!(Client::receive_message)
            .sequence()
            .error(throttled)
            .output(|| {
                ReceiveMessageOutput::builder()
                    .messages(message(0, None))
                    .build()
            })
            .build();
        assert_eq!(
            source(&[&rule])
                .receive(1, Duration::ZERO)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(rule.num_calls(), 2);

        let rule = mock!(Client::receive_message)
            .sequence()
            .error(throttled)
            .times(2)
            .build();
        let sqs = source(&[&rule]).with_retry_policy(RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        });
        let err = sqs.receive(1, Duration::ZERO).await.unwrap_err();
        assert!(matches!(err, SourceError::Throttled { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_missing_queue_is_a_service_error_with_its_code() {
        let rule = mock!(Client::receive_message).then_error(|| {
            ReceiveMessageError::QueueDoesNotExist(
                aws_sdk_sqs::types::error::QueueDoesNotExist::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("AWS.SimpleQueueService.NonExistentQueue")
                            .message("The specified queue does not exist.")
                            .build(),
                    )
                    .build(),
            )
        });
        let err = source(&[&rule])
            .receive(1, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SourceError::Service { code, .. } if code == "AWS.SimpleQueueService.NonExistentQueue"),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn delete_reports_exactly_the_entries_that_failed() {
        let rule = mock!(Client::delete_message_batch)
            .match_requests(|r| {
                r.queue_url() == Some(URL)
                    && r.entries().len() == 4
                    && r.entries()[2].receipt_handle() == "rh-2"
            })
            .then_output(|| {
                DeleteMessageBatchOutput::builder()
                    .successful(
                        DeleteMessageBatchResultEntry::builder()
                            .id("0")
                            .build()
                            .unwrap(),
                    )
                    .successful(
                        DeleteMessageBatchResultEntry::builder()
                            .id("2")
                            .build()
                            .unwrap(),
                    )
                    .failed(
                        BatchResultErrorEntry::builder()
                            .id("1")
                            .code("ReceiptHandleIsInvalid")
                            .message("expired")
                            .sender_fault(true)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap()
            });
        let sqs = source(&[&rule]);
        let failures = sqs.delete(&handles(4)).await.unwrap();
        assert_eq!(
            failures,
            vec![
                DeleteFailure {
                    receipt_handle: "rh-1".into(),
                    code: "ReceiptHandleIsInvalid".into(),
                    message: "expired".into(),
                },
                // Entry 3 was reported neither way.
                DeleteFailure {
                    receipt_handle: "rh-3".into(),
                    code: "Unknown".into(),
                    message: "SQS reported neither success nor failure".into(),
                },
            ]
        );
    }

    #[tokio::test]
    async fn delete_of_more_than_ten_is_rejected_and_of_none_makes_no_call() {
        let sqs = source(&[]);
        let err = sqs.delete(&handles(11)).await.unwrap_err();
        assert!(matches!(
            err,
            SourceError::InvalidRequest {
                operation: "DeleteMessageBatch",
                ..
            }
        ));
        assert!(sqs.delete(&[]).await.unwrap().is_empty());
        assert!(sqs.called_actions().is_empty());
    }

    #[tokio::test]
    async fn connect_resolves_names_with_get_queue_url_and_uses_urls_as_given() {
        let by_name = mock!(Client::get_queue_url)
            .match_requests(|r| {
                r.queue_name() == Some("blox-events") && r.queue_owner_aws_account_id().is_none()
            })
            .then_output(|| GetQueueUrlOutput::builder().queue_url(URL).build());
        let by_scheme = mock!(Client::get_queue_url)
            .match_requests(|r| r.queue_name() == Some("blox-events"))
            .then_output(|| GetQueueUrlOutput::builder().queue_url(URL).build());
        let by_arn = mock!(Client::get_queue_url)
            .match_requests(|r| {
                r.queue_name() == Some("blox-events")
                    && r.queue_owner_aws_account_id() == Some("210987654321")
            })
            .then_output(|| GetQueueUrlOutput::builder().queue_url(URL).build());
        let c = client(&[&by_name, &by_scheme, &by_arn]);
        for queue in [
            "blox-events",
            "sqs://blox-events",
            "arn:aws:sqs:us-east-1:210987654321:blox-events",
        ] {
            let s = SqsEventSource::connect_with(c.clone(), queue)
                .await
                .unwrap();
            assert_eq!(s.queue_url(), URL, "{queue}");
        }
        assert_eq!(
            by_name.num_calls() + by_scheme.num_calls() + by_arn.num_calls(),
            3
        );

        let direct = SqsEventSource::connect_with(client(&[]), "http://127.0.0.1:5000/123/q")
            .await
            .unwrap();
        assert_eq!(direct.queue_url(), "http://127.0.0.1:5000/123/q");
        assert!(direct.called_actions().is_empty());
    }

    #[test]
    fn queue_references_parse_or_explain_why_not() {
        assert_eq!(
            QueueRef::parse("q.fifo").unwrap(),
            QueueRef::Name {
                name: "q.fifo".into(),
                owner: None
            }
        );
        assert_eq!(QueueRef::parse(URL).unwrap(), QueueRef::Url(URL.into()));
        for bad in [
            "",
            "sqs://",
            "has space",
            "a/b",
            "arn:aws:sns:us-east-1:1:topic",
            &"x".repeat(81),
        ] {
            assert!(
                matches!(
                    QueueRef::parse(bad),
                    Err(SourceError::InvalidRequest { .. })
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn every_method_calls_only_declared_actions_and_every_declared_action_is_used() {
        let get = mock!(Client::get_queue_url)
            .then_output(|| GetQueueUrlOutput::builder().queue_url(URL).build());
        let receive =
            mock!(Client::receive_message).then_output(|| ReceiveMessageOutput::builder().build());
        let delete = mock!(Client::delete_message_batch).then_output(|| {
            DeleteMessageBatchOutput::builder()
                .successful(
                    DeleteMessageBatchResultEntry::builder()
                        .id("0")
                        .build()
                        .unwrap(),
                )
                .set_failed(Some(Vec::new()))
                .build()
                .unwrap()
        });
        let sqs = SqsEventSource::connect_with(client(&[&get, &receive, &delete]), "q")
            .await
            .unwrap();
        sqs.receive(10, Duration::ZERO).await.unwrap();
        assert!(sqs.delete(&handles(1)).await.unwrap().is_empty());
        let declared: std::collections::BTreeSet<&str> =
            SqsEventSource::IAM_ACTIONS.iter().copied().collect();
        assert_eq!(sqs.called_actions(), declared);
    }

    #[test]
    fn the_request_timeout_outlasts_the_longest_long_poll_and_sdk_retries_are_off() {
        let sqs = source(&[]);
        let conf = sqs.client().config();
        assert_eq!(conf.retry_config().unwrap().max_attempts(), 1);
        let t = conf.timeout_config().unwrap();
        for timeout in [
            t.operation_attempt_timeout(),
            t.operation_timeout(),
            t.read_timeout(),
        ] {
            assert!(timeout.unwrap() > SqsEventSource::MAX_WAIT, "{t:?}");
        }
    }
}
