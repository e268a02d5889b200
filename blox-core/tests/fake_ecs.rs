//! Behaviour of the in-memory fake ECS through the ports, as blox uses them.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use blox_core::event::{EcsEvent, parse_event};
use blox_core::model::{Arn, ContainerInstance, InstanceStatus, Task, TaskStatus};
use blox_core::ports::{
    EcsApi, EcsApiExt, EcsError, EventSource, StartTaskRequest, TaskListFilter,
};
use blox_core::testing::{
    ChurnPlan, FakeAction, FakeEcs, FakeEcsConfig, InjectedError, InstanceSpec, TaskProgress,
    operations,
};

fn start(cluster: &str, td: &str, instances: &[Arn], by: &str) -> StartTaskRequest {
    StartTaskRequest {
        cluster: cluster.into(),
        task_definition: td.into(),
        container_instances: instances.to_vec(),
        started_by: Some(by.into()),
        group: None,
        overrides: None,
        tags: Default::default(),
    }
}

fn parsed(bodies: &[String]) -> Vec<EcsEvent> {
    bodies
        .iter()
        .map(|b| parse_event(b.as_bytes()).unwrap().event)
        .collect()
}

fn task_events(bodies: &[String], arn: &Arn) -> Vec<Task> {
    parsed(bodies)
        .into_iter()
        .filter_map(|e| match e {
            EcsEvent::Task(t) if &t.task_arn == arn => Some(*t),
            _ => None,
        })
        .collect()
}

fn instance_events(bodies: &[String], arn: &Arn) -> Vec<ContainerInstance> {
    parsed(bodies)
        .into_iter()
        .filter_map(|e| match e {
            EcsEvent::Instance(i) if &i.container_instance_arn == arn => Some(*i),
            _ => None,
        })
        .collect()
}

fn fake_with_cluster() -> FakeEcs {
    let ecs = FakeEcs::with_seed(1);
    ecs.create_cluster("prod").unwrap();
    ecs
}

#[tokio::test]
async fn start_task_honours_resources_and_emits_pending_then_running_with_rising_versions() {
    let ecs = fake_with_cluster();
    ecs.register_task_definition("web", 512, 1024).unwrap();
    let big = ecs
        .add_instance("prod", InstanceSpec::new().cpu(1024).memory(4096))
        .unwrap()
        .container_instance_arn;
    let low_cpu = ecs
        .add_instance("prod", InstanceSpec::new().cpu(256).memory(4096))
        .unwrap()
        .container_instance_arn;
    let low_mem = ecs
        .add_instance("prod", InstanceSpec::new().cpu(1024).memory(512))
        .unwrap()
        .container_instance_arn;
    ecs.take_events();

    let out = ecs
        .start_task(&start(
            "prod",
            "web:1",
            &[big.clone(), low_cpu.clone(), low_mem.clone()],
            "me",
        ))
        .await
        .unwrap();
    assert_eq!(out.tasks.len(), 1);
    assert_eq!(out.tasks[0].last_status, TaskStatus::Pending);
    let reasons: Vec<(String, String)> = out
        .failures
        .iter()
        .map(|f| (f.arn.clone().unwrap(), f.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (low_cpu.to_string(), "RESOURCE:CPU".to_string()),
            (low_mem.to_string(), "RESOURCE:MEMORY".to_string()),
        ]
    );

    let instance = ecs.instance(&big).unwrap();
    assert_eq!(instance.remaining_cpu(), Some(512));
    assert_eq!(instance.remaining_memory(), Some(3072));

    let task_arn = out.tasks[0].task_arn.clone();
    let events = ecs.take_events();
    let states = task_events(&events, &task_arn);
    let statuses: Vec<TaskStatus> = states.iter().map(|t| t.last_status.clone()).collect();
    assert_eq!(statuses, vec![TaskStatus::Pending, TaskStatus::Running]);
    assert!(states[0].version.unwrap() < states[1].version.unwrap());
    assert_eq!(states[1], ecs.task(&task_arn).unwrap());
    let inst = instance_events(&events, &big);
    assert_eq!(inst.len(), 1, "one instance event for the reservation");
    assert_eq!(inst[0].remaining_cpu(), Some(512));

    // A second task no longer fits in CPU.
    let out = ecs
        .start_task(&start("prod", "web:1", std::slice::from_ref(&big), "me"))
        .await
        .unwrap();
    assert_eq!(out.tasks.len(), 1);
    let out = ecs
        .start_task(&start("prod", "web:1", std::slice::from_ref(&big), "me"))
        .await
        .unwrap();
    assert!(out.tasks.is_empty());
    assert_eq!(out.failures[0].reason, "RESOURCE:CPU");
}

