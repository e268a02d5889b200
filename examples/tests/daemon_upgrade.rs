//! Old and new daemons side by side on one etcd (issue 13): this release's
//! `blox-daemon` and `blox-daemon-next-layout`, a test build standing for
//! the next release (its stored layout one version newer, reached by one
//! migration step that marks outstanding intents as the new layout's).
//! ECS and its instances are moto's, shared by every process.
//!
//! The leader is killed (SIGKILL) in the middle of a deployment in both
//! directions:
//! * old to new: the old leader dies with starts outstanding, the new
//!   release's migration runs while an old follower still runs (the
//!   operator forgot it): the old follower stops on its own, never leads,
//!   and the new daemon finishes the deployment;
//! * new to old: the new leader dies with a deployment under way; an old
//!   daemon refuses the newer layout (naming both versions) instead of
//!   taking over, and a new one finishes it.
//!
//! Throughout, no instance ever runs two live tasks of one deployment, and
//! what was stored before (environments, deployments) reads the same
//! after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blox_core::testing::moto::Moto;
use blox_state::StateStore;
use blox_state::store::LAYOUT_VERSION;
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdServer;
use serde_json::{Value, json};
use support::{Proc, client, daemon_from, exited_within, free_port, local, wait_for};

const OLD: &str = env!("CARGO_BIN_EXE_blox-daemon");
const NEW: &str = env!("CARGO_BIN_EXE_blox-daemon-next-layout");
const CLUSTER: &str = "prod";
const INSTANCES: usize = 8;

struct World {
    etcd: EtcdServer,
    moto: Moto,
    ecs: aws_sdk_ecs::Client,
    logs: tempfile::TempDir,
}

/// A daemon process, its address and its log.
struct Daemon {
    proc: Proc,
    addr: SocketAddr,
    log: PathBuf,
}

