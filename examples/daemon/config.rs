//! The daemon's settings: command-line flags, each with a matching `BLOX_*`
//! environment variable (the flag wins). Flag names and paths are a public
//! contract: users script against them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use blox_state::ingest::MalformedPolicy;
use clap::{Parser, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// The blox daemon: the cluster state service, the daemon scheduler and
/// their HTTP API in one process.
#[derive(Debug, Clone, Parser)]
#[command(name = "blox-daemon", version, about, long_about = None)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[arg(long, env = "BLOX_BIND", default_value = "127.0.0.1:2000")]
    pub bind: SocketAddr,

    /// etcd member (`host:port` or `http://host:port`); repeat for a
    /// cluster. None: the embedded in-memory store.
    #[arg(long = "etcd-endpoint", env = "BLOX_ETCD_ENDPOINT", value_delimiter = ',', value_parser = parse_endpoint)]
    pub etcd_endpoints: Vec<String>,

    /// Key prefix of everything blox stores in etcd.
    #[arg(long, env = "BLOX_ETCD_PREFIX", default_value = "/blox")]
    pub etcd_prefix: String,

    /// Migrate the stored layout under the etcd prefix to this release's
    /// version, then exit (run it with every daemon stopped; a migration
    /// that stops half-way resumes when run again).
    #[arg(long, env = "BLOX_MIGRATE_LAYOUT", requires = "etcd_endpoints")]
    pub migrate_layout: bool,

    /// SQS queue of ECS events: a name, `sqs://name`, or a queue URL. None: no ingestion.
    #[arg(long, env = "BLOX_QUEUE", conflicts_with = "simulate")]
    pub queue: Option<String>,

    /// Cluster to follow and schedule (name or ARN); repeat for several. None: every cluster.
    #[arg(long = "cluster", env = "BLOX_CLUSTER", value_delimiter = ',')]
    pub clusters: Vec<String>,

    /// Seconds between reconciles against the ECS API.
    #[arg(long, env = "BLOX_RECONCILE_INTERVAL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_interval: u64,

    /// Seconds stopped tasks and INACTIVE instances are kept (in every
    /// cluster of the store).
    #[arg(long, env = "BLOX_STOPPED_TASK_RETENTION", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub stopped_task_retention: u64,

    /// Seconds ECS's listings may lag behind a change: a stored task or
    /// instance ECS neither lists nor describes is removed only once two
    /// complete listings this far apart lacked it.
    #[arg(long, env = "BLOX_LISTING_LAG", default_value_t = blox_state::reconcile::DEFAULT_LISTING_LAG.as_secs())]
    pub listing_lag: u64,
    /// Seconds what is deleted is remembered (its tombstone kept); events
    /// older than this are not applied. Keep it longer than the queue's and
    /// its dead-letter queue's message retention (SQS: 14 days at most).
    #[arg(long, env = "BLOX_TOMBSTONE_RETENTION", default_value_t = 1_296_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tombstone_retention: u64,

    /// What to do with a message that is not a usable ECS event: `delete`
    /// it, or leave it for the queue's `dead-letter` queue.
    #[arg(long, env = "BLOX_MALFORMED_MESSAGES", default_value = "delete", value_parser = parse_malformed)]
    pub malformed_messages: MalformedPolicy,

    /// Concurrent SQS receivers.
    #[arg(long, env = "BLOX_INGEST_RECEIVERS", default_value_t = blox_state::ingest::DEFAULT_RECEIVERS, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub ingest_receivers: u16,

    /// Seconds of the leader lease: how long a crashed leader blocks a successor.
    #[arg(long, env = "BLOX_LEASE_TTL", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_ttl: u64,

    /// Default rollout bound of new environments: at most this many
    /// instances without their daemon task at a time during a deployment.
    #[arg(long, env = "BLOX_ROLLOUT_BOUND", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rollout_bound: u32,

    /// Superseded deployments kept per environment; older ones are removed
    /// once their tasks are gone.
    #[arg(long, env = "BLOX_DEPLOYMENT_HISTORY", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub deployment_history: u32,

    /// At most this many task starts plus stops per scheduling cycle.
    #[arg(long, env = "BLOX_MAX_ACTIONS_PER_CYCLE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_actions_per_cycle: u64,

    /// Decide and log, but start and stop nothing.
    #[arg(long, env = "BLOX_DRY_RUN")]
    pub dry_run: bool,

    /// Events of recent revisions each stream feed keeps, so a stream
    /// resumes without asking the store (see docs/operating.md for the
    /// memory cost).
    #[arg(long, env = "BLOX_STREAM_HISTORY", default_value_t = blox_state::cache::DEFAULT_HISTORY_EVENTS)]
    pub stream_history: usize,

    /// Revisions a stream may fall behind before it is ended (the client
    /// resumes or relists).
    #[arg(long, env = "BLOX_STREAM_LAG_LIMIT", default_value_t = blox_state::cache::DEFAULT_BROADCAST_REVISIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub stream_lag_limit: usize,

    /// Log filter (`info`, `debug`, `blox_state=debug,info`, ...).
    #[arg(long, env = "BLOX_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "BLOX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Run a simulated ECS cluster of N instances (`sim`) instead of talking to AWS.
    #[arg(long, env = "BLOX_SIMULATE", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub simulate: Option<u32>,

    /// With --simulate: instances join, drain and leave over time.
    #[arg(long, env = "BLOX_SIMULATE_CHURN", requires = "simulate")]
    pub simulate_churn: bool,

    /// With --simulate: the seed that makes a run repeatable.
    #[arg(long, env = "BLOX_SIMULATE_SEED", requires = "simulate")]
    pub simulate_seed: Option<u64>,

    /// Require `Authorization: Bearer TOKEN` on every request except /v1/ping.
    #[arg(long, env = "BLOX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "BLOX_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key: serve HTTPS (with --tls-cert).
    #[arg(long, env = "BLOX_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Seconds from SIGTERM to exit at most: open streams end at once,
    /// in-flight requests and writes get this long to finish, then the
    /// daemon exits (1 if something was still running, e.g. with etcd gone).
    #[arg(long, env = "BLOX_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_grace: u64,

    /// Seconds a client has to send a request's headers (and, with TLS, to
    /// finish the handshake) once it has started; a slower client is cut off.
    #[arg(long, env = "BLOX_HTTP_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout: u64,

    /// Seconds a connection with no request in progress (new, or kept
    /// alive after a response) stays open waiting for the next request
    /// (above a load balancer's own idle timeout, e.g. the ALB's 60 s).
    #[arg(long, env = "BLOX_HTTP_IDLE_TIMEOUT", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub http_idle_timeout: u64,

    /// Seconds a response may wait for a client that reads nothing (its
    /// receive buffer full) before the connection is closed.
    #[arg(long, env = "BLOX_HTTP_SEND_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_send_timeout: u64,

    /// Open HTTP connections at most; further clients wait to be accepted
    /// until one closes.
    #[arg(long, env = "BLOX_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub http_max_connections: u32,

    /// Whole lists (`GET /v1/tasks` or `/v1/instances` without
    /// `maxResults`) built and sent at once at most; more wait their turn.
    #[arg(long, env = "BLOX_MAX_CONCURRENT_LISTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_lists: u32,

    /// Whole lists waiting for their turn at most; beyond, a list is
    /// answered 503 with `Retry-After`.
    #[arg(long, env = "BLOX_MAX_QUEUED_LISTS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub max_queued_lists: u32,
    /// The stored layout this daemon reads on etcd (not a flag: this
    /// release's, or another in a test build of another release; see
    /// [`super::main_with_layout`]).
    #[arg(skip = blox_state::store::etcd::layout::CURRENT)]
    pub layout: blox_state::store::etcd::layout::Layout,
}

