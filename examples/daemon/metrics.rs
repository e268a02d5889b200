//! `/metrics` in the Prometheus text format (version 0.0.4), encoded by
//! `prometheus-client`: ingest counters, reconcile results, event lag,
//! scheduler actions, cache sizes, leadership, and HTTP request latency per
//! route.
//!
//! HTTP latency is a histogram family the middleware records into; the
//! rest is read from its owners at scrape time by a [`Collector`] over
//! [`Sources`], so nothing is copied between scrapes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use blox_sched::runner::RunnerHandle;
use blox_state::cache::KvFeed;
use blox_state::ingest::IngestCounters;
use blox_state::reconcile::Reconciler;
use blox_state::{Cache, StateStore};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Latency bucket upper bounds, seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// The labels of one request's latency sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Per-route request latency, recorded by [`track_http`], and the HTTP
/// server's own counts.
#[derive(Debug)]
pub struct HttpMetrics {
    by_route: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// Open HTTP connections.
    pub open_connections: AtomicUsize,
    /// Whole lists refused (503) because too many were waiting.
    pub lists_refused: AtomicU64,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            by_route: Family::new_with_constructor(latency_histogram),
            open_connections: AtomicUsize::new(0),
            lists_refused: AtomicU64::new(0),
        }
    }
}

/// The methods the API serves, as metric labels; any other is `other`, so
/// that a client cannot add series by inventing methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, secs: f64) {
        let labels = HttpLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        };
        self.by_route.get_or_create(&labels).observe(secs);
    }
}

/// Middleware recording each request's latency under its route template
/// (`unmatched` for a path no route matches) and its method (`other` for
/// one the API does not serve): labels come only from the daemon's own
/// routes and methods, never from what a client invents.
pub async fn track_http(
    State(metrics): State<Arc<HttpMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics.record(
        method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// What `/metrics` reports on.
#[derive(Clone)]
pub struct Sources {
    /// Ingest counters, when ingesting.
    pub ingest: Option<Arc<IngestCounters>>,
    /// The reconciler.
    pub reconciler: Reconciler,
    /// The daemon scheduler's runner.
    pub runner: RunnerHandle,
    /// The cache.
    pub cache: Cache,
    /// Leadership.
    pub leader: watch::Receiver<bool>,
    /// HTTP latency.
    pub http: Arc<HttpMetrics>,
    /// The store (records it could not decode).
    pub store: Arc<dyn StateStore>,
    /// The feed of environment changes (its stream readers).
    pub environments: KvFeed,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("ingest", &self.ingest.is_some())
            .finish_non_exhaustive()
    }
}

/// Writes one metric per value of `label` (`samples`: label value, metric).
fn labelled<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, kind): (&str, &str, MetricType),
    label: &str,
    samples: &[(&str, M)],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (value, metric) in samples {
        let labels = [(label, *value)];
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes a metric without labels.
fn single(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A count as a gauge value.
fn gauge(n: usize) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        if let Some(c) = &self.ingest {
            let s = c.snapshot();
            let outcomes = [
                ("received", s.received),
                ("applied", s.applied),
                ("stale", s.stale),
                ("ignored", s.ignored),
                ("malformed", s.malformed),
                ("expired", s.expired),
                ("store_errors", s.store_errors),
                ("unconfirmed", s.unconfirmed),
                ("source_errors", s.source_errors),
                ("deleted", s.deleted),
                ("delete_failures", s.delete_failures),
            ]
            .map(|(k, v)| (k, ConstCounter::new(v)));
            let messages = (
                "blox_ingest_messages",
                "ECS event messages by outcome.",
                MetricType::Counter,
            );
            labelled(e, messages, "outcome", &outcomes)?;
            single(
                e,
                "blox_ingest_event_lag_seconds",
                "Time from the last applied event's emission to its application.",
                ConstGauge::new(s.last_lag_ms as f64 / 1000.0),
            )?;
        }
        if let Some(r) = self.reconciler.last_report() {
            let changes = [
                ("added", r.added),
                ("updated", r.updated),
                ("marked_inactive", r.marked_inactive),
                ("removed", r.removed),
                ("skipped_concurrent", r.skipped_concurrent),
                ("failed_clusters", r.failed_clusters),
            ]
            .map(|(k, v)| (k, gauge(v)));
            let last = (
                "blox_reconcile_last_changes",
                "What the last reconcile changed.",
                MetricType::Gauge,
            );
            labelled(e, last, "change", &changes)?;
        }
        single(
            e,
            "blox_reconcile_bootstrapped",
            "1 once the bootstrap reconcile completed (on the leader).",
            ConstGauge::new(i64::from(*self.reconciler.bootstrapped().borrow())),
        )?;
        let c = self.runner.counters().values();
        let actions = [
            ("cycles", c.cycles),
            ("started", c.started),
            ("stopped", c.stopped),
            ("failed", c.failed),
            ("dry_run", c.dry_run),
            ("throttled", c.throttled),
            ("fenced", c.fenced),
            ("intents_resolved", c.intents_resolved),
            ("idle", c.idle),
            ("view_loads", c.view_loads),
            ("view_changes", c.view_changes),
            ("full_decisions", c.full_decisions),
        ]
        .map(|(k, v)| (k, ConstCounter::new(v)));
        let scheduler = (
            "blox_scheduler",
            "Scheduler cycles and actions.",
            MetricType::Counter,
        );
        labelled(e, scheduler, "what", &actions)?;
        let (instances, tasks) = self.cache.len();
        let entities = (
            "blox_cache_entities",
            "Entities in the in-process view.",
            MetricType::Gauge,
        );
        let kinds = [("instance", gauge(instances)), ("task", gauge(tasks))];
        labelled(e, entities, "kind", &kinds)?;
        single(
            e,
            "blox_cache_packed_tasks",
            "Tasks the in-process view holds packed (their compressed v0.3 item).",
            gauge(self.cache.packed_tasks()),
        )?;
        single(
            e,
            "blox_cache_hot_item_bytes",
            "Bytes of uncompressed v0.3 items the view keeps for its packed tasks (bounded by its budget).",
            gauge(self.cache.hot_items().used()),
        )?;
        single(
            e,
            "blox_store_undecodable_records",
            "Stored entity records skipped because they could not be decoded (each read counts).",
            ConstCounter::new(self.store.undecodable_records()),
        )?;
        let readers = (
            "blox_stream_readers",
            "Open streams per feed (each feed is one store watch).",
            MetricType::Gauge,
        );
        let feeds = [
            ("entities", gauge(self.cache.feed().readers())),
            ("environments", gauge(self.environments.feed().readers())),
        ];
        labelled(e, readers, "feed", &feeds)?;
        single(
            e,
            "blox_leader",
            "1 while this process schedules.",
            ConstGauge::new(i64::from(*self.leader.borrow())),
        )?;
        single(
            e,
            "blox_http_open_connections",
            "Open HTTP connections.",
            gauge(self.http.open_connections.load(Ordering::Relaxed)),
        )?;
        single(
            e,
            "blox_http_lists_refused",
            "Whole lists answered 503 because too many were already waiting.",
            ConstCounter::new(self.http.lists_refused.load(Ordering::Relaxed)),
        )
    }
}

