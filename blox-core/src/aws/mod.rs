//! Adapters of the ports over the AWS SDK: [`EcsAdapter`] implements
//! [`EcsApi`](crate::ports::EcsApi) over `aws-sdk-ecs`, and
//! [`SqsEventSource`] implements [`EventSource`](crate::ports::EventSource)
//! over `aws-sdk-sqs`.
//!
//! Both adapters switch the SDK's own retries off and retry themselves
//! ([`RetryPolicy`]: exponential backoff with full jitter on throttling and
//! transport errors), so retry behaviour is explicit and tested. Every ECS
//! call also takes a token from a client-side [`RateLimiter`], so a reconcile
//! of a large cluster spreads its calls instead of bursting.
//!
//! Each adapter declares the IAM actions it may call (`IAM_ACTIONS`); every
//! call site names its operation through one helper, which checks (in debug
//! builds) that the action is declared, so a deployment's IAM policy can be
//! checked against these lists.
//!
//! ```no_run
//! # async fn demo() -> Result<(), blox_core::SourceError> {
//! use blox_core::aws::{self, EcsAdapter, SqsEventSource};
//! let config = aws::load_config().await;
//! let ecs = EcsAdapter::new(&config);
//! let events = SqsEventSource::connect(&config, "sqs://blox-events").await?;
//! # let _ = (ecs, events);
//! # Ok(()) }
//! ```

mod convert;
mod ecs;
mod error;
mod operation;
mod ratelimit;
mod sqs;

pub use crate::retry::RetryPolicy;
pub use convert::ConvertError;
pub use ecs::{EcsAdapter, MAX_UPDATE_STATE_INSTANCES};
pub use operation::Operation;
pub use ratelimit::{RateLimit, RateLimiter};
pub use sqs::{MAX_BATCH as MAX_SQS_BATCH, QueueRef, SqsEventSource};

/// Re-export of the SDK configuration type the adapters are built from.
pub use aws_config::SdkConfig;

/// Loads the AWS configuration from the standard environment: `AWS_REGION`,
/// `AWS_ENDPOINT_URL` (and the per-service `AWS_ENDPOINT_URL_ECS` /
/// `AWS_ENDPOINT_URL_SQS`), profiles, and the default credentials chain
/// (environment, web identity, ECS task role, EC2 instance profile, ...).
///
/// This is `aws_config::defaults(BehaviorVersion::latest()).load()`; the
/// adapters then replace its retry and timeout settings with their own.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
