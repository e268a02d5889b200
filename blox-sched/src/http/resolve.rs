//! The ECS checks of an environment's cluster and task definition, as Blox
//! v0.3 made them on create: `DescribeClusters` and `DescribeTaskDefinition`.
//! Both are stored as the ARNs ECS answers (`instanceGroup.cluster` is the
//! cluster ARN even when a name was given; `taskDefinition` the full task
//! definition ARN). A missing or INACTIVE one is a 404.

use blox_core::ports::{EcsApi, EcsError};
use blox_state::http::detailed;

use super::error::{ApiError, text};

/// The ARN of an ACTIVE cluster given by name or ARN.
pub(crate) async fn cluster_arn(ecs: &dyn EcsApi, cluster: &str) -> Result<String, ApiError> {
    let found = ecs
        .describe_clusters(&[cluster.to_owned()])
        .await
        .map_err(ecs_error)?;
    match found.into_iter().next() {
        None => Err(ApiError::NotFound(format!(
            "Cluster {cluster} is missing (ECS DescribeClusters: MISSING)"
        ))),
        Some(c) if c.status.eq_ignore_ascii_case("INACTIVE") => Err(ApiError::NotFound(detailed(
            text::CLUSTER_INACTIVE,
            c.cluster_arn,
        ))),
        Some(c) => Ok(c.cluster_arn.to_string()),
    }
}

/// The ARN of an ACTIVE task definition given as `family:revision` or ARN.
pub(crate) async fn task_definition_arn(
    ecs: &dyn EcsApi,
    task_definition: &str,
) -> Result<String, ApiError> {
    let td = ecs
        .describe_task_definition(task_definition)
        .await
        .map_err(ecs_error)?;
    if td.status.eq_ignore_ascii_case("INACTIVE") {
        return Err(ApiError::NotFound(detailed(
            text::TASK_DEFINITION_INACTIVE,
            td.task_definition_arn,
        )));
    }
    Ok(td.task_definition_arn)
}

/// ECS's answer as a response: what it does not know is a 404 with its
/// message (`NotFound`, or the client errors ECS answers for a missing or
/// malformed task definition); a throttled or unanswered call a 503;
/// anything else (access denied, ...) a 500.
fn ecs_error(e: EcsError) -> ApiError {
    let unknown = match &e {
        EcsError::NotFound { .. } => true,
        EcsError::Service { code, .. } => {
            matches!(
                code.as_str(),
                "ClientException" | "InvalidParameterException"
            )
        }
        _ => false,
    };
    if unknown {
        ApiError::NotFound(e.to_string())
    } else if e.is_retryable() {
        ApiError::Unavailable(e.to_string())
    } else {
        tracing::error!(error = %e, "ECS check of an environment failed");
        ApiError::Internal(detailed(text::INTERNAL, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use blox_core::model::{Arn, Cluster, TaskDefinition};
    use blox_core::testing::{FakeEcs, FakeEcsConfig, MockEcsApi};

    #[tokio::test]
    async fn names_become_arns_and_missing_ones_are_404() {
        let ecs = FakeEcs::with_config(FakeEcsConfig {
            auto_register_task_definitions: false,
            ..FakeEcsConfig::default()
        });
        let prod = ecs.create_cluster("prod").unwrap();
        assert_eq!(cluster_arn(&ecs, "prod").await.unwrap(), prod.as_str());
        assert_eq!(
            cluster_arn(&ecs, prod.as_str()).await.unwrap(),
            prod.as_str()
        );
        let missing = cluster_arn(&ecs, "nope").await.unwrap_err();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let web = ecs.register_task_definition("web", 256, 512).unwrap();
        let arn = task_definition_arn(&ecs, "web:1").await.unwrap();
        assert_eq!(arn, web.task_definition_arn);
        assert!(arn.starts_with("arn:aws:ecs:"), "{arn}");
        let missing = task_definition_arn(&ecs, "web:2").await.unwrap_err();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{missing}");
    }

    #[tokio::test]
    async fn inactive_clusters_and_task_definitions_are_404_with_v03_text() {
        let mut ecs = MockEcsApi::new();
        ecs.expect_describe_clusters().returning(|_| {
            Ok(vec![Cluster {
                cluster_arn: Arn::parse("arn:aws:ecs:us-east-1:1:cluster/old").unwrap(),
                cluster_name: "old".into(),
                status: "INACTIVE".into(),
                registered_container_instances_count: None,
                running_tasks_count: None,
                pending_tasks_count: None,
            }])
        });
        ecs.expect_describe_task_definition().returning(|_| {
            Ok(TaskDefinition {
                task_definition_arn: "arn:aws:ecs:us-east-1:1:task-definition/web:1".into(),
                family: "web".into(),
                revision: 1,
                status: "INACTIVE".into(),
                cpu: None,
                memory: None,
                container_cpu: 0,
                container_memory: 0,
            })
        });
        let e = cluster_arn(&ecs, "old").await.unwrap_err();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(e.to_string().starts_with(text::CLUSTER_INACTIVE), "{e}");
        let e = task_definition_arn(&ecs, "web:1").await.unwrap_err();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert!(
            e.to_string().starts_with(text::TASK_DEFINITION_INACTIVE),
            "{e}"
        );
    }

    #[test]
    fn ecs_failures_map_to_404_503_or_500() {
        let service = |code: &str| EcsError::Service {
            operation: "DescribeTaskDefinition",
            code: code.into(),
            message: "m".into(),
        };
        let throttled = EcsError::Throttled {
            operation: "DescribeClusters",
            message: "slow down".into(),
        };
        let cases = [
            (service("ClientException"), StatusCode::NOT_FOUND),
            (
                service("AccessDeniedException"),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (throttled, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (e, status) in cases {
            assert_eq!(ecs_error(e).status(), status);
        }
        let internal = ecs_error(service("AccessDeniedException")).to_string();
        assert!(internal.starts_with(text::INTERNAL), "{internal}");
    }
}
