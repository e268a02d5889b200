//! Test kit for schedulers (the `testing` feature): build a [`Snapshot`] in
//! a few lines and assert on the actions your scheduler returns; the fake
//! ECS and the port mocks of `blox-core` are re-exported for tests that
//! drive a runner.
//!
//! ```
//! use blox_sched::daemon::{DaemonDesired, DaemonScheduler, Environment, EnvironmentState};
//! use blox_sched::testing::{SnapshotBuilder, starts};
//! use blox_sched::Scheduler;
//!
//! let env = Environment::new("logs", "prod", "logs:1", "token", SnapshotBuilder::EPOCH);
//! let desired = DaemonDesired::new(vec![EnvironmentState::deployed(env, "dep-1")]);
//! let snap = SnapshotBuilder::new()
//!     .cluster("prod")
//!     .instance("i1", |i| i.az("us-east-1a").attr("team", "web"))
//!     .instance("i2", |i| i.az("us-east-1b"))
//!     .task("t1", "i1", |t| t.task_definition("logs:1").started_by("dep-1"))
//!     .build(desired);
//! let actions = DaemonScheduler.decide(&snap);
//! // i1 already runs the daemon; i2 gets one.
//! assert_eq!(starts(&actions), vec![SnapshotBuilder::new().cluster("prod").instance_arn("i2")]);
//! ```

mod changing;
mod snapshot;

pub use blox_core::testing::{
    ChurnPlan, ChurnReport, FakeAction, FakeEcs, FakeEcsConfig, FakeError, InjectedError,
    InstanceSpec, MockEcsApi, MockEventSource, TaskProgress,
};
pub use changing::ChangingView;
pub use snapshot::{InstanceBuilder, SnapshotBuilder, TaskBuilder};

use blox_core::model::Arn;

use crate::scheduler::{Action, Snapshot};

/// Every instance a list of actions starts a task on, in order.
pub fn starts(actions: &[Action]) -> Vec<Arn> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start(s) => Some(s.instances.iter().cloned()),
            Action::Stop(_) => None,
        })
        .flatten()
        .collect()
}

/// Every task a list of actions stops, in order.
pub fn stops(actions: &[Action]) -> Vec<Arn> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop(s) => Some(s.task.clone()),
            Action::Start(_) => None,
        })
        .collect()
}

/// The snapshot's view of which instance each live task runs on, by task ARN:
/// handy to check "one per instance" invariants.
pub fn live_tasks_per_instance<D>(snap: &Snapshot<D>) -> std::collections::HashMap<Arn, usize> {
    let mut m = std::collections::HashMap::new();
    for t in snap.live_tasks() {
        if let Some(i) = &t.container_instance_arn {
            *m.entry(i.clone()).or_insert(0) += 1;
        }
    }
    m
}
