//! The daemon scheduler's HTTP API, compatible with Blox v0.3's
//! daemon-scheduler: a v0.3 client pointed at blox works unchanged.
//!
//! [`router`] serves, under `/v1`:
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /v1/ping` | `200 {"status": "ok"}` as soon as the server is up |
//! | `POST /v1/environments` | `Environment` (does not deploy) |
//! | `GET /v1/environments?cluster=&maxResults=&nextToken=` | `{"items": [Environment], "metadata": {"entityVersion"}, "nextToken"?}` |
//! | `GET /v1/environments/{name}` | `Environment` |
//! | `PUT /v1/environments/{name}` | `Environment` with the changed settings and a new `deploymentToken` |
//! | `DELETE /v1/environments/{name}?stopTasks=` | `200` with an empty body (also when there is no such environment) |
//! | `POST /v1/environments/{name}/deployments?deploymentToken=` | `Deployment` |
//! | `GET /v1/environments/{name}/deployments?maxResults=&nextToken=&deploymentToken=` | `{"items": [Deployment], "nextToken"?}` (`deploymentToken`, which v0.3's clients send, is ignored) |
//! | `GET /v1/environments/{name}/deployments/{id}` | `Deployment` |
//! | `GET /v1/environments/{name}/instances` | per-instance daemon status |
//! | `GET /v1/stream/environments?entityVersion=&environment=&cluster=` | one change per line |
//!
//! # Environments and deployments (v0.3's flow)
//! `POST /v1/environments` takes `{"name", "instanceGroup": {"cluster"},
//! "taskDefinition"}` (v0.3's `CreateEnvironmentRequest`) plus optional
//! blox extensions: `instanceGroup.attributes` (`[{"name", "value"?}]`,
//! every condition must hold), `drainingPolicy` (`stop-when-last` or
//! `stop-immediately`) and `maxUnavailable` (rollout bound, at least 1).
//! Unknown fields are rejected. With ECS configured
//! ([`SchedApiState::with_ecs`]) the cluster and the task definition are
//! checked with `DescribeClusters` and `DescribeTaskDefinition` as v0.3 did
//! (a missing or INACTIVE one is a 404) and stored as the ARNs ECS answers;
//! a task definition given to `PUT` is resolved the same way. A duplicate
//! name is a 400, as in v0.3. Creating an environment does **not** deploy:
//! read its `deploymentToken` and `POST .../deployments?deploymentToken=..`.
//! The token changes whenever the environment changes and whenever a
//! deployment is created, so a stale or retried request is a 400 instead of
//! a second deployment. `PUT /v1/environments/{name}` (beyond v0.3) takes
//! any of `taskDefinition`, `instanceGroup` (whose `cluster` must be the
//! environment's: an environment cannot move; its `attributes` replace the
//! selector), `drainingPolicy` and `maxUnavailable`, and issues a new
//! token. A new task definition is rolled out by the next deployment; the
//! other settings apply at once (instances that stop matching the selector
//! have their daemon task stopped). A body that changes nothing is a 400.
//!
//! `DELETE` removes the environment and its deployments and leaves its tasks
//! running (as v0.3 did); with `stopTasks=true` the environment disappears
//! from gets and lists at once, the daemon scheduler stops its tasks, and it
//! is removed when they are gone (re-creating it meanwhile is a 400, as for
//! a duplicate). Deleting an unknown environment is a 200 too (idempotent,
//! as in v0.3, whose spec declares no 404 for it).
//!
//! # Response shapes
//! An `Environment` has v0.3's `name`, `instanceGroup.cluster`,
//! `taskDefinition`, `deploymentToken` and `health` (always `healthy`), plus
//! `drainingPolicy`, `maxUnavailable`, `activeDeployment` (an id, when one
//! exists), `deploymentCount`, `createdAt` and `updatedAt`.
//!
//! A `Deployment` has v0.3's `id`, `environmentName`, `taskDefinition`,
//! `status` (`pending` until a task is started, `running`, `completed` once
//! every eligible instance has run its task) and `failedInstances`
//! (container instance ARNs held in backoff), plus `failureReasons` (ARN to
//! ECS's reason), `progress` (`{"done", "total"}`: eligible instances
//! running its task, eligible instances), `sequence` (1 for the first),
//! `supersededBy`, `createdAt` and `updatedAt`. Deployments are listed
//! oldest first.
//!
//! # Per-instance status (beyond v0.3)
//! `GET /v1/environments/{name}/instances` answers
//! `{"environmentName", "activeDeployment"?, "taskDefinition", "items":
//! [{"instance", "state", "reason"?, "task"?, "taskDefinition"?}], "summary":
//! {"running", "pending", "failed"}}` for every eligible instance of the
//! environment's cluster (ACTIVE, agent connected, selected), from the
//! cluster-state cache: `state` is `running` (the active deployment's task
//! runs), `failed` (the instance is listed in the active deployment's
//! `failedInstances`; `reason` is ECS's) or `pending`. It is a 503 until
//! the cache has loaded.
//!
//! # Change stream (beyond v0.3)
//! `GET /v1/stream/environments` is chunked `application/octet-stream`, the
//! form of v0.3's streams: one JSON line per write of an environment or
//! deployment, in revision order:
//! `{"metadata": {"entityVersion", "deleted"?}, "type": "environment" |
//! "deployment", "environmentName", "id"? (deployments), "entity"?}` where
//! `entity` is the new `Environment` or `Deployment`; a delete carries the
//! last known entity with `"deleted": true` (no `entity` only if the
//! stream never knew it). An environment deleted with `stopTasks=true`
//! appears with `"deleting": true` first, then as deleted (with its
//! deployments) once its tasks are gone. Without `entityVersion` the
//! stream carries only future changes; with one (a list's
//! `metadata.entityVersion` or a line's) it resumes right after it, possibly
//! repeating changes a list already showed (lines carry whole entities, so
//! applying one twice is harmless). Streams read the process's one feed of
//! the environment store's keys ([`SchedApiState::environment_feed`]), and
//! resume from its history of recent revisions or, for an older revision,
//! from the store's. A revision neither has, from another store epoch or
//! from the future is a 410 whose message starts with `Entity version is
//! out of range` and says to list again. `environment=NAME` keeps one
//! environment's lines; `cluster=` (name or ARN) keeps those of
//! environments on that cluster. If the stream falls too far behind the
//! feed, the feed relists, or the store fails while the stream catches up,
//! the response is aborted (no clean end), so the client resumes from the
//! last line it read. A stream ends cleanly when the feed is closed at
//! shutdown ([`KvFeed::end_streams`]).
//!
//! # Errors
//! Every error is what v0.3 wrote: `text/plain; charset=utf-8`, the message
//! and a newline, the message starting with v0.3's text where it had one
//! (detail may follow after `": "`): 400 (bad JSON body, missing or invalid
//! field, environment exists or is being deleted, unknown query parameter:
//! `At least one of the filters provided is not supported`, repeated one:
//! `... is specified multiple times`, bad cluster: `Invalid cluster ARN or
//! name`, stale deployment token, undecodable path), 404 (`Environment NAME
//! does not exist`, `Deployment ID does not exist for environment NAME`, a
//! cluster or task definition ECS does not have or reports INACTIVE:
//! `Cluster is inactive`, `TaskDefinition is inactive`, unknown route),
//! 405, 409 (concurrent writers kept winning: retry), 410, 413 (body over
//! axum's default 2 MB limit), 503 (store unreachable, ECS throttling or
//! unreachable, or cache not loaded, with `Retry-After`) or 500 (`Server
//! Error`).
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use blox_sched::http::{SchedApiState, router};
//! use blox_state::cache::spawn_follower;
//! use blox_state::store::memory::MemoryStore;
//! use blox_state::StateStore;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
//! let (cache, _follower) = spawn_follower(Arc::clone(&store));
//! let app = router(SchedApiState::new(cache, store));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

mod deployments;
mod environments;
mod error;
mod instances;
mod params;
mod resolve;
mod stream;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::Uri;
use axum::routing::{get, post};
use blox_core::ports::EcsApi;
use blox_state::Cache;
use blox_state::cache::{FeedOptions, KvFeed};
use blox_state::store::StateStore;

pub use error::ApiError;
pub use params::MAX_RESULTS_LIMIT;

use crate::daemon::EnvironmentStore;

/// What the routes read and write: the environment store, the state store
/// under it (for the change stream) and the cluster-state cache (for
/// per-instance status).
#[derive(Clone)]
pub struct SchedApiState {
    envs: EnvironmentStore,
    store: Arc<dyn StateStore>,
    cache: Cache,
    default_rollout_bound: u32,
    ecs: Option<Arc<dyn EcsApi>>,
    /// The feed of environment changes streams read (one per state, made
    /// on first use unless given).
    feed: Arc<std::sync::OnceLock<KvFeed>>,
}

impl std::fmt::Debug for SchedApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedApiState").finish_non_exhaustive()
    }
}