impl World {
    async fn new() -> World {
        let etcd = EtcdServer::start().await.unwrap();
        let moto = Moto::start().await;
        moto.freeze_task_status().await;
        moto.ecs_cluster_with_instances(CLUSTER, INSTANCES).await;
        let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config());
        World {
            etcd,
            moto,
            ecs,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    /// `bin` with the flags every process here shares, its log in `name.log`.
    fn command(&self, bin: &str, name: &str, args: &[&str]) -> (Command, PathBuf) {
        let log = self.logs.path().join(format!("{name}.log"));
        let mut cmd = Command::new(bin);
        cmd.env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE")
            .args([
                "--etcd-endpoint",
                &self.etcd.endpoint(),
                "--log-level",
                "info",
            ])
            .args(args)
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        (cmd, log)
    }

    /// A daemon of `bin`, once it answers.
    async fn daemon(&self, bin: &str, name: &str) -> Daemon {
        let (cmd, log) = self.command(
            bin,
            name,
            &[
                "--cluster",
                CLUSTER,
                "--reconcile-interval",
                "1",
                "--lease-ttl",
                "3",
                "--max-actions-per-cycle",
                "2",
            ],
        );
        let addr = local(free_port());
        Daemon {
            proc: daemon_from(cmd, addr).await,
            addr,
            log,
        }
    }

    /// Runs `bin` to its end (a migration, or a daemon that refuses to
    /// start); its success and log.
    fn run_to_end(&self, bin: &str, name: &str, args: &[&str]) -> (bool, String) {
        let (mut cmd, log) = self.command(bin, name, args);
        let mut proc = Proc(
            cmd.args(["--bind", &local(free_port()).to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let status = exited_within(&mut proc, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{name} did not exit: {}", read(&log)));
        (status.success(), read(&log))
    }

    /// Every live (not STOPPED) task in moto: `startedBy -> instance -> count`.
    async fn live_tasks(&self) -> BTreeMap<String, HashMap<String, usize>> {
        let arns = self
            .ecs
            .list_tasks()
            .cluster(CLUSTER)
            .send()
            .await
            .unwrap()
            .task_arns()
            .to_vec();
        let mut out: BTreeMap<String, HashMap<String, usize>> = BTreeMap::new();
        for chunk in arns.chunks(100) {
            let described = self
                .ecs
                .describe_tasks()
                .cluster(CLUSTER)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap();
            for t in described.tasks() {
                if t.last_status() == Some("STOPPED") {
                    continue;
                }
                *out.entry(t.started_by().unwrap_or_default().to_owned())
                    .or_default()
                    .entry(t.container_instance_arn().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
        }
        out
    }

    /// The live tasks, after checking no instance runs two of one
    /// deployment.
    async fn checked_tasks(&self) -> BTreeMap<String, HashMap<String, usize>> {
        let tasks = self.live_tasks().await;
        for (started_by, per_instance) in &tasks {
            for (instance, n) in per_instance {
                assert!(
                    *n <= 1,
                    "{n} live tasks of deployment {started_by} on {instance}"
                );
            }
        }
        tasks
    }

    /// Waits until deployment `id` has a task on every instance (checking
    /// one task per instance all along).
    async fn wait_complete(&self, id: &str, logs: &[&Daemon]) {
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            let placed = self.checked_tasks().await.get(id).map_or(0, HashMap::len);
            if placed == INSTANCES {
                return;
            }
            assert!(
                Instant::now() < end,
                "deployment {id} placed {placed} of {INSTANCES} tasks; logs:\n{}",
                logs.iter()
                    .map(|d| read(&d.log))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until deployment `id` has started at least one task, then
    /// kills `leader` at once (SIGKILL); how many it had placed.
    async fn kill_mid_deployment(&self, id: &str, leader: &mut Daemon) -> usize {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let placed = self.checked_tasks().await.get(id).map_or(0, HashMap::len);
            if placed > 0 {
                leader.proc.0.kill().unwrap();
                leader.proc.0.wait().unwrap();
                return placed;
            }
            assert!(
                Instant::now() < end,
                "no task of {id}: {}",
                read(&leader.log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader key's value, read straight from etcd.
    async fn leader_value(&self) -> Option<Value> {
        let store = EtcdStore::connect(EtcdOptions {
            check_layout: false,
            ..EtcdOptions::new([self.etcd.endpoint()])
        })
        .await
        .unwrap();
        let entry = store.kv_get("leader/scheduler").await.unwrap()?;
        Some(serde_json::from_slice(&entry.value).unwrap())
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn leads(d: &Daemon) -> bool {
    let body = client::get(d.addr, "/metrics").await;
    String::from_utf8_lossy(&body.body)
        .lines()
        .any(|l| l.trim() == "blox_leader 1")
}

/// Creates environment `name` on the cluster and deploys it through `d`;
/// returns the deployment's id (its tasks' `startedBy`).
async fn create_and_deploy(d: &Daemon, name: &str) -> String {
    let dep = support::create_and_deploy_on(d.addr, CLUSTER, name, "web:1").await;
    dep["id"].as_str().unwrap().to_owned()
}

/// The environments and their deployments as `d` reads them.
async fn environments(d: &Daemon) -> Vec<Value> {
    let list = client::get(d.addr, "/v1/environments").await;
    assert_eq!(list.status, 200);
    let mut out = Vec::new();
    for env in support::items(&list.json()) {
        let name = env["name"].as_str().unwrap().to_owned();
        let deps = client::get(d.addr, &format!("/v1/environments/{name}/deployments")).await;
        assert_eq!(deps.status, 200);
        let ids: Vec<Value> = support::items(&deps.json())
            .iter()
            .map(|d| d["id"].clone())
            .collect();
        out.push(
            json!({"name": name, "taskDefinition": env["taskDefinition"], "deployments": ids}),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_deployment_hands_over_across_a_layout_bump_in_both_directions() {
    let world = World::new().await;
    let next = LAYOUT_VERSION + 1;

    // Old to new. Two daemons of this release; the first leads.
    let mut a = world.daemon(OLD, "a").await;
    wait_for("a to lead", Duration::from_secs(60), async || {
        leads(&a).await
    })
    .await;
    let mut b = world.daemon(OLD, "b").await;
    let web = create_and_deploy(&a, "web").await;
    let placed = world.kill_mid_deployment(&web, &mut a).await;
    assert!(
        placed < INSTANCES,
        "the deployment was over before the kill"
    );
    let leader = world.leader_value().await.expect("a's key outlives it");
    assert_eq!(leader["layout"], json!(LAYOUT_VERSION), "{leader}");

    // The next release's migration, with b still running.
    let (ok, log) = world.run_to_end(NEW, "migrate", &["--migrate-layout"]);
    assert!(ok, "the migration failed: {log}");
    let status = exited_within(&mut b.proc, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("b kept running on a migrated prefix: {}", read(&b.log)));
    assert!(!status.success(), "b must fail its exit");
    let b_log = read(&b.log);
    assert!(b_log.contains("stored layout changed"), "{b_log}");

    let c = world.daemon(NEW, "c").await;
    world.wait_complete(&web, &[&a, &c]).await;
    wait_for("c to lead", Duration::from_secs(60), async || {
        leads(&c).await
    })
    .await;
    let leader = world.leader_value().await.expect("c leads");
    assert_eq!(leader["layout"], json!(next), "{leader}");
    let before = environments(&c).await;

    // New to old. An old daemon refuses the newer layout, naming both.
    let (ok, log) = world.run_to_end(OLD, "d", &["--cluster", CLUSTER]);
    assert!(!ok, "an old daemon started on a newer layout: {log}");
    assert!(
        log.contains(&format!("stored layout version {next}"))
            && log.contains(&format!("reads layout version {LAYOUT_VERSION}")),
        "{log}"
    );
    let mut c = c;
    let logs = create_and_deploy(&c, "logs").await;
    let placed = world.kill_mid_deployment(&logs, &mut c).await;
    assert!(
        placed < INSTANCES,
        "the deployment was over before the kill"
    );
    // With the new leader dead and starts outstanding, an old daemon still
    // refuses rather than taking over.
    let (ok, log) = world.run_to_end(OLD, "e", &["--cluster", CLUSTER]);
    assert!(!ok, "an old daemon took over from a new one: {log}");
    let f = world.daemon(NEW, "f").await;
    world.wait_complete(&logs, &[&c, &f]).await;
    world.wait_complete(&web, &[&f]).await;

    // What was stored reads the same (the second environment added).
    let after = environments(&f).await;
    for env in &before {
        assert!(after.contains(env), "{env} is not in {after:?}");
    }
    assert_eq!(after.len(), 2, "{after:?}");
    let tasks = world.checked_tasks().await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
}
