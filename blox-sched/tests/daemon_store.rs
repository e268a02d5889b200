//! The EnvironmentStore flows over the memory backend of the key-value API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use blox_sched::daemon::{
    AttributeMatch, DeploymentStatus, DrainingPolicy, EnvironmentError, EnvironmentStore,
    ErrorClass, InstanceSelector, NewEnvironment, ValidationError,
};
use blox_sched::scheduler::DesiredSource;
use blox_state::store::StateStore;
use blox_state::store::memory::MemoryStore;

fn stores() -> (EnvironmentStore, Arc<MemoryStore>) {
    let kv = Arc::new(MemoryStore::new());
    (EnvironmentStore::new(kv.clone()), kv)
}

/// Creates the environment "logs" (cluster "prod", "logs:1") with defaults.
async fn logs_env(s: &EnvironmentStore) -> blox_sched::daemon::Environment {
    s.create(NewEnvironment::new("logs", "prod", "logs:1"))
        .await
        .unwrap()
}

#[tokio::test]
async fn creating_an_environment_does_not_deploy() {
    let (s, kv) = stores();
    let env = s
        .create(
            NewEnvironment::new("logs", "prod", "logs:1")
                .selector(
                    InstanceSelector::all()
                        .and(AttributeMatch::equals("ecs.instance-type", "m5.large")),
                )
                .draining_policy(DrainingPolicy::StopImmediately)
                .max_unavailable(3),
        )
        .await
        .unwrap();
    assert_eq!(env.active_deployment, None);
    assert_eq!(env.deployment_token.len(), 32);
    assert!(s.list_deployments("logs").await.unwrap().is_empty());
    let got = s.get("logs").await.unwrap();
    assert_eq!(got, env);
    assert_eq!(got.max_unavailable, 3);
    assert_eq!(got.draining_policy, DrainingPolicy::StopImmediately);
    assert!(
        kv.kv_get("daemon/environments/logs")
            .await
            .unwrap()
            .is_some()
    );
    let desired = s.load().await.unwrap();
    assert_eq!(desired.environments.len(), 1);
    assert!(desired.environments[0].active().is_none());
}

#[tokio::test]
async fn deploying_with_the_current_token_creates_a_pending_active_deployment() {
    let (s, kv) = stores();
    let env = logs_env(&s).await;
    let dep = s
        .create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    assert_eq!(dep.status, DeploymentStatus::Pending);
    assert_eq!(dep.task_definition, "logs:1");
    assert_eq!(dep.environment_name, "logs");
    assert_eq!(dep.id.len(), 36, "fits startedBy");
    let after = s.get("logs").await.unwrap();
    assert_eq!(after.active_deployment.as_deref(), Some(dep.id.as_str()));
    assert_ne!(after.deployment_token, env.deployment_token);
    assert_eq!(s.get_deployment("logs", &dep.id).await.unwrap(), dep);
    let key = format!("daemon/deployments/logs/{}", dep.id);
    let stored: serde_json::Value =
        serde_json::from_slice(&kv.kv_get(&key).await.unwrap().unwrap().value).unwrap();
    assert_eq!(stored["status"], "pending");
    assert_eq!(stored["environmentName"], "logs");
}

