//! `GET /v1/instances`, `/v1/tasks` and the single-entity gets.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use blox_core::model::{Arn, EntityKind};

use super::error::{ApiError, detailed, text};
use super::params::{self, Params, RawQuery, query_pairs};
use super::shape::{self, Shape};
use super::{ApiState, listing};
use crate::cache::Entry;
use crate::store::Filter;

const LIST_INSTANCES_KEYS: &[&str] = &["status", "cluster", "maxResults", "nextToken"];
const LIST_TASKS_KEYS: &[&str] = &["status", "cluster", "startedBy", "maxResults", "nextToken"];

/// `GET /v1/instances`.
pub(crate) async fn list_instances(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(query_pairs(q)?, LIST_INSTANCES_KEYS)?;
    let filter = Filter {
        cluster: p.cluster()?,
        status: p.status(EntityKind::Instance)?,
        ..Filter::default()
    };
    let after = p.next_token(EntityKind::Instance)?;
    let limit = p.max_results()?.unwrap_or(usize::MAX);
    s.ready()?;
    let page = s
        .cache()
        .list_instances_page(&filter, after.as_ref(), limit);
    Ok(listing::response(page, s.lists()))
}

/// `GET /v1/tasks`.
pub(crate) async fn list_tasks(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Response, ApiError> {
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
    let page = s.cache().list_tasks_page(&filter, after.as_ref(), limit);
    Ok(listing::response(page, s.lists()))
}

/// The response to a get: the entry as an item, its entity's bytes copied.
fn item_response<T: Shape>(e: &Entry<T>) -> Response {
    let mut out = Vec::new();
    shape::write_entry(&mut out, e);
    listing::json_response(Body::from(out))
}

/// The cluster (when the path names one) and the entity ARN of a get's
/// path: `{cluster}/{arn}`, or `{arn}` alone when a client left the cluster
/// empty. The cluster may be an ARN itself, so the entity ARN starts at the
/// first `/arn:`.
fn split_target(rest: &str) -> (Option<&str>, &str) {
    let rest = rest.trim_start_matches('/');
    if let Some(at) = rest.find("/arn:") {
        let (cluster, arn) = rest.split_at(at);
        return (Some(cluster), &arn[1..]);
    }
    if rest.starts_with("arn:") {
        return (None, rest);
    }
    match rest.split_once('/') {
        Some((cluster, arn)) => (Some(cluster), arn),
        None => (None, rest),
    }
}

/// v0.3's 404 text of a kind.
fn not_found_text(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Instance => text::INSTANCE_NOT_FOUND,
        EntityKind::Task => text::TASK_NOT_FOUND,
    }
}

/// A 404 of a kind (v0.3 declared no other client error for gets), with
/// the reason after v0.3's text.
fn not_found(kind: EntityKind, detail: impl std::fmt::Display) -> ApiError {
    ApiError::NotFound(detailed(not_found_text(kind), detail))
}

/// The cluster and ARN of a get path. Whatever names no entity of the kind
/// (no cluster, a malformed cluster or ARN, an ARN of the other kind) is a
/// 404, the only client error v0.3's spec declares for gets.
fn target(
    path: Result<Path<String>, PathRejection>,
    kind: EntityKind,
) -> Result<(String, Arn), ApiError> {
    let Path(rest) =
        path.map_err(|e| not_found(kind, format_args!("invalid path: {}", e.body_text())))?;
    let (cluster, arn) = split_target(&rest);
    let Some(cluster) = cluster else {
        return Err(not_found(kind, "the path names no cluster"));
    };
    let cluster = params::cluster(cluster).map_err(|e| not_found(kind, e))?;
    let arn = Arn::parse(arn).map_err(|e| not_found(kind, e))?;
    if EntityKind::of_arn(&arn) != Some(kind) {
        return Err(not_found(kind, format_args!("{arn} is not a {kind} ARN")));
    }
    Ok((cluster, arn))
}

/// The 404 of an ARN the cache does not have, or has in another cluster.
fn absent(kind: EntityKind, arn: &Arn, cluster: Option<&str>) -> ApiError {
    match cluster {
        Some(c) => not_found(kind, format_args!("{arn} is not in cluster {c}")),
        None => not_found(kind, arn),
    }
}

/// `GET /v1/instances/{cluster}/{arn}`.
pub(crate) async fn get_instance(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (cluster, arn) = target(path, EntityKind::Instance)?;
    s.ready()?;
    let e = s
        .cache()
        .get_instance(arn.as_str())
        .ok_or_else(|| absent(EntityKind::Instance, &arn, None))?;
    if !Filter::cluster_matches(&cluster, &e.value().cluster_arn) {
        return Err(absent(EntityKind::Instance, &arn, Some(&cluster)));
    }
    Ok(item_response(&e))
}

/// `GET /v1/tasks/{cluster}/{arn}`.
pub(crate) async fn get_task(
    State(s): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (cluster, arn) = target(path, EntityKind::Task)?;
    s.ready()?;
    let (task_cluster, e) = s
        .cache()
        .get_task_and_cluster(arn.as_str())
        .ok_or_else(|| absent(EntityKind::Task, &arn, None))?;
    if !Filter::cluster_matches(&cluster, &task_cluster) {
        return Err(absent(EntityKind::Task, &arn, Some(&cluster)));
    }
    Ok(item_response(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_paths_split_into_cluster_and_arn() {
        let task = "arn:aws:ecs:us-east-1:1:task/prod/abc";
        let cluster = "arn:aws:ecs:us-east-1:1:cluster/prod";
        assert_eq!(split_target(&format!("prod/{task}")), (Some("prod"), task));
        assert_eq!(
            split_target(&format!("{cluster}/{task}")),
            (Some(cluster), task)
        );
        assert_eq!(split_target(task), (None, task));
        assert_eq!(split_target(&format!("/{task}")), (None, task));
        assert_eq!(split_target("prod/abc"), (Some("prod"), "abc"));
    }
}
