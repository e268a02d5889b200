//! Deployment progress, per-instance status, and the tracker's status
//! transitions persisted through the EnvironmentStore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use blox_sched::daemon::{
    DaemonDesired, DaemonInstanceState, DeploymentStatus, DeploymentTracker, Environment,
    EnvironmentError, EnvironmentState, EnvironmentStore, NewEnvironment, Progress,
    deployment_progress, instance_statuses,
};
use blox_sched::testing::SnapshotBuilder;
use blox_state::store::StateStore;
use blox_state::store::memory::MemoryStore;

fn prod() -> SnapshotBuilder {
    SnapshotBuilder::new().cluster("prod")
}

fn one(dep: &str) -> DaemonDesired {
    let e = Environment::new("logs", "prod", "logs:1", "t", SnapshotBuilder::EPOCH);
    DaemonDesired::new(vec![EnvironmentState::deployed(e, dep)])
}

#[test]
fn progress_counts_eligible_instances_running_the_deployment_and_failures() {
    let snap = prod()
        .instance("ok", |i| i)
        .instance("starting", |i| i)
        .instance("failing", |i| i)
        .instance("drain", |i| i.draining())
        .task("t1", "ok", |t| t.started_by("dep-1"))
        .task("t2", "starting", |t| t.started_by("dep-1").pending())
        .task("t3", "drain", |t| t.started_by("dep-1"))
        .backoff("failing", "RESOURCE:MEMORY")
        .build(one("dep-1"));
    let r = deployment_progress(&snap);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].progress, Progress { done: 1, total: 3 });
    assert_eq!(r[0].deployment, "dep-1");
    assert!(r[0].started);
    let failed: Vec<(String, String)> = r[0]
        .failed
        .iter()
        .map(|(a, why)| (a.to_string(), why.clone()))
        .collect();
    assert_eq!(
        failed,
        vec![(
            prod().instance_arn("failing").to_string(),
            "RESOURCE:MEMORY".into()
        )]
    );
}

#[test]
fn instance_status_is_running_pending_or_failed_with_the_reason() {
    let snap = prod()
        .instance("ok", |i| i)
        .instance("starting", |i| i)
        .instance("failing", |i| i)
        .task("t1", "ok", |t| {
            t.started_by("dep-1").task_definition("logs:1")
        })
        .pending_start("starting", "logs:1", "dep-1")
        .backoff("failing", "CannotPullContainerError")
        .build(one("dep-1"));
    let st = instance_statuses(&snap, "logs").unwrap();
    let states: Vec<DaemonInstanceState> = st.iter().map(|s| s.state.clone()).collect();
    // In instance ARN order: failing, ok, starting.
    assert_eq!(
        states,
        vec![
            DaemonInstanceState::Failed {
                reason: "CannotPullContainerError".into()
            },
            DaemonInstanceState::Running,
            DaemonInstanceState::Pending,
        ]
    );
    assert_eq!(st[1].task.as_ref(), Some(&prod().task_arn("t1")));
    assert_eq!(st[2].task, None);
    let json = serde_json::to_value(&st[0]).unwrap();
    assert_eq!(json["state"], "failed");
    assert_eq!(json["reason"], "CannotPullContainerError");
    assert!(instance_statuses(&snap, "nope").is_none());
}

async fn deployed_store() -> (EnvironmentStore, Arc<MemoryStore>, String) {
    let kv = Arc::new(MemoryStore::new());
    let s = EnvironmentStore::new(kv.clone());
    let env = s
        .create(NewEnvironment::new("logs", "prod", "logs:1"))
        .await
        .unwrap();
    let dep = s
        .create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    (s, kv, dep.id)
}

