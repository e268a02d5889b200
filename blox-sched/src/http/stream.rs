//! `GET /v1/stream/environments`: environment and deployment changes, one
//! JSON object per line, chunked, as `application/octet-stream` (the form of
//! v0.3's streams).
//!
//! Streams read the process's one feed of the environment store's keys
//! ([`SchedApiState::environment_feed`]), not a store watch of their own
//! (except to catch up from the store's history when a client resumes from
//! a revision older than the feed's).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use blox_state::http::stream_response;
use blox_state::store::{KvEvent, WatchBatch};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::SchedApiState;
use super::error::{ApiError, store_error};
use super::params::{Params, RawQuery};
use crate::daemon::same_cluster;
use crate::daemon::{Deployment, Environment, EnvironmentStore, StoreKey};

/// `GET /v1/stream/environments?entityVersion=&environment=&cluster=`.
pub(crate) async fn environments(
    State(s): State<SchedApiState>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q, &["entityVersion", "environment", "cluster"])?;
    let mut lines = Lines {
        environment: p.get("environment").map(str::to_owned),
        cluster: p.cluster()?,
        ..Lines::default()
    };
    let feed = s.environment_feed();
    if tokio::time::timeout(Duration::from_secs(5), feed.wait_until_ready())
        .await
        .is_err()
    {
        return Err(ApiError::Unavailable(
            "the environment feed is still loading; retry shortly".into(),
        ));
    }
    let after = p.entity_version()?.unwrap_or_else(|| feed.feed().head());
    let subscription = feed.subscribe(after);
    // What exists now: the last known state of what the stream deletes.
    for entry in &subscription.current {
        lines.remember(&entry.key, &entry.value);
    }
    let store = &s.store;
    let history = async {
        let events = store.kv_watch(EnvironmentStore::KEY_PREFIX, after).await?;
        Ok(events
            .map(|e| {
                e.map(|e| WatchBatch {
                    revision: e.revision,
                    events: vec![e],
                })
            })
            .boxed())
    };
    let revisions = subscription
        .start
        .open(after, store.current_revision(), history)
        .await
        .map_err(store_error)?;
    let body = revisions.filter_map(move |item| {
        let out = match item {
            Ok(batch) => {
                let chunk: Vec<u8> = batch
                    .events
                    .iter()
                    .filter_map(|e| lines.line(e))
                    .flat_map(|b| b.to_vec())
                    .collect();
                (!chunk.is_empty()).then(|| Ok(Bytes::from(chunk)))
            }
            Err(e) => {
                tracing::info!(error = %e, "environment stream aborted");
                Some(Err(e))
            }
        };
        std::future::ready(out)
    });
    Ok(stream_response(body))
}

/// One stream's filters and what it knows of the store's keys.
#[derive(Debug, Default)]
struct Lines {
    /// Only this environment's lines.
    environment: Option<String>,
    /// Only lines of environments on this cluster (name or ARN).
    cluster: Option<String>,
    /// The last known entity (served shape) per key.
    last: HashMap<String, Value>,
    /// Each environment's cluster, as last known (kept after a delete, so
    /// the deletes of its deployments that follow can still be placed).
    clusters: HashMap<String, String>,
}

impl Lines {
    /// Records a stored value as the key's last known entity; returns it.
    fn remember(&mut self, key: &str, bytes: &[u8]) -> Option<Value> {
        let entity = match EnvironmentStore::parse_key(key)? {
            StoreKey::Environment(name) => {
                let env: Environment = decode(key, bytes)?;
                self.clusters
                    .insert(name.to_owned(), env.cluster().to_owned());
                serde_json::to_value(&env).ok()?
            }
            StoreKey::Deployment { .. } => {
                let dep: Deployment = decode(key, bytes)?;
                serde_json::to_value(&dep).ok()?
            }
        };
        self.last.insert(key.to_owned(), entity.clone());
        Some(entity)
    }

