//! `GET /v1/stream/environments`: environment and deployment changes as
//! newline-delimited JSON.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use blox_state::store::{KvEvent, StoreError};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::SchedApiState;
use super::error::ApiError;
use super::params::{Params, RawQuery};
use crate::daemon::{Deployment, Environment, EnvironmentStore, StoreKey};

/// The media type of stream responses.
const NDJSON: &str = "application/x-ndjson";

/// `GET /v1/stream/environments?entityVersion=&environment=`.
pub(crate) async fn environments(
    State(s): State<SchedApiState>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(q, &["entityVersion", "environment"])?;
    let only = p.get("environment").map(str::to_owned);
    let after = match p.entity_version()? {
        Some(rev) => rev,
        None => s.store.current_revision().await?,
    };
    let watch = s
        .store
        .kv_watch(EnvironmentStore::KEY_PREFIX, after)
        .await?;
    let lines = watch.filter_map(move |event| {
        let out = match event {
            Ok(event) => line(&event, only.as_deref()).map(Ok),
            Err(e) => {
                tracing::warn!(error = %e, "environment stream aborted: the store's watch failed");
                Some(Err::<Bytes, StoreError>(e))
            }
        };
        std::future::ready(out)
    });
    let mut response = Body::from_stream(lines).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The line for a change, or `None` when the stream does not carry it
/// (another environment, a key the environment store does not own, a value
/// that cannot be decoded).
fn line(event: &KvEvent, only: Option<&str>) -> Option<Bytes> {
    let key = EnvironmentStore::parse_key(&event.key)?;
    let (kind, environment, id) = match key {
        StoreKey::Environment(name) => ("environment", name, None),
        StoreKey::Deployment { environment, id } => ("deployment", environment, Some(id)),
    };
    if only.is_some_and(|o| o != environment) {
        return None;
    }
    let mut metadata = Map::new();
    metadata.insert("entityVersion".into(), json!(event.revision));
    let mut out = Map::new();
    out.insert("type".into(), json!(kind));
    out.insert("environmentName".into(), json!(environment));
    if let Some(id) = id {
        out.insert("id".into(), json!(id));
    }
    match &event.value {
        Some(bytes) => {
            let entity = match key {
                StoreKey::Environment(_) => decode::<Environment>(&event.key, bytes)?,
                StoreKey::Deployment { .. } => decode::<Deployment>(&event.key, bytes)?,
            };
            out.insert("entity".into(), entity);
        }
        None => {
            metadata.insert("deleted".into(), Value::Bool(true));
        }
    }
    out.insert("metadata".into(), Value::Object(metadata));
    let mut bytes = serde_json::to_vec(&Value::Object(out)).ok()?;
    bytes.push(b'\n');
    Some(Bytes::from(bytes))
}

/// Decodes a stored value through its type (so the line has the served
/// shape), or logs and skips it.
fn decode<T: serde::de::DeserializeOwned + serde::Serialize>(
    key: &str,
    bytes: &[u8],
) -> Option<Value> {
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => serde_json::to_value(&v).ok(),
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
        let v = parse(line(&event(&key, Some(serde_json::to_vec(&env).unwrap())), None).unwrap());
        assert_eq!(v["type"], "environment");
        assert_eq!(v["environmentName"], "web");
        assert_eq!(v["entity"]["deploymentToken"], "tok");
        assert_eq!(v["metadata"]["entityVersion"], "1:7");
        assert!(v["metadata"].get("deleted").is_none());
    }

    #[test]
    fn a_deployment_delete_names_it_and_is_marked_deleted() {
        let key = format!("{}deployments/web/abc-1", EnvironmentStore::KEY_PREFIX);
        let v = parse(line(&event(&key, None), None).unwrap());
        assert_eq!(v["type"], "deployment");
        assert_eq!(v["id"], "abc-1");
        assert_eq!(v["metadata"]["deleted"], true);
        assert!(v.get("entity").is_none());
    }

    #[test]
    fn other_environments_foreign_keys_and_garbage_are_skipped() {
        let key = format!("{}environments/web", EnvironmentStore::KEY_PREFIX);
        assert!(line(&event(&key, None), Some("db")).is_none());
        assert!(line(&event(&key, Some(b"not json".to_vec())), None).is_none());
        assert!(line(&event("elsewhere/x", None), None).is_none());
    }
}
