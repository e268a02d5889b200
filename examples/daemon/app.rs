//! Wiring: the store, the view, ingestion, reconciliation, leader election,
//! the daemon scheduler's runner and the HTTP server, and their shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use blox_core::backoff::Backoff;
use blox_core::ports::{EcsApi, EventSource};
use blox_sched::daemon::{DaemonScheduler, DeploymentTracker, EnvironmentStore};
use blox_sched::election::LocalElection;
use blox_sched::election::{EtcdElection, EtcdElectionOptions};
use blox_sched::election::{LeaderElection, default_holder_id};
use blox_sched::runner::{Runner, RunnerGates, RunnerOptions};
use blox_state::StateStore;
use blox_state::cache::spawn_follower;
use blox_state::ingest::{IngestOptions, Ingester};
use blox_state::reconcile::{ReconcileOptions, Reconciler};
use blox_state::store::StoreError;
use blox_state::store::etcd::{EtcdOptions, EtcdStore, layout};
use blox_state::store::memory::MemoryStore;
use blox_state::store::retention::{Retention, RetentionOptions};
use tokio::sync::watch;

use super::config::Config;
use super::metrics::{HttpMetrics, Sources};
use super::server::{self, Readiness, RouterParts};
use super::simulate::Simulation;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The HTTP server could not start.
    #[error(transparent)]
    Serve(#[from] server::ServeError),
    /// The simulated cluster could not be built.
    #[error("cannot start the simulated cluster: {0}")]
    Simulate(String),
    /// `--simulate` was given to a build without the `simulator` feature.
    #[error(
        "--simulate needs the simulator, which this build of blox-daemon leaves out: \
         build it with `--features simulator` (as `bash scripts/run.sh` does)"
    )]
    NoSimulator,
    /// The SQS queue could not be resolved.
    #[error("cannot use the SQS queue {queue:?}")]
    Queue {
        /// The queue as given.
        queue: String,
        /// Why.
        #[source]
        source: blox_core::ports::SourceError,
    },
    /// The leader election could not start.
    #[error("cannot start the leader election: {0}")]
    Election(String),
    /// The stored layout cannot be used (or migrated) by this build.
    #[error(transparent)]
    Layout(StoreError),
    /// The server failed while running.
    #[error("HTTP server failed")]
    Io(#[from] std::io::Error),
}

fn etcd_options(config: &Config) -> EtcdOptions {
    EtcdOptions {
        prefix: config.etcd_prefix.clone(),
        ..EtcdOptions::new(config.etcd_endpoints.clone())
    }
}

/// Retention as configured: stopped tasks and tombstones each on its own
/// horizon (issue 14: one setting for both let redelivered events
/// resurrect removed tasks).
fn retention(config: &Config) -> Retention {
    Retention::new(RetentionOptions {
        stopped: config.retention(),
        tombstones: config.tombstone_horizon(),
        ..RetentionOptions::default()
    })
}

/// Connects to etcd, retrying with backoff (and saying what it waits for)
/// until it answers or `shutdown` fires (`Ok(None)`). A stored layout this
/// build does not read is not retried: the daemon stops with its message.
async fn connect_etcd(
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<EtcdStore>, DaemonError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        match EtcdStore::connect(etcd_options(config)).await {
            Ok(store) => {
                tracing::info!(endpoints = ?config.etcd_endpoints, layout = ?store.layout_status(), "connected to etcd");
                return Ok(Some(store));
            }
            Err(e @ StoreError::Layout { .. }) => return Err(DaemonError::Layout(e)),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(endpoints = ?config.etcd_endpoints, error = %e, retry_in = ?delay,
                    "waiting for etcd to answer");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return Ok(None),
                }
            }
        }
    }
}

/// `--migrate-layout`: migrates the prefix to this build's layout version.
pub async fn migrate_layout(config: &Config) -> Result<String, DaemonError> {
    let store = EtcdStore::connect(EtcdOptions {
        check_layout: false,
        ..etcd_options(config)
    })
    .await
    .map_err(DaemonError::Layout)?;
    let report = layout::migrate(&store, layout::MIGRATIONS, layout::LAYOUT_VERSION)
        .await
        .map_err(DaemonError::Layout)?;
    Ok(format!(
        "layout of {} migrated from version {} to {} ({} step(s) run)",
        config.etcd_prefix,
        report.from,
        report.to,
        report.steps_run.len()
    ))
}

