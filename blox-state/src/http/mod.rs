//! The cluster-state HTTP API, compatible with Blox v0.3's
//! cluster-state-service: a v0.3 client pointed at blox works unchanged.
//!
//! [`router`] serves, under `/v1`:
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /v1/instances?status=&cluster=&maxResults=&nextToken=` | `{"items": [Item], "metadata": {"entityVersion"}, "nextToken"?}` |
//! | `GET /v1/instances/{cluster}/{arn}` | `Item` |
//! | `GET /v1/tasks?status=&cluster=&startedBy=&maxResults=&nextToken=` | `{"items": [Item], "metadata": {"entityVersion"}, "nextToken"?}` |
//! | `GET /v1/tasks/{cluster}/{arn}` | `Item` |
//! | `GET /v1/stream/instances?entityVersion=&cluster=` | one `Item` per line |
//! | `GET /v1/stream/tasks?entityVersion=&cluster=` | one `Item` per line |
//!
//! An `Item` is `{"metadata": {"entityVersion": "EPOCH:SEQ"}, "entity": {..}}`
//! (see [Response shapes](#response-shapes)), where `entityVersion` is the
//! store revision of the entity's last write. Lists and gets read the
//! in-process [`Cache`]; streams read the cache's feed of revisions
//! ([`Cache::subscribe`]): the process keeps one store watch, the cache's,
//! whatever the number of streams.
//!
//! # Lists
//! Filters combine (all must match). `status` is validated per kind, in any
//! case: instance statuses include `DRAINING` (v0.3 knew only `ACTIVE` and
//! `INACTIVE`); task statuses are ECS's. `cluster` is a name or a cluster
//! ARN. An unknown or repeated parameter, an empty value or an invalid value
//! is a 400, as in v0.3 and with its text first (see [Errors](#errors)).
//!
//! Beyond v0.3: pagination. Without `maxResults` a list returns everything
//! (as v0.3 did); with `maxResults` (1 to [`MAX_RESULTS_LIMIT`]) it returns
//! at most that many items in ARN order, plus a `nextToken` when more remain;
//! pass it back unchanged (with the same filters) for the next page. Tokens
//! are opaque; an invalid one is a 400. The list's `metadata.entityVersion`
//! is the revision the page was read at, and the page holds every write of
//! that revision (the cache applies a revision whole): streaming from it
//! misses nothing.
//!
//! A list is exactly the view at that revision: the matching entries are
//! taken under one read of the cache, then the body is written from them
//! outside the lock, streamed a chunk (about 64 KiB) at a time as the
//! connection takes it, yielding to other requests between chunks. Its
//! memory is the entry handles plus one chunk, whatever the size of the
//! list; when the client goes away the rest is never produced. A list that
//! fits in one chunk is sent with a `Content-Length`, a longer one chunked.
//! Each entity's JSON is encoded once per revision, by the first request
//! that serves it, and copied by every later list and get.
//!
//! # Gets
//! The ARN is the rest of the path (ARNs contain `/`), raw or URL-encoded.
//! An unknown ARN, an ARN of the other kind, an entity that is not in the
//! cluster of the path (by name or ARN), a path without a cluster (what a
//! v0.3 client sends when it leaves the cluster empty) and a malformed
//! cluster or ARN are a 404 `Task not found` / `Instance not found`: the
//! only client error v0.3's spec declares for gets.
//!
//! # Streams
//! As v0.3 sent them: `application/octet-stream`, chunked, one `Item` per
//! line per change, in revision order (the lines of one revision in one
//! chunk). A delete carries the last known entity with
//! `"metadata": {"entityVersion": .., "deleted": true}`. Without
//! `entityVersion` (or with an empty one, which v0.3 accepted) a stream
//! starts from the cache's current revision (only future changes); with
//! `entityVersion=REV` it resumes right after `REV` (a list's or a line's
//! `entityVersion`): from the cache's history of recent revisions, or, for
//! an older revision, from the store's history first. A revision neither
//! has (compacted), from another store epoch (the memory store restarted),
//! or from the future is a **410 Gone** (blox's extension) whose message
//! starts with v0.3's `Entity version is out of range` and says to relist:
//! list, then stream from the list's `metadata.entityVersion`. `cluster`
//! filters the stream (name or ARN). The response is aborted (no clean end
//! of the chunked body), so the client sees an error and resumes from the
//! last line it read, when the stream falls too far behind the cache (it
//! is never buffered without bound), when the cache relists the store, or
//! when the store fails while the stream catches up from its history. A
//! stream ends cleanly when the process shuts down ([`Cache::end_streams`]),
//! and is released when the client disconnects (noticed at the latest when
//! the next change is written).
//!
//! # Errors
//! As v0.3 wrote them: `text/plain; charset=utf-8`, the message and a
//! newline, with 400, 404, 410, 503 (cache not loaded yet or store
//! unreachable, with `Retry-After`) or 500. Every message starts with v0.3's
//! text for the case ([`text`]: `Task not found`, `Invalid status`, `Invalid
//! cluster ARN or name`, `At least one of the filters provided is
//! unsupported`, `... is specified multiple times`, `Invalid entity
//! version`, `Entity version is out of range`, `Unexpected internal server
//! error`), since v0.3's generated clients match on it; blox's detail may
//! follow after `": "`.
//!
//! # Response shapes
//! Entities are v0.3's model, each field once under v0.3's name:
//! `clusterARN`, `containerInstanceARN`, `taskARN`, `taskDefinitionARN`,
//! `EC2InstanceID`, `containerARN`, `bindIP`, and resources as `{"name",
//! "type", "value"}` (the number as text, a string set joined with commas).
//! Fields v0.3 lacked are added in ECS's camelCase only where they carry
//! information (ECS's own `version`, `launchType`, RFC 3339 timestamps such
//! as `registeredAt`, ...). Fields
//! the spec requires but blox may not know are filled in: `""` for a
//! Fargate task's `containerInstanceARN`, an unknown `createdAt`, a
//! container's unknown ARN or status and a capability attribute's value;
//! `{}` for a missing `versionInfo`; `{"containerOverrides": []}` for missing
//! `overrides`. Every response validates against the v0.3 spec (tested).
//!
//! `GET /v1/ping` belongs to the daemon, not to this router.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use blox_state::cache::spawn_follower;
//! use blox_state::http::{ApiState, router};
//! use blox_state::store::memory::MemoryStore;
//! use blox_state::StateStore;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
//! let (cache, _follower) = spawn_follower(Arc::clone(&store));
//! let app = router(ApiState::new(cache, store)); // merge into your own Router as needed
//! // Nagle's algorithm off: without it the end of a response can wait
//! // for the client's delayed ACK (about 40 ms).
//! use axum::serve::ListenerExt;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
//!     .await?
//!     .tap_io(|tcp| {
//!         let _ = tcp.set_nodelay(true);
//!     });
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

