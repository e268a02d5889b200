//! Settings of the fake ECS.

use std::time::Duration;

use crate::model::Timestamp;

/// When new tasks and stopping tasks move to their next status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskProgress {
    /// Within the call that started or stopped them (PENDING then RUNNING,
    /// or RUNNING then STOPPED, each with its own event).
    #[default]
    Immediate,
    /// Only when [`FakeEcs::advance`](super::FakeEcs::advance) (or `tick`) is called.
    Manual,
}

/// Settings of a [`FakeEcs`](super::FakeEcs).
#[derive(Debug, Clone)]
pub struct FakeEcsConfig {
    /// The ARN partition (`aws`, `aws-cn`, ...).
    pub partition: String,
    /// The region.
    pub region: String,
    /// The account id.
    pub account: String,
    /// Long-format ARNs (`task/<cluster>/<id>`) when `true` (ECS's default
    /// today), old-format (`task/<id>`) when `false`.
    pub long_arns: bool,
    /// When tasks advance to their next status.
    pub task_progress: TaskProgress,
    /// Whether an unknown `family:revision` is registered on first use with
    /// [`default_task_cpu`](Self::default_task_cpu) and
    /// [`default_task_memory`](Self::default_task_memory).
    pub auto_register_task_definitions: bool,
    /// CPU units of auto-registered task definitions.
    pub default_task_cpu: i64,
    /// Memory (MiB) of auto-registered task definitions.
    pub default_task_memory: i64,
    /// How long a received, undeleted event message stays invisible.
    pub visibility_timeout: Duration,
    /// Whether changes are queued as events (benchmarks that only list may
    /// turn this off).
    pub emit_events: bool,
    /// The seed of the id generator; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// A logical clock starting here (advancing one millisecond per reading)
    /// instead of the wall clock; makes timestamps deterministic.
    pub start_time: Option<Timestamp>,
    /// A clock to read instead (a simulation's [`crate::clock::TokioClock`]);
    /// wins over [`start_time`](Self::start_time).
    pub clock: Option<crate::clock::SharedClock>,
    /// How far `ListTasks` and `ListContainerInstances` may lag behind a
    /// change, as ECS's eventually consistent listings do (each change
    /// draws its lag up to this; zero, the default, lags nothing). Describe
    /// calls never lag.
    pub listing_lag: Duration,
    /// Whether emitted events wait in an outbox ([`FakeEcs::take_outbox`](super::FakeEcs::take_outbox))
    /// instead of going straight to the queue: a simulation then delivers
    /// them itself ([`FakeEcs::enqueue_event`](super::FakeEcs::enqueue_event)),
    /// late, twice, out of order, as EventBridge and SQS may.
    pub event_outbox: bool,
}

impl Default for FakeEcsConfig {
    fn default() -> Self {
        FakeEcsConfig {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account: "000000000000".into(),
            long_arns: true,
            task_progress: TaskProgress::Immediate,
            auto_register_task_definitions: true,
            default_task_cpu: 256,
            default_task_memory: 512,
            visibility_timeout: Duration::from_secs(30),
            emit_events: true,
            seed: None,
            start_time: None,
            clock: None,
            listing_lag: Duration::ZERO,
            event_outbox: false,
        }
    }
}

impl FakeEcsConfig {
    /// The defaults with a fixed seed and a logical clock, so two fakes given
    /// the same calls produce the same ids, timestamps and events.
    pub fn seeded(seed: u64) -> Self {
        FakeEcsConfig {
            seed: Some(seed),
            // 2024-01-01T00:00:00Z
            start_time: Some(Timestamp::from_millis(1_704_067_200_000)),
            ..FakeEcsConfig::default()
        }
    }
}