/// Every metric the daemon exposes, in one registry.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::default();
    // `register` adds the final full stop.
    registry.register(
        "blox_http_request_duration_seconds",
        "HTTP request latency by route",
        sources.http.by_route.clone(),
    );
    registry.register_collector(Box::new(sources));
    registry
}

/// `GET /metrics`.
pub async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::new();
    match prometheus_text::encode(&mut text, &registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(fmt::Error) => super::server::error(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_falls_into_every_bucket_at_or_above_it() {
        let m = HttpMetrics::default();
        m.record("GET", "/v1/tasks", 200, 0.003);
        m.record("GET", "/v1/tasks", 200, 0.3);
        let mut registry = Registry::default();
        registry.register(
            "blox_http_request_duration_seconds",
            "HTTP request latency by route",
            m.by_route.clone(),
        );
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        let series = "blox_http_request_duration_seconds";
        let labels = r#"method="GET",route="/v1/tasks",status="200""#;
        for line in [
            format!(r#"{series}_bucket{{{labels},le="0.0025"}} 0"#),
            format!(r#"{series}_bucket{{{labels},le="0.005"}} 1"#),
            format!(r#"{series}_bucket{{{labels},le="0.5"}} 2"#),
            format!(r#"{series}_bucket{{{labels},le="+Inf"}} 2"#),
            format!("{series}_count{{{labels}}} 2"),
            format!("# TYPE {series} histogram"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    #[test]
    fn only_known_methods_become_labels() {
        for (method, label) in [
            ("GET", "GET"),
            ("DELETE", "DELETE"),
            ("BREW", "other"),
            ("get", "other"),
        ] {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_label(&m), label, "{method}");
        }
    }
}
