//! The daemon scheduler in a closed loop with the fake ECS: environments in
//! the memory store, a minimal executor standing in for the runner (start in
//! batches of ten, stop), the tracker recording status, and a rollout whose
//! bound is checked against what the fake reports at every step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use blox_core::model::{InstanceStatus, TaskStatus, Timestamp};
use blox_core::ports::{EcsApi, StartTaskRequest};
use blox_sched::daemon::{
    DaemonDesired, DaemonScheduler, DeploymentStatus, DeploymentTracker, EnvironmentStore,
    MAX_INSTANCES_PER_START, NewEnvironment, split_starts,
};
use blox_sched::scheduler::{Action, Scheduler, Snapshot};
use blox_sched::testing::{FakeEcs, FakeEcsConfig, InstanceSpec, TaskProgress};
use blox_state::store::memory::MemoryStore;

struct World {
    ecs: FakeEcs,
    envs: EnvironmentStore,
    tracker: DeploymentTracker,
}

impl World {
    fn new(instances: usize) -> Self {
        let ecs = FakeEcs::with_config(FakeEcsConfig {
            task_progress: TaskProgress::Manual,
            ..FakeEcsConfig::seeded(11)
        });
        ecs.create_cluster("prod").unwrap();
        for k in 0..instances {
            let az = ["us-east-1a", "us-east-1b", "us-east-1c"][k % 3];
            ecs.add_instance("prod", InstanceSpec::new().cpu(1024).memory(2048).az(az))
                .unwrap();
        }
        let envs = EnvironmentStore::new(Arc::new(MemoryStore::new()));
        let tracker = DeploymentTracker::new(envs.clone());
        World { ecs, envs, tracker }
    }

    async fn snapshot(&self) -> Snapshot<DaemonDesired> {
        let arns = self.ecs.instance_arns("prod").unwrap();
        let instances = arns
            .iter()
            .filter_map(|a| self.ecs.instance(a))
            .map(Arc::new)
            .collect();
        let tasks = arns
            .iter()
            .flat_map(|a| self.ecs.tasks_on(a))
            .map(Arc::new)
            .collect();
        Snapshot::new(
            instances,
            tasks,
            Vec::new(),
            Default::default(),
            self.envs.load().await.unwrap(),
            Timestamp::now(),
        )
    }

    async fn execute(&self, actions: &[Action]) {
        for a in split_starts(actions, MAX_INSTANCES_PER_START) {
            match a {
                Action::Start(s) => {
                    let out = self
                        .ecs
                        .start_task(&StartTaskRequest {
                            cluster: s.cluster.to_string(),
                            task_definition: s.task_definition.clone(),
                            container_instances: s.instances.clone(),
                            started_by: Some(s.started_by.clone()),
                            group: None,
                            overrides: None,
                            tags: Default::default(),
                        })
                        .await
                        .unwrap();
                    assert!(out.failures.is_empty(), "{:?}", out.failures);
                }
                Action::Stop(s) => {
                    self.ecs
                        .stop_task(s.cluster.as_str(), &s.task, &s.reason)
                        .await
                        .unwrap();
                }
            }
        }
    }

    /// Eligible (ACTIVE) instances without a RUNNING task of `started_by`s in `deps`.
    fn unavailable(&self, deps: &[&str]) -> usize {
        self.ecs
            .instance_arns("prod")
            .unwrap()
            .iter()
            .filter(|a| self.ecs.instance(a).unwrap().status == InstanceStatus::Active)
            .filter(|a| {
                !self.ecs.tasks_on(a).iter().any(|t| {
                    t.last_status == TaskStatus::Running
                        && t.started_by.as_deref().is_some_and(|s| deps.contains(&s))
                })
            })
            .count()
    }