#[tokio::test]
async fn a_stale_or_wrong_token_is_rejected() {
    let (s, _) = stores();
    let env = logs_env(&s).await;
    s.create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    for token in [env.deployment_token.as_str(), "made-up"] {
        let err = s.create_deployment("logs", token).await.unwrap_err();
        assert!(matches!(err, EnvironmentError::StaleToken { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::BadRequest);
    }
    assert_eq!(s.list_deployments("logs").await.unwrap().len(), 1);
}

#[tokio::test]
async fn updating_the_task_definition_issues_a_new_token_and_every_deployment_is_listed() {
    let (s, _) = stores();
    let env = logs_env(&s).await;
    let d1 = s
        .create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    let updated = s.update_task_definition("logs", "logs:2").await.unwrap();
    assert_eq!(updated.task_definition, "logs:2");
    let before = s.get("logs").await.unwrap();
    assert_eq!(
        before.active_deployment.as_deref(),
        Some(d1.id.as_str()),
        "update does not deploy"
    );
    let d2 = s
        .create_deployment("logs", &updated.deployment_token)
        .await
        .unwrap();
    assert_eq!(d2.task_definition, "logs:2");
    // The same task definition can be deployed again after another update.
    let again = s.update_task_definition("logs", "logs:2").await.unwrap();
    let d3 = s
        .create_deployment("logs", &again.deployment_token)
        .await
        .unwrap();
    let all = s.list_deployments("logs").await.unwrap();
    let ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, vec![d1.id.as_str(), d2.id.as_str(), d3.id.as_str()]);
    assert_eq!(all[0].superseded_by.as_deref(), Some(d2.id.as_str()));
    assert_eq!(all[1].superseded_by.as_deref(), Some(d3.id.as_str()));
    assert_eq!(all[2].superseded_by, None);
    let seq: Vec<u64> = all.iter().map(|d| d.sequence).collect();
    assert_eq!(seq, [1, 2, 3]);
    let desired = s.load().await.unwrap();
    assert_eq!(desired.environments[0].deployments.len(), 3);
    assert_eq!(desired.environments[0].active().unwrap().id, d3.id);
}

#[tokio::test]
async fn concurrent_deployments_with_one_token_create_exactly_one() {
    let (s, _) = stores();
    let env = logs_env(&s).await;
    let (a, b) = tokio::join!(
        s.create_deployment("logs", &env.deployment_token),
        s.create_deployment("logs", &env.deployment_token)
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|x| **x).count(), 1);
    assert_eq!(s.list_deployments("logs").await.unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_requests_are_rejected_with_typed_errors() {
    let (s, _) = stores();
    let cases = [
        (
            NewEnvironment::new("bad name", "prod", "logs:1"),
            ValidationError::Name("bad name".into()),
        ),
        (
            NewEnvironment::new("logs", "pr/od", "logs:1"),
            ValidationError::Cluster("pr/od".into()),
        ),
        (
            NewEnvironment::new("logs", "prod", "logs"),
            ValidationError::TaskDefinition("logs".into()),
        ),
        (
            NewEnvironment::new("logs", "prod", "logs:1").max_unavailable(0),
            ValidationError::RolloutBound,
        ),
        (
            NewEnvironment::new("logs", "prod", "logs:1")
                .selector(InstanceSelector::all().and(AttributeMatch::exists(""))),
            ValidationError::EmptyAttributeName,
        ),
    ];
    for (req, want) in cases {
        match s.create(req).await {
            Err(EnvironmentError::Invalid(v)) => assert_eq!(v, want),
            other => panic!("expected {want:?}, got {other:?}"),
        }
    }
    assert!(s.list().await.unwrap().is_empty());
    logs_env(&s).await;
    let err = s.update_task_definition("logs", "nope").await.unwrap_err();
    assert!(matches!(
        err,
        EnvironmentError::Invalid(ValidationError::TaskDefinition(_))
    ));
    assert_eq!(err.class(), ErrorClass::BadRequest);
    assert!(err.to_string().contains("family:revision"), "{err}");
}

#[tokio::test]
async fn duplicates_and_unknown_names_are_reported() {
    let (s, _) = stores();
    logs_env(&s).await;
    let dup = s
        .create(NewEnvironment::new("logs", "other", "x:1"))
        .await
        .unwrap_err();
    assert!(matches!(dup, EnvironmentError::AlreadyExists(ref n) if n == "logs"));
    assert_eq!(s.get("logs").await.unwrap().instance_group.cluster, "prod");
    assert!(matches!(
        s.get("nope").await,
        Err(EnvironmentError::NotFound(_))
    ));
    assert!(matches!(
        s.list_deployments("nope").await,
        Err(EnvironmentError::NotFound(_))
    ));
    assert!(matches!(
        s.get_deployment("logs", "00000000-0000-4000-8000-000000000000")
            .await,
        Err(EnvironmentError::DeploymentNotFound { .. })
    ));
    assert!(matches!(
        s.create_deployment("nope", "t").await,
        Err(EnvironmentError::NotFound(_))
    ));
}

#[tokio::test]
async fn list_returns_environments_by_name() {
    let (s, _) = stores();
    for n in ["b", "a", "c"] {
        s.create(NewEnvironment::new(n, "prod", "x:1"))
            .await
            .unwrap();
    }
    let names: Vec<String> = s
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test]
async fn delete_without_stop_removes_the_environment_and_its_deployments() {
    let (s, kv) = stores();
    let env = logs_env(&s).await;
    s.create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    s.delete("logs", false).await.unwrap();
    assert!(matches!(
        s.get("logs").await,
        Err(EnvironmentError::NotFound(_))
    ));
    assert!(kv.kv_list("daemon/").await.unwrap().items.is_empty());
    assert!(s.load().await.unwrap().environments.is_empty());
    // The name is free again.
    s.create(NewEnvironment::new("logs", "prod", "logs:2"))
        .await
        .unwrap();
}

#[tokio::test]
async fn delete_with_stop_hides_the_environment_but_keeps_it_for_the_scheduler() {
    let (s, _) = stores();
    let env = logs_env(&s).await;
    s.create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    s.delete("logs", true).await.unwrap();
    assert!(matches!(
        s.get("logs").await,
        Err(EnvironmentError::NotFound(_))
    ));
    assert!(s.list().await.unwrap().is_empty());
    let desired = DesiredSource::load(&s).await.unwrap();
    assert!(desired.environments[0].environment.deleting);
    assert_eq!(desired.environments[0].deployments.len(), 1);
    let again = s
        .create(NewEnvironment::new("logs", "prod", "logs:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(again, EnvironmentError::BeingDeleted(_)),
        "{again}"
    );
    assert_eq!(again.class(), ErrorClass::BadRequest);
}

#[tokio::test]
async fn updating_settings_takes_effect_at_once_and_keeps_the_rest() {
    use blox_sched::daemon::{DaemonScheduler, EnvironmentUpdate};
    use blox_sched::scheduler::{Action, Scheduler};
    use blox_sched::testing::SnapshotBuilder;

    let (s, _) = stores();
    let env = logs_env(&s).await;
    let dep = s
        .create_deployment("logs", &env.deployment_token)
        .await
        .unwrap();
    let before = s.get("logs").await.unwrap();
    let edge = InstanceSelector::all().and(AttributeMatch::equals("role", "edge"));
    let after = s
        .update(
            "logs",
            EnvironmentUpdate::default()
                .selector(edge.clone())
                .draining_policy(DrainingPolicy::StopImmediately)
                .max_unavailable(3),
        )
        .await
        .unwrap();
    assert_eq!(after.selector(), &edge);
    assert_eq!(after.draining_policy, DrainingPolicy::StopImmediately);
    assert_eq!(after.max_unavailable, 3);
    assert_eq!(after.task_definition, "logs:1");
    assert_eq!(after.active_deployment.as_deref(), Some(dep.id.as_str()));
    assert_ne!(after.deployment_token, before.deployment_token);
    assert_eq!(s.get("logs").await.unwrap(), after);

    // The scheduler reads the new selector with the next snapshot: the
    // instance that no longer matches has its task stopped, no deployment
    // needed.
    let snap = SnapshotBuilder::new()
        .cluster("prod")
        .instance("edge", |i| i.attr("role", "edge"))
        .instance("core", |i| i.attr("role", "core"))
        .task("t-edge", "edge", |t| {
            t.started_by(&dep.id).task_definition("logs:1")
        })
        .task("t-core", "core", |t| {
            t.started_by(&dep.id).task_definition("logs:1")
        })
        .build(s.load().await.unwrap());
    let stopped: Vec<String> = DaemonScheduler
        .decide(&snap)
        .into_iter()
        .filter_map(|a| match a {
            Action::Stop(stop) => Some(stop.task.to_string()),
            _ => None,
        })
        .collect();
    let builder = SnapshotBuilder::new().cluster("prod");
    assert_eq!(stopped, [builder.task_arn("t-core").to_string()]);

    // Nothing to change, or a bad value, is refused and changes nothing.
    assert!(matches!(
        s.update("logs", EnvironmentUpdate::default()).await,
        Err(EnvironmentError::Invalid(ValidationError::NothingToUpdate))
    ));
    assert!(matches!(
        s.update("logs", EnvironmentUpdate::default().max_unavailable(0))
            .await,
        Err(EnvironmentError::Invalid(ValidationError::RolloutBound))
    ));
    assert_eq!(s.get("logs").await.unwrap(), after);
}

#[tokio::test]
async fn an_environment_with_more_deployments_than_one_transaction_holds_is_deleted() {
    let (s, kv) = stores();
    let mut env = logs_env(&s).await;
    for n in 0..140 {
        s.create_deployment("logs", &env.deployment_token)
            .await
            .unwrap();
        env = s
            .update_task_definition("logs", &format!("logs:{}", n + 2))
            .await
            .unwrap();
    }
    assert_eq!(s.list_deployments("logs").await.unwrap().len(), 140);
    s.delete("logs", false).await.unwrap();
    assert!(matches!(
        s.get("logs").await,
        Err(EnvironmentError::NotFound(_))
    ));
    assert!(kv.kv_list("daemon/").await.unwrap().items.is_empty());
}
