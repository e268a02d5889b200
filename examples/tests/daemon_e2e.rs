//! The daemon as a process: `blox-daemon --simulate N`, an environment
//! created and deployed over HTTP, and every simulated instance ending with
//! exactly one daemon task; draining through the simulator; auth; metrics;
//! graceful shutdown; clear errors for bad flags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{
    Proc, change_instance, client, daemon, free_port, items, local, set_instance_state, wait_for,
};

/// A daemon on a free port.
struct Daemon {
    proc: Proc,
    addr: SocketAddr,
}

async fn start(args: &[&str]) -> Daemon {
    let addr = local(free_port());
    Daemon {
        proc: daemon(addr, args).await,
        addr,
    }
}

/// SIGTERM, then the exit status within a generous deadline.
fn terminate(d: &mut Daemon) -> std::process::ExitStatus {
    support::terminate(&mut d.proc, Duration::from_secs(30))
        .expect("the daemon did not stop after SIGTERM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_environment_puts_exactly_one_task_on_every_simulated_instance() {
    let mut d = start(&["--simulate", "6", "--simulate-seed", "42"]).await;
    let addr = d.addr;
    wait_for("readiness", Duration::from_secs(60), async || {
        client::get(addr, "/v1/ready").await.status == 200
    })
    .await;
    let instances = items(&client::get(addr, "/v1/instances?cluster=sim").await.json());
    assert_eq!(instances.len(), 6);

    // v0.3's flow: create (no deployment yet), read the token, deploy with it.
    let created = client::request(
        addr,
        "POST",
        "/v1/environments",
        Some(&json!({"name": "logs", "instanceGroup": {"cluster": "sim"}, "taskDefinition": "log-agent:1"}).to_string()),
    )
    .await;
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let env = client::get(addr, "/v1/environments/logs").await.json();
    let token = env["deploymentToken"].as_str().unwrap().to_owned();
    let tasks_before = items(&client::get(addr, "/v1/tasks?cluster=sim").await.json());
    assert!(
        tasks_before.is_empty(),
        "creating an environment does not deploy"
    );
    let dep = client::request(
        addr,
        "POST",
        &format!("/v1/environments/logs/deployments?deploymentToken={token}"),
        None,
    )
    .await;
    assert_eq!(dep.status, 200, "{}", String::from_utf8_lossy(&dep.body));
    let dep_id = dep.json()["id"].as_str().unwrap().to_owned();

    // Every instance gets exactly one RUNNING daemon task.
    let path = format!("/v1/tasks?cluster=sim&status=RUNNING&startedBy={dep_id}");
    wait_for(
        "a daemon task on every instance",
        Duration::from_secs(90),
        async || items(&client::get(addr, &path).await.json()).len() == 6,
    )
    .await;
    let running = items(&client::get(addr, &path).await.json());
    let hosts: HashSet<String> = running
        .iter()
        .map(|t| {
            t["entity"]["containerInstanceARN"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(hosts.len(), 6, "one per instance, never two on one");
    wait_for(
        "the deployment to complete",
        Duration::from_secs(60),
        async || {
            client::get(addr, &format!("/v1/environments/logs/deployments/{dep_id}"))
                .await
                .json()["status"]
                == "completed"
        },
    )
    .await;

    // Draining through the simulator shows in the view.
    let victim = instances[0]["entity"]["containerInstanceARN"]
        .as_str()
        .unwrap()
        .to_owned();
    let drained = set_instance_state(addr, &victim, "DRAINING").await;
    assert_eq!(
        drained.status,
        200,
        "{}",
        String::from_utf8_lossy(&drained.body)
    );
    wait_for(
        "the instance to show DRAINING",
        Duration::from_secs(30),
        async || {
            items(
                &client::get(addr, "/v1/instances?status=DRAINING")
                    .await
                    .json(),
            )
            .len()
                == 1
        },
    )
    .await;

    let metrics = String::from_utf8(client::get(addr, "/metrics").await.body).unwrap();
    assert!(
        metrics.contains("blox_scheduler_total{what=\"started\"} 6"),
        "{metrics}"
    );
    assert!(metrics.contains("blox_leader 1"));
    assert!(
        metrics.contains("\nblox_cache_hot_item_bytes "),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "blox_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/tasks\""
        )
    );

    let status = terminate(&mut d);
    assert!(status.success(), "graceful shutdown exits 0: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_token_guards_everything_but_ping() {
    let d = start(&["--simulate", "2", "--api-token", "s3cret"]).await;
    let addr = d.addr;
    assert_eq!(client::get(addr, "/v1/ping").await.status, 200);
    for path in [
        "/v1/instances",
        "/v1/tasks",
        "/v1/environments",
        "/metrics",
        "/v1/ready",
    ] {
        let r = client::get(addr, path).await;
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.error_message(401).is_empty());
        let wrong =
            client::request_with(addr, "GET", path, &[("Authorization", "Bearer nope")], None)
                .await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
    }
    let ok = client::request_with(
        addr,
        "GET",
        "/v1/instances",
        &[("Authorization", "Bearer s3cret")],
        None,
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn unknown_paths_and_bad_simulator_requests_get_json_errors() {
    let d = start(&["--simulate", "1"]).await;
    let r = client::get(d.addr, "/v1/nothing-here").await;
    assert!(!r.error_message(404).is_empty());
    let r = client::request(
        d.addr,
        "PUT",
        "/v1/simulator/instances/not-an-arn/state",
        Some(r#"{"status":"DRAINING"}"#),
    )
    .await;
    assert!(!r.error_message(400).is_empty());
    let r = client::request(
        d.addr,
        "PUT",
        "/v1/simulator/instances/arn:aws:ecs:us-east-1:000000000000:container-instance/sim/none/state",
        Some(r#"{"status":"SLEEPING"}"#),
    )
    .await;
    assert!(!r.error_message(400).is_empty());
    let arn = items(&client::get(d.addr, "/v1/instances").await.json())[0]["entity"]
        ["containerInstanceARN"]
        .as_str()
        .unwrap()
        .to_owned();
    for (body, needle) in [
        (json!({}), "agentConnected"),
        (json!({"agentConnected": "no"}), "invalid body"),
        (
            json!({"status": "ACTIVE", "colour": "red"}),
            "unknown field",
        ),
    ] {
        let m = change_instance(d.addr, &arn, &body)
            .await
            .error_message(400);
        assert!(m.contains(needle), "{body}: {m}");
    }
    // Disconnecting and reconnecting the agent is reflected in the view.
    let r = change_instance(d.addr, &arn, &json!({"agentConnected": false})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["agentConnected"], false);
    wait_for("the view to show the agent disconnected", Duration::from_secs(60), async || {
        client::get(d.addr, "/v1/instances").await.json()["items"][0]["entity"]["agentConnected"]
            == false
    })
    .await;
    let r = change_instance(d.addr, &arn, &json!({"agentConnected": true})).await;
    assert_eq!(r.json()["agentConnected"], true);

    for (body, needle) in [
        (json!({"family": "x", "cpu": 0, "memory": 10}), "positive"),
        (json!({"family": "x", "cpu": 10}), "memory"),
        (
            json!({"family": "no spaces", "cpu": 1, "memory": 1}),
            "invalid name",
        ),
    ] {
        let r = client::request(
            d.addr,
            "POST",
            "/v1/simulator/task-definitions",
            Some(&body.to_string()),
        )
        .await;
        let m = r.error_message(400);
        assert!(m.contains(needle), "{body}: {m}");
    }
}

#[test]
fn bad_flags_exit_with_a_clear_error() {
    for (args, needle) in [
        (&["--etcd-endpoint", "nope"][..], "host:port"),
        (
            &["--simulate", "2", "--queue", "q"][..],
            "cannot be used with",
        ),
        (
            &[
                "--bind",
                "127.0.0.1:1",
                "--simulate",
                "1",
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.key",
            ][..],
            "TLS",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_blox-daemon"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn tls_flags_serve_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is on the machine");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_blox-daemon"))
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--simulate",
            "1",
            "--log-level",
            "warn",
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/v1/ping");
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let end = Instant::now() + Duration::from_secs(60);
    let mut code = String::new();
    while Instant::now() < end {
        let out = curl(&["--cacert", cert.to_str().unwrap(), &url]);
        code = String::from_utf8_lossy(&out.stdout).into_owned();
        if code == "200" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let plain = curl(&[&format!("http://127.0.0.1:{port}/v1/ping")]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, "200", "HTTPS with the daemon's certificate answers");
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "plain HTTP is not served"
    );
}