#[tokio::test]
async fn the_tracker_moves_a_deployment_from_pending_to_running_to_completed() {
    let (s, _, id) = deployed_store().await;
    let tracker = DeploymentTracker::new(s.clone());

    // Nothing started: pending, progress recorded.
    let snap = prod()
        .instance("a", |i| i)
        .instance("b", |i| i)
        .build(s.load().await.unwrap());
    tracker.sync(&snap).await.unwrap();
    let d = s.get_deployment("logs", &id).await.unwrap();
    assert_eq!(
        (d.status, d.progress),
        (DeploymentStatus::Pending, Progress { done: 0, total: 2 })
    );

    // A start was issued: running.
    let snap = prod()
        .instance("a", |i| i)
        .instance("b", |i| i)
        .pending_start("a", "logs:1", &id)
        .backoff("b", "RESOURCE:CPU")
        .build(s.load().await.unwrap());
    let rep = tracker.sync(&snap).await.unwrap();
    assert_eq!(
        rep.updated,
        vec![("logs".into(), id.clone(), DeploymentStatus::Running)]
    );
    let d = s.get_deployment("logs", &id).await.unwrap();
    assert_eq!(d.status, DeploymentStatus::Running);
    assert_eq!(
        d.failed_instances,
        vec![prod().instance_arn("b").to_string()]
    );
    assert_eq!(
        d.failure_reasons.values().collect::<Vec<_>>(),
        vec!["RESOURCE:CPU"]
    );

    // Both run: completed, failures cleared.
    let snap = prod()
        .instance("a", |i| i)
        .instance("b", |i| i)
        .task("ta", "a", |t| t.started_by(&id))
        .task("tb", "b", |t| t.started_by(&id))
        .build(s.load().await.unwrap());
    tracker.sync(&snap).await.unwrap();
    let d = s.get_deployment("logs", &id).await.unwrap();
    assert_eq!(
        (d.status, d.progress),
        (DeploymentStatus::Completed, Progress { done: 2, total: 2 })
    );
    assert!(d.failed_instances.is_empty());

    // Same view again: nothing to write.
    let again = tracker.sync(&snap).await.unwrap();
    assert!(again.updated.is_empty());

    // A new instance joins: still completed, progress follows.
    let snap = prod()
        .instance("a", |i| i)
        .instance("b", |i| i)
        .instance("c", |i| i)
        .task("ta", "a", |t| t.started_by(&id))
        .task("tb", "b", |t| t.started_by(&id))
        .build(s.load().await.unwrap());
    tracker.sync(&snap).await.unwrap();
    let d = s.get_deployment("logs", &id).await.unwrap();
    assert_eq!(
        (d.status, d.progress),
        (DeploymentStatus::Completed, Progress { done: 2, total: 3 })
    );
}

