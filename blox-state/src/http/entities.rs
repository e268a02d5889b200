//! `GET /v1/instances`, `/v1/tasks` and the single-entity gets.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use blox_core::model::{Arn, ContainerInstance, EntityKind, Task};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use super::error::ApiError;
use super::params::{self, Params, RawQuery, query_pairs};
use super::shape::{Metadata, Wrapped};
use super::v03::V03;
use super::{ApiState, shape};
use crate::cache::{CachePage, Entry};
use crate::store::Filter;

const LIST_INSTANCES_KEYS: &[&str] = &["status", "cluster", "maxResults", "nextToken"];
const LIST_TASKS_KEYS: &[&str] = &["status", "cluster", "startedBy", "maxResults", "nextToken"];

/// `GET /v1/instances`.
pub(crate) async fn list_instances(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Json<impl Serialize>, ApiError> {
    let p = Params::parse(query_pairs(q)?, LIST_INSTANCES_KEYS)?;
    let filter = Filter {
        cluster: p.cluster()?,
        status: p.status(EntityKind::Instance)?,
        ..Filter::default()
    };
    let after = p.next_token(EntityKind::Instance)?;
    let limit = p.max_results()?.unwrap_or(usize::MAX);
    s.ready()?;
    Ok(Json(Listing(s.cache.list_instances_page(
        &filter,
        after.as_ref(),
        limit,
    ))))
}

/// `GET /v1/tasks`.
pub(crate) async fn list_tasks(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Json<impl Serialize>, ApiError> {
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
    Ok(Json(Listing(s.cache.list_tasks_page(
        &filter,
        after.as_ref(),
        limit,
    ))))
}

/// An entity kind's v0.3 shape, written straight to the response.
trait Shaped {
    fn shaped<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
}

impl Shaped for Task {
    fn shaped<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        V03(self).serialize(s)
    }
}

impl Shaped for ContainerInstance {
    fn shaped<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        shape::instance(self).serialize(s)
    }
}

/// `{"items": [{"metadata": {"entityVersion"}, "entity"}], "metadata":
/// {"entityVersion"}, "nextToken"?}` of a page, serialized as it is written.
struct Listing<T>(CachePage<T>);

/// An entity, written in its v0.3 shape.
struct ShapedRef<'a, T>(&'a T);

impl<T: Shaped> Serialize for ShapedRef<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.shaped(s)
    }
}

impl<T: Shaped> Serialize for Listing<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let page = &self.0;
        let next = page.next_after.as_ref().map(params::encode_token);
        let mut m = s.serialize_map(Some(2 + usize::from(next.is_some())))?;
        m.serialize_entry("items", &ItemList(&page.items))?;
        let metadata = Metadata {
            revision: page.revision,
            deleted: false,
        };
        m.serialize_entry("metadata", &metadata)?;
        if let Some(t) = next {
            m.serialize_entry("nextToken", &t)?;
        }
        m.end()
    }
}

struct ItemList<'a, T>(&'a [Entry<T>]);

impl<T: Shaped> Serialize for ItemList<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| Wrapped {
            metadata: Metadata {
                revision: e.revision,
                deleted: false,
            },
            entity: ShapedRef(&*e.value),
        }))
    }
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
