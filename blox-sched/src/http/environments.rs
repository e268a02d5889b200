//! `POST`/`GET /v1/environments` and `GET`/`PUT`/`DELETE /v1/environments/{name}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::SchedApiState;
use super::error::{ApiError, store_error};
use super::params::{self, Params, RawBody, RawPath, RawQuery};
use super::resolve;
use crate::daemon::same_cluster;
use crate::daemon::{
    DrainingPolicy, Environment, EnvironmentError, EnvironmentUpdate, InstanceGroup, NewEnvironment,
};

/// v0.3's `CreateEnvironmentRequest` plus blox's optional settings.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRequest {
    name: String,
    instance_group: InstanceGroup,
    task_definition: String,
    #[serde(default)]
    draining_policy: DrainingPolicy,
    #[serde(default)]
    max_unavailable: Option<u32>,
}

/// The body of `PUT /v1/environments/{name}`: any of the settings.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateRequest {
    #[serde(default)]
    task_definition: Option<String>,
    #[serde(default)]
    instance_group: Option<InstanceGroup>,
    #[serde(default)]
    draining_policy: Option<DrainingPolicy>,
    #[serde(default)]
    max_unavailable: Option<u32>,
}

/// Decodes a JSON request body (whatever its content type), or a 400 that
/// says what is wrong with it.
pub(crate) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
}

/// An environment as answered (the stored form; see the module docs).
pub(crate) fn shape(env: &Environment) -> Value {
    serde_json::to_value(env).unwrap_or_else(|_| json!({}))
}

/// `POST /v1/environments`.
pub(crate) async fn create(
    State(s): State<SchedApiState>,
    q: RawQuery,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    let body = params::body(body)?;
    Params::parse(q, &[])?;
    let req: CreateRequest = json_body(&body)?;
    let mut new = NewEnvironment::new(req.name, req.instance_group.cluster, req.task_definition)
        .selector(req.instance_group.attributes)
        .draining_policy(req.draining_policy)
        .max_unavailable(req.max_unavailable.unwrap_or(s.default_rollout_bound));
    // A malformed request is a 400 before ECS is asked (as in v0.3).
    new.validate().map_err(EnvironmentError::from)?;
    if let Some(ecs) = &s.ecs {
        new.cluster = resolve::cluster_arn(ecs.as_ref(), &new.cluster).await?;
        new.task_definition =
            resolve::task_definition_arn(ecs.as_ref(), &new.task_definition).await?;
    }
    let env = s.envs.create(new).await?;
    Ok(Json(shape(&env)))
}

/// `GET /v1/environments`.
pub(crate) async fn list(
    State(s): State<SchedApiState>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, &["cluster", "maxResults", "nextToken"])?;
    let cluster = p.cluster()?;
    let limit = p.max_results()?;
    let after = p.next_token()?;
    // Read before listing: streaming from it may repeat a change the list
    // already shows, but misses none.
    let revision = s.store.current_revision().await.map_err(store_error)?;
    let envs: Vec<Environment> = s
        .envs
        .list()
        .await?
        .into_iter()
        .filter(|e| {
            cluster
                .as_deref()
                .is_none_or(|c| same_cluster(c, e.cluster()))
        })
        .collect();
    let (items, next) = params::page(envs, |e| e.name.clone(), after.as_deref(), limit);
    let mut out = Map::new();
    out.insert("items".into(), items.iter().map(shape).collect());
    out.insert("metadata".into(), json!({ "entityVersion": revision }));
    if let Some(t) = next {
        out.insert("nextToken".into(), json!(t));
    }
    Ok(Json(Value::Object(out)))
}

/// `GET /v1/environments/{name}`.
pub(crate) async fn get_one(
    State(s): State<SchedApiState>,
    name: RawPath<String>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let name = params::path(name)?;
    Params::parse(q, &[])?;
    Ok(Json(shape(&s.envs.get(&name).await?)))
}

/// `PUT /v1/environments/{name}`: changes the task definition, the
/// selector, the draining policy or the rollout bound.
pub(crate) async fn update(
    State(s): State<SchedApiState>,
    name: RawPath<String>,
    q: RawQuery,
    body: RawBody,
) -> Result<Json<Value>, ApiError> {
    let name = params::path(name)?;
    let body = params::body(body)?;
    Params::parse(q, &[])?;
    // Every field is optional, so only an object is a request (serde would
    // also take an empty array for one).
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(ApiError::BadRequest(
            "invalid request body: expected a JSON object".into(),
        ));
    }
    let req: UpdateRequest = json_body(&body)?;
    let task_definition = match (&s.ecs, req.task_definition) {
        (Some(ecs), Some(td)) => {
            crate::daemon::validate::task_definition(&td).map_err(EnvironmentError::from)?;
            Some(resolve::task_definition_arn(ecs.as_ref(), &td).await?)
        }
        (_, td) => td,
    };
    let mut update = EnvironmentUpdate {
        task_definition,
        draining_policy: req.draining_policy,
        max_unavailable: req.max_unavailable,
        ..EnvironmentUpdate::default()
    };
    if let Some(group) = req.instance_group {
        // The cluster is part of the group for symmetry with creation; the
        // store refuses another one (an environment cannot move).
        update.cluster = Some(group.cluster);
        update.selector = Some(group.attributes);
    }
    let env = s.envs.update(&name, update).await?;
    Ok(Json(shape(&env)))
}

/// `DELETE /v1/environments/{name}?stopTasks=`: 200 with an empty body,
/// also when there is no such environment (idempotent, as in v0.3, whose
/// spec declares no 404 here).
pub(crate) async fn delete(
    State(s): State<SchedApiState>,
    name: RawPath<String>,
    q: RawQuery,
) -> Result<StatusCode, ApiError> {
    let name = params::path(name)?;
    let p = Params::parse(q, &["stopTasks"])?;
    let stop_tasks = p.flag("stopTasks")?;
    match s.envs.delete(&name, stop_tasks).await {
        Ok(()) | Err(EnvironmentError::NotFound(_)) => Ok(StatusCode::OK),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_reject_unknown_fields_and_name_missing_ones() {
        let e = json_body::<CreateRequest>(br#"{"name":"a","instanceGroup":{"cluster":"c"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("taskDefinition"), "{e}");
        let e = json_body::<CreateRequest>(
            br#"{"name":"a","instanceGroup":{"cluster":"c"},"taskDefinition":"t:1","x":1}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