    fn max_live_daemons_per_instance(&self, deps: &[&str]) -> usize {
        self.ecs
            .instance_arns("prod")
            .unwrap()
            .iter()
            .map(|a| {
                self.ecs
                    .tasks_on(a)
                    .iter()
                    .filter(|t| {
                        t.is_live() && t.started_by.as_deref().is_some_and(|s| deps.contains(&s))
                    })
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Decide, execute, record, let ECS move on; until nothing is left to do.
    /// Returns the most instances seen without a running daemon after a step.
    async fn converge(&self, deps: &[&str]) -> usize {
        let mut worst = 0;
        for _ in 0..100 {
            let snap = self.snapshot().await;
            self.tracker.sync(&snap).await.unwrap();
            let actions = DaemonScheduler.decide(&snap);
            if actions.is_empty() && self.ecs.advance() == 0 {
                let snap = self.snapshot().await;
                self.tracker.sync(&snap).await.unwrap();
                return worst;
            }
            self.execute(&actions).await;
            worst = worst.max(self.unavailable(deps));
            assert!(self.max_live_daemons_per_instance(deps) <= 1);
            self.ecs.advance();
        }
        panic!("did not converge");
    }
}

#[tokio::test]
async fn deploy_then_roll_out_a_new_task_definition_within_the_bound() {
    let w = World::new(7);
    let env = w
        .envs
        .create(NewEnvironment::new("logs", "prod", "logs:1").max_unavailable(2))
        .await
        .unwrap();
    // Created, not deployed: nothing happens.
    assert!(DaemonScheduler.decide(&w.snapshot().await).is_empty());

    let d1 = w
        .envs
        .create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    w.converge(&[&d1.id]).await;
    assert_eq!(w.unavailable(&[&d1.id]), 0);
    let d1 = w.envs.get_deployment("logs", &d1.id).await.unwrap();
    assert_eq!(d1.status, DeploymentStatus::Completed);
    assert_eq!((d1.progress.done, d1.progress.total), (7, 7));

    let env = w
        .envs
        .update_task_definition("logs", "logs:2")
        .await
        .unwrap();
    let d2 = w
        .envs
        .create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    let worst = w.converge(&[&d1.id, &d2.id]).await;
    assert_eq!(
        worst, 2,
        "the rollout uses its bound of 2 and never exceeds it"
    );
    for a in w.ecs.instance_arns("prod").unwrap() {
        let live: Vec<_> = w
            .ecs
            .tasks_on(&a)
            .into_iter()
            .filter(|t| t.is_live())
            .collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].started_by.as_deref(), Some(d2.id.as_str()));
        assert!(
            live[0]
                .task_definition_arn
                .ends_with("task-definition/logs:2")
        );
    }
    let deps = w.envs.list_deployments("logs").await.unwrap();
    assert_eq!(deps[0].superseded_by.as_deref(), Some(d2.id.as_str()));
    assert_eq!(deps[1].status, DeploymentStatus::Completed);
}

#[tokio::test]
async fn crashed_tasks_are_replaced_draining_instances_emptied_and_deletes_stop_everything() {
    let w = World::new(4);
    let env = w
        .envs
        .create(NewEnvironment::new("logs", "prod", "logs:1"))
        .await
        .unwrap();
    let d = w
        .envs
        .create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    w.converge(&[&d.id]).await;

    let arns = w.ecs.instance_arns("prod").unwrap();
    let victim = w
        .ecs
        .tasks_on(&arns[0])
        .into_iter()
        .find(|t| t.is_live())
        .unwrap();
    w.ecs.crash_task(&victim.task_arn).unwrap();
    w.ecs.drain(&arns[1]).unwrap();
    w.converge(&[&d.id]).await;
    let live_on = |i: usize| {
        w.ecs
            .tasks_on(&arns[i])
            .into_iter()
            .filter(|t| t.is_live())
            .count()
    };
    assert_eq!(live_on(0), 1, "crashed task replaced");
    assert_eq!(
        live_on(1),
        0,
        "draining instance emptied (no other task there)"
    );

    w.envs.delete("logs", true).await.unwrap();
    w.converge(&[&d.id]).await;
    assert!((0..4).all(|i| live_on(i) == 0));
    // The tracker removed the environment once its tasks were gone.
    assert!(w.envs.load().await.unwrap().environments.is_empty());
}
