//! The real adapters against moto (an AWS emulator), each test on its own
//! server. Needs `.venv/bin/moto_server` at the workspace root: run
//! `bash scripts/install-deps.sh test` once.
#![cfg(all(feature = "aws", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use blox_core::aws::{EcsAdapter, SqsEventSource};
use blox_core::model::{Arn, InstanceStatus, TaskStatus};
use blox_core::ports::{
    EcsApi, EcsApiExt, EcsError, EventSource, StartTaskRequest, TaskListFilter,
};
use blox_core::testing::moto::Moto;

const CLUSTER: &str = "blox-it";

fn sorted(arns: impl IntoIterator<Item = Arn>) -> Vec<Arn> {
    let mut v: Vec<Arn> = arns.into_iter().collect();
    v.sort();
    v
}

#[tokio::test]
async fn ecs_adapter_lists_describes_starts_and_stops_against_moto() {
    let moto = Moto::start().await;
    moto.freeze_task_status().await;
    let fixture = moto.ecs_cluster_with_instances(CLUSTER, 3).await;
    let instance_arns: Vec<Arn> = fixture.iter().map(|(a, _)| a.clone()).collect();
    let ecs = EcsAdapter::new(&moto.sdk_config());

    // Clusters.
    let clusters = ecs.list_all_clusters().await.unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].cluster_name(), Some(CLUSTER));
    let described = ecs.describe_clusters(&[CLUSTER.to_owned()]).await.unwrap();
    assert_eq!(described[0].cluster_arn, clusters[0]);
    assert_eq!(described[0].registered_container_instances_count, Some(3));
    let cluster_arn = clusters[0].clone();

    // Container instances.
    let listed = ecs.list_all_container_instances(CLUSTER).await.unwrap();
    assert_eq!(sorted(listed.clone()), sorted(instance_arns.clone()));
    let described = ecs
        .describe_container_instances(CLUSTER, &listed)
        .await
        .unwrap();
    assert_eq!(described.len(), 3);
    for ci in &described {
        let (_, ec2_id) = fixture
            .iter()
            .find(|(a, _)| *a == ci.container_instance_arn)
            .unwrap();
        assert_eq!(ci.ec2_instance_id.as_deref(), Some(ec2_id.as_str()));
        assert_eq!(ci.cluster_arn, cluster_arn);
        assert_eq!(ci.status, InstanceStatus::Active);
        assert_eq!(ci.version, None, "moto sends no version");
        assert_eq!(
            blox_core::model::resource_number(&ci.registered_resources, "CPU"),
            Some(4096)
        );
    }

    // Task definition.
    let td = ecs.describe_task_definition("web:1").await.unwrap();
    assert_eq!((td.family.as_str(), td.revision), ("web", 1));
    assert_eq!((td.container_cpu, td.container_memory), (128, 256));

    // StartTask on two chosen instances.
    let chosen = instance_arns[..2].to_vec();
    let started = ecs
        .start_task(&StartTaskRequest {
            cluster: CLUSTER.into(),
            task_definition: "web:1".into(),
            container_instances: chosen.clone(),
            started_by: Some("blox-test".into()),
            group: None,
            overrides: None,
            tags: Default::default(),
        })
        .await
        .unwrap();
    assert!(started.failures.is_empty(), "{:?}", started.failures);
    assert_eq!(started.tasks.len(), 2);
    let placed: BTreeSet<Arn> = started
        .tasks
        .iter()
        .map(|t| t.container_instance_arn.clone().unwrap())
        .collect();
    assert_eq!(placed, chosen.iter().cloned().collect());
    let task_arns = sorted(started.tasks.iter().map(|t| t.task_arn.clone()));

    // ListTasks by cluster, by container instance, by startedBy.
    let by_cluster = TaskListFilter {
        cluster: CLUSTER.into(),
        ..TaskListFilter::default()
    };
    assert_eq!(
        sorted(ecs.list_all_tasks(&by_cluster).await.unwrap()),
        task_arns
    );
    let on_first = TaskListFilter {
        container_instance: Some(chosen[0].clone()),
        ..by_cluster.clone()
    };
    let on_first = ecs.list_all_tasks(&on_first).await.unwrap();
    assert_eq!(on_first.len(), 1);
    let first_task = started
        .tasks
        .iter()
        .find(|t| t.container_instance_arn.as_ref() == Some(&chosen[0]))
        .unwrap();
    assert_eq!(on_first[0], first_task.task_arn);
    let mine = TaskListFilter {
        started_by: Some("blox-test".into()),
        ..by_cluster.clone()
    };
    assert_eq!(sorted(ecs.list_all_tasks(&mine).await.unwrap()), task_arns);
    let theirs = TaskListFilter {
        started_by: Some("someone-else".into()),
        ..by_cluster.clone()
    };
    assert!(ecs.list_all_tasks(&theirs).await.unwrap().is_empty());

    // DescribeTasks.
    let tasks = ecs.describe_tasks(CLUSTER, &task_arns).await.unwrap();
    assert_eq!(sorted(tasks.iter().map(|t| t.task_arn.clone())), task_arns);
    for t in &tasks {
        assert_eq!(t.cluster_arn, cluster_arn);
        assert_eq!(t.started_by.as_deref(), Some("blox-test"));
        assert_eq!(t.desired_status, TaskStatus::Running);
        assert!(t.task_definition_arn.ends_with("task-definition/web:1"));
        assert_eq!(t.containers[0].name, "web");
    }

    // An ARN ECS does not know is simply absent from a describe.
    let gone = Arn::parse(&format!(
        "{}/{}",
        cluster_arn.as_str().replace(":cluster/", ":task/"),
        "0000"
    ))
    .unwrap();
    let mut asked = task_arns.clone();
    asked.push(gone);
    let tasks = ecs.describe_tasks(CLUSTER, &asked).await.unwrap();
    assert_eq!(sorted(tasks.iter().map(|t| t.task_arn.clone())), task_arns);

    // StartTask on an instance moto does not know fails, without retries.
    let bogus = Arn::parse(&format!(
        "{}/{}",
        cluster_arn
            .as_str()
            .replace(":cluster/", ":container-instance/"),
        "00000000-0000-0000-0000-000000000000"
    ))
    .unwrap();
    let err = ecs
        .start_task(&StartTaskRequest {
            cluster: CLUSTER.into(),
            task_definition: "web:1".into(),
            container_instances: vec![bogus],
            started_by: Some("blox-test".into()),
            group: None,
            overrides: None,
            tags: Default::default(),
        })
        .await;
    // (moto answers with an HTML error page; ECS itself would report a failure.)
    assert!(
        matches!(&err, Err(EcsError::Service { code, .. }) if code == "HTTP 500"),
        "{err:?}"
    );

    // Placement used resources on the chosen instance.
    let after = ecs
        .describe_container_instances(CLUSTER, &chosen[..1])
        .await
        .unwrap();
    assert_eq!(after[0].remaining_cpu(), Some(4096 - 128));

    // StopTask.
    let stopped = ecs
        .stop_task(CLUSTER, &first_task.task_arn, "test stop")
        .await
        .unwrap();
    assert_eq!(stopped.task_arn, first_task.task_arn);
    assert_eq!(stopped.desired_status, TaskStatus::Stopped);
    let now = ecs
        .describe_tasks(CLUSTER, std::slice::from_ref(&first_task.task_arn))
        .await
        .unwrap();
    assert_eq!(now[0].desired_status, TaskStatus::Stopped);

    // Drain the third instance.
    let drained = ecs
        .update_container_instances_state(CLUSTER, &instance_arns[2..], InstanceStatus::Draining)
        .await
        .unwrap();
    assert_eq!(drained.len(), 1);
    assert_eq!(drained[0].status, InstanceStatus::Draining);
    let now = ecs
        .describe_container_instances(CLUSTER, &instance_arns[2..])
        .await
        .unwrap();
    assert_eq!(now[0].status, InstanceStatus::Draining);
}

