//! `GET /v1/ready`: 200 once the daemon serves a complete view, 503 until
//! then, saying what it waits for. The checks, in the order startup meets
//! them:
//!
//! | check | ok when |
//! |---|---|
//! | `queue` (with `--queue`) | the SQS queue is resolved |
//! | `store` | etcd answered and its stored layout is one this build reads (the memory store: at once) |
//! | `view` | the in-process view has loaded a complete list |
//! | `bootstrap` | on the leader, the bootstrap reconcile is done (a follower does not wait for it) |
//!
//! The body: `{"ready", "waitingFor": [check names], "checks": {name:
//! {"ok", "detail"}}, "viewLoaded", "leader", "bootstrapReconcileDone"}`.

use std::sync::{Arc, Mutex, OnceLock};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

/// A startup check (the running daemon's checks are read live).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The SQS queue.
    Queue,
    /// The store (and, on etcd, its layout).
    Store,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Queue => "queue",
            Step::Store => "store",
        }
    }
}

/// A check's state.
#[derive(Debug, Clone)]
struct Status {
    ok: bool,
    detail: String,
}

/// What the running daemon's readiness reads.
struct Live {
    cache: blox_state::Cache,
    bootstrapped: watch::Receiver<bool>,
    leader: watch::Receiver<bool>,
}

/// What `/v1/ready` reports; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Readiness {
    steps: Arc<Mutex<Vec<(Step, Status)>>>,
    live: Arc<OnceLock<Live>>,
}

impl Readiness {
    /// Readiness of a daemon starting now; `queue`: whether it resolves an
    /// SQS queue.
    pub fn new(queue: bool) -> Self {
        let pending = |detail: &str| Status {
            ok: false,
            detail: detail.to_owned(),
        };
        let mut steps = Vec::new();
        if queue {
            steps.push((Step::Queue, pending("resolving the SQS queue")));
        }
        steps.push((Step::Store, pending("not connected yet")));
        Readiness {
            steps: Arc::new(Mutex::new(steps)),
            live: Arc::new(OnceLock::new()),
        }
    }

    fn steps(&self) -> Vec<(Step, Status)> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a startup check's state.
    pub fn set(&self, step: Step, ok: bool, detail: impl Into<String>) {
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, status)) = steps.iter_mut().find(|(s, _)| *s == step) {
            *status = Status {
                ok,
                detail: detail.into(),
            };
        }
    }

    /// The daemon runs: from now on the view and the bootstrap are read
    /// from their owners.
    pub fn running(
        &self,
        cache: blox_state::Cache,
        bootstrapped: watch::Receiver<bool>,
        leader: watch::Receiver<bool>,
    ) {
        let _ = self.live.set(Live {
            cache,
            bootstrapped,
            leader,
        });
    }

    /// Every check with its state, in order.
    fn checks(&self) -> Vec<(&'static str, Status)> {
        let mut checks: Vec<(&'static str, Status)> = self
            .steps()
            .into_iter()
            .map(|(step, status)| (step.name(), status))
            .collect();
        let (view, bootstrap) = match self.live.get() {
            None => (
                Status {
                    ok: false,
                    detail: "waiting for the store".into(),
                },
                Status {
                    ok: false,
                    detail: "waiting for the store".into(),
                },
            ),
            Some(live) => {
                let loaded = live.cache.is_ready();
                let leader = *live.leader.borrow();
                let bootstrapped = *live.bootstrapped.borrow();
                (
                    Status {
                        ok: loaded,
                        detail: if loaded {
                            "loaded".into()
                        } else {
                            "loading the view from the store".into()
                        },
                    },
                    Status {
                        ok: !leader || bootstrapped,
                        detail: match (leader, bootstrapped) {
                            (false, _) => "not the leader: nothing to wait for".into(),
                            (true, true) => "the leader's bootstrap reconcile is done".into(),
                            (true, false) => "the leader's bootstrap reconcile is running".into(),
                        },
                    },
                )
            }
        };
        checks.push(("view", view));
        checks.push(("bootstrap", bootstrap));
        checks
    }

    /// The names of the checks not passed yet.
    pub fn waiting_for(&self) -> Vec<&'static str> {
        self.checks()
            .into_iter()
            .filter(|(_, s)| !s.ok)
            .map(|(name, _)| name)
            .collect()
    }
}

/// `GET /v1/ready`.
pub async fn ready(State(r): State<Readiness>) -> Response {
    let checks = r.checks();
    let waiting: Vec<&str> = checks
        .iter()
        .filter(|(_, s)| !s.ok)
        .map(|(n, _)| *n)
        .collect();
    let ok = waiting.is_empty();
    let by_name: Map<String, Value> = checks
        .iter()
        .map(|(n, s)| ((*n).to_owned(), json!({"ok": s.ok, "detail": s.detail})))
        .collect();
    let live = r.live.get();
    let body = Json(json!({
        "ready": ok,
        "waitingFor": waiting,
        "checks": by_name,
        "viewLoaded": live.is_some_and(|l| l.cache.is_ready()),
        "leader": live.is_some_and(|l| *l.leader.borrow()),
        "bootstrapReconcileDone": live.is_some_and(|l| *l.bootstrapped.borrow()),
    }));
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_starting_daemon_waits_for_each_step_in_order() {
        let r = Readiness::new(true);
        assert_eq!(r.waiting_for(), ["queue", "store", "view", "bootstrap"]);
        r.set(Step::Queue, true, "resolved");
        r.set(Step::Store, false, "waiting for etcd to answer: refused");
        assert_eq!(r.waiting_for(), ["store", "view", "bootstrap"]);
        assert!(
            r.checks()
                .iter()
                .any(|(n, s)| *n == "store" && s.detail.contains("etcd"))
        );
        assert_eq!(Readiness::new(false).waiting_for()[0], "store");
    }
}