impl SchedApiState {
    /// State over a cache and the store it follows (environments are kept
    /// in the same store).
    pub fn new(cache: Cache, store: Arc<dyn StateStore>) -> Self {
        SchedApiState {
            envs: EnvironmentStore::new(Arc::clone(&store)),
            store,
            cache,
            default_rollout_bound: 1,
            ecs: None,
            feed: Arc::default(),
        }
    }

    /// Streams read environment changes from `feed` (a [`KvFeed`] of
    /// [`EnvironmentStore::KEY_PREFIX`] the process shares, so it keeps one
    /// key-value watch whatever the number of streams). Without it the
    /// state follows the prefix itself from the first stream on.
    pub fn with_environment_feed(self, feed: KvFeed) -> Self {
        // A fresh state's cell is empty: the feed is the one given.
        let _ = self.feed.set(feed);
        self
    }

    /// The feed of environment changes streams read.
    pub fn environment_feed(&self) -> &KvFeed {
        self.feed.get_or_init(|| {
            KvFeed::spawn(
                Arc::clone(&self.store),
                EnvironmentStore::KEY_PREFIX,
                FeedOptions::default(),
            )
            .0
        })
    }

    /// Checks a new environment's cluster and task definition with ECS
    /// (`DescribeClusters`, `DescribeTaskDefinition`) as Blox v0.3 did, and
    /// stores both as the ARNs ECS answers; a missing or INACTIVE one is a
    /// 404. Without ECS they are stored as given.
    pub fn with_ecs(mut self, ecs: Arc<dyn EcsApi>) -> Self {
        self.ecs = Some(ecs);
        self
    }

