//! Blox v0.3 compatibility at the edges, against the daemon as a process
//! (`blox-daemon --simulate`): what a client generated from the v0.3 specs
//! sees for every operation.
//!
//! - `every_v03_operation_answers_as_v03_did`: a table of requests, each
//!   with the status, the `Content-Type` and the start of the body v0.3
//!   sent; success bodies validate against the spec and spell each field
//!   once.
//! - `streams_are_chunked_octet_streams_of_v03_entities`: stream lines
//!   decode as the v0.3 model.
//! - `a_client_built_from_the_v03_specs_runs_the_v03_flows`: Python's
//!   `bravado` (pinned in `.venv/` by `scripts/install-deps.sh test`) builds
//!   clients from `spec/blox-v0.3/` and drives the v0.3 flows through them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::client::{self, Stream};
use support::spec::Spec;
use support::{Proc, daemon, free_port, items, local, set_instance_state, wait_for};

const SIM: &str = "arn:aws:ecs:us-east-1:000000000000";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// A simulated daemon of `n` instances, once its view is ready.
async fn start(n: &str) -> (Proc, SocketAddr) {
    let addr = local(free_port());
    let proc = daemon(addr, &["--simulate", n, "--simulate-seed", "16"]).await;
    wait_for("readiness", Duration::from_secs(60), async || {
        support::answers(addr, "/v1/ready").await
    })
    .await;
    (proc, addr)
}

/// `s` with `:` and `/` percent-encoded, as generated clients send path
/// parameters.
fn encoded(s: &str) -> String {
    s.replace(':', "%3A").replace('/', "%2F")
}

/// Which v0.3 spec and operation a row exercises.
#[derive(Clone, Copy)]
enum Op {
    State(&'static str, &'static str),
    Sched(&'static str, &'static str),
}

/// One request and what v0.3 answered.
struct Row {
    op: Op,
    method: &'static str,
    path: String,
    body: Option<String>,
    status: u16,
    /// The start of the body (errors) or `None` (success: checked against
    /// the spec's schema instead).
    text: Option<&'static str>,
}

fn err(op: Op, method: &'static str, path: String, status: u16, text: &'static str) -> Row {
    Row {
        op,
        method,
        path,
        body: None,
        status,
        text: Some(text),
    }
}

fn ok(op: Op, method: &'static str, path: String) -> Row {
    Row {
        op,
        method,
        path,
        body: None,
        status: 200,
        text: None,
    }
}

fn with_body(mut row: Row, body: Value) -> Row {
    row.body = Some(body.to_string());
    row
}

/// Every key of every object in `v` differs from its siblings even ignoring
/// case (Go's `encoding/json` matches names case-insensitively; v0.3 spelled
/// each field once).
fn assert_single_spellings(v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            let mut seen: Vec<String> = Vec::new();
            for (k, sub) in m {
                let lower = k.to_ascii_lowercase();
                assert!(!seen.contains(&lower), "{at}: {k} is spelled twice");
                seen.push(lower);
                assert_single_spellings(sub, &format!("{at}.{k}"));
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| assert_single_spellings(x, &format!("{at}[{i}]"))),
        _ => {}
    }
}

