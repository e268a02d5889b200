//! The event source port (an SQS queue of ECS events in production).

use std::time::Duration;

use async_trait::async_trait;

/// A message received from an event source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message id (for logs and metrics).
    pub id: String,
    /// The handle that deletes this delivery of the message.
    pub receipt_handle: String,
    /// The body (an ECS event as JSON).
    pub body: String,
    /// How many times the message has been received, when the source knows.
    pub receive_count: Option<u32>,
}

/// A message the source could not delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The receipt handle that failed.
    pub receipt_handle: String,
    /// The source's error code.
    pub code: String,
    /// The source's message.
    pub message: String,
}

/// An error from an event source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source throttled the call.
    #[error("event source throttled {operation}: {message}")]
    Throttled {
        /// The operation.
        operation: &'static str,
        /// The source's message.
        message: String,
    },
    /// The source rejected the call.
    #[error("event source {operation} failed with {code}: {message}")]
    Service {
        /// The operation.
        operation: &'static str,
        /// The error code (`AWS.SimpleQueueService.NonExistentQueue`, ...).
        code: String,
        /// The source's message.
        message: String,
    },
    /// The call got no answer.
    #[error("event source {operation} request failed")]
    Transport {
        /// The operation.
        operation: &'static str,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The caller asked for something the source cannot do.
    #[error("invalid {operation} request: {message}")]
    InvalidRequest {
        /// The operation.
        operation: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl SourceError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Throttled { .. } | SourceError::Transport { .. }
        )
    }
}

/// A source of ECS event messages with at-least-once delivery.
///
/// A received message stays invisible for a while and comes back unless it is
/// deleted, so the ingester deletes only after the event is durably applied.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait EventSource: Send + Sync {
    /// Receives up to `max` (at most 10) messages, waiting up to `wait` for
    /// the first one (long polling). An empty batch is not an error.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, SourceError>;

    /// Deletes up to 10 messages by receipt handle; returns those that failed.
    async fn delete(&self, receipt_handles: &[String]) -> Result<Vec<DeleteFailure>, SourceError>;
}
