//! `GET /v1/stream/instances` and `/v1/stream/tasks`: one JSON item per
//! line, chunked, as `application/octet-stream` (v0.3's form).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use blox_core::model::{Arn, EntityKind};
use futures::StreamExt;

use super::error::ApiError;
use super::params::{Params, RawQuery, query_pairs};
use super::{ApiState, shape};
use crate::store::{Filter, StoreError, WatchEvent};

/// The media type of stream responses, as Blox v0.3 sent them (and as its
/// spec declares): one JSON entity per line, chunked.
pub const STREAM_TYPE: &str = "application/octet-stream";

const STREAM_KEYS: &[&str] = &["entityVersion", "cluster"];

/// `GET /v1/stream/instances`.
pub(crate) async fn stream_instances(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    stream(s, q, EntityKind::Instance).await
}

/// `GET /v1/stream/tasks`.
pub(crate) async fn stream_tasks(
    State(s): State<ApiState>,
    q: RawQuery,
) -> Result<Response, ApiError> {
    stream(s, q, EntityKind::Task).await
}

async fn stream(s: ApiState, q: RawQuery, kind: EntityKind) -> Result<Response, ApiError> {
    let p = Params::parse(query_pairs(q)?, STREAM_KEYS)?;
    let cluster = p.cluster()?;
    let after = match p.entity_version()? {
        Some(rev) => rev,
        None => s.store.current_revision().await?,
    };
    let watch = s.store.watch(after).await?;
    let lines = watch.filter_map(move |event| {
        let out = match event {
            Ok(event) => line(event, kind, cluster.as_deref()).map(Ok),
            Err(e) => {
                tracing::warn!(error = %e, %kind, "stream aborted: the store's watch failed");
                Some(Err::<Bytes, StoreError>(e))
            }
        };
        std::future::ready(out)
    });
    Ok(stream_response(lines))
}

/// A stream of lines as v0.3 sent its streams: chunked, [`STREAM_TYPE`],
/// `Cache-Control: no-cache`. An error item aborts the body (no clean end),
/// so the client sees the failure and resumes from the last line it read.
pub fn stream_response<S>(lines: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, StoreError>> + Send + 'static,
{
    let mut response = Body::from_stream(lines).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The line for a change, or `None` when the stream does not carry it
/// (another kind of entity, another cluster).
fn line(event: WatchEvent, kind: EntityKind, cluster: Option<&str>) -> Option<Bytes> {
    let in_cluster = |arn: Option<&Arn>| {
        cluster.is_none_or(|c| arn.is_some_and(|a| Filter::cluster_matches(c, a)))
    };
    let value = match event {
        WatchEvent::Put(v) => {
            if v.entity.kind() != kind || !in_cluster(Some(v.entity.cluster_arn())) {
                return None;
            }
            shape::item(&v.entity, v.revision, false)
        }
        WatchEvent::Delete {
            arn,
            last,
            revision,
        } => {
            if EntityKind::of_arn(&arn) != Some(kind) {
                return None;
            }
            match last {
                Some(e) if in_cluster(Some(e.cluster_arn())) => shape::item(&e, revision, true),
                Some(_) => return None,
                None if in_cluster(arn.cluster_arn().as_ref()) => {
                    shape::deleted_without_state(kind, &arn, revision)
                }
                None => return None,
            }
        }
    };
    let mut bytes = serde_json::to_vec(&value).ok()?;
    bytes.push(b'\n');
    Some(Bytes::from(bytes))
}