async fn check(addr: SocketAddr, state: &Spec, sched: &Spec, row: &Row) {
    let r = client::request(addr, row.method, &row.path, row.body.as_deref()).await;
    let what = format!("{} {}", row.method, row.path);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, row.status, "{what}: {body}");
    let (spec, path) = match row.op {
        Op::State(_, p) => (state, p),
        Op::Sched(_, p) => (sched, p),
    };
    let method = match row.op {
        Op::State(m, _) | Op::Sched(m, _) => m,
    };
    // v0.3's streams declared no client errors, but v0.3 sent them (400).
    if !path.starts_with("/stream/") {
        assert!(
            spec.declares(method, path, row.status),
            "{what}: the spec declares no {} for {method} {path}",
            row.status
        );
    }
    match row.text {
        Some(text) => {
            assert_eq!(r.header("content-type"), Some(TEXT), "{what}");
            assert!(
                body.starts_with(text),
                "{what}: {body:?} should start with {text:?}"
            );
            assert!(body.ends_with('\n'), "{what}: {body:?}");
        }
        None if method == "delete" => assert!(r.body.is_empty(), "{what}: {body:?}"),
        None => {
            assert_eq!(r.header("content-type"), Some(JSON), "{what}");
            let v = r.json();
            spec.assert_valid(spec.operation_schema(method, path, row.status), &v);
            assert_single_spellings(&v, &what);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v03_operation_answers_as_v03_did() {
    let (_proc, addr) = start("3").await;
    let (state, sched) = (Spec::cluster_state_service(), Spec::daemon_scheduler());
    let instances = client::get(addr, "/v1/instances?cluster=sim").await.json();
    let instance = items(&instances)[0]["entity"]["containerInstanceARN"]
        .as_str()
        .unwrap()
        .to_owned();
    // A deployed environment, so that there are tasks to get.
    let deployed = support::create_and_deploy(addr, "table", "agent:1").await;
    let deployment = deployed["id"].as_str().unwrap().to_owned();
    let mut task = String::new();
    wait_for("a daemon task", Duration::from_secs(30), async || {
        let tasks = client::get(addr, "/v1/tasks?cluster=sim").await.json();
        match items(&tasks).first() {
            Some(t) => {
                t["entity"]["taskARN"]
                    .as_str()
                    .unwrap()
                    .clone_into(&mut task);
                true
            }
            None => false,
        }
    })
    .await;

    let get_task = Op::State("get", "/tasks/{cluster}/{arn}");
    let get_instance = Op::State("get", "/instances/{cluster}/{arn}");
    let list_tasks = Op::State("get", "/tasks");
    let list_instances = Op::State("get", "/instances");
    let stream_tasks = Op::State("get", "/stream/tasks");
    let stream_instances = Op::State("get", "/stream/instances");
    let create = Op::Sched("post", "/environments");
    let list_envs = Op::Sched("get", "/environments");
    let get_env = Op::Sched("get", "/environments/{name}");
    let delete_env = Op::Sched("delete", "/environments/{name}");
    let create_dep = Op::Sched("post", "/environments/{name}/deployments");
    let list_deps = Op::Sched("get", "/environments/{name}/deployments");
    let get_dep = Op::Sched("get", "/environments/{name}/deployments/{id}");
    let missing_task = format!("{SIM}:task/sim/00000000000000000000000000000000");
    let missing_instance = format!("{SIM}:container-instance/sim/0000000000000000");
    let new_env = |name: &str, cluster: &str| json!({"name": name, "instanceGroup": {"cluster": cluster}, "taskDefinition": "agent:1"});
    let rows = vec![
        // Cluster state: successes.
        ok(list_tasks, "GET", "/v1/tasks".into()),
        ok(
            list_tasks,
            "GET",
            "/v1/tasks?cluster=sim&status=running".into(),
        ),
        ok(list_instances, "GET", "/v1/instances".into()),
        ok(get_task, "GET", format!("/v1/tasks/sim/{task}")),
        ok(get_task, "GET", format!("/v1/tasks/sim/{}", encoded(&task))),
        ok(get_instance, "GET", format!("/v1/instances/sim/{instance}")),
        ok(
            get_instance,
            "GET",
            format!("/v1/instances/{SIM}:cluster%2Fsim/{}", encoded(&instance)),
        ),
        // Cluster state: v0.3's errors.
        err(
            get_task,
            "GET",
            format!("/v1/tasks/sim/{missing_task}"),
            404,
            "Task not found",
        ),
        err(
            get_task,
            "GET",
            format!("/v1/tasks/{task}"),
            404,
            "Task not found",
        ),
        err(
            get_task,
            "GET",
            format!("/v1/tasks//{task}"),
            404,
            "Task not found",
        ),
        err(
            get_task,
            "GET",
            format!("/v1/tasks/other/{task}"),
            404,
            "Task not found",
        ),
        err(
            get_task,
            "GET",
            format!("/v1/tasks/sim/{instance}"),
            404,
            "Task not found",
        ),
        err(
            get_instance,
            "GET",
            format!("/v1/instances/sim/{missing_instance}"),
            404,
            "Instance not found",
        ),
        err(
            get_instance,
            "GET",
            format!("/v1/instances/{instance}"),
            404,
            "Instance not found",
        ),
        err(
            list_tasks,
            "GET",
            "/v1/tasks?status=sleeping".into(),
            400,
            "Invalid status",
        ),
        err(
            list_instances,
            "GET",
            "/v1/instances?status=RUNNING".into(),
            400,
            "Invalid status",
        ),
        err(
            list_tasks,
            "GET",
            "/v1/tasks?cluster=a%20b".into(),
            400,
            "Invalid cluster ARN or name",
        ),
        err(
            list_instances,
            "GET",
            "/v1/instances?cluster=a%20b".into(),
            400,
            "Invalid cluster ARN or name",
        ),
        err(
            list_tasks,
            "GET",
            "/v1/tasks?status=RUNNING&status=RUNNING".into(),
            400,
            "At least one of the filters provided is specified multiple times",
        ),
        err(
            list_instances,
            "GET",
            "/v1/instances?cluster=sim&cluster=sim".into(),
            400,
            "At least one of the filters provided is specified multiple times",
        ),
        err(
            list_tasks,
            "GET",
            "/v1/tasks?colour=red".into(),
            400,
            "At least one of the filters provided is unsupported",
        ),
        err(
            list_instances,
            "GET",
            "/v1/instances?startedBy=me".into(),
            400,
            "At least one of the filters provided is unsupported",
        ),
        err(
            stream_tasks,
            "GET",
            "/v1/stream/tasks?entityVersion=yesterday".into(),
            400,
            "Invalid entity version",
        ),
        err(
            stream_instances,
            "GET",
            "/v1/stream/instances?entityVersion=x".into(),
            400,
            "Invalid entity version",
        ),
        // A revision of another store epoch: v0.3's text, blox's 410 (relist).
        err(
            stream_tasks,
            "GET",
            "/v1/stream/tasks?entityVersion=1:1".into(),
            410,
            "Entity version is out of range",
        ),
        // Daemon scheduler: successes.
        ok(list_envs, "GET", "/v1/environments".into()),
        ok(list_envs, "GET", "/v1/environments?cluster=sim".into()),
        ok(
            list_envs,
            "GET",
            format!("/v1/environments?cluster={SIM}:cluster/sim"),
        ),
        ok(get_env, "GET", "/v1/environments/table".into()),
        ok(
            list_deps,
            "GET",
            "/v1/environments/table/deployments".into(),
        ),
        ok(
            list_deps,
            "GET",
            "/v1/environments/table/deployments?deploymentToken=any".into(),
        ),
        ok(
            get_dep,
            "GET",
            format!("/v1/environments/table/deployments/{deployment}"),
        ),
        with_body(
            ok(create, "POST", "/v1/environments".into()),
            new_env("second", "sim"),
        ),
        ok(delete_env, "DELETE", "/v1/environments/second".into()),
        ok(delete_env, "DELETE", "/v1/environments/second".into()),
        ok(delete_env, "DELETE", "/v1/environments/never-was".into()),
        // Daemon scheduler: v0.3's errors.
        with_body(
            err(
                create,
                "POST",
                "/v1/environments".into(),
                400,
                "invalid request body",
            ),
            json!([1]),
        ),
        with_body(
            err(
                create,
                "POST",
                "/v1/environments".into(),
                400,
                "invalid environment name",
            ),
            new_env("", "sim"),
        ),
        with_body(
            err(
                create,
                "POST",
                "/v1/environments".into(),
                400,
                "Environment table already exists",
            ),
            new_env("table", "sim"),
        ),
        with_body(
            err(
                create,
                "POST",
                "/v1/environments".into(),
                404,
                "Cluster nope is missing",
            ),
            new_env("x", "nope"),
        ),
        err(
            get_env,
            "GET",
            "/v1/environments/nope".into(),
            404,
            "Environment nope does not exist",
        ),
        err(
            get_dep,
            "GET",
            "/v1/environments/table/deployments/nope".into(),
            404,
            "Deployment nope does not exist for environment table",
        ),
        err(
            get_dep,
            "GET",
            "/v1/environments/nope/deployments/nope".into(),
            404,
            "Environment nope does not exist",
        ),
        err(
            list_deps,
            "GET",
            "/v1/environments/nope/deployments".into(),
            404,
            "Environment nope does not exist",
        ),
        err(
            create_dep,
            "POST",
            "/v1/environments/nope/deployments?deploymentToken=t".into(),
            404,
            "Environment nope does not exist",
        ),
        err(
            create_dep,
            "POST",
            "/v1/environments/table/deployments?deploymentToken=stale".into(),
            400,
            "",
        ),
        err(
            list_envs,
            "GET",
            "/v1/environments?cluster=a%20b".into(),
            400,
            "Invalid cluster ARN or name",
        ),
        err(
            list_envs,
            "GET",
            "/v1/environments?colour=red".into(),
            400,
            "At least one of the filters provided is not supported",
        ),
        err(
            list_envs,
            "GET",
            "/v1/environments?cluster=sim&cluster=sim".into(),
            400,
            "At least one of the filters provided is specified multiple times",
        ),
    ];
    for row in &rows {
        check(addr, &state, &sched, row).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_chunked_octet_streams_of_v03_entities() {
    let (_proc, addr) = start("2").await;
    let spec = Spec::cluster_state_service();
    let mut tasks = Stream::open(addr, "/v1/stream/tasks").await;
    let mut instances = Stream::open(addr, "/v1/stream/instances?entityVersion=").await;
    for s in [&tasks, &instances] {
        assert_eq!(s.status, 200);
        assert_eq!(s.header("content-type"), Some("application/octet-stream"));
        assert_eq!(s.header("transfer-encoding"), Some("chunked"));
    }
    support::create_and_deploy(addr, "streamed", "agent:1").await;
    for _ in 0..2 {
        let line = tasks.next_line().await.expect("a task line");
        spec.assert_valid(spec.definition("Task"), &line);
        assert_single_spellings(&line, "task line");
    }
    let listed = client::get(addr, "/v1/instances").await.json();
    let arn = items(&listed)[0]["entity"]["containerInstanceARN"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(set_instance_state(addr, &arn, "DRAINING").await.status, 200);
    loop {
        let line = instances.next_line().await.expect("an instance line");
        spec.assert_valid(spec.definition("ContainerInstance"), &line);
        assert_single_spellings(&line, "instance line");
        if line["entity"]["containerInstanceARN"] == arn.as_str()
            && line["entity"]["status"] == "DRAINING"
        {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_built_from_the_v03_specs_runs_the_v03_flows() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let python = format!("{root}/.venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} is missing: run `bash scripts/install-deps.sh test` (it pins bravado)"
    );
    let (_proc, addr) = start("3").await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(format!("{root}/examples/tests/v03_client/bravado_flows.py"))
            .arg(addr.to_string())
            .arg(format!("{root}/spec/blox-v0.3"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bravado flows failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}
