//! `GET /v1/instances`, `/v1/tasks` and the single-entity gets.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use blox_core::model::{Arn, EntityKind};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::params::{self, Params, RawQuery, query_pairs};
use super::{ApiState, shape};
use crate::cache::{CachePage, Entry};
use crate::store::Filter;

const LIST_INSTANCES_KEYS: &[&str] = &["status", "cluster", "maxResults", "nextToken"];
const LIST_TASKS_KEYS: &[&str] = &["status", "cluster", "startedBy", "maxResults", "nextToken"];

/// `GET /v1/instances`.
pub(crate) async fn list_instances(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(query_pairs(q)?, LIST_INSTANCES_KEYS)?;
    let filter = Filter {
        cluster: p.cluster()?,
        status: p.status(EntityKind::Instance)?,
        ..Filter::default()
    };
    let after = p.next_token(EntityKind::Instance)?;
    let limit = p.max_results()?.unwrap_or(usize::MAX);
    s.ready()?;
    let page = s.cache.list_instances_page(&filter, after.as_ref(), limit);
    Ok(Json(listing(page, |e| shape::instance(&e.value))))
}

/// `GET /v1/tasks`.
pub(crate) async fn list_tasks(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(query_pairs(q)?, LIST_TASKS_KEYS)?;
    let filter = Filter {
        cluster: p.cluster()?,
        status: p.status(EntityKind::Task)?,
        started_by: p.started_by(),
        ..Filter::default()
    };
    let after = p.next_token(EntityKind::Task)?;
    let limit = p.max_results()?.unwrap_or(usize::MAX);
    s.ready()?;
    let page = s.cache.list_tasks_page(&filter, after.as_ref(), limit);
    Ok(Json(listing(page, |e| shape::task(&e.value))))
}

fn listing<T>(page: CachePage<T>, entity: impl Fn(&Entry<T>) -> Value) -> Value {
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|e| shape::wrap(entity(e), e.revision, false))
        .collect();
    let mut out = Map::new();
    out.insert("items".into(), Value::Array(items));
    out.insert("metadata".into(), json!({ "entityVersion": page.revision }));
    if let Some(last) = page.next_after {
        out.insert("nextToken".into(), json!(params::encode_token(&last)));
    }
    Value::Object(out)
}

/// The cluster and ARN of a get path: 400 if malformed, 404 if the ARN is
/// not of the kind the route serves.
fn target(
    path: Result<Path<(String, String)>, PathRejection>,
    kind: EntityKind,
) -> Result<(String, Arn), ApiError> {
    let Path((cluster, arn)) =
        path.map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))?;
    let cluster = params::cluster(&cluster)?;
    let arn = Arn::parse(&arn).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if EntityKind::of_arn(&arn) != Some(kind) {
        return Err(not_found(kind, &arn, None));
    }
    Ok((cluster, arn))
}

fn not_found(kind: EntityKind, arn: &Arn, cluster: Option<&str>) -> ApiError {
    let what = match kind {
        EntityKind::Instance => "container instance",
        EntityKind::Task => "task",
    };
    match cluster {
        Some(c) => ApiError::NotFound(format!("{what} {arn} not found in cluster {c}")),
        None => ApiError::NotFound(format!("{what} {arn} not found")),
    }
}

/// `GET /v1/instances/{cluster}/{arn}`.
pub(crate) async fn get_instance(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (cluster, arn) = target(path, EntityKind::Instance)?;
    s.ready()?;
    let e = s
        .cache
        .get_instance(arn.as_str())
        .ok_or_else(|| not_found(EntityKind::Instance, &arn, None))?;
    if !Filter::cluster_matches(&cluster, &e.value.cluster_arn) {
        return Err(not_found(EntityKind::Instance, &arn, Some(&cluster)));
    }
    Ok(Json(shape::wrap(
        shape::instance(&e.value),
        e.revision,
        false,
    )))
}

/// `GET /v1/tasks/{cluster}/{arn}`.
pub(crate) async fn get_task(
    State(s): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (cluster, arn) = target(path, EntityKind::Task)?;
    s.ready()?;
    let e = s
        .cache
        .get_task(arn.as_str())
        .ok_or_else(|| not_found(EntityKind::Task, &arn, None))?;
    if !Filter::cluster_matches(&cluster, &e.value.cluster_arn) {
        return Err(not_found(EntityKind::Task, &arn, Some(&cluster)));
    }
    Ok(Json(shape::wrap(shape::task(&e.value), e.revision, false)))
}