/// Triggers a scheduling cycle on every change under the environment
/// store's keys, re-watching (from now) whenever the watch ends.
async fn wake_on_environment_changes(
    store: Arc<dyn StateStore>,
    runner: blox_sched::runner::RunnerHandle,
) {
    use futures::StreamExt;
    let mut backoff = Backoff::default();
    loop {
        let from = match store.current_revision().await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        // Changes between `from` and the watch's start are caught by the
        // runner's own timer; this only makes the common case prompt.
        match store.kv_watch(EnvironmentStore::KEY_PREFIX, from).await {
            Ok(mut changes) => {
                backoff.reset();
                while let Some(Ok(_)) = changes.next().await {
                    runner.trigger();
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch environment changes; retrying"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Refuses `--simulate` up front when the build (`built`: whether the
/// `simulator` feature is on) has no simulator, saying how to get one.
fn require_simulator(config: &Config, built: bool) -> Result<(), DaemonError> {
    match config.simulate {
        Some(_) if !built => Err(DaemonError::NoSimulator),
        _ => Ok(()),
    }
}

/// A running daemon (see [`start`]).
pub struct Running {
    /// The address the HTTP API listens on.
    pub addr: SocketAddr,
    /// Resolves when the daemon has shut down.
    pub done: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

/// Starts the daemon; it runs until `shutdown` resolves, then stops
/// receiving events, finishes in-flight writes, resigns leadership and
/// stops serving.
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, DaemonError> {
    // Startup errors (no simulator, a busy port, unreadable TLS files)
    // surface before anything runs.
    require_simulator(&config, cfg!(feature = "simulator"))?;
    let listener = server::bind(config.bind).await?;
    let addr = listener.local_addr().map_err(DaemonError::Io)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_config(c, k)?),
        _ => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let stopped = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // Simulated or real ECS.
    let simulator = Simulation::from_config(&config)?;
    let (ecs, source): (Arc<dyn EcsApi>, Option<Arc<dyn EventSource>>) = match &simulator {
        Some(sim) => {
            let (ecs, source) = sim.ports();
            (ecs, Some(source))
        }
        None => {
            let sdk = blox_core::aws::load_config().await;
            let ecs: Arc<dyn EcsApi> = Arc::new(blox_core::aws::EcsAdapter::new(&sdk));
            let source: Option<Arc<dyn EventSource>> = match &config.queue {
                Some(q) => Some(Arc::new(
                    blox_core::aws::SqsEventSource::connect(&sdk, q)
                        .await
                        .map_err(|source| DaemonError::Queue {
                            queue: q.clone(),
                            source,
                        })?,
                )),
                None => None,
            };
            (ecs, source)
        }
    };
    let clusters = match &simulator {
        Some(sim) if config.clusters.is_empty() => vec![sim.cluster().to_owned()],
        _ => config.clusters.clone(),
    };

    // The store and leader election.
    let (store, election): (Arc<dyn StateStore>, Arc<dyn LeaderElection>) =
        if config.etcd_endpoints.is_empty() {
            let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
            let election = LocalElection::start(store.clone(), "scheduler", &default_holder_id())
                .await
                .map_err(|e| DaemonError::Election(e.to_string()))?;
            (store, Arc::new(election))
        } else {
            let Some(etcd) = connect_etcd(&config, &stop_rx).await? else {
                return Ok(Running {
                    addr,
                    done: tokio::spawn(async { Ok(()) }),
                });
            };
            let election = EtcdElection::start(
                &etcd,
                EtcdElectionOptions {
                    ttl: Duration::from_secs(config.lease_ttl),
                    ..EtcdElectionOptions::default()
                },
            );
            let etcd = Arc::new(etcd);
            etcd.spawn_maintenance();
            (etcd, Arc::new(election))
        };

    let (cache, follower) = spawn_follower(store.clone());

    // Ingestion (every replica ingests).
    let ingester = source.map(|source| {
        Ingester::new(
            source,
            store.clone(),
            IngestOptions {
                receivers: usize::from(config.ingest_receivers),
                malformed: config.malformed_messages,
                event_horizon: Some(config.tombstone_horizon()),
                ..IngestOptions::default()
            },
        )
    });
    let ingest_task = ingester
        .clone()
        .map(|i| tokio::spawn(i.run(stopped(&stop_rx))));

    // Reconciliation (the leader only), also after the store recovers.
    let reconciler = Reconciler::new(
        ecs.clone(),
        store.clone(),
        ReconcileOptions {
            clusters: clusters.clone(),
            interval: config.reconcile_every(),
            retention: config.retention(),
            ..ReconcileOptions::default()
        },
    );
    if let Some(i) = &ingester {
        let mut recoveries = i.recoveries();
        let trigger = reconciler.trigger();
        tokio::spawn(async move {
            while recoveries.changed().await.is_ok() {
                trigger.trigger();
            }
        });
    }
    let reconcile_task = tokio::spawn(
        reconciler
            .clone()
            .run(election.is_leader(), stopped(&stop_rx)),
    );
    // Retention of every cluster in the store (the leader only).
    let retention_task = tokio::spawn(retention(&config).run(
        store.clone(),
        election.is_leader(),
        stopped(&stop_rx),
    ));

    // The daemon scheduler.
    let environments = EnvironmentStore::new(store.clone());
    let runner = Runner::new(
        DaemonScheduler::new(),
        Arc::new(environments.clone()),
        cache.clone(),
        ecs.clone(),
        store.clone(),
        RunnerGates {
            bootstrapped: reconciler.bootstrapped(),
            leadership: election.term(),
        },
        RunnerOptions {
            clusters: clusters.clone(),
            max_actions_per_cycle: usize::try_from(config.max_actions_per_cycle)
                .unwrap_or(usize::MAX),
            dry_run: config.dry_run,
            ..RunnerOptions::default()
        },
    )
    .with_observer(Arc::new(
        DeploymentTracker::new(environments.clone())
            .with_history(config.deployment_history as usize),
    ));
    let runner_handle = runner.handle();
    let runner_task = tokio::spawn(runner.run(stopped(&stop_rx)));
    // Environment and deployment changes live in the key-value API, not the
    // view: wake the runner on them so a new deployment starts at once.
    tokio::spawn(wake_on_environment_changes(
        store.clone(),
        runner_handle.clone(),
    ));

    let churn_task = simulator.as_ref().and_then(Simulation::spawn_churn);

    // HTTP.
    let http_metrics = Arc::new(HttpMetrics::default());
    let app = server::router(RouterParts {
        state: blox_state::http::router(blox_state::http::ApiState::new(
            cache.clone(),
            store.clone(),
        )),
        sched: super::sched_routes(
            cache.clone(),
            store.clone(),
            ecs.clone(),
            config.rollout_bound,
        ),
        readiness: Readiness {
            cache: cache.clone(),
            bootstrapped: reconciler.bootstrapped(),
            leader: election.is_leader(),
        },
        metrics: Sources {
            ingest: ingester.as_ref().map(|i| i.counters()),
            reconciler: reconciler.clone(),
            runner: runner_handle,
            cache: cache.clone(),
            leader: election.is_leader(),
            http: http_metrics.clone(),
        },
        simulator: simulator.as_ref().map(Simulation::router),
        api_token: config.api_token.clone(),
        http: http_metrics,
    });
    tracing::info!(%addr, tls = tls.is_some(), store = if config.etcd_endpoints.is_empty() { "memory" } else { "etcd" },
        simulate = ?config.simulate, "blox daemon listening");

    let server_stop = stopped(&stop_rx);
    let done = tokio::spawn(async move {
        let served = server::serve(listener, app, tls, server_stop).await;
        // Stop receiving and let in-flight batches finish, stop acting, then resign.
        if let Some(t) = ingest_task {
            let _ = t.await;
        }
        let _ = runner_task.await;
        let _ = reconcile_task.await;
        let _ = retention_task.await;
        if let Some(t) = churn_task {
            t.abort();
        }
        election.resign().await;
        follower.abort();
        tracing::info!("blox daemon stopped");
        served.map_err(DaemonError::Io)
    });
    Ok(Running { addr, done })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("blox-daemon").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Issue 14: the daemon purged tombstones on the stopped-task retention.
    #[test]
    fn tombstones_are_kept_for_their_own_horizon_not_the_stopped_task_retention() {
        let r = retention(&config(&["--stopped-task-retention", "5"]));
        let now = blox_core::model::Timestamp::from_millis(2_000_000_000_000);
        let e = r.expiry_at(now);
        assert_eq!(
            e.retired_before,
            Some(blox_core::model::Timestamp::from_millis(
                2_000_000_000_000 - 5_000
            ))
        );
        assert_eq!(
            e.deleted_before,
            Some(blox_core::model::Timestamp::from_millis(
                2_000_000_000_000 - 15 * 24 * 3_600_000
            ))
        );
    }

    #[test]
    fn a_build_without_the_simulator_refuses_simulate_and_says_how_to_get_it() {
        let err = require_simulator(&config(&["--simulate", "3"]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--simulate"), "{err}");
        assert!(err.contains("--features simulator"), "{err}");
        assert!(require_simulator(&config(&[]), false).is_ok());
        assert!(require_simulator(&config(&["--simulate", "3"]), true).is_ok());
    }
}
