//! What a start carries to ECS: group, overrides and tags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use blox_core::model::{ContainerOverride, TaskOverride};
use blox_core::testing::FakeAction;
use blox_sched::scheduler::{Action, Scheduler, Snapshot, StartAction};
use support::{World, options, wait_until};

/// Starts one tagged, grouped, overridden task on every instance, once.
struct Tagged;

impl Scheduler for Tagged {
    type Desired = ();
    fn name(&self) -> &str {
        "tagged"
    }
    fn decide(&self, snap: &Snapshot<()>) -> Vec<Action> {
        snap.active_instances()
            .filter(|i| {
                snap.live_tasks_on(&i.container_instance_arn)
                    .next()
                    .is_none()
                    && snap.pending_on(&i.container_instance_arn).next().is_none()
            })
            .map(|i| {
                StartAction::new(
                    i.cluster_arn.clone(),
                    "web:1",
                    vec![i.container_instance_arn.clone()],
                    "tagged",
                    "test",
                )
                .with_group("service:web")
                .with_overrides(TaskOverride {
                    container_overrides: vec![ContainerOverride {
                        name: Some("web".into()),
                        command: vec!["serve".into()],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .with_tag("team", "web")
                .into()
            })
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_start_carries_its_group_overrides_and_tags_to_ecs() {
    let w = World::new(1).await;
    let r = w.spawn_with(Tagged, (), options());
    wait_until(30, "a start", || w.start_calls() == 1).await;
    let actions = w.fake.actions();
    let Some(FakeAction::Start {
        group,
        overrides,
        tags,
        started_by,
        ..
    }) = actions.first()
    else {
        panic!("expected a start: {actions:?}");
    };
    assert_eq!(group.as_deref(), Some("service:web"));
    assert_eq!(
        overrides.as_ref().unwrap().container_overrides[0].command,
        ["serve"]
    );
    assert_eq!(tags.get("team").map(String::as_str), Some("web"));
    assert_eq!(started_by.as_deref(), Some("tagged"));
    let task = w.fake.tasks_on(&w.instances[0]).pop().unwrap();
    assert_eq!(task.group.as_deref(), Some("service:web"));
    assert_eq!(r.handle.status().pending_intents, 1);
    r.shutdown().await;
}