#[tokio::test]
async fn a_deleted_environment_is_purged_only_after_its_tasks_are_gone() {
    let (s, kv, id) = deployed_store().await;
    let tracker = DeploymentTracker::new(s.clone());
    s.delete("logs", true).await.unwrap();

    let running = prod()
        .instance("a", |i| i)
        .task("ta", "a", |t| t.started_by(&id));
    let rep = tracker
        .sync(&running.build(s.load().await.unwrap()))
        .await
        .unwrap();
    assert!(rep.purged.is_empty());
    let stopping = prod()
        .instance("a", |i| i)
        .task("ta", "a", |t| t.started_by(&id).stopping());
    assert!(
        tracker
            .sync(&stopping.build(s.load().await.unwrap()))
            .await
            .unwrap()
            .purged
            .is_empty()
    );
    assert_eq!(kv.kv_list("daemon/").await.unwrap().items.len(), 2);

    let stopped = prod()
        .instance("a", |i| i)
        .task("ta", "a", |t| t.started_by(&id).stopped("deleted"));
    let rep = tracker
        .sync(&stopped.build(s.load().await.unwrap()))
        .await
        .unwrap();
    assert_eq!(rep.purged, vec!["logs".to_string()]);
    assert!(kv.kv_list("daemon/").await.unwrap().items.is_empty());
    assert!(matches!(
        s.get("logs").await,
        Err(EnvironmentError::NotFound(_))
    ));
    s.create(NewEnvironment::new("logs", "prod", "logs:1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn old_deployments_beyond_the_history_are_removed_once_their_tasks_are_gone() {
    let (s, _, first) = deployed_store().await;
    let tracker = DeploymentTracker::new(s.clone()).with_history(3);
    // Fourteen more deployments: the first fourteen are superseded.
    let mut ids = vec![first];
    for k in 2..=15 {
        let env = s
            .update_task_definition("logs", &format!("logs:{k}"))
            .await
            .unwrap();
        ids.push(
            s.create_deployment("logs", &env.deployment_token)
                .await
                .unwrap()
                .id,
        );
    }
    // The oldest deployment still has a running task, the second a task
    // that is stopping: both are kept whatever their age.
    let snap = prod()
        .instance("a", |i| i)
        .instance("b", |i| i)
        .task("old-running", "a", |t| t.started_by(&ids[0]))
        .task("old-stopping", "b", |t| t.started_by(&ids[1]).stopping())
        .build(s.load().await.unwrap());
    let rep = tracker.sync(&snap).await.unwrap();
    let pruned: Vec<&str> = rep.pruned.iter().map(|(_, id)| id.as_str()).collect();
    let expected: Vec<&str> = ids[2..11].iter().map(String::as_str).collect();
    assert_eq!(pruned, expected);
    assert!(rep.pruned.iter().all(|(env, _)| env == "logs"));
    let left: Vec<String> = s
        .list_deployments("logs")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let mut kept = vec![ids[0].clone(), ids[1].clone()];
    kept.extend(ids[11..].iter().cloned());
    assert_eq!(
        left, kept,
        "the two busy ones, the newest three superseded and the active one"
    );

    // Once their tasks stop, the two old ones go too; the active one and
    // the history stay, and nothing more is removed on the next sync.
    let snap = prod()
        .instance("a", |i| i)
        .instance("b", |i| i)
        .task("old-running", "a", |t| {
            t.started_by(&ids[0]).stopped("replaced")
        })
        .task("old-stopping", "b", |t| {
            t.started_by(&ids[1]).stopped("replaced")
        })
        .build(s.load().await.unwrap());
    let rep = tracker.sync(&snap).await.unwrap();
    let pruned: Vec<&str> = rep.pruned.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(pruned, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(s.list_deployments("logs").await.unwrap().len(), 4);
    let again = tracker
        .sync(&prod().build(s.load().await.unwrap()))
        .await
        .unwrap();
    assert!(again.pruned.is_empty());
    assert_eq!(
        s.get("logs").await.unwrap().active_deployment.as_deref(),
        Some(ids[14].as_str())
    );
}

#[tokio::test]
async fn a_deposed_leaders_tracker_writes_nothing() {
    use blox_sched::election::{LeaderElection, LocalElection};
    let (s, kv, id) = deployed_store().await;
    let store: Arc<dyn StateStore> = kv.clone();
    let old = LocalElection::start(Arc::clone(&store), "daemon", "a")
        .await
        .unwrap();
    let stale = old.term().borrow().clone().unwrap();
    let new = LocalElection::start(Arc::clone(&store), "daemon", "b")
        .await
        .unwrap();
    let current = new.term().borrow().clone().unwrap();
    let tracker = DeploymentTracker::new(s.clone());
    let snap = prod()
        .instance("a", |i| i)
        .pending_start("a", "logs:1", &id)
        .build(s.load().await.unwrap());

    let err = tracker.sync_as(&snap, &stale).await.unwrap_err();
    assert!(matches!(err, EnvironmentError::Fenced), "{err:?}");
    let d = s.get_deployment("logs", &id).await.unwrap();
    assert_eq!(d.status, DeploymentStatus::Pending, "nothing written");

    let rep = tracker.sync_as(&snap, &current).await.unwrap();
    assert_eq!(
        rep.updated,
        vec![("logs".into(), id.clone(), DeploymentStatus::Running)]
    );
}