mod entities;
mod error;
#[cfg(test)]
pub(crate) mod fixtures;
mod listing;
mod params;
pub(crate) mod shape;
mod stream;
mod v03;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use error::{ApiError, detailed, text, text_response};
pub use params::{MAX_RESULTS_LIMIT, Params, RawQuery, query_pairs, truncate_to};
pub use stream::{STREAM_TYPE, stream_response};

use crate::cache::Cache;
use crate::store::StateStore;

/// What the routes read: the cache (lists, gets and streams) and the store
/// (streams resuming from before the cache's history).
///
/// Cheap to clone (one shared allocation): every request clones it.
#[derive(Clone)]
pub struct ApiState(Arc<Parts>);

/// What an [`ApiState`] shares.
struct Parts {
    cache: Cache,
    store: Arc<dyn StateStore>,
    lists: Arc<listing::ListStats>,
}

impl ApiState {
    /// State over a cache and the store it follows.
    pub fn new(cache: Cache, store: Arc<dyn StateStore>) -> Self {
        ApiState(Arc::new(Parts {
            cache,
            store,
            lists: Arc::default(),
        }))
    }

    /// What list bodies have done.
    fn lists(&self) -> &Arc<listing::ListStats> {
        &self.0.lists
    }

    /// The cache lists and gets read from.
    pub fn cache(&self) -> &Cache {
        &self.0.cache
    }

    /// The store streams catch up from.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.0.store
    }

    /// A 503 until the cache has loaded its first complete list.
    fn ready(&self) -> Result<(), ApiError> {
        if self.0.cache.is_ready() {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "the state cache is still loading; retry shortly".into(),
            ))
        }
    }
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("cache", &self.0.cache)
            .finish_non_exhaustive()
    }
}

/// The cluster-state routes (see the module docs), ready to serve or to
/// merge into an application's router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/instances", get(entities::list_instances))
        .route(
            "/v1/instances/{*cluster_and_arn}",
            get(entities::get_instance),
        )
        .route("/v1/tasks", get(entities::list_tasks))
        .route("/v1/tasks/{*cluster_and_arn}", get(entities::get_task))
        .route("/v1/stream/instances", get(stream::stream_instances))
        .route("/v1/stream/tasks", get(stream::stream_tasks))
        .with_state(state)
}
