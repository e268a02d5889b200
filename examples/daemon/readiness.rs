//! `GET /v1/ready`: 200 once the daemon serves a complete view, 503 until
//! then, saying what it waits for. The checks, in the order startup meets
//! them:
//!
//! | check | ok when |
//! |---|---|
//! | `queue` (with `--queue`) | the SQS queue is resolved |
//! | `store` | etcd answered and its stored layout is one this build reads (the memory store: at once) |
//! | `view` | the in-process view has loaded a complete list |
//! | `bootstrap` | on the leader, the bootstrap reconcile is done for every cluster (a follower does not wait for it) |
//!
//! The body: `{"ready", "waitingFor": [check names], "checks": {name:
//! {"ok", "detail"}}, "viewLoaded", "leader", "bootstrapReconcileDone"}`.
//! While the bootstrap is done for some clusters but pending for others,
//! `waitingFor` names each pending cluster as `bootstrap:<cluster>` (the
//! configured name, or the ARN) in place of `bootstrap`.

use std::sync::{Arc, Mutex, OnceLock};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use blox_state::reconcile::BootstrapDone;
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
    bootstrap: watch::Receiver<Option<BootstrapDone>>,
    leader: watch::Receiver<bool>,
}

impl Live {
    /// Whether the bootstrap of the current term is done for every cluster.
    fn bootstrapped(&self) -> bool {
        self.bootstrap
            .borrow()
            .as_ref()
            .is_some_and(|d| d.pending.is_empty())
    }
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

    /// The daemon runs: from now on the view and the bootstrap
    /// ([`Reconciler::bootstrap_done`](blox_state::reconcile::Reconciler::bootstrap_done))
    /// are read from their owners.
    pub fn running(
        &self,
        cache: blox_state::Cache,
        bootstrap: watch::Receiver<Option<BootstrapDone>>,
        leader: watch::Receiver<bool>,
    ) {
        let _ = self.live.set(Live {
            cache,
            bootstrap,
            leader,
        });
    }

    /// The clusters whose bootstrap is pending on the leader while it is
    /// done for the others (empty otherwise).
    fn pending_clusters(&self) -> Vec<String> {
        match self.live.get() {
            Some(live) if *live.leader.borrow() => (live.bootstrap.borrow().as_ref())
                .map(|d| d.pending.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Every check with its state, in order.
    fn checks(&self) -> Vec<(&'static str, Status)> {
        let mut checks: Vec<(&'static str, Status)> = self
            .steps()
            .into_iter()
            .map(|(step, status)| (step.name(), status))
            .collect();
        let pending = self.pending_clusters();
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
                let bootstrapped = live.bootstrapped();
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
                            (true, false) if pending.is_empty() => {
                                "the leader's bootstrap reconcile is running".into()
                            }
                            (true, false) => format!(
                                "the leader's bootstrap reconcile is pending for clusters {}",
                                pending.join(", ")
                            ),
                        },
                    },
                )
            }
        };
        checks.push(("view", view));
        checks.push(("bootstrap", bootstrap));
        checks
    }

    /// The names of the checks not passed yet (a pending bootstrap as
    /// `bootstrap:<cluster>` per pending cluster, once known).
    pub fn waiting_for(&self) -> Vec<String> {
        waiting_for(&self.checks(), &self.pending_clusters())
    }
}

/// The `waitingFor` list of `checks`, with `pending` clusters named.
fn waiting_for(checks: &[(&'static str, Status)], pending: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _) in checks.iter().filter(|(_, s)| !s.ok) {
        if *name == "bootstrap" && !pending.is_empty() {
            out.extend(pending.iter().map(|c| format!("bootstrap:{c}")));
        } else {
            out.push((*name).to_owned());
        }
    }
    out
}

/// `GET /v1/ready`.
pub async fn ready(State(r): State<Readiness>) -> Response {
    let checks = r.checks();
    let waiting = waiting_for(&checks, &r.pending_clusters());
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
        "bootstrapReconcileDone": live.is_some_and(Live::bootstrapped),
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

    #[test]
    fn a_leader_names_the_clusters_whose_bootstrap_is_pending() {
        let r = Readiness::new(false);
        r.set(Step::Store, true, "the in-memory store");
        let (cache, mut writer) = blox_state::cache::cache();
        writer.replace(Vec::new(), blox_state::store::Revision::new(1, 1));
        let (boot, boot_rx) = watch::channel(None);
        let (leader, leader_rx) = watch::channel(true);
        r.running(cache, boot_rx, leader_rx);
        assert_eq!(r.waiting_for(), ["bootstrap"], "running: nothing known yet");
        boot.send_replace(Some(BootstrapDone {
            pending: vec!["prod".into(), "staging".into()],
            ..BootstrapDone::UNGATED
        }));
        assert_eq!(r.waiting_for(), ["bootstrap:prod", "bootstrap:staging"]);
        assert!(
            r.checks()
                .iter()
                .any(|(n, s)| *n == "bootstrap" && s.detail.contains("prod, staging"))
        );
        boot.send_replace(Some(BootstrapDone {
            pending: vec!["staging".into()],
            ..BootstrapDone::UNGATED
        }));
        assert_eq!(r.waiting_for(), ["bootstrap:staging"]);
        boot.send_replace(Some(BootstrapDone::UNGATED));
        assert!(r.waiting_for().is_empty(), "{:?}", r.waiting_for());
        // A follower waits for no bootstrap.
        boot.send_replace(Some(BootstrapDone {
            pending: vec!["prod".into()],
            ..BootstrapDone::UNGATED
        }));
        leader.send_replace(false);
        assert!(r.waiting_for().is_empty());
    }
}
