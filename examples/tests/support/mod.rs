//! What the daemon's process-level tests share: the HTTP client, the v0.3
//! spec checker, free ports, polling with a deadline, and starting
//! `blox-daemon`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../blox-state/tests/http_support/client.rs"]
pub mod client;
#[path = "../../../blox-state/tests/http_support/spec.rs"]
pub mod spec;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Polls `f` until it holds, failing the test after `deadline`.
pub async fn wait_for(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether `GET path` on `addr` answers 200.
pub async fn answers(addr: SocketAddr, path: &str) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
        && client::get(addr, path).await.status == 200
}

/// `blox-daemon` on `addr` with extra flags, once it answers `/v1/ping`.
pub async fn daemon(addr: SocketAddr, args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_blox-daemon"));
    cmd.args(["--log-level", "warn"])
        .args(args)
        .stderr(Stdio::inherit());
    daemon_from(cmd, addr).await
}

/// A daemon built as `cmd` (its binary, flags, environment and stderr
/// set by the caller) on `addr`, once it answers `/v1/ping`.
pub async fn daemon_from(mut cmd: Command, addr: SocketAddr) -> Proc {
    let child = cmd
        .args(["--bind", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for(
        "the daemon to answer /v1/ping",
        Duration::from_secs(60),
        async || answers(addr, "/v1/ping").await,
    )
    .await;
    p
}

/// Sends SIGTERM to `proc`, then waits up to `deadline` for it to exit and
/// returns its status (`None`: still running at the deadline).
pub fn terminate(proc: &mut Proc, deadline: Duration) -> Option<std::process::ExitStatus> {
    let pid = proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    exited_within(proc, deadline)
}

/// Waits up to `deadline` for `proc` to exit; its status, or `None`.
pub fn exited_within(proc: &mut Proc, deadline: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = proc.0.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `items` of a list response.
pub fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Sets a simulated instance's status (`DRAINING`, `ACTIVE`) through the
/// simulator endpoint.
pub async fn set_instance_state(addr: SocketAddr, arn: &str, status: &str) -> client::Response {
    change_instance(addr, arn, &serde_json::json!({ "status": status })).await
}

/// Puts `body` (`status`, `agentConnected`) to a simulated instance's
/// state endpoint.
pub async fn change_instance(
    addr: SocketAddr,
    arn: &str,
    body: &serde_json::Value,
) -> client::Response {
    client::request(
        addr,
        "PUT",
        &format!("/v1/simulator/instances/{arn}/state"),
        Some(&body.to_string()),
    )
    .await
}

/// Creates environment `name` on the simulated cluster with
/// `task_definition` and deploys it; returns the deployment.
pub async fn create_and_deploy(
    addr: SocketAddr,
    name: &str,
    task_definition: &str,
) -> serde_json::Value {
    create_and_deploy_on(addr, "sim", name, task_definition).await
}

/// Creates environment `name` on `cluster` with `task_definition` and
/// deploys it; returns the deployment.
pub async fn create_and_deploy_on(
    addr: SocketAddr,
    cluster: &str,
    name: &str,
    task_definition: &str,
) -> serde_json::Value {
    let body = serde_json::json!({
        "name": name,
        "instanceGroup": {"cluster": cluster},
        "taskDefinition": task_definition,
    });
    let created = client::request(addr, "POST", "/v1/environments", Some(&body.to_string())).await;
    assert_eq!(
        created.status,
        200,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let token = created.json()["deploymentToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dep = client::request(
        addr,
        "POST",
        &format!("/v1/environments/{name}/deployments?deploymentToken={token}"),
        None,
    )
    .await;
    assert_eq!(dep.status, 200, "{}", String::from_utf8_lossy(&dep.body));
    dep.json()
}
