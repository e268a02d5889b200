//! Leadership and the stored layout (issue 13), on a real etcd: the
//! leader key carries the leader's layout version, and a process whose
//! prefix was migrated under it never leads again, even once the key is
//! free.
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use blox_sched::election::{EtcdElection, EtcdElectionOptions, LeaderElection, LeaderValue};
use blox_state::store::StateStore;
use blox_state::store::etcd::layout::{LAYOUT_VERSION, Layout, MigrationStep, migrate};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdServer;
use futures::FutureExt;

const PREFIX: &str = "/layout-election";

/// The next layout (a test build's): one step that changes nothing.
const NEXT_STEPS: &[MigrationStep] = &[MigrationStep {
    from: LAYOUT_VERSION,
    name: "next",
    run: |_| async { Ok(()) }.boxed(),
}];
const NEXT: Layout = Layout {
    version: LAYOUT_VERSION + 1,
    migrations: NEXT_STEPS,
};

async fn connect(server: &EtcdServer, layout: Layout, check: bool) -> EtcdStore {
    EtcdStore::connect(EtcdOptions {
        layout,
        check_layout: check,
        ..EtcdOptions::new([server.endpoint()]).with_prefix(PREFIX)
    })
    .await
    .unwrap()
}

fn options(holder: &str) -> EtcdElectionOptions {
    EtcdElectionOptions {
        holder: holder.to_owned(),
        ttl: Duration::from_secs(2),
        retry: Duration::from_millis(100),
        ..EtcdElectionOptions::default()
    }
}

async fn leads(e: &EtcdElection) {
    let mut rx = e.is_leader();
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|l| *l))
        .await
        .expect("never led")
        .unwrap();
}

async fn leader_value(store: &EtcdStore) -> LeaderValue {
    let entry = store.kv_get("leader/scheduler").await.unwrap().unwrap();
    serde_json::from_slice(&entry.value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_whose_layout_was_migrated_under_it_never_leads_even_when_the_key_is_free() {
    let server = EtcdServer::start().await.unwrap();
    let old_store = connect(&server, blox_state::store::etcd::layout::CURRENT, true).await;
    let old = EtcdElection::start(&old_store, options("old"));
    leads(&old).await;
    assert_eq!(
        leader_value(&old_store).await,
        LeaderValue {
            holder: "old".into(),
            layout: LAYOUT_VERSION
        }
    );
    // A second process of this layout, waiting as a follower.
    let follower_store = connect(&server, blox_state::store::etcd::layout::CURRENT, true).await;
    let follower = EtcdElection::start(&follower_store, options("follower"));

    // The prefix is migrated to the next layout; then the old leader goes.
    let tool = connect(&server, NEXT, false).await;
    migrate(&tool, NEXT.migrations, NEXT.version).await.unwrap();
    old.resign().await;

    // A process of the next layout takes the free key; the follower of
    // the old one never does.
    let next_store = connect(&server, NEXT, true).await;
    let next = EtcdElection::start(&next_store, options("next"));
    leads(&next).await;
    assert_eq!(
        leader_value(&next_store).await,
        LeaderValue {
            holder: "next".into(),
            layout: NEXT.version
        }
    );
    assert!(!*follower.is_leader().borrow());
    // Even with the key free again, after the follower had all the time
    // to campaign (its retry is 100 ms).
    next.resign().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !*follower.is_leader().borrow(),
        "the old-layout follower took over"
    );
    assert!(tool.kv_get("leader/scheduler").await.unwrap().is_none());
}
