//! The daemon and the stored layout version, as an operator meets them: a
//! daemon refuses (and exits, naming both versions) a prefix whose layout
//! is newer than it reads, without writing anything; `--migrate-layout`
//! brings a prefix to this release's layout and says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use blox_state::store::StateStore;
use blox_state::store::etcd::layout::LAYOUT_VERSION;
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdServer;

/// Runs `blox-daemon` with `args` to its exit (at most 60 s).
async fn run(args: &[&str]) -> (bool, String, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_blox-daemon"))
        .args(["--bind", "127.0.0.1:0", "--log-level", "warn"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the daemon exits")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refuses_a_newer_layout_and_writes_nothing() {
    let etcd = EtcdServer::start().await.unwrap();
    let doctor = EtcdStore::connect(EtcdOptions {
        check_layout: false,
        ..EtcdOptions::new([etcd.endpoint()]).with_prefix("/blox")
    })
    .await
    .unwrap();
    let newer = LAYOUT_VERSION + 1;
    doctor
        .client()
        .kv_client()
        .put("/blox/layout", format!(r#"{{"version":{newer}}}"#), None)
        .await
        .unwrap();
    let before = doctor.current_revision().await.unwrap();
    let (ok, _, stderr) = run(&["--etcd-endpoint", &etcd.endpoint(), "--simulate", "2"]).await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("stored layout version {newer}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("reads layout version {LAYOUT_VERSION}")),
        "{stderr}"
    );
    assert_eq!(doctor.current_revision().await.unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_layout_brings_a_prefix_to_this_release_and_exits() {
    let etcd = EtcdServer::start().await.unwrap();
    let (ok, stdout, stderr) = run(&[
        "--etcd-endpoint",
        &etcd.endpoint(),
        "--etcd-prefix",
        "/fresh",
        "--migrate-layout",
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("to {LAYOUT_VERSION}")), "{stdout}");
    let store = EtcdStore::connect(EtcdOptions::new([etcd.endpoint()]).with_prefix("/fresh"))
        .await
        .unwrap();
    assert_eq!(
        store.layout_status(),
        blox_state::store::etcd::layout::LayoutStatus::Current
    );
}
