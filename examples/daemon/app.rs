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
use blox_state::cache::{CacheOptions, KvFeed, spawn_follower_with};
use blox_state::ingest::{IngestOptions, Ingester};
use blox_state::reconcile::{ReconcileOptions, Reconciler};
use blox_state::store::StoreError;
use blox_state::store::etcd::{EtcdOptions, EtcdStore, layout};
use blox_state::store::memory::MemoryStore;
use blox_state::store::retention::{Retention, RetentionOptions};
use tokio::sync::watch;

use super::config::Config;
use super::conn::Timeouts;
use super::limits::ListLimit;
use super::metrics::{HttpMetrics, Sources};
use super::readiness::{Readiness, Step};
use super::serve::{self, ServeOptions};
use super::server::{self, AppSlot, RouterParts};
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
    /// The stored layout cannot be used (or migrated) by this build, or
    /// changed while the daemon ran (a migration under it).
    #[error(transparent)]
    Layout(StoreError),
    /// The server failed while running.
    #[error("HTTP server failed")]
    Io(#[from] std::io::Error),
    /// The daemon stopped by itself on a fatal condition (the stored
    /// layout changed under it), after shutting down cleanly.
    #[error("{0}")]
    Stopped(String),
    /// Shutdown did not finish within `--shutdown-grace`.
    #[error("the shutdown grace of {grace:?} ran out while {}", pending.join(", "))]
    ShutdownGrace {
        /// The grace.
        grace: Duration,
        /// What was still running.
        pending: Vec<&'static str>,
    },
}