#[tokio::test]
async fn every_event_round_trips_through_the_parser_to_the_fakes_entity() {
    let ecs = fake_with_cluster();
    let spec = InstanceSpec::new()
        .az("us-east-1c")
        .instance_type("c5.xlarge")
        .attribute("team", "payments");
    let i = ecs.add_instance("prod", spec).unwrap();
    let out = ecs
        .start_task(&start(
            "prod",
            "api:3",
            std::slice::from_ref(&i.container_instance_arn),
            "svc",
        ))
        .await
        .unwrap();
    let t = &out.tasks[0].task_arn;
    let events = ecs.take_events();
    assert!(events.iter().all(|b| b.contains("\"source\":\"aws.ecs\"")));
    let last_task = task_events(&events, t).pop().unwrap();
    assert_eq!(last_task, ecs.task(t).unwrap());
    assert_eq!(last_task.availability_zone.as_deref(), Some("us-east-1c"));
    assert_eq!(last_task.started_by.as_deref(), Some("svc"));
    assert!(
        last_task
            .task_definition_arn
            .ends_with(":task-definition/api:3")
    );
    let last_instance = instance_events(&events, &i.container_instance_arn)
        .pop()
        .unwrap();
    let now = ecs.instance(&i.container_instance_arn).unwrap();
    assert_eq!(last_instance, now);
    assert_eq!(now.attribute("ecs.instance-type"), Some("c5.xlarge"));
    assert_eq!(now.attribute("team"), Some("payments"));
    assert_eq!(now.availability_zone(), Some("us-east-1c"));
    let envelope = parse_event(events[0].as_bytes()).unwrap();
    assert_eq!(envelope.account.as_deref(), Some("000000000000"));
    assert_eq!(envelope.region.as_deref(), Some("us-east-1"));
}

#[tokio::test]
async fn listing_takes_exactly_ceil_n_over_100_pages() {
    for n in [0usize, 1, 99, 100, 101, 250, 300] {
        let ecs = FakeEcs::with_config(FakeEcsConfig {
            emit_events: false,
            ..FakeEcsConfig::seeded(2)
        });
        ecs.create_cluster("c").unwrap();
        let arns = ecs.add_instances("c", n, &InstanceSpec::new()).unwrap();
        ecs.run_tasks("c", "t:1", &arns, Some("bench")).unwrap();

        let mut pages = 0;
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let p = ecs.list_container_instances("c", token).await.unwrap();
            pages += 1;
            assert!(p.items.len() <= 100);
            seen.extend(p.items);
            token = p.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(pages, n.div_ceil(100).max(1), "instances, n = {n}");
        seen.sort();
        let mut expected = arns.clone();
        expected.sort();
        assert_eq!(seen, expected);

        ecs.reset_calls();
        let filter = TaskListFilter {
            cluster: "c".into(),
            ..Default::default()
        };
        let tasks = ecs.list_all_tasks(&filter).await.unwrap();
        assert_eq!(tasks.len(), n);
        assert_eq!(
            ecs.calls(operations::LIST_TASKS) as usize,
            n.div_ceil(100).max(1),
            "tasks, n = {n}"
        );
    }
}

