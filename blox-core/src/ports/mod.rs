//! The ports: small traits over the ECS API and over an event source.
//!
//! blox's logic (reconciler, runner, ingester) depends only on these traits;
//! the real adapters over `aws-sdk-ecs` / `aws-sdk-sqs` live in
//! [`crate::aws`], and the in-memory fake ECS in `crate::testing`.

mod ecs;
mod source;

pub use ecs::{
    Described, EcsApi, EcsApiExt, EcsError, MAX_DESCRIBE_BATCH, MAX_START_TASK_INSTANCES, Page,
    PlacementFailure, StartTaskOutput, StartTaskRequest, TaskListFilter, collect_pages,
};
pub use source::{DeleteFailure, EventSource, Message, SourceError};

#[cfg(feature = "testing")]
pub use ecs::MockEcsApi;
#[cfg(feature = "testing")]
pub use source::MockEventSource;
