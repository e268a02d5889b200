//! `GET /v1/stream/instances` and `/v1/stream/tasks`: one JSON item per
//! line, chunked, as `application/octet-stream` (v0.3's form).
//!
//! Streams read the cache's feed of revisions (one store watch per process,
//! fanned out; see [`crate::cache::Fanout`]), never a store watch of their
//! own, except to catch up from the store's history when a client resumes
//! from a revision older than the feed's history.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use blox_core::model::{Arn, EntityKind};
use futures::StreamExt;

use super::error::ApiError;
use super::params::{Params, RawQuery, query_pairs};
use super::{ApiState, shape};
use crate::cache::FeedStream;
use crate::store::{Filter, Revision, WatchEvent};

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
    let after = p.entity_version()?;
    s.ready()?;
    let revisions = revisions(&s, after).await?;
    let lines = revisions.filter_map(move |item| {
        let out = match item {
            Ok(batch) => {
                let chunk: Vec<u8> = batch
                    .events
                    .iter()
                    .filter_map(|e| line(e, kind, cluster.as_deref()))
                    .flatten()
                    .collect();
                (!chunk.is_empty()).then(|| Ok(Bytes::from(chunk)))
            }
            Err(e) => {
                tracing::info!(error = %e, %kind, "stream aborted");
                Some(Err(e))
            }
        };
        std::future::ready(out)
    });
    Ok(stream_response(lines))
}

/// The revisions after `after` (default: the cache's current revision).
async fn revisions(
    s: &ApiState,
    after: Option<Revision>,
) -> Result<FeedStream<WatchEvent>, ApiError> {
    let after = after.unwrap_or_else(|| s.cache().feed().head());
    let store = s.store();
    Ok(s.cache()
        .subscribe(after)
        .open(
            after,
            store.current_revision(),
            store.watch_revisions(after),
        )
        .await?)
}

/// A stream of lines as v0.3 sent its streams: chunked, [`STREAM_TYPE`],
/// `Cache-Control: no-cache`. An error item aborts the body (no clean end),
/// so the client sees the failure and resumes from the last line it read.
pub fn stream_response<S, E>(lines: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut response = Body::from_stream(lines).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The line for a change, or `None` when the stream does not carry it
/// (another kind of entity, another cluster).
fn line(event: &WatchEvent, kind: EntityKind, cluster: Option<&str>) -> Option<Vec<u8>> {
    let in_cluster = |arn: Option<&Arn>| {
        cluster.is_none_or(|c| arn.is_some_and(|a| Filter::cluster_matches(c, a)))
    };
    let mut bytes = Vec::new();
    match event {
        WatchEvent::Put(v) => {
            if v.entity.kind() != kind || !in_cluster(Some(v.entity.cluster_arn())) {
                return None;
            }
            shape::write_item_of(&mut bytes, &v.entity, v.revision, false);
        }
        WatchEvent::Delete {
            arn,
            last,
            revision,
        } => {
            if EntityKind::of_arn(arn) != Some(kind) {
                return None;
            }
            match last {
                Some(e) if in_cluster(Some(e.cluster_arn())) => {
                    shape::write_item_of(&mut bytes, e, *revision, true);
                }
                Some(_) => return None,
                None if in_cluster(arn.cluster_arn().as_ref()) => {
                    bytes = serde_json::to_vec(&shape::deleted_without_state(kind, arn, *revision))
                        .ok()?;
                }
                None => return None,
            }
        }
    }
    bytes.push(b'\n');
    Some(bytes)
}
