//! Shared support of the `http_*` integration tests: a server over a
//! `MemoryStore` and a following cache bound on 127.0.0.1:0, a minimal
//! HTTP/1.1 client, fixtures, and a Swagger 2.0 validator for the Blox v0.3
//! spec.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod client;
pub mod spec;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use blox_core::model::{Arn, ContainerInstance, EntityKind, Task, TaskStatus, Timestamp};
use blox_state::cache::{CacheOptions, spawn_follower_with};
use blox_state::http::{ApiState, router};
use blox_state::store::memory::{MemoryOptions, MemoryStore};
use blox_state::store::{
    ApplyOutcome, Change, Expiry, ExpiryReport, Filter, KvEntry, KvTxn, KvTxnOutcome,
    KvWatchStream, Listing, Revision, RevisionStream, StateStore, Versioned,
};
use blox_state::{Cache, StoreError};
use futures::StreamExt;
use tokio::task::JoinHandle;

/// The account and region of every fixture ARN.
pub const PREFIX: &str = "arn:aws:ecs:us-east-1:123456789012";

/// A server under test.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The store behind it (write here; the cache follows).
    pub store: MemoryStore,
    /// Watch streams currently open on the store (the cache's own, and a
    /// stream's while it catches up from the store's history).
    pub live_watches: Arc<AtomicUsize>,
    /// Fault switches of the store the routes see.
    pub faults: Arc<Faults>,
    /// The cache the routes read.
    pub cache: Cache,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Server {
    /// A server over an empty memory store with default options.
    pub async fn start() -> Server {
        Self::start_with(MemoryOptions::default()).await
    }

    /// A server over an empty memory store with these options.
    pub async fn start_with(options: MemoryOptions) -> Server {
        Self::start_with_cache(options, CacheOptions::default()).await
    }

    /// A server over an empty memory store and a cache with these options.
    pub async fn start_with_cache(options: MemoryOptions, cache: CacheOptions) -> Server {
        Self::start_full(options, cache, Faults::default()).await
    }

    /// A server whose store's watches, the cache's included, break on
    /// [`Faults::break_watches`]: as compacted (the cache relists) or as an
    /// outage (the cache resumes).
    pub async fn start_breakable(as_compacted: bool) -> Server {
        let faults = Faults {
            breakable: AtomicBool::new(true),
            break_as_compacted: AtomicBool::new(as_compacted),
            ..Faults::default()
        };
        Self::start_full(MemoryOptions::default(), CacheOptions::default(), faults).await
    }

    async fn start_full(options: MemoryOptions, cache: CacheOptions, faults: Faults) -> Server {
        let store = MemoryStore::with_options(options);
        let live_watches = Arc::new(AtomicUsize::new(0));
        let faults = Arc::new(faults);
        let counted: Arc<dyn StateStore> = Arc::new(TestStore {
            inner: store.clone(),
            live: Arc::clone(&live_watches),
            faults: Arc::clone(&faults),
        });
        let (cache, follower) = spawn_follower_with(Arc::clone(&counted), cache);
        tokio::time::timeout(Duration::from_secs(10), cache.wait_until_ready())
            .await
            .expect("cache ready");
        let app = router(ApiState::new(cache.clone(), counted));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            addr,
            store,
            live_watches,
            faults,
            cache,
            tasks: vec![follower, server],
        }
    }

    /// Applies changes and waits until the cache has seen them.
    pub async fn apply(&self, changes: Vec<Change>) -> Revision {
        let outcomes = self.store.apply_batch(changes).await.unwrap();
        let mut last = Revision::default();
        for o in outcomes {
            match o {
                ApplyOutcome::Applied { revision } => last = revision,
                other => panic!("fixture change not applied: {other:?}"),
            }
        }
        self.wait_for_cache(last).await;
        last
    }

    /// Waits (generously) until the cache has reached `revision`.
    pub async fn wait_for_cache(&self, revision: Revision) {
        let mut changes = self.cache.changes();
        tokio::time::timeout(
            Duration::from_secs(10),
            changes.wait_for(|r| r.epoch == revision.epoch && r.seq >= revision.seq),
        )
        .await
        .expect("cache caught up")
        .unwrap();
    }

    /// Puts entities and waits for the cache.
    pub async fn put(&self, entities: Vec<blox_core::model::Entity>) -> Revision {
        self.apply(entities.into_iter().map(Change::put).collect())
            .await
    }

    /// Puts the task `id` of `cluster_name` in `status` (see [`task`]).
    pub async fn put_task(&self, cluster_name: &str, id: &str, status: TaskStatus) -> Revision {
        self.put(vec![task(cluster_name, id, status, None).into()])
            .await
    }

    /// `GET path`, read to the end.
    pub async fn get(&self, path: &str) -> client::Response {
        client::get(self.addr, path).await
    }

    /// Opens a streaming `GET path`.
    pub async fn stream(&self, path: &str) -> client::Stream {
        client::Stream::open(self.addr, path).await
    }

    /// Waits (generously) until the number of streams reading the cache's
    /// feed satisfies `f`.
    pub async fn wait_for_readers(&self, f: impl Fn(usize) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !f(self.cache.feed().readers()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("reader count reached");
    }

    /// Waits (generously) until the number of open watches satisfies `f`.
    pub async fn wait_for_watches(&self, f: impl Fn(usize) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !f(self.live_watches.load(Ordering::SeqCst)) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("watch count reached");
    }
}

