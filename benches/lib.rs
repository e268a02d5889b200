//! Shared pieces of the benchmarks: realistic entities and events, and
//! timing helpers. Each benchmark is a `harness = false` binary under
//! `benches/benches/` that prints its figures; `RESULTS.md` records them with
//! the command that produced them.

use std::time::{Duration, Instant};

use blox_core::model::{
    Arn, Attribute, Container, ContainerInstance, ContainerOverride, KeyValuePair, LaunchType,
    NetworkBinding, Resource, Task, TaskOverride, TaskStatus, Timestamp,
};

/// The ARN of cluster `c` in the benchmark account.
pub fn cluster_arn(c: usize) -> Arn {
    arn(&format!(
        "arn:aws:ecs:us-east-1:123456789012:cluster/bench-{c:02}"
    ))
}

fn arn(s: &str) -> Arn {
    match Arn::parse(s) {
        Ok(a) => a,
        Err(e) => panic!("benchmark ARN is invalid: {e}"),
    }
}

/// Instance `n` of cluster `c`.
pub fn instance(c: usize, n: usize) -> ContainerInstance {
    let mut i = ContainerInstance::new(
        arn(&format!(
            "arn:aws:ecs:us-east-1:123456789012:container-instance/bench-{c:02}/{n:08x}0000444455556666777788889999"
        )),
        cluster_arn(c),
    );
    i.ec2_instance_id = Some(format!("i-{n:017x}"));
    i.version = Some(1);
    i.attributes = vec![
        Attribute::new(
            "ecs.availability-zone",
            ["us-east-1a", "us-east-1b", "us-east-1c"][n % 3],
        ),
        Attribute::new("ecs.instance-type", "m5.large"),
        Attribute::new("ecs.os-type", "linux"),
    ];
    i.registered_resources = vec![
        Resource::integer("CPU", 2048),
        Resource::integer("MEMORY", 7482),
    ];
    i.remaining_resources = vec![
        Resource::integer("CPU", 1024),
        Resource::integer("MEMORY", 3000),
    ];
    i
}

/// Task `n` of cluster `c`, on instance `on`, with a realistic body (about
/// 1.7 KB of JSON): containers with port mappings, overrides, timestamps.
pub fn task(c: usize, n: usize, on: usize, status: TaskStatus, version: u64) -> Task {
    let mut t = Task::new(
        arn(&format!(
            "arn:aws:ecs:us-east-1:123456789012:task/bench-{c:02}/{n:08x}aaaabbbbccccddddeeeeffff"
        )),
        cluster_arn(c),
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web-frontend:42",
    );
    t.container_instance_arn = Some(instance(c, on).container_instance_arn);
    t.last_status = status;
    t.desired_status = TaskStatus::Running;
    t.version = Some(version);
    t.started_by = Some(format!("ecs-svc/{:019}", n % 50));
    t.group = Some("service:web-frontend".into());
    t.launch_type = Some(LaunchType::Ec2);
    t.cpu = Some("512".into());
    t.memory = Some("1024".into());
    t.availability_zone = Some("us-east-1a".into());
    let ts = Timestamp::from_millis(1_714_557_600_000 + n as i64);
    t.created_at = Some(ts);
    t.started_at = Some(ts);
    t.updated_at = Some(ts);
    t.containers = ["web", "sidecar-envoy"]
        .iter()
        .map(|name| Container {
            container_arn: Some(format!(
                "arn:aws:ecs:us-east-1:123456789012:container/bench-{c:02}/{n:08x}/{name}-1111-2222-3333-444455556666"
            )),
            name: (*name).into(),
            last_status: Some(TaskStatus::Running),
            exit_code: None,
            reason: None,
            image: Some(format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:2024.05.01-abcdef0")),
            network_bindings: vec![NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(8080),
                host_port: Some(32768 + (n % 1000) as i64),
                protocol: Some("tcp".into()),
            }],
            cpu: Some("256".into()),
            memory: Some("512".into()),
        })
        .collect();
    t.overrides = Some(TaskOverride {
        container_overrides: vec![ContainerOverride {
            name: Some("web".into()),
            command: vec![
                "/bin/server".into(),
                "--port=8080".into(),
                "--log-format=json".into(),
            ],
            environment: vec![
                KeyValuePair {
                    name: Some("DEPLOYMENT".into()),
                    value: Some("2024-05-01-blue".into()),
                },
                KeyValuePair {
                    name: Some("FEATURE_FLAGS".into()),
                    value: Some("search,checkout-v2,recommendations".into()),
                },
            ],
            ..ContainerOverride::default()
        }],
        task_role_arn: Some("arn:aws:iam::123456789012:role/web-frontend-task".into()),
        ..TaskOverride::default()
    });
    t
}

/// An ECS task state change event carrying `t`, as EventBridge delivers it
/// now (within any tombstone horizon).
pub fn task_event(t: &Task) -> String {
    task_event_at(t, &Timestamp::now().to_string())
}

/// [`task_event`] with the envelope's `time` (RFC 3339) given.
pub fn task_event_at(t: &Task, time: &str) -> String {
    let id = format!("{}-{}", t.task_arn.id(), t.version.unwrap_or(0));
    envelope("ECS Task State Change", &id, time, &t.task_arn, t)
}

/// An ECS container instance state change event carrying `i`, sent at `time`.
pub fn instance_event_at(i: &ContainerInstance, time: &str) -> String {
    let id = format!(
        "{}-{}",
        i.container_instance_arn.id(),
        i.version.unwrap_or(0)
    );
    envelope(
        "ECS Container Instance State Change",
        &id,
        time,
        &i.container_instance_arn,
        i,
    )
}

fn envelope(
    detail_type: &str,
    id: &str,
    time: &str,
    arn: &Arn,
    detail: &impl serde::Serialize,
) -> String {
    let detail = match serde_json::to_value(detail) {
        Ok(v) => v,
        Err(e) => panic!("entity serializes: {e}"),
    };
    serde_json::json!({
        "version": "0", "id": id,
        "detail-type": detail_type, "source": "aws.ecs", "account": "123456789012",
        "time": time, "region": "us-east-1", "resources": [arn],
        "detail": detail
    })
    .to_string()
}

/// Durations of repeated runs of `f`, one per run.
pub fn sample(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect()
}

/// The `p`-th percentile (0..=100) of some durations.
pub fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let idx = (samples.len().saturating_sub(1) * p.min(100)) / 100;
    samples.get(idx).copied().unwrap_or_default()
}

/// The process's resident memory in bytes (Linux), for memory-per-entity figures.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Prints a figure as `name: value unit` (the format RESULTS.md quotes).
pub fn report(name: &str, value: impl std::fmt::Display, unit: &str) {
    println!("{name}: {value} {unit}");
}
