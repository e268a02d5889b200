//! The bound on concurrent whole lists. A list without `maxResults`
//! (`GET /v1/tasks`, `GET /v1/instances`) holds the whole view's matching
//! entities in memory and keeps a runtime worker busy, so at most
//! `--max-concurrent-lists` are built and sent at once. More wait their
//! turn, in order, up to `--max-queued-lists`; beyond that a list is
//! answered at once with 503 and `Retry-After: 1`, which a client (or a
//! load balancer) retries. A list holds its turn until its body is sent or
//! its client goes away. Pages (`maxResults`, at most 1,000 items), gets,
//! streams and everything else are not bounded here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;

use super::body;
use super::metrics::HttpMetrics;

/// The list routes bounded here.
const LIST_PATHS: &[&str] = &["/v1/tasks", "/v1/instances"];

/// Turns for whole lists.
#[derive(Debug)]
pub struct ListLimit {
    turns: Arc<Semaphore>,
    /// Lists waiting for a turn.
    waiting: AtomicUsize,
    max_waiting: usize,
    metrics: Arc<HttpMetrics>,
}

impl ListLimit {
    /// At most `concurrent` whole lists at once and `max_waiting` waiting.
    pub fn new(concurrent: usize, max_waiting: usize, metrics: Arc<HttpMetrics>) -> Arc<Self> {
        Arc::new(ListLimit {
            turns: Arc::new(Semaphore::new(concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            metrics,
        })
    }
}

/// Whether `req` asks for a whole list.
fn is_whole_list(req: &Request) -> bool {
    req.method() == Method::GET
        && LIST_PATHS.contains(&req.uri().path())
        && !req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("maxResults=")))
}

/// Leaves the waiting count when dropped (a turn granted, or the client gone).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Middleware: whole lists take a turn (see the module docs).
pub async fn bound_lists(
    State(limit): State<Arc<ListLimit>>,
    req: Request,
    next: Next,
) -> Response {
    if !is_whole_list(&req) {
        return next.run(req).await;
    }
    let turn = match limit.turns.clone().try_acquire_owned() {
        Ok(turn) => turn,
        Err(_) => {
            if limit.waiting.fetch_add(1, Ordering::AcqRel) >= limit.max_waiting {
                limit.waiting.fetch_sub(1, Ordering::AcqRel);
                limit.metrics.lists_refused.fetch_add(1, Ordering::Relaxed);
                let mut busy = super::server::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many lists at once; retry shortly, or page with maxResults",
                );
                busy.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return busy;
            }
            let waiting = Waiting(&limit.waiting);
            let turn = limit.turns.clone().acquire_owned().await;
            drop(waiting);
            match turn {
                Ok(turn) => turn,
                // The semaphore is never closed.
                Err(_) => return next.run(req).await,
            }
        }
    };
    body::holding(next.run(req).await, turn)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::middleware;
    use axum::routing::get;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    /// A router whose `/v1/tasks?hold` answers once `release` is notified.
    fn app(limit: Arc<ListLimit>, release: Arc<Notify>) -> Router {
        Router::new()
            .route(
                "/v1/tasks",
                get(move |uri: axum::http::Uri| {
                    let release = release.clone();
                    async move {
                        if uri.query().is_some_and(|q| q.contains("hold")) {
                            release.notified().await;
                        }
                        "[]"
                    }
                }),
            )
            .route("/v1/ping", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(limit, bound_lists))
    }

    fn get_req(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn status(app: &Router, uri: &str) -> StatusCode {
        let r = app.clone().oneshot(get_req(uri)).await;
        r.map(|r| r.status()).unwrap_or_else(|e| match e {})
    }

    #[tokio::test]
    async fn lists_beyond_the_bound_wait_and_beyond_the_queue_get_503() {
        let metrics = Arc::new(HttpMetrics::default());
        let limit = ListLimit::new(1, 1, metrics.clone());
        let release = Arc::new(Notify::new());
        let app = app(limit.clone(), release.clone());
        let first = tokio::spawn(app.clone().oneshot(get_req("/v1/tasks?hold")));
        while limit.turns.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let second = tokio::spawn(app.clone().oneshot(get_req("/v1/tasks?cluster=a")));
        while limit.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // The queue is full: refused at once, with Retry-After.
        let third = app.clone().oneshot(get_req("/v1/tasks")).await;
        let third = third.unwrap_or_else(|e| match e {});
        assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(third.headers()[header::RETRY_AFTER], "1");
        assert_eq!(metrics.lists_refused.load(Ordering::Relaxed), 1);
        // Pages and other routes are not bounded.
        assert_eq!(
            status(&app, "/v1/tasks?maxResults=10").await,
            StatusCode::OK
        );
        assert_eq!(status(&app, "/v1/ping").await, StatusCode::OK);
        assert!(!second.is_finished());
        // The first list is answered, but holds its turn until its body is
        // dropped; then the second gets its turn.
        release.notify_one();
        let first = first.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limit.turns.available_permits(), 0);
        drop(first);
        let second = second.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second.map(|r| r.status()).ok(), Some(StatusCode::OK));
        assert_eq!(limit.waiting.load(Ordering::Acquire), 0);
    }
}
