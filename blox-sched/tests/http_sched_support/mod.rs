//! Shared support of blox-sched's `http_*` integration tests: the daemon
//! scheduler's routes served on 127.0.0.1:0 over a `MemoryStore` and a
//! following cache, request helpers, and fixtures. The HTTP client and the
//! Swagger checker are blox-state's (`blox-state/tests/http_support`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../blox-state/tests/http_support/client.rs"]
pub mod client;
#[path = "../../../blox-state/tests/http_support/spec.rs"]
pub mod spec;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use blox_core::model::{Arn, ContainerInstance, Entity, Task, TaskStatus};
use blox_core::ports::EcsApi;
use blox_sched::daemon::EnvironmentStore;
use blox_sched::http::{SchedApiState, router};
use blox_state::Cache;
use blox_state::cache::spawn_follower;
use blox_state::store::memory::MemoryStore;
use blox_state::store::{ApplyOutcome, Change, Revision, StateStore};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The account and region of every fixture ARN.
pub const PREFIX: &str = "arn:aws:ecs:us-east-1:123456789012";

/// A server under test.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The store behind it.
    pub store: MemoryStore,
    /// The environment store over the same store.
    pub envs: EnvironmentStore,
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
    /// A server over an empty memory store, its cache loaded.
    pub async fn start() -> Server {
        Self::start_with(|state| state).await
    }

    /// A server that checks environments with this ECS.
    pub async fn start_with_ecs(ecs: Arc<dyn EcsApi>) -> Server {
        Self::start_with(|state| state.with_ecs(ecs)).await
    }

    /// A server whose route state `configure` completes.
    async fn start_with(configure: impl FnOnce(SchedApiState) -> SchedApiState) -> Server {
        let store = MemoryStore::new();
        let shared: Arc<dyn StateStore> = Arc::new(store.clone());
        let (cache, follower) = spawn_follower(Arc::clone(&shared));
        tokio::time::timeout(Duration::from_secs(10), cache.wait_until_ready())
            .await
            .expect("cache ready");
        let app = router(configure(SchedApiState::new(
            cache.clone(),
            Arc::clone(&shared),
        )));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            addr,
            store,
            envs: EnvironmentStore::new(shared),
            cache,
            tasks: vec![follower, server],
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> client::Response {
        client::get(self.addr, path).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> client::Response {
        client::request(self.addr, "POST", path, Some(&body.to_string())).await
    }

    /// `POST path` with a raw body (or none).
    pub async fn post_raw(&self, path: &str, body: Option<&str>) -> client::Response {
        client::request(self.addr, "POST", path, body).await
    }

    /// `PUT path` with a raw body.
    pub async fn put_raw(&self, path: &str, body: &str) -> client::Response {
        client::request(self.addr, "PUT", path, Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> client::Response {
        client::request(self.addr, "DELETE", path, None).await
    }

    /// Opens a streaming `GET path`.
    pub async fn stream(&self, path: &str) -> client::Stream {
        client::Stream::open(self.addr, path).await
    }

    /// Creates environment `name` on `cluster` through the API; returns its JSON.
    pub async fn create_env(&self, name: &str, cluster: &str, td: &str) -> Value {
        let r = self
            .post("/v1/environments", &create_body(name, cluster, td))
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Creates environment `name` and deploys it; returns the deployment's JSON.
    pub async fn create_and_deploy(&self, name: &str, cluster: &str, td: &str) -> Value {
        let env = self.create_env(name, cluster, td).await;
        let token = env["deploymentToken"].as_str().unwrap();
        let r = self
            .post_raw(
                &format!("/v1/environments/{name}/deployments?deploymentToken={token}"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Puts entities and waits until the cache has seen them.
    pub async fn put(&self, entities: Vec<Entity>) -> Revision {
        let outcomes = self
            .store
            .apply_batch(entities.into_iter().map(Change::put).collect())
            .await
            .unwrap();
        let mut last = Revision::default();
        for o in outcomes {
            match o {
                ApplyOutcome::Applied { revision } => last = revision,
                other => panic!("fixture change not applied: {other:?}"),
            }
        }
        let mut changes = self.cache.changes();
        tokio::time::timeout(
            Duration::from_secs(10),
            changes.wait_for(|r| r.epoch == last.epoch && r.seq >= last.seq),
        )
        .await
        .expect("cache caught up")
        .unwrap();
        last
    }
}

/// v0.3's create request.
pub fn create_body(name: &str, cluster: &str, td: &str) -> Value {
    json!({ "name": name, "instanceGroup": { "cluster": cluster }, "taskDefinition": td })
}

/// An ARN under the fixture account.
pub fn arn(rest: &str) -> Arn {
    Arn::parse(&format!("{PREFIX}:{rest}")).unwrap()
}

/// A connected ACTIVE container instance `id` of `cluster`.
pub fn instance(cluster: &str, id: &str) -> ContainerInstance {
    let mut i = ContainerInstance::new(
        arn(&format!("container-instance/{cluster}/{id}")),
        arn(&format!("cluster/{cluster}")),
    );
    i.version = Some(1);
    i
}

/// A task `id` of `cluster` on instance `on`, started by `started_by`.
pub fn task(cluster: &str, id: &str, on: &str, started_by: &str, status: TaskStatus) -> Task {
    let mut t = Task::new(
        arn(&format!("task/{cluster}/{id}")),
        arn(&format!("cluster/{cluster}")),
        format!("{PREFIX}:task-definition/web:1"),
    );
    t.container_instance_arn = Some(arn(&format!("container-instance/{cluster}/{on}")));
    t.started_by = Some(started_by.to_owned());
    t.last_status = status;
    t.version = Some(1);
    t
}