/// Serves `app` on 127.0.0.1:0 for the rest of the test; returns its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// An ARN under the fixture account.
pub fn arn(rest: &str) -> Arn {
    Arn::parse(&format!("{PREFIX}:{rest}")).unwrap()
}

/// A cluster ARN.
pub fn cluster(name: &str) -> Arn {
    arn(&format!("cluster/{name}"))
}

/// A container instance of `cluster` with id `id` at ECS version `version`.
pub fn instance(cluster_name: &str, id: &str, version: u64) -> ContainerInstance {
    let mut i = ContainerInstance::new(
        arn(&format!("container-instance/{cluster_name}/{id}")),
        cluster(cluster_name),
    );
    i.version = Some(version);
    i
}

/// A task of `cluster` with id `id`, status and startedBy.
pub fn task(cluster_name: &str, id: &str, status: TaskStatus, started_by: Option<&str>) -> Task {
    let mut t = Task::new(
        arn(&format!("task/{cluster_name}/{id}")),
        cluster(cluster_name),
        format!("{PREFIX}:task-definition/web:1"),
    );
    t.last_status = status;
    t.started_by = started_by.map(str::to_owned);
    t.version = Some(1);
    t.created_at = Some(Timestamp::from_millis(1_600_000_000_000));
    t
}

/// Percent-encodes every byte outside `[A-Za-z0-9._~-]`.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._~-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Faults the test store can inject.
#[derive(Default)]
pub struct Faults {
    /// While set, `current_revision` and `watch` fail with `Unavailable`.
    pub down: AtomicBool,
    /// Watches opened while this is set fail (an `Err` item) once
    /// [`Faults::break_watches`] is called.
    pub breakable: AtomicBool,
    /// Whether a broken watch says its revision was compacted (the watcher
    /// must relist) rather than that the store is unavailable.
    pub break_as_compacted: AtomicBool,
    broken: tokio::sync::Notify,
}

impl Faults {
    /// Makes every breakable watch yield an error.
    pub fn break_watches(&self) {
        self.broken.notify_waiters();
    }
}

fn outage() -> StoreError {
    StoreError::Unavailable {
        message: "injected outage".into(),
        source: None,
    }
}

/// A memory store that counts the watch streams open on it (to see streams
/// end) and injects [`Faults`].
struct TestStore {
    inner: MemoryStore,
    live: Arc<AtomicUsize>,
    faults: Arc<Faults>,
}

/// Decrements the count when the watch stream it rides on is dropped.
struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl StateStore for TestStore {
    async fn apply_each(
        &self,
        changes: Vec<Change>,
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        self.inner.apply_each(changes).await
    }
    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(arn).await
    }
    async fn list(
        &self,
        kind: EntityKind,
        filter: &Filter,
    ) -> Result<Listing<Versioned>, StoreError> {
        self.inner.list(kind, filter).await
    }
    async fn list_all(&self) -> Result<Listing<Versioned>, StoreError> {
        self.inner.list_all().await
    }
    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream, StoreError> {
        if self.faults.down.load(Ordering::SeqCst) {
            return Err(outage());
        }
        let mut stream = self.inner.watch_revisions(after).await?;
        if self.faults.breakable.load(Ordering::SeqCst) {
            let faults = Arc::clone(&self.faults);
            let failure = futures::stream::once(async move {
                faults.broken.notified().await;
                if faults.break_as_compacted.load(Ordering::SeqCst) {
                    Err(StoreError::Compacted {
                        requested: after,
                        oldest: after,
                    })
                } else {
                    Err(outage())
                }
            });
            stream = futures::stream::select(stream, failure).boxed();
        }
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = Guard(Arc::clone(&self.live));
        Ok(stream
            .map(move |item| {
                let _keep = &guard;
                item
            })
            .boxed())
    }
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        if self.faults.down.load(Ordering::SeqCst) {
            return Err(outage());
        }
        self.inner.current_revision().await
    }
    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport, StoreError> {
        self.inner.expire(expiry).await
    }
    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, StoreError> {
        self.inner.kv_get(key).await
    }
    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>, StoreError> {
        self.inner.kv_list(prefix).await
    }
    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome, StoreError> {
        self.inner.kv_txn(txn).await
    }
    async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream, StoreError> {
        self.inner.kv_watch(prefix, after).await
    }
}