    /// The rollout bound (`maxUnavailable`) of environments created
    /// without one (default 1; the daemon's `--rollout-bound`).
    pub fn with_default_rollout_bound(mut self, bound: u32) -> Self {
        self.default_rollout_bound = bound.max(1);
        self
    }

    /// Takes the times it records and reports from `clock` instead of the
    /// wall clock.
    pub fn with_clock(mut self, clock: blox_core::clock::SharedClock) -> Self {
        self.envs = self.envs.with_clock(clock);
        self
    }

    /// The environment store the routes use.
    pub fn environments(&self) -> &EnvironmentStore {
        &self.envs
    }

    /// The cluster-state cache per-instance status reads.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}

/// The daemon scheduler's routes (see the [module docs](self)). Merge them
/// with the cluster-state routes (`blox_state::http::router`) to serve both
/// v0.3 services on one port. This router answers unknown paths (404) and
/// methods (405) with plain-text errors, so merge it into routers that have no
/// fallback of their own (axum refuses to merge two fallbacks).
pub fn router(state: SchedApiState) -> Router {
    Router::new()
        .route("/v1/ping", get(ping))
        .route(
            "/v1/environments",
            post(environments::create).get(environments::list),
        )
        .route(
            "/v1/environments/{name}",
            get(environments::get_one)
                .put(environments::update)
                .delete(environments::delete),
        )
        .route(
            "/v1/environments/{name}/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route(
            "/v1/environments/{name}/deployments/{id}",
            get(deployments::get_one),
        )
        .route(
            "/v1/environments/{name}/instances",
            get(instances::statuses),
        )
        .route("/v1/stream/environments", get(stream::environments))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// `GET /v1/ping`.
async fn ping() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
