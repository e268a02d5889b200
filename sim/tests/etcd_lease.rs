//! The simulation's etcd election plumbing, on a real etcd: the replicas
//! run blox's own `EtcdElection`, the driver revokes the leader's lease,
//! and learns from its watch of the leader key when a replica lost the
//! lease (the instant the fencing invariant measures from).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use blox_core::testing::FakeEcs;
use blox_sched::election::LeaderElection;
use blox_sim::election::{LeaseWatch, etcd_election, revoke_leader_lease};
use blox_sim::world::World;
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdCluster;

/// Waits (polling) until `f` holds; panics after a generous while.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_lease_deposes_the_leader_and_the_driver_sees_the_loss_at_etcd() {
    let cluster = EtcdCluster::start(1).await.unwrap();
    let store = EtcdStore::connect(EtcdOptions::new(cluster.endpoints()).with_prefix("/lease"))
        .await
        .unwrap();
    let world = Arc::new(World::new(
        FakeEcs::new(),
        Duration::from_secs(180),
        Duration::from_secs(11),
    ));
    let watch = LeaseWatch::start(&store, world.clone());
    let leader = etcd_election(&store, 0);
    let mut leading = leader.is_leader();
    leading.wait_for(|l| *l).await.unwrap();
    let follower = etcd_election(&store, 1);
    assert!(world.lease_lost_since(0).is_none());

    // The driver revokes the lease at etcd: the holder is deposed, and the
    // driver's watch of the leader key marks the loss.
    assert_eq!(revoke_leader_lease(&store).await.unwrap(), Some(0));
    leading.wait_for(|l| !*l).await.unwrap();
    eventually("the loss is seen at etcd", || {
        world.lease_lost_since(0).is_some()
    })
    .await;

    // Someone leads again on a new lease (the follower was campaigning),
    // and the watch says who.
    eventually("a new leader", || {
        *follower.is_leader().borrow() || *leader.is_leader().borrow()
    })
    .await;
    let next = if *follower.is_leader().borrow() { 1 } else { 0 };
    eventually("the new holder is known", || {
        world.lease_lost_since(next).is_none()
    })
    .await;
    watch.stop();
}

/// etcd goes away as the simulation takes it away (two of three members
/// lost): the leader cannot renew its lease and stops leading; once the
/// members are back, someone leads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_etcd_loses_its_quorum_the_leader_stops_leading_until_it_is_back() {
    let mut cluster = EtcdCluster::start(3).await.unwrap();
    let store = EtcdStore::connect(EtcdOptions::new(cluster.endpoints()).with_prefix("/quorum"))
        .await
        .unwrap();
    let leader = etcd_election(&store, 0);
    let mut leading = leader.is_leader();
    leading.wait_for(|l| *l).await.unwrap();
    cluster.kill(1).unwrap();
    cluster.kill(2).unwrap();
    leading.wait_for(|l| !*l).await.unwrap();
    cluster.restart_together(&[1, 2]).await.unwrap();
    leading.wait_for(|l| *l).await.unwrap();
}
