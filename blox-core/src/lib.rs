//! # blox-core
//!
//! The ECS domain model ([`model`]), the parser of ECS events delivered by
//! CloudWatch Events / EventBridge ([`event`]), and the ports over the ECS API
//! and over an event source ([`ports`]), with adapters on `aws-sdk-ecs` and
//! `aws-sdk-sqs` (`aws`, default feature).
//!
//! This crate does no storage and serves no HTTP; `blox-state` builds the
//! materialized view on it and `blox-sched` the schedulers.

#[cfg(feature = "aws")]
pub mod aws;
pub mod backoff;
pub mod clock;
pub mod event;
pub mod model;
pub mod ports;
pub mod random;
pub mod retry;
#[cfg(feature = "testing")]
pub mod testing;

pub use event::{EcsEvent, EventError, ParsedEvent, parse_event};
pub use model::{Arn, ContainerInstance, Entity, EntityKind, Task};
pub use ports::{EcsApi, EcsError, EventSource, SourceError};