fn etcd_options(config: &Config) -> EtcdOptions {
    EtcdOptions {
        prefix: config.etcd_prefix.clone(),
        layout: config.layout,
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
    readiness: &Readiness,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<EtcdStore>, DaemonError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let endpoints = config.etcd_endpoints.join(", ");
    readiness.set(
        Step::Store,
        false,
        format!("connecting to etcd ({endpoints}) and checking its stored layout"),
    );
    loop {
        match EtcdStore::connect(etcd_options(config)).await {
            Ok(store) => {
                tracing::info!(endpoints = ?config.etcd_endpoints, layout = ?store.layout_status(), "connected to etcd");
                readiness.set(
                    Step::Store,
                    true,
                    format!("connected to etcd ({endpoints}); stored layout readable"),
                );
                return Ok(Some(store));
            }
            Err(e @ StoreError::Layout { .. }) => return Err(DaemonError::Layout(e)),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(endpoints = ?config.etcd_endpoints, error = %e, retry_in = ?delay,
                    "waiting for etcd to answer");
                readiness.set(
                    Step::Store,
                    false,
                    format!("waiting for etcd ({endpoints}) to answer: {e}"),
                );
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
    let report = layout::migrate(&store, config.layout.migrations, config.layout.version)
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
/// store's keys (read from the process's environment feed), subscribing
/// again (from the feed's newest revision) whenever a subscription ends.
async fn wake_on_environment_changes(feed: KvFeed, runner: blox_sched::runner::RunnerHandle) {
    use futures::StreamExt;
    loop {
        feed.wait_until_ready().await;
        let after = feed.feed().head();
        // Changes between two subscriptions are caught by the runner's own
        // timer; this only makes the common case prompt.
        let mut stream = feed.subscribe(after).start.subscription().into_stream();
        loop {
            match stream.next().await {
                Some(Ok(_)) => runner.trigger(),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "environment wake-ups resubscribe");
                    break;
                }
                // The feed was closed: the process is stopping.
                None => return,
            }
        }
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

/// What startup connects to before the daemon can run.
struct Connected {
    simulator: Option<Simulation>,
    ecs: Arc<dyn EcsApi>,
    source: Option<Arc<dyn EventSource>>,
    clusters: Vec<String>,
    store: Arc<dyn StateStore>,
    election: Arc<dyn LeaderElection>,
    /// On etcd: resolves once the stored layout changes under the daemon.
    layout_changed: Option<LayoutChanged>,
}

/// Resolves once the stored layout changes under the daemon.
type LayoutChanged = futures::future::BoxFuture<'static, StoreError>;

/// Connects to ECS (or builds the simulated cluster), the SQS queue and the
/// store, reporting each step to `readiness`; `Ok(None)` if `stop` turns
/// `true` while waiting for etcd.
async fn connect(
    config: &Config,
    readiness: &Readiness,
    stop: &watch::Receiver<bool>,
) -> Result<Option<Connected>, DaemonError> {
    // Simulated or real ECS.
    let simulator = Simulation::from_config(config)?;
    let (ecs, source): (Arc<dyn EcsApi>, Option<Arc<dyn EventSource>>) = match &simulator {
        Some(sim) => {
            let (ecs, source) = sim.ports();
            (ecs, Some(source))
        }
        None => {
            let sdk = blox_core::aws::load_config().await;
            let ecs: Arc<dyn EcsApi> = Arc::new(blox_core::aws::EcsAdapter::new(&sdk));
            let source: Option<Arc<dyn EventSource>> = match &config.queue {
                Some(q) => {
                    let queue = blox_core::aws::SqsEventSource::connect(&sdk, q)
                        .await
                        .map_err(|source| DaemonError::Queue {
                            queue: q.clone(),
                            source,
                        })?;
                    readiness.set(Step::Queue, true, "resolved");
                    Some(Arc::new(queue))
                }
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
    let (store, election, layout_changed): (
        Arc<dyn StateStore>,
        Arc<dyn LeaderElection>,
        Option<LayoutChanged>,
    ) = if config.etcd_endpoints.is_empty() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let election = LocalElection::start(store.clone(), "scheduler", &default_holder_id())
            .await
            .map_err(|e| DaemonError::Election(e.to_string()))?;
        readiness.set(Step::Store, true, "the in-memory store");
        (store, Arc::new(election), None)
    } else {
        let Some(etcd) = connect_etcd(config, readiness, stop).await? else {
            return Ok(None);
        };
        let election = EtcdElection::start(
            &etcd,
            EtcdElectionOptions {
                ttl: Duration::from_secs(config.lease_ttl),
                ..EtcdElectionOptions::default()
            },
        );
        let watched = etcd.clone();
        let layout_changed: futures::future::BoxFuture<'static, StoreError> =
            Box::pin(async move { watched.layout_changed().await });
        let etcd = Arc::new(etcd);
        etcd.spawn_maintenance();
        (etcd, Arc::new(election), Some(layout_changed))
    };
    Ok(Some(Connected {
        simulator,
        ecs,
        source,
        clusters,
        store,
        election,
        layout_changed,
    }))
}

/// Starts the daemon; it runs until `shutdown` resolves, then ends open
/// streams, stops receiving events, finishes in-flight requests and
/// writes, resigns leadership and stops serving, all within
/// `--shutdown-grace` (past it, [`Running::done`] resolves to
/// [`DaemonError::ShutdownGrace`]).
///
/// The port is bound first: `/v1/ping` answers, and `/v1/ready` says what
/// the daemon waits for, while it connects to the queue and the store.
/// Returns once it runs (or once `shutdown` resolves during startup).
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
    // A fatal condition found while running (the stored layout changed
    // under the daemon) stops it like a signal, and fails its exit.
    let (fatal_tx, fatal_rx) = watch::channel::<Option<String>>(None);
    let mut fatal = fatal_rx.clone();
    tokio::spawn(async move {
        let fatal = async {
            // No sender left (nothing can turn fatal): only the signal.
            if fatal.wait_for(Option::is_some).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = shutdown => {}
            () = fatal => {}
        }
        stop_tx.send_replace(true);
    });
    let stopped = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // HTTP, from now on: `/v1/ping` and `/v1/ready` at once, the rest once
    // the application is built.
    let readiness = Readiness::new(config.queue.is_some() && config.simulate.is_none());
    let http_metrics = Arc::new(HttpMetrics::default());
    let slot = AppSlot::default();
    let server_task = tokio::spawn(serve::serve(
        listener,
        server::front(
            readiness.clone(),
            slot.clone(),
            config.api_token.clone(),
            http_metrics.clone(),
        ),
        ServeOptions {
            tls: tls.clone(),
            timeouts: Timeouts {
                header: Duration::from_secs(config.http_header_timeout),
                idle: Duration::from_secs(config.http_idle_timeout),
                send: Duration::from_secs(config.http_send_timeout),
            },
            max_connections: usize::try_from(config.http_max_connections).unwrap_or(usize::MAX),
            drain: config.shutdown_grace(),
            metrics: http_metrics.clone(),
        },
        stop_rx.clone(),
    ));
    tracing::info!(%addr, tls = tls.is_some(), store = if config.etcd_endpoints.is_empty() { "memory" } else { "etcd" },
        simulate = ?config.simulate, "blox daemon listening");

    let connected = tokio::select! {
        c = connect(&config, &readiness, &stop_rx) => c,
        _ = stopped(&stop_rx) => Ok(None),
    };
    let Connected {
        simulator,
        ecs,
        source,
        clusters,
        store,
        election,
        layout_changed,
    } = match connected {
        Ok(Some(c)) => c,
        Ok(None) => {
            // Stopped while starting: nothing to finish but the HTTP drain.
            let grace = config.shutdown_grace();
            return Ok(Running {
                addr,
                done: tokio::spawn(async move {
                    let _ = tokio::time::timeout(grace, server_task).await;
                    tracing::info!("blox daemon stopped");
                    Ok(())
                }),
            });
        }
        Err(e) => {
            server_task.abort();
            return Err(e);
        }
    };

    if let Some(changed) = layout_changed {
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let e = changed.await;
            tracing::error!(error = %e, "the stored layout changed under this daemon; stopping");
            readiness.set(Step::Store, false, e.to_string());
            fatal_tx.send_replace(Some(e.to_string()));
        });
    }

    let (cache, follower) = spawn_follower_with(
        store.clone(),
        CacheOptions {
            feed: config.feed_options(),
            ..CacheOptions::default()
        },
    );
    // The process's one watch of the environment store's keys: streams and
    // the runner's wake-ups read it.
    let (environments_feed, environments_follower) = KvFeed::spawn(
        store.clone(),
        EnvironmentStore::KEY_PREFIX,
        config.feed_options(),
    );

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
        .verify_with(ecs.clone())
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
            listing_lag: config.listing_lag(),
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
    let reconcile_task = tokio::spawn(reconciler.clone().run(election.term(), stopped(&stop_rx)));
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
            bootstrapped: reconciler.bootstrap_done(),
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
        environments_feed.clone(),
        runner_handle.clone(),
    ));

    let churn_task = simulator.as_ref().and_then(Simulation::spawn_churn);

    // The application behind the port.
    readiness.running(
        cache.clone(),
        reconciler.bootstrap_done(),
        election.is_leader(),
    );
    slot.fill(server::router(RouterParts {
        state: blox_state::http::router(blox_state::http::ApiState::new(
            cache.clone(),
            store.clone(),
        )),
        sched: super::sched_routes(
            cache.clone(),
            store.clone(),
            environments_feed.clone(),
            ecs.clone(),
            config.rollout_bound,
        ),
        metrics: Sources {
            ingest: ingester.as_ref().map(|i| i.counters()),
            reconciler: reconciler.clone(),
            runner: runner_handle,
            cache: cache.clone(),
            leader: election.is_leader(),
            http: http_metrics.clone(),
            store: store.clone(),
            environments: environments_feed.clone(),
        },
        simulator: simulator.as_ref().map(Simulation::router),
        http: http_metrics.clone(),
        lists: ListLimit::new(
            usize::try_from(config.max_concurrent_lists).unwrap_or(usize::MAX),
            usize::try_from(config.max_queued_lists).unwrap_or(usize::MAX),
            http_metrics,
        ),
        stop: stop_rx.clone(),
    }));

    let grace = config.shutdown_grace();
    let stop = stopped(&stop_rx);
    let done = tokio::spawn(async move {
        stop.await;
        // Open streams end cleanly (their feeds close), not only cut off.
        cache.end_streams();
        environments_feed.end_streams();
        let progress = Progress::default();
        // HTTP drains (streams end at once) while the rest stops: receiving
        // ends and in-flight batches finish, acting stops, then resign.
        let http = async {
            let _ = server_task.await;
            progress.done("draining HTTP connections");
        };
        let background = async {
            if let Some(t) = ingest_task {
                let _ = t.await;
            }
            progress.done("finishing in-flight ingestion");
            let _ = runner_task.await;
            progress.done("stopping the scheduler");
            let _ = reconcile_task.await;
            progress.done("stopping the reconciler");
            let _ = retention_task.await;
            progress.done("stopping retention");
            if let Some(t) = churn_task {
                t.abort();
            }
            election.resign().await;
            progress.done("resigning leadership");
        };
        let finished = tokio::time::timeout(grace, async {
            tokio::join!(http, background);
        })
        .await;
        follower.abort();
        environments_follower.abort();
        let fatal = fatal_rx.borrow().clone();
        match finished {
            Ok(()) => match fatal {
                Some(why) => Err(DaemonError::Stopped(why)),
                None => {
                    tracing::info!("blox daemon stopped");
                    Ok(())
                }
            },
            Err(_) => {
                let pending = progress.pending();
                tracing::error!(
                    ?grace,
                    ?pending,
                    "the shutdown grace ran out; exiting anyway"
                );
                Err(DaemonError::ShutdownGrace { grace, pending })
            }
        }
    });
    Ok(Running { addr, done })
}

/// What shutdown has finished, to say what was left when the grace ran out.
#[derive(Default)]
struct Progress(std::sync::Mutex<Vec<&'static str>>);

impl Progress {
    /// The stages shutdown goes through.
    const STAGES: [&'static str; 5] = [
        "draining HTTP connections",
        "finishing in-flight ingestion",
        "stopping the scheduler",
        "stopping the reconciler",
        "resigning leadership",
    ];

    fn done(&self, stage: &'static str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(stage);
    }

    fn pending(&self) -> Vec<&'static str> {
        let done = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Self::STAGES
            .into_iter()
            .filter(|s| !done.contains(s))
            .collect()
    }
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
