//! A v0.3-style client of a replica's HTTP API, in process: it lists the
//! tasks, then follows `/v1/stream/tasks` from the list's revision, and
//! keeps the view it rebuilds (ARN to ECS version) with the revision it has
//! applied whole, which the "streams are exact" invariant compares with the
//! store's own view at that revision ([`crate::oracle::StoreOracle`]) all
//! along, and with the replica's view once the run settles.
//!
//! A revision is applied whole at the end of a chunk that ends a line: the
//! server sends each revision's lines as one chunk
//! (`blox_state::http` streams), and in process the chunks arrive as sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Body;
use axum::http::Request;
use blox_state::store::Revision;
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// The view a client rebuilt: task ARN to ECS version.
pub type ClientView = BTreeMap<String, u64>;

/// What a client has rebuilt so far.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// The view.
    pub view: ClientView,
    /// The revision the view is exactly at: the list's, then the last
    /// revision the stream delivered whole (`None` while a line is half
    /// read, or before the list).
    pub revision: Option<Revision>,
}

/// A running list-then-stream client.
pub struct StreamClient {
    rebuilt: Arc<Mutex<Rebuilt>>,
    /// Why it stopped, if it did.
    ended: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

fn version_of(entity: &Value) -> u64 {
    entity["version"].as_u64().unwrap_or(0)
}

fn arn_of(entity: &Value) -> Option<String> {
    entity["taskARN"].as_str().map(str::to_owned)
}

async fn get(router: &axum::Router, uri: &str) -> Result<axum::response::Response, String> {
    let request = Request::get(uri)
        .body(Body::empty())
        .map_err(|e| e.to_string())?;
    router
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())
}

fn revision_of(item: &Value) -> Option<Revision> {
    item["metadata"]["entityVersion"].as_str()?.parse().ok()
}

fn lock(rebuilt: &Mutex<Rebuilt>) -> MutexGuard<'_, Rebuilt> {
    rebuilt.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run(router: axum::Router, rebuilt: Arc<Mutex<Rebuilt>>) -> Result<(), String> {
    let listed = get(&router, "/v1/tasks").await?;
    if !listed.status().is_success() {
        return Err(format!("list answered {}", listed.status()));
    }
    let bytes = axum::body::to_bytes(listed.into_body(), usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let revision = revision_of(&body).ok_or("the list has no revision")?;
    {
        let mut r = lock(&rebuilt);
        r.view.clear();
        for item in body["items"].as_array().into_iter().flatten() {
            let entity = &item["entity"];
            if let Some(arn) = arn_of(entity) {
                r.view.insert(arn, version_of(entity));
            }
        }
        r.revision = Some(revision);
    }
    let stream = get(
        &router,
        &format!("/v1/stream/tasks?entityVersion={revision}"),
    )
    .await?;
    if !stream.status().is_success() {
        return Err(format!("stream answered {}", stream.status()));
    }
    let mut frames = stream.into_body().into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = frames.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        // One chunk at a time, under the lock: a reader sees whole chunks.
        let mut r = lock(&rebuilt);
        let mut last = None;
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let item: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            last = Some(revision_of(&item).ok_or("a stream line has no revision")?);
            let entity = &item["entity"];
            let Some(arn) = arn_of(entity) else { continue };
            if item["metadata"]["deleted"] == true {
                r.view.remove(&arn);
            } else {
                r.view.insert(arn, version_of(entity));
            }
        }
        if !buf.is_empty() {
            r.revision = None;
        } else if last.is_some() {
            r.revision = last;
        }
    }
    Err("the stream ended".into())
}

impl StreamClient {
    /// Lists and follows `router`'s tasks in the background.
    pub fn start(router: axum::Router) -> StreamClient {
        let rebuilt = Arc::new(Mutex::new(Rebuilt::default()));
        let ended = Arc::new(Mutex::new(None));
        let (v, e) = (rebuilt.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let why = match run(router, v).await {
                Ok(()) => "done".to_owned(),
                Err(e) => e,
            };
            *e.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        });
        StreamClient {
            rebuilt,
            ended,
            task,
        }
    }

    /// The view it rebuilt.
    pub fn view(&self) -> ClientView {
        lock(&self.rebuilt).view.clone()
    }

    /// Reads what it rebuilt, as it is now (a whole chunk at a time).
    pub fn with_rebuilt<R>(&self, f: impl FnOnce(&Rebuilt) -> R) -> R {
        f(&lock(&self.rebuilt))
    }

    /// Why it stopped, if it did.
    pub fn ended(&self) -> Option<String> {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops it.
    pub fn stop(self) {
        self.task.abort();
    }
}