    /// The line for a change, or `None` when the stream does not carry it
    /// (filtered out, a key the environment store does not own, a value
    /// that cannot be decoded).
    fn line(&mut self, event: &KvEvent) -> Option<Bytes> {
        let key = EnvironmentStore::parse_key(&event.key)?;
        let (kind, environment, id) = match key {
            StoreKey::Environment(name) => ("environment", name, None),
            StoreKey::Deployment { environment, id } => ("deployment", environment, Some(id)),
        };
        let (entity, deleted) = match &event.value {
            Some(bytes) => (Some(self.remember(&event.key, bytes)?), false),
            None => (self.last.remove(&event.key), true),
        };
        if self
            .environment
            .as_deref()
            .is_some_and(|e| e != environment)
        {
            return None;
        }
        if let Some(filter) = &self.cluster {
            let cluster = self.clusters.get(environment)?;
            if !same_cluster(filter, cluster) {
                return None;
            }
        }
        let mut metadata = Map::new();
        metadata.insert("entityVersion".into(), json!(event.revision));
        if deleted {
            metadata.insert("deleted".into(), Value::Bool(true));
        }
        let mut out = Map::new();
        out.insert("metadata".into(), Value::Object(metadata));
        out.insert("type".into(), json!(kind));
        out.insert("environmentName".into(), json!(environment));
        if let Some(id) = id {
            out.insert("id".into(), json!(id));
        }
        if let Some(entity) = entity {
            out.insert("entity".into(), entity);
        }
        let mut bytes = serde_json::to_vec(&Value::Object(out)).ok()?;
        bytes.push(b'\n');
        Some(Bytes::from(bytes))
    }
}

/// Decodes a stored value, or logs and skips it.
fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(%key, error = %e, "environment stream skips an undecodable value");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blox_core::model::Timestamp;
    use blox_state::store::Revision;

    fn event(key: &str, value: Option<Vec<u8>>) -> KvEvent {
        KvEvent {
            key: key.into(),
            value: value.map(Bytes::from),
            revision: Revision::new(1, 7),
        }
    }

    fn parse(b: Bytes) -> Value {
        assert_eq!(b.last(), Some(&b'\n'));
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn an_environment_put_carries_the_environment() {
        let env = Environment::new("web", "prod", "web:1", "tok", Timestamp::from_millis(0));
        let key = format!("{}environments/web", EnvironmentStore::KEY_PREFIX);
        let v = parse(
            Lines::default()
                .line(&event(&key, Some(serde_json::to_vec(&env).unwrap())))
                .unwrap(),
        );
        assert_eq!(v["type"], "environment");
        assert_eq!(v["environmentName"], "web");
        assert_eq!(v["entity"]["deploymentToken"], "tok");
        assert_eq!(v["metadata"]["entityVersion"], "1:7");
        assert!(v["metadata"].get("deleted").is_none());
    }

    #[test]
    fn a_delete_carries_the_last_known_entity_and_is_marked_deleted() {
        let mut lines = Lines::default();
        let key = format!("{}deployments/web/abc-1", EnvironmentStore::KEY_PREFIX);
        let dep = Deployment::new("abc-1", "web", "web:1", Timestamp::from_millis(0));
        lines.remember(&key, &serde_json::to_vec(&dep).unwrap());
        let v = parse(lines.line(&event(&key, None)).unwrap());
        assert_eq!(v["type"], "deployment");
        assert_eq!(v["id"], "abc-1");
        assert_eq!(v["metadata"]["deleted"], true);
        assert_eq!(v["entity"]["taskDefinition"], "web:1");
        // Unknown before the stream: only the names.
        let v = parse(lines.line(&event(&key, None)).unwrap());
        assert!(v.get("entity").is_none());
    }

    #[test]
    fn other_environments_clusters_foreign_keys_and_garbage_are_skipped() {
        let key = format!("{}environments/web", EnvironmentStore::KEY_PREFIX);
        let env = Environment::new("web", "prod", "web:1", "tok", Timestamp::from_millis(0));
        let put = event(&key, Some(serde_json::to_vec(&env).unwrap()));
        let mut other_env = Lines {
            environment: Some("db".into()),
            ..Lines::default()
        };
        assert!(other_env.line(&put).is_none());
        let mut other_cluster = Lines {
            cluster: Some("dev".into()),
            ..Lines::default()
        };
        assert!(other_cluster.line(&put).is_none());
        let mut same_cluster = Lines {
            cluster: Some("arn:aws:ecs:us-east-1:1:cluster/prod".into()),
            ..Lines::default()
        };
        assert!(same_cluster.line(&put).is_some());
        let mut all = Lines::default();
        assert!(all.line(&event(&key, Some(b"not json".to_vec()))).is_none());
        assert!(all.line(&event("elsewhere/x", None)).is_none());
    }
}