#[tokio::test]
async fn list_tasks_filters_like_ecs() {
    let ecs = fake_with_cluster();
    let a = ecs
        .add_instance("prod", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let b = ecs
        .add_instance("prod", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let web = ecs
        .start_task(&start("prod", "web:1", &[a.clone(), b.clone()], "blox-1"))
        .await
        .unwrap();
    let db = ecs
        .start_task(&start("prod", "db:2", std::slice::from_ref(&a), "other"))
        .await
        .unwrap();
    let stopped = &web.tasks[1].task_arn;
    ecs.stop_task("prod", stopped, "scale down").await.unwrap();

    let list = |f: TaskListFilter| {
        let ecs = ecs.clone();
        async move {
            let mut v = ecs.list_all_tasks(&f).await.unwrap();
            v.sort();
            v
        }
    };
    let base = TaskListFilter {
        cluster: "prod".into(),
        ..Default::default()
    };
    let running = list(base.clone()).await;
    assert_eq!(running.len(), 2, "desired RUNNING by default");
    assert!(!running.contains(stopped));
    let stopped_list = list(TaskListFilter {
        desired_status: Some(TaskStatus::Stopped),
        ..base.clone()
    })
    .await;
    assert_eq!(stopped_list, vec![stopped.clone()]);
    let on_a = list(TaskListFilter {
        container_instance: Some(a.clone()),
        ..base.clone()
    })
    .await;
    let mut expected = vec![web.tasks[0].task_arn.clone(), db.tasks[0].task_arn.clone()];
    expected.sort();
    assert_eq!(on_a, expected);
    let by_blox = list(TaskListFilter {
        started_by: Some("blox-1".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(by_blox, vec![web.tasks[0].task_arn.clone()]);
    let family_db = list(TaskListFilter {
        family: Some("db".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(family_db, vec![db.tasks[0].task_arn.clone()]);
    let err = ecs
        .list_tasks(
            &TaskListFilter {
                cluster: "nope".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EcsError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn describe_leaves_out_missing_arns_and_rejects_more_than_100() {
    let ecs = fake_with_cluster();
    let i = ecs
        .add_instance("prod", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let missing: Arn = "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/nope"
        .parse()
        .unwrap();
    let got = ecs
        .describe_container_instances("prod", &[missing.clone(), i.clone()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].container_instance_arn, i);
    let too_many = vec![missing; 101];
    let err = ecs.describe_tasks("prod", &too_many).await.unwrap_err();
    assert!(matches!(err, EcsError::InvalidRequest { .. }));
    let clusters = ecs
        .describe_clusters(&["prod".into(), "ghost".into()])
        .await
        .unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].registered_container_instances_count, Some(1));
}

#[tokio::test]
async fn injected_failures_hit_the_next_calls_then_stop_and_every_call_is_counted() {
    let ecs = fake_with_cluster();
    ecs.fail_next("ListTasks", 2, InjectedError::Throttled)
        .unwrap();
    let filter = TaskListFilter {
        cluster: "prod".into(),
        ..Default::default()
    };
    for _ in 0..2 {
        let err = ecs.list_tasks(&filter, None).await.unwrap_err();
        assert!(err.is_throttling());
    }
    assert!(ecs.list_tasks(&filter, None).await.is_ok());
    assert_eq!(ecs.calls("ListTasks"), 3);

    ecs.outage(InjectedError::Transport);
    assert!(ecs.list_clusters(None).await.unwrap_err().is_retryable());
    assert!(ecs.receive(10, Duration::ZERO).await.is_err());
    ecs.clear_failures();
    assert_eq!(ecs.list_clusters(None).await.unwrap().items.len(), 1);
    assert_eq!(ecs.total_calls(), 6);
    assert!(
        ecs.fail_next("RunTask", 1, InjectedError::Throttled)
            .is_err()
    );

    ecs.fail_always(
        operations::START_TASK,
        InjectedError::Service {
            code: "AccessDeniedException".into(),
            message: "no".into(),
        },
    )
    .unwrap();
    let i = ecs
        .add_instance("prod", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let err = ecs
        .start_task(&start("prod", "w:1", &[i], "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, EcsError::Service { ref code, .. } if code == "AccessDeniedException"));
    assert_eq!(ecs.task_count(), 0, "a failed call changes nothing");
    assert!(ecs.actions().is_empty());
}

#[tokio::test]
async fn undeleted_messages_come_back_after_the_visibility_timeout() {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        visibility_timeout: Duration::from_secs(1),
        ..FakeEcsConfig::seeded(3)
    });
    ecs.create_cluster("prod").unwrap();
    ecs.add_instance("prod", InstanceSpec::new()).unwrap();
    ecs.add_instance("prod", InstanceSpec::new()).unwrap();

    let first = ecs.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|m| m.receive_count == Some(1)));
    assert!(ecs.receive(10, Duration::ZERO).await.unwrap().is_empty());
    ecs.delete(std::slice::from_ref(&first[0].receipt_handle))
        .await
        .unwrap();

    // Long polling returns as soon as the undeleted one is visible again.
    let again = ecs.receive(10, Duration::from_secs(20)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, first[1].body);
    assert_eq!(again[0].receive_count, Some(2));
    assert!(
        ecs.delete(std::slice::from_ref(&again[0].receipt_handle))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ecs.queued_events(), 0);
    assert!(ecs.receive(11, Duration::ZERO).await.is_err());
}

#[tokio::test]
async fn a_waiting_receive_wakes_when_an_event_is_emitted() {
    let ecs = fake_with_cluster();
    let rx = {
        let ecs = ecs.clone();
        tokio::spawn(async move { ecs.receive(10, Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    ecs.add_instance("prod", InstanceSpec::new()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("receive woke up")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn draining_refuses_new_tasks_and_emits_a_newer_instance_state() {
    let ecs = fake_with_cluster();
    let i = ecs.add_instance("prod", InstanceSpec::new()).unwrap();
    let arn = i.container_instance_arn.clone();
    ecs.take_events();
    let updated = ecs
        .update_container_instances_state(
            "prod",
            std::slice::from_ref(&arn),
            InstanceStatus::Draining,
        )
        .await
        .unwrap();
    assert_eq!(updated[0].status, InstanceStatus::Draining);
    assert!(updated[0].version > i.version);
    let events = instance_events(&ecs.take_events(), &arn);
    assert_eq!(events, vec![updated[0].clone()]);

    let out = ecs
        .start_task(&start("prod", "w:1", std::slice::from_ref(&arn), "x"))
        .await
        .unwrap();
    assert_eq!(out.failures[0].reason, "DRAINING");
    assert!(matches!(
        ecs.actions()[0],
        FakeAction::UpdateInstancesState { .. }
    ));

    ecs.activate(&arn).unwrap();
    ecs.disconnect_agent(&arn).unwrap();
    let out = ecs
        .start_task(&start("prod", "w:1", std::slice::from_ref(&arn), "x"))
        .await
        .unwrap();
    assert_eq!(out.failures[0].reason, "AGENT");
}

#[tokio::test]
async fn a_crashed_task_stops_with_essential_container_exited_and_frees_its_resources() {
    let ecs = fake_with_cluster();
    let arn = ecs
        .add_instance("prod", InstanceSpec::new().cpu(1024))
        .unwrap()
        .container_instance_arn;
    let t = ecs
        .start_task(&start("prod", "w:1", std::slice::from_ref(&arn), "x"))
        .await
        .unwrap()
        .tasks
        .remove(0);
    assert_eq!(ecs.instance(&arn).unwrap().remaining_cpu(), Some(768));
    let before = ecs.task(&t.task_arn).unwrap();
    ecs.take_events();
    let crashed = ecs.crash_task(&t.task_arn).unwrap();
    assert_eq!(crashed.last_status, TaskStatus::Stopped);
    assert_eq!(crashed.desired_status, TaskStatus::Stopped);
    assert_eq!(
        crashed.stop_code.as_deref(),
        Some("EssentialContainerExited")
    );
    assert!(crashed.stopped_at.is_some());
    assert_eq!(crashed.containers[0].exit_code, Some(1));
    assert!(crashed.version > before.version);
    assert_eq!(ecs.instance(&arn).unwrap().remaining_cpu(), Some(1024));
    let events = ecs.take_events();
    assert_eq!(task_events(&events, &t.task_arn), vec![crashed]);
    assert_eq!(instance_events(&events, &arn).len(), 1);
}

#[tokio::test]
async fn stop_task_records_who_stopped_it_and_releases_resources() {
    let ecs = fake_with_cluster();
    let arn = ecs
        .add_instance("prod", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let t = ecs
        .start_task(&start(
            "prod",
            "w:1",
            std::slice::from_ref(&arn),
            "deploy-7",
        ))
        .await
        .unwrap()
        .tasks
        .remove(0);
    ecs.take_events();
    let stopped = ecs
        .stop_task("prod", &t.task_arn, "rollback")
        .await
        .unwrap();
    assert_eq!(stopped.last_status, TaskStatus::Stopped);
    assert_eq!(stopped.stopped_reason.as_deref(), Some("rollback"));
    assert_eq!(stopped.stop_code.as_deref(), Some("UserInitiated"));
    let states = task_events(&ecs.take_events(), &t.task_arn);
    assert_eq!(states.len(), 2, "desired STOPPED, then STOPPED");
    assert_eq!(states[0].last_status, TaskStatus::Running);
    assert_eq!(states[0].desired_status, TaskStatus::Stopped);
    assert_eq!(ecs.instance(&arn).unwrap().remaining_cpu(), Some(2048));
    let actions = ecs.actions();
    assert!(
        matches!(&actions[0], FakeAction::Start { started_by: Some(b), instances, .. }
        if b == "deploy-7" && instances == &vec![arn.clone()])
    );
    assert!(matches!(&actions[1], FakeAction::Stop { reason, .. } if reason == "rollback"));
}

#[tokio::test]
async fn in_manual_mode_tasks_move_only_when_advanced() {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        task_progress: TaskProgress::Manual,
        ..FakeEcsConfig::seeded(4)
    });
    ecs.create_cluster("prod").unwrap();
    let arn = ecs
        .add_instance("prod", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let t = ecs
        .start_task(&start("prod", "w:1", std::slice::from_ref(&arn), "x"))
        .await
        .unwrap()
        .tasks
        .remove(0)
        .task_arn;
    assert_eq!(ecs.task(&t).unwrap().last_status, TaskStatus::Pending);
    assert_eq!(ecs.advance(), 1);
    assert_eq!(ecs.task(&t).unwrap().last_status, TaskStatus::Running);
    assert_eq!(ecs.advance(), 0);
    let stopping = ecs.stop_task("prod", &t, "bye").await.unwrap();
    assert_eq!(stopping.last_status, TaskStatus::Running);
    assert_eq!(stopping.desired_status, TaskStatus::Stopped);
    assert_eq!(ecs.advance(), 1);
    assert_eq!(ecs.task(&t).unwrap().last_status, TaskStatus::Stopped);
}

#[tokio::test]
async fn a_deregistered_instance_turns_inactive_stops_its_tasks_and_leaves_the_listing() {
    let ecs = fake_with_cluster();
    let arn = ecs
        .add_instance("prod", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let t = ecs
        .start_task(&start("prod", "w:1", std::slice::from_ref(&arn), "x"))
        .await
        .unwrap()
        .tasks
        .remove(0)
        .task_arn;
    let gone = ecs.deregister_instance(&arn).unwrap();
    assert_eq!(gone.status, InstanceStatus::Inactive);
    assert!(!gone.agent_connected);
    assert!(
        ecs.list_all_container_instances("prod")
            .await
            .unwrap()
            .is_empty()
    );
    let described = ecs
        .describe_container_instances("prod", std::slice::from_ref(&arn))
        .await
        .unwrap();
    assert_eq!(described[0].status, InstanceStatus::Inactive);
    assert_eq!(ecs.task(&t).unwrap().last_status, TaskStatus::Stopped);
    assert!(ecs.expire_retained() >= 2);
    assert!(ecs.instance(&arn).is_none());
    assert!(ecs.task(&t).is_none());
}

#[tokio::test]
async fn the_same_seed_and_calls_give_the_same_events() {
    async fn run(seed: u64) -> Vec<String> {
        let ecs = FakeEcs::with_seed(seed);
        ecs.create_cluster("prod").unwrap();
        let arns = ecs.add_instances("prod", 5, &InstanceSpec::new()).unwrap();
        ecs.start_task(&start("prod", "w:1", &arns, "x"))
            .await
            .unwrap();
        ecs.churn(
            "prod",
            &ChurnPlan {
                join: 2,
                leave: 1,
                crash: 1,
                spec: InstanceSpec::new(),
            },
        )
        .unwrap();
        ecs.take_events()
    }
    let a = run(42).await;
    assert_eq!(a, run(42).await);
    assert_ne!(a, run(43).await);
}

#[tokio::test]
async fn arn_format_partition_region_and_account_are_configurable() {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        partition: "aws-cn".into(),
        region: "cn-north-1".into(),
        account: "111122223333".into(),
        long_arns: false,
        ..FakeEcsConfig::seeded(5)
    });
    let c = ecs.create_cluster("old").unwrap();
    assert_eq!(
        c.as_str(),
        "arn:aws-cn:ecs:cn-north-1:111122223333:cluster/old"
    );
    let i = ecs.add_instance("old", InstanceSpec::new()).unwrap();
    assert!(!i.container_instance_arn.is_long_format());
    let t = ecs
        .start_task(&start("old", "w:1", &[i.container_instance_arn], "x"))
        .await
        .unwrap()
        .tasks
        .remove(0);
    assert!(!t.task_arn.is_long_format());
    assert_eq!(t.task_arn.partition(), "aws-cn");

    let long = FakeEcs::with_seed(5);
    long.create_cluster("c").unwrap();
    let i = long.add_instance("c", InstanceSpec::new()).unwrap();
    let t = long
        .start_task(&start("c", "w:1", &[i.container_instance_arn], "x"))
        .await
        .unwrap()
        .tasks
        .remove(0);
    assert!(
        t.task_arn
            .as_str()
            .starts_with("arn:aws:ecs:us-east-1:000000000000:task/c/")
    );
}

#[tokio::test]
async fn task_definitions_register_on_first_use_unless_disabled() {
    let ecs = fake_with_cluster();
    let td = ecs.describe_task_definition("svc:4").await.unwrap();
    assert_eq!((td.family.as_str(), td.revision), ("svc", 4));
    assert_eq!(td.cpu.as_deref(), Some("256"));
    let latest = ecs.describe_task_definition("svc").await.unwrap();
    assert_eq!(latest.revision, 4);
    let next = ecs.register_task_definition("svc", 1024, 2048).unwrap();
    assert_eq!(next.revision, 5);
    let by_arn = ecs
        .describe_task_definition(&next.task_definition_arn)
        .await
        .unwrap();
    assert_eq!(by_arn, next);

    let strict = FakeEcs::with_config(FakeEcsConfig {
        auto_register_task_definitions: false,
        ..FakeEcsConfig::seeded(6)
    });
    let err = strict.describe_task_definition("svc:1").await.unwrap_err();
    assert!(matches!(err, EcsError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn five_thousand_instances_and_fifty_thousand_tasks_list_and_describe_in_pages() {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        emit_events: false,
        ..FakeEcsConfig::seeded(7)
    });
    ecs.create_cluster("big").unwrap();
    let spec = InstanceSpec::new().cpu(4096).memory(16384);
    let instances = ecs.add_instances("big", 5_000, &spec).unwrap();
    for family in 0..10 {
        let out = ecs
            .run_tasks("big", &format!("f{family}:1"), &instances, Some("bench"))
            .unwrap();
        assert_eq!(out.tasks.len(), 5_000);
    }
    assert_eq!(ecs.task_count(), 50_000);

    ecs.reset_calls();
    let listed = ecs.list_all_container_instances("big").await.unwrap();
    assert_eq!(listed.len(), 5_000);
    let mut described = 0;
    for chunk in listed.chunks(100) {
        described += ecs
            .describe_container_instances("big", chunk)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(described, 5_000);
    let filter = TaskListFilter {
        cluster: "big".into(),
        ..Default::default()
    };
    let tasks = ecs.list_all_tasks(&filter).await.unwrap();
    assert_eq!(tasks.len(), 50_000);
    let mut described = 0;
    for chunk in tasks.chunks(100) {
        described += ecs.describe_tasks("big", chunk).await.unwrap().len();
    }
    assert_eq!(described, 50_000);
    assert_eq!(ecs.calls("ListTasks"), 500);
    assert_eq!(ecs.calls("DescribeTasks"), 500);
    assert_eq!(ecs.calls("ListContainerInstances"), 50);
}

#[tokio::test]
async fn a_simulation_spreads_instances_over_three_zones_and_churns() {
    let ecs = FakeEcs::simulation(FakeEcsConfig::seeded(8), "sim", 6).unwrap();
    let arns = ecs.list_all_container_instances("sim").await.unwrap();
    assert_eq!(arns.len(), 6);
    let zones: std::collections::BTreeSet<String> = ecs
        .describe_container_instances("sim", &arns)
        .await
        .unwrap()
        .iter()
        .map(|i| i.availability_zone().unwrap().to_owned())
        .collect();
    assert_eq!(zones.len(), 3);
    ecs.run_tasks("sim", "d:1", &arns, Some("daemon")).unwrap();
    let report = ecs
        .churn(
            "sim",
            &ChurnPlan {
                join: 1,
                leave: 2,
                crash: 1,
                spec: InstanceSpec::new(),
            },
        )
        .unwrap();
    assert_eq!(
        (report.joined.len(), report.left.len(), report.crashed.len()),
        (1, 2, 1)
    );
    assert_eq!(ecs.instance_arns("sim").unwrap().len(), 5);
    for gone in &report.left {
        assert_eq!(ecs.instance(gone).unwrap().status, InstanceStatus::Inactive);
        assert!(
            ecs.tasks_on(gone)
                .iter()
                .all(|t| t.last_status == TaskStatus::Stopped)
        );
    }
}

/// A fake whose listings lag by up to `lag`, on a paused tokio clock.
fn lagging_fake(lag: Duration) -> FakeEcs {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        clock: Some(
            blox_core::clock::TokioClock::starting_at(blox_core::model::Timestamp::from_millis(
                1_704_067_200_000,
            ))
            .shared(),
        ),
        listing_lag: lag,
        ..FakeEcsConfig::seeded(3)
    });
    ecs.create_cluster("prod").unwrap();
    ecs
}

#[tokio::test(start_paused = true)]
async fn listings_lag_behind_starts_stops_and_registrations_but_describe_does_not() {
    let lag = Duration::from_secs(10);
    let ecs = lagging_fake(lag);
    let running = TaskListFilter {
        cluster: "prod".into(),
        ..TaskListFilter::default()
    };
    let instances: Vec<Arn> = (0..20)
        .map(|_| {
            ecs.add_instance("prod", InstanceSpec::new())
                .unwrap()
                .container_instance_arn
        })
        .collect();
    let listed = ecs.list_all_container_instances("prod").await.unwrap();
    assert!(listed.len() < 20, "new instances show in listings later");
    let described = ecs
        .describe_container_instances("prod", &instances)
        .await
        .unwrap();
    assert_eq!(described.len(), 20, "describe sees them at once");
    tokio::time::sleep(lag + Duration::from_millis(1)).await;
    assert_eq!(
        ecs.list_all_container_instances("prod")
            .await
            .unwrap()
            .len(),
        20
    );

    let mut tasks: Vec<Arn> = Vec::new();
    for batch in instances.chunks(10) {
        let started = ecs.start_task(&start("prod", "w:1", batch, "x")).await;
        tasks.extend(started.unwrap().tasks.into_iter().map(|t| t.task_arn));
    }
    assert!(ecs.list_all_tasks(&running).await.unwrap().len() < 20);
    tokio::time::sleep(lag + Duration::from_millis(1)).await;
    assert_eq!(ecs.list_all_tasks(&running).await.unwrap().len(), 20);

    for t in &tasks {
        ecs.stop_task("prod", t, "done").await.unwrap();
    }
    let still = ecs.list_all_tasks(&running).await.unwrap();
    assert!(
        !still.is_empty(),
        "stopped tasks linger in RUNNING listings"
    );
    let d = ecs.describe_tasks("prod", &still).await.unwrap();
    assert!(d.iter().all(|t| t.desired_status == TaskStatus::Stopped));
    tokio::time::sleep(lag + Duration::from_millis(1)).await;
    assert!(ecs.list_all_tasks(&running).await.unwrap().is_empty());

    ecs.deregister_instance(&instances[0]).unwrap();
    assert_eq!(
        ecs.list_all_container_instances("prod")
            .await
            .unwrap()
            .len(),
        20,
        "a deregistered instance lingers (this seed draws a lag > 0)"
    );
    tokio::time::sleep(lag + Duration::from_millis(1)).await;
    assert_eq!(
        ecs.list_all_container_instances("prod")
            .await
            .unwrap()
            .len(),
        19
    );
}

#[tokio::test]
async fn with_an_outbox_events_wait_until_enqueued_as_the_caller_chooses() {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        event_outbox: true,
        ..FakeEcsConfig::seeded(5)
    });
    ecs.create_cluster("prod").unwrap();
    ecs.add_instance("prod", InstanceSpec::new()).unwrap();
    assert_eq!(ecs.queued_events(), 0);
    let out = ecs.take_outbox();
    assert_eq!(out.len(), 1);
    assert!(ecs.take_outbox().is_empty());
    ecs.enqueue_event(out[0].clone());
    ecs.enqueue_event(out[0].clone());
    ecs.enqueue_event("not json".into());
    let got = ecs.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 3);
}
