//! `/metrics` in the Prometheus text format: ingest counters, reconcile
//! results, event lag, scheduler actions, cache sizes, leadership, and HTTP
//! request latency per route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use blox_sched::runner::RunnerHandle;
use blox_state::Cache;
use blox_state::ingest::IngestCounters;
use blox_state::reconcile::Reconciler;
use tokio::sync::watch;

/// Latency bucket upper bounds, seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Per-route request latency, recorded by [`track_http`].
#[derive(Debug, Default)]
pub struct HttpMetrics {
    by_route: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut m = self.by_route.lock().unwrap_or_else(|e| e.into_inner());
        let h = m
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }
}

/// Middleware recording each request's latency under its route template.
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
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics.record(
        &method,
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
}

fn line(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

fn one(v: impl Into<f64>) -> Vec<(String, f64)> {
    vec![(String::new(), v.into())]
}

impl Sources {
    /// The metrics as Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(c) = &self.ingest {
            let s = c.snapshot();
            let counters = [
                ("received", s.received),
                ("applied", s.applied),
                ("stale", s.stale),
                ("ignored", s.ignored),
                ("malformed", s.malformed),
                ("store_errors", s.store_errors),
                ("source_errors", s.source_errors),
                ("deleted", s.deleted),
                ("delete_failures", s.delete_failures),
            ];
            let samples: Vec<(String, f64)> = counters
                .iter()
                .map(|(k, v)| (format!("{{outcome=\"{k}\"}}"), *v as f64))
                .collect();
            line(
                &mut out,
                "blox_ingest_messages_total",
                "counter",
                "ECS event messages by outcome.",
                &samples,
            );
            line(
                &mut out,
                "blox_ingest_event_lag_seconds",
                "gauge",
                "Time from the last applied event's emission to its application.",
                &one(s.last_lag_ms as f64 / 1000.0),
            );
        }
        if let Some(r) = self.reconciler.last_report() {
            let samples = [
                ("added", r.added),
                ("updated", r.updated),
                ("marked_inactive", r.marked_inactive),
                ("removed", r.removed),
                ("skipped_concurrent", r.skipped_concurrent),
                ("failed_clusters", r.failed_clusters),
            ]
            .iter()
            .map(|(k, v)| (format!("{{change=\"{k}\"}}"), *v as f64))
            .collect::<Vec<_>>();
            line(
                &mut out,
                "blox_reconcile_last_changes",
                "gauge",
                "What the last reconcile changed.",
                &samples,
            );
        }
        line(
            &mut out,
            "blox_reconcile_bootstrapped",
            "gauge",
            "1 once the bootstrap reconcile completed (on the leader).",
            &one(u8::from(*self.reconciler.bootstrapped().borrow())),
        );
        let c = self.runner.counters().values();
        let samples = [
            ("cycles", c.cycles),
            ("started", c.started),
            ("stopped", c.stopped),
            ("failed", c.failed),
            ("dry_run", c.dry_run),
            ("throttled", c.throttled),
            ("fenced", c.fenced),
            ("intents_resolved", c.intents_resolved),
        ]
        .iter()
        .map(|(k, v)| (format!("{{what=\"{k}\"}}"), *v as f64))
        .collect::<Vec<_>>();
        line(
            &mut out,
            "blox_scheduler_total",
            "counter",
            "Scheduler cycles and actions.",
            &samples,
        );
        let (instances, tasks) = self.cache.len();
        line(
            &mut out,
            "blox_cache_entities",
            "gauge",
            "Entities in the in-process view.",
            &[
                ("{kind=\"instance\"}".into(), instances as f64),
                ("{kind=\"task\"}".into(), tasks as f64),
            ],
        );
        line(
            &mut out,
            "blox_leader",
            "gauge",
            "1 while this process schedules.",
            &one(u8::from(*self.leader.borrow())),
        );

        let routes = self
            .http
            .by_route
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP blox_http_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(out, "# TYPE blox_http_request_duration_seconds histogram");
        for ((method, route, status), h) in routes {
            let l = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "blox_http_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "blox_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "blox_http_request_duration_seconds_sum{{{l}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "blox_http_request_duration_seconds_count{{{l}}} {}",
                h.count
            );
        }
        out
    }
}

/// `GET /metrics`.
pub async fn metrics(State(sources): State<Sources>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        sources.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_falls_into_every_bucket_at_or_above_it() {
        let m = HttpMetrics::default();
        m.record("GET", "/v1/tasks", 200, 0.003);
        m.record("GET", "/v1/tasks", 200, 0.3);
        let routes = m.by_route.lock().unwrap();
        let h = &routes[&("GET".to_owned(), "/v1/tasks".to_owned(), 200)];
        assert_eq!(h.count, 2);
        assert_eq!(h.counts[2], 0, "0.0025 bucket");
        assert_eq!(h.counts[3], 1, "0.005 bucket");
        assert_eq!(h.counts[8], 2, "0.5 bucket");
    }
}
