//! One daemon replica, wired as the daemon wires itself (ingester,
//! reconciler, cache follower, daemon scheduler's runner with its
//! deployment tracker, HTTP routes) over injected parts: the store, the
//! ECS, the event source, the election and the clock.

use std::sync::Arc;
use std::time::Duration;

use blox_core::clock::SharedClock;
use blox_core::ports::EventSource;
use blox_sched::daemon::{DaemonScheduler, DeploymentTracker, EnvironmentStore};
use blox_sched::runner::{Runner, RunnerGates, RunnerHandle, RunnerOptions};
use blox_state::cache::{Cache, spawn_follower};
use blox_state::ingest::{IngestCounters, IngestOptions, Ingester};
use blox_state::reconcile::{ReconcileOptions, Reconciler};
use blox_state::store::StateStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ecs::ReplicaEcs;
use crate::election::Election;

/// The cluster every replica manages.
pub const CLUSTER: &str = "sim";

/// What a replica is built from.
pub struct Parts {
    /// Its index.
    pub id: usize,
    /// Its store client.
    pub store: Arc<dyn StateStore>,
    /// Its ECS.
    pub ecs: Arc<ReplicaEcs>,
    /// Where it receives events.
    pub source: Arc<dyn EventSource>,
    /// Its election.
    pub election: Election,
    /// The clock.
    pub clock: SharedClock,
    /// The reconcile interval.
    pub reconcile_every: Duration,
}

/// A running replica.
pub struct Replica {
    /// Its index.
    pub id: usize,
    /// Its view.
    pub cache: Cache,
    /// Its ECS (with its call record).
    pub ecs: Arc<ReplicaEcs>,
    /// Its election.
    pub election: Election,
    /// Its runner.
    pub runner: RunnerHandle,
    /// Its ingester's counters.
    pub ingest: Arc<IngestCounters>,
    /// Its HTTP API (cluster state routes).
    pub router: axum::Router,
    /// Its store client.
    pub store: Arc<dyn StateStore>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Replica {
    /// Starts every component.
    pub fn start(parts: Parts) -> Replica {
        let Parts {
            id,
            store,
            ecs,
            source,
            election,
            clock,
            reconcile_every,
        } = parts;
        let leadership = election.leadership();
        let (stop, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let (cache, follower) = spawn_follower(store.clone());
        let ingester = Ingester::new(
            source,
            store.clone(),
            IngestOptions {
                // The simulation's seeds were drawn with two receivers.
                receivers: 2,
                wait: Duration::from_secs(1),
                clock: clock.clone(),
                ..IngestOptions::default()
            },
        );
        let ecs_dyn: Arc<dyn blox_core::ports::EcsApi> = ecs.clone();
        let ingester = ingester.verify_with(ecs_dyn.clone());
        let ingest = ingester.counters();
        let reconciler = Reconciler::new(
            ecs_dyn.clone(),
            store.clone(),
            ReconcileOptions {
                clusters: vec![CLUSTER.to_owned()],
                interval: reconcile_every,
                clock: clock.clone(),
                ..ReconcileOptions::default()
            },
        );
        let environments = EnvironmentStore::new(store.clone()).with_clock(clock.clone());
        let runner = Runner::new(
            DaemonScheduler::new(),
            Arc::new(environments.clone()),
            cache.clone(),
            ecs_dyn,
            store.clone(),
            RunnerGates {
                bootstrapped: reconciler.bootstrap_done(),
                leadership: leadership.term(),
            },
            RunnerOptions {
                clusters: vec![CLUSTER.to_owned()],
                clock,
                ..RunnerOptions::default()
            },
        )
        .with_observer(Arc::new(DeploymentTracker::new(environments)));
        let handle = runner.handle();
        let router = blox_state::http::router(blox_state::http::ApiState::new(
            cache.clone(),
            store.clone(),
        ));
        let tasks = vec![
            follower,
            tokio::spawn(ingester.run(stopped())),
            tokio::spawn(reconciler.run(leadership.term(), stopped())),
            tokio::spawn(runner.run(stopped())),
        ];
        Replica {
            id,
            cache,
            ecs,
            election,
            runner: handle,
            ingest,
            router,
            store,
            stop,
            tasks,
        }
    }

    /// Kills the replica at once (a crash: nothing finishes).
    pub fn kill(self) {
        self.stop.send_replace(true);
        for t in self.tasks {
            t.abort();
        }
    }
}
