//! `POST`/`GET /v1/environments/{name}/deployments` and
//! `GET /v1/environments/{name}/deployments/{id}`.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};

use super::SchedApiState;
use super::error::ApiError;
use super::params::{self, Params, RawPath, RawQuery};
use crate::daemon::Deployment;

/// A deployment as answered (the stored form; see the module docs).
pub(crate) fn shape(d: &Deployment) -> Value {
    serde_json::to_value(d).unwrap_or_else(|_| json!({}))
}

/// Where a deployment sits in its environment's list (sortable as text).
fn position(d: &Deployment) -> String {
    format!("{:020}", d.sequence)
}

/// `POST /v1/environments/{name}/deployments?deploymentToken=`.
pub(crate) async fn create(
    State(s): State<SchedApiState>,
    name: RawPath<String>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let name = params::path(name)?;
    let p = Params::parse(q, &["deploymentToken"])?;
    let token = p.required("deploymentToken")?;
    let d = s.envs.create_deployment(&name, token).await?;
    Ok(Json(shape(&d)))
}

/// `GET /v1/environments/{name}/deployments`, oldest first. The v0.3 spec
/// declares `deploymentToken` on the path, so its generated clients send it
/// here too: it is accepted and ignored.
pub(crate) async fn list(
    State(s): State<SchedApiState>,
    name: RawPath<String>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let name = params::path(name)?;
    let p = Params::parse(q, &["maxResults", "nextToken", "deploymentToken"])?;
    let limit = p.max_results()?;
    let after = p.next_token()?;
    let all = s.envs.list_deployments(&name).await?;
    let (items, next) = params::page(all, position, after.as_deref(), limit);
    let mut out = Map::new();
    out.insert("items".into(), items.iter().map(shape).collect());
    if let Some(t) = next {
        out.insert("nextToken".into(), json!(t));
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /v1/environments/{name}/deployments/{id}`.
pub(crate) async fn get_one(
    State(s): State<SchedApiState>,
    path: RawPath<(String, String)>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (name, id) = params::path(path)?;
    Params::parse(q, &[])?;
    Ok(Json(shape(&s.envs.get_deployment(&name, &id).await?)))
}
