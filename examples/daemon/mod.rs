//! The blox daemon: the cluster state service, the daemon scheduler and
//! their HTTP API in one process (run with
//! `cargo run --release -p blox-examples --features simulator --bin blox-daemon -- [flags]`;
//! see the README's configuration table). `--simulate` needs the
//! `simulator` feature; production builds leave it out.

mod app;
mod body;
pub mod config;
mod conn;
mod limits;
mod metrics;
mod readiness;
mod serve;
mod server;
#[cfg(feature = "simulator")]
mod sim_api;
#[cfg(feature = "simulator")]
pub mod simulate;
#[cfg(not(feature = "simulator"))]
#[path = "no_simulator.rs"]
pub mod simulate;
mod ui;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use blox_core::ports::EcsApi;
use blox_state::{Cache, StateStore};
use clap::Parser;

pub use app::{DaemonError, Running, migrate_layout, start};
pub use config::{Config, LogFormat};

/// The daemon scheduler's HTTP routes.
fn sched_routes(
    cache: Cache,
    store: Arc<dyn StateStore>,
    environments: blox_state::cache::KvFeed,
    ecs: Arc<dyn EcsApi>,
    rollout_bound: u32,
) -> axum::Router {
    blox_sched::http::router(
        blox_sched::http::SchedApiState::new(cache, store)
            .with_environment_feed(environments)
            .with_default_rollout_bound(rollout_bound)
            .with_ecs(ecs),
    )
}

fn init_logging(config: &Config) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .map_err(|e| format!("invalid --log-level {:?}: {e}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// Parses the flags, runs the daemon until SIGINT/SIGTERM, and returns the exit code.
pub fn main() -> ExitCode {
    main_with_layout(blox_state::store::etcd::layout::CURRENT)
}

/// [`main`] for a daemon that reads another stored layout: a test build
/// standing for another release (the mixed-version upgrade tests run one
/// next to this release's daemon).
pub fn main_with_layout(layout: blox_state::store::etcd::layout::Layout) -> ExitCode {
    let config = Config {
        layout,
        ..Config::parse()
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("blox-daemon: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("blox-daemon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.migrate_layout {
        return runtime.block_on(async {
            match migrate_layout(&config).await {
                Ok(report) => {
                    println!("blox-daemon: {report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("blox-daemon: {e}");
                    ExitCode::FAILURE
                }
            }
        });
    }
    let code = runtime.block_on(async {
        let running = match start(config, signal()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "blox daemon cannot start");
                eprintln!("blox-daemon: {e}");
                return ExitCode::FAILURE;
            }
        };
        match running.done.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("blox-daemon: {e}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("blox-daemon: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Whatever is still running (a call to an etcd that is gone, a blocking
    // DNS lookup) does not hold the exit up: the grace has passed.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}
