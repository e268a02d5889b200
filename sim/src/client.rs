//! A v0.3-style client of a replica's HTTP API, in process: it lists the
//! tasks, then follows `/v1/stream/tasks` from the list's revision, and
//! keeps the view it rebuilds (ARN to ECS version), which the "streams are
//! exact" invariant compares with the replica's own view.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use serde_json::Value;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// The view a client rebuilt: task ARN to ECS version.
pub type ClientView = BTreeMap<String, u64>;

/// A running list-then-stream client.
pub struct StreamClient {
    view: Arc<Mutex<ClientView>>,
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

async fn run(router: axum::Router, view: Arc<Mutex<ClientView>>) -> Result<(), String> {
    let listed = get(&router, "/v1/tasks").await?;
    if !listed.status().is_success() {
        return Err(format!("list answered {}", listed.status()));
    }
    let bytes = axum::body::to_bytes(listed.into_body(), usize::MAX)
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let revision = body["metadata"]["entityVersion"]
        .as_str()
        .ok_or("the list has no revision")?
        .to_owned();
    {
        let mut v = view.lock().unwrap_or_else(PoisonError::into_inner);
        v.clear();
        for item in body["items"].as_array().into_iter().flatten() {
            let entity = &item["entity"];
            if let Some(arn) = arn_of(entity) {
                v.insert(arn, version_of(entity));
            }
        }
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
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let item: Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            let entity = &item["entity"];
            let Some(arn) = arn_of(entity) else { continue };
            let mut v = view.lock().unwrap_or_else(PoisonError::into_inner);
            if item["metadata"]["deleted"] == true {
                v.remove(&arn);
            } else {
                v.insert(arn, version_of(entity));
            }
        }
    }
    Err("the stream ended".into())
}

impl StreamClient {
    /// Lists and follows `router`'s tasks in the background.
    pub fn start(router: axum::Router) -> StreamClient {
        let view = Arc::new(Mutex::new(ClientView::new()));
        let ended = Arc::new(Mutex::new(None));
        let (v, e) = (view.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let why = match run(router, v).await {
                Ok(()) => "done".to_owned(),
                Err(e) => e,
            };
            *e.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        });
        StreamClient { view, ended, task }
    }

    /// The view it rebuilt.
    pub fn view(&self) -> ClientView {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