#[tokio::test]
async fn ecs_adapter_maps_a_missing_cluster_to_not_found_against_moto() {
    let moto = Moto::start().await;
    let ecs = EcsAdapter::new(&moto.sdk_config());
    // (moto answers ListContainerInstances of an unknown cluster with an
    // empty list, but DescribeTasks with ClusterNotFoundException, as ECS does.)
    let task = Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/no-such-cluster/t").unwrap();
    let err = ecs
        .describe_tasks("no-such-cluster", &[task])
        .await
        .unwrap_err();
    assert!(matches!(err, EcsError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn sqs_source_receives_deletes_and_redelivers_against_moto() {
    let moto = Moto::start().await;
    let sdk = moto.sdk_config();
    let raw = aws_sdk_sqs::Client::new(&sdk);
    raw.create_queue()
        .queue_name("blox-events-it")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "2",
        )
        .send()
        .await
        .unwrap();
    let source = SqsEventSource::connect(&sdk, "sqs://blox-events-it")
        .await
        .unwrap();
    assert!(
        source.queue_url().ends_with("/blox-events-it"),
        "{}",
        source.queue_url()
    );
    let by_name = SqsEventSource::connect(&sdk, "blox-events-it")
        .await
        .unwrap();
    assert_eq!(by_name.queue_url(), source.queue_url());

    for i in 0..12 {
        raw.send_message()
            .queue_url(source.queue_url())
            .message_body(format!("{{\"n\":{i}}}"))
            .send()
            .await
            .unwrap();
    }

    // A full batch of ten with long polling, each received for the first time.
    let first = source.receive(10, Duration::from_secs(20)).await.unwrap();
    assert_eq!(first.len(), 10);
    assert!(first.iter().all(|m| m.receive_count == Some(1)));
    assert!(first.iter().all(|m| m.body.starts_with("{\"n\":")));

    // Delete all but one; the rest of the queue follows.
    let kept = first[0].clone();
    let handles: Vec<String> = first[1..]
        .iter()
        .map(|m| m.receipt_handle.clone())
        .collect();
    assert!(source.delete(&handles).await.unwrap().is_empty());
    let mut rest = Vec::new();
    while rest.len() < 2 {
        let batch = source.receive(10, Duration::from_secs(1)).await.unwrap();
        rest.extend(batch.into_iter().filter(|m| m.id != kept.id));
    }
    let handles: Vec<String> = rest.iter().map(|m| m.receipt_handle.clone()).collect();
    assert!(source.delete(&handles).await.unwrap().is_empty());

    // The undeleted message comes back after its visibility timeout.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let again = loop {
        let batch = source.receive(10, Duration::from_secs(5)).await.unwrap();
        if let Some(m) = batch.into_iter().find(|m| m.id == kept.id) {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message not redelivered"
        );
    };
    assert_eq!(again.body, kept.body);
    assert_eq!(again.receive_count, Some(2));
    assert!(
        source
            .delete(&[again.receipt_handle])
            .await
            .unwrap()
            .is_empty()
    );

    // The queue is now empty: a long poll waits and returns nothing.
    let start = std::time::Instant::now();
    assert!(
        source
            .receive(10, Duration::from_secs(2))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "long poll returned early"
    );
}

#[tokio::test]
async fn sqs_source_reports_per_message_delete_failures_against_moto() {
    let moto = Moto::start().await;
    let sdk = moto.sdk_config();
    let raw = aws_sdk_sqs::Client::new(&sdk);
    raw.create_queue()
        .queue_name("blox-delete-it")
        .send()
        .await
        .unwrap();
    let source = SqsEventSource::connect(&sdk, "blox-delete-it")
        .await
        .unwrap();
    raw.send_message()
        .queue_url(source.queue_url())
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let got = source.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 1);
    let handles = vec![
        got[0].receipt_handle.clone(),
        "not-a-receipt-handle".to_owned(),
    ];
    let failures = source.delete(&handles).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].receipt_handle, "not-a-receipt-handle");
    assert!(!failures[0].code.is_empty());
}