fn parse_endpoint(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").unwrap_or(s);
    if s.starts_with("https://") {
        return Err(format!(
            "{s:?}: TLS to etcd is not supported; use http://host:port"
        ));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected host:port or http://host:port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!("{s:?}: expected host:port or http://host:port"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
    Ok(format!("http://{rest}"))
}

fn parse_malformed(s: &str) -> Result<MalformedPolicy, String> {
    s.parse()
}

impl Config {
    /// Reconcile interval.
    pub fn reconcile_every(&self) -> Duration {
        Duration::from_secs(self.reconcile_interval)
    }

    /// The bounds of the stream feeds.
    pub fn feed_options(&self) -> blox_state::cache::FeedOptions {
        blox_state::cache::FeedOptions {
            history_events: self.stream_history,
            broadcast_revisions: self.stream_lag_limit,
        }
    }

    /// Retention of stopped tasks and INACTIVE instances.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.stopped_task_retention)
    }

    /// The bound on shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    /// How far ECS's listings may lag behind a change.
    pub fn listing_lag(&self) -> Duration {
        Duration::from_secs(self.listing_lag)
    }

    /// The horizon of "gone": how long tombstones are kept, and the age
    /// past which events are not applied.
    pub fn tombstone_horizon(&self) -> Duration {
        Duration::from_secs(self.tombstone_retention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("blox-daemon").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:2000");
        assert!(c.etcd_endpoints.is_empty());
        assert_eq!(c.reconcile_interval, 300);
        assert_eq!(c.malformed_messages, MalformedPolicy::Delete);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.simulate.is_none() && !c.dry_run);
        assert_eq!(c.deployment_history, 10);
        assert_eq!(c.shutdown_grace, 10);
        assert_eq!((c.http_header_timeout, c.http_idle_timeout), (10, 75));
        assert_eq!(c.http_max_connections, 1024);
        assert_eq!(c.http_send_timeout, 30);
        assert_eq!((c.max_concurrent_lists, c.max_queued_lists), (4, 64));
        assert_eq!(
            c.tombstone_horizon(),
            blox_state::store::retention::DEFAULT_TOMBSTONE_RETENTION
        );
        assert_eq!(
            parse(&["--deployment-history", "0"])
                .unwrap()
                .deployment_history,
            0
        );
    }

    /// Issue 14: `--stopped-task-retention 5` also purged tombstones after
    /// 5 s; the horizon of "gone" is its own setting.
    #[test]
    fn the_tombstone_horizon_is_independent_of_stopped_task_retention() {
        let c = parse(&["--stopped-task-retention", "5"]).unwrap();
        assert_eq!(c.retention(), Duration::from_secs(5));
        assert_eq!(c.tombstone_horizon(), Duration::from_secs(15 * 24 * 3600));
        let c = parse(&["--tombstone-retention", "86400"]).unwrap();
        assert_eq!(c.tombstone_horizon(), Duration::from_secs(86_400));
        assert!(parse(&["--tombstone-retention", "0"]).is_err());
    }

    #[test]
    fn endpoints_are_normalised_and_repeatable() {
        let c = parse(&[
            "--etcd-endpoint",
            "10.0.0.1:2379",
            "--etcd-endpoint",
            "http://e2:2379",
        ])
        .unwrap();
        assert_eq!(c.etcd_endpoints, ["http://10.0.0.1:2379", "http://e2:2379"]);
        let c = parse(&[
            "--cluster",
            "a",
            "--cluster",
            "arn:aws:ecs:us-east-1:1:cluster/b",
        ])
        .unwrap();
        assert_eq!(c.clusters.len(), 2);
    }

    #[test]
    fn bad_flags_get_clear_errors() {
        for (args, needle) in [
            (&["--etcd-endpoint", "nope"][..], "host:port"),
            (&["--etcd-endpoint", "h:99999"][..], "port number"),
            (&["--bind", "localhost"][..], "invalid socket address"),
            (&["--malformed-messages", "maybe"][..], "dead-letter"),
            (&["--simulate", "0"][..], "simulate"),
            (
                &["--simulate", "3", "--queue", "q"][..],
                "cannot be used with",
            ),
            (&["--simulate-churn"][..], "--simulate"),
            (&["--tls-cert", "c.pem"][..], "--tls-key"),
            (&["--reconcile-interval", "0"][..], "reconcile-interval"),
            (&["--deployment-history", "many"][..], "deployment-history"),
            (&["--deployment-history", "10001"][..], "deployment-history"),
            (&["--shutdown-grace", "0"][..], "shutdown-grace"),
            (&["--http-header-timeout", "0"][..], "http-header-timeout"),
            (&["--http-max-connections", "0"][..], "http-max-connections"),
            (&["--http-send-timeout", "0"][..], "http-send-timeout"),
            (&["--max-concurrent-lists", "0"][..], "max-concurrent-lists"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
