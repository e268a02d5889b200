//! Test support (the `testing` feature): one in-memory fake ECS that serves
//! unit tests, benchmarks, users' test kits and the daemon's `--simulate`
//! mode, plus `mockall` mocks of the ports.
//!
//! ```
//! use blox_core::ports::{EcsApi, StartTaskRequest};
//! use blox_core::testing::{FakeEcs, InstanceSpec};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let ecs = FakeEcs::with_seed(7);
//! ecs.create_cluster("prod").unwrap();
//! let instance = ecs.add_instance("prod", InstanceSpec::new().cpu(1024).memory(2048)).unwrap();
//! let out = ecs
//!     .start_task(&StartTaskRequest {
//!         cluster: "prod".into(),
//!         task_definition: "web:1".into(),
//!         container_instances: vec![instance.container_instance_arn.clone()],
//!         started_by: Some("blox".into()),
//!         group: None,
//!         overrides: None,
//!         tags: Default::default(),
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(out.tasks.len(), 1);
//! # });
//! ```

mod fake_ecs;
#[cfg(feature = "aws")]
pub mod moto;

pub use crate::ports::{MockEcsApi, MockEventSource};
pub use fake_ecs::{
    ChurnPlan, ChurnReport, FakeAction, FakeEcs, FakeEcsConfig, FakeError, InjectedError,
    InstanceSpec, TaskProgress, operations,
};
