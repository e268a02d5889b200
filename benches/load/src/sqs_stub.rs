//! `sqs-stub`: a fast local stand-in for one SQS queue, speaking the SQS JSON
//! protocol (`X-Amz-Target: AmazonSQS.*`) that the AWS SDK uses, so the load
//! benchmark measures the daemon rather than a slow fake.
//!
//! It loads a file of message bodies (one per line), serves them to
//! `ReceiveMessage` (up to 10 per call, `ApproximateReceiveCount` set),
//! takes them back on `DeleteMessage(Batch)` and
//! `ChangeMessageVisibility(Batch)`, and puts back messages left undeleted
//! past the visibility timeout. `GET /stats` reports how many were received
//! and deleted, and the times of the first receive and last delete
//! (milliseconds since the stub started), from which the driver computes the
//! ingest rate.
//!
//! Each message is stamped with the time it is delivered (its envelope's
//! `time`), as a live stream of ECS events would be: the benchmark measures
//! the daemon following a running cluster, not a backlog older than a fresh
//! memory store, whose events the ingester would first confirm with ECS
//! (`Ingester::verify_with`).
//!
//! Usage: `sqs-stub <messages.jsonl> <listen address>`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::Notify;

const VISIBILITY: Duration = Duration::from_secs(30);
const QUEUE_URL: &str = "http://sqs-stub/123456789012/bench";

struct Message {
    id: String,
    body: Arc<str>,
    receives: u32,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Message>,
    in_flight: HashMap<String, (Message, Instant)>,
    next_handle: u64,
    total: usize,
    received: u64,
    deleted: u64,
    first_receive: Option<Duration>,
    last_delete: Option<Duration>,
}

struct Stub {
    queue: Mutex<Queue>,
    arrived: Notify,
    started: Instant,
}

impl Stub {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Queue {
    /// Puts messages whose visibility timeout ran out back at the front.
    fn expire(&mut self, now: Instant) {
        let late: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(h, _)| h.clone())
            .collect();
        for h in late {
            if let Some((m, _)) = self.in_flight.remove(&h) {
                self.ready.push_front(m);
            }
        }
    }

    fn take(&mut self, max: usize, now: Instant) -> Vec<Value> {
        self.expire(now);
        let stamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let stamp = stamp.as_str();
        let mut out = Vec::with_capacity(max);
        while out.len() < max {
            let Some(mut m) = self.ready.pop_front() else {
                break;
            };
            m.receives += 1;
            self.next_handle += 1;
            let handle = format!("rh-{}-{}", self.next_handle, m.id);
            out.push(json!({
                "MessageId": m.id,
                "ReceiptHandle": handle,
                "Body": stamped(&m.body, stamp),
                "Attributes": {"ApproximateReceiveCount": m.receives.to_string()},
            }));
            self.in_flight.insert(handle, (m, now + VISIBILITY));
        }
        self.received += out.len() as u64;
        out
    }

    fn delete(&mut self, handle: &str, at: Duration) -> bool {
        if self.in_flight.remove(handle).is_some() {
            self.deleted += 1;
            self.last_delete = Some(at);
            true
        } else {
            false
        }
    }

    fn change_visibility(&mut self, handle: &str, seconds: u64, now: Instant) -> bool {
        if seconds == 0 {
            match self.in_flight.remove(handle) {
                Some((m, _)) => {
                    self.ready.push_front(m);
                    true
                }
                None => false,
            }
        } else if let Some((_, until)) = self.in_flight.get_mut(handle) {
            *until = now + Duration::from_secs(seconds);
            true
        } else {
            false
        }
    }
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    r
}

fn fault(kind: &str, message: &str) -> Response {
    reply(
        StatusCode::BAD_REQUEST,
        &json!({"__type": format!("com.amazonaws.sqs#{kind}"), "message": message}),
    )
}

async fn call(stub: Arc<Stub>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return fault("InvalidParameterValue", "the body is not JSON");
    };
    let op = target.strip_prefix("AmazonSQS.").unwrap_or(&target);
    match op {
        "GetQueueUrl" => reply(StatusCode::OK, &json!({"QueueUrl": QUEUE_URL})),
        "GetQueueAttributes" => {
            let q = stub.queue();
            reply(
                StatusCode::OK,
                &json!({"Attributes": {
                    "ApproximateNumberOfMessages": q.ready.len().to_string(),
                    "ApproximateNumberOfMessagesNotVisible": q.in_flight.len().to_string(),
                }}),
            )
        }
        "ReceiveMessage" => receive(&stub, &req).await,
        "DeleteMessage" => {
            let handle = req["ReceiptHandle"].as_str().unwrap_or_default();
            let at = stub.started.elapsed();
            if stub.queue().delete(handle, at) {
                reply(StatusCode::OK, &json!({}))
            } else {
                fault("ReceiptHandleIsInvalid", "unknown receipt handle")
            }
        }
        "DeleteMessageBatch" => batch(&stub, &req, |q, e, _, at| {
            q.delete(e["ReceiptHandle"].as_str().unwrap_or_default(), at)
        }),
        "ChangeMessageVisibility" => {
            let handle = req["ReceiptHandle"].as_str().unwrap_or_default();
            let secs = req["VisibilityTimeout"].as_u64().unwrap_or(0);
            if stub.queue().change_visibility(handle, secs, Instant::now()) {
                reply(StatusCode::OK, &json!({}))
            } else {
                fault("ReceiptHandleIsInvalid", "unknown receipt handle")
            }
        }
        "ChangeMessageVisibilityBatch" => batch(&stub, &req, |q, e, now, _| {
            let handle = e["ReceiptHandle"].as_str().unwrap_or_default();
            q.change_visibility(handle, e["VisibilityTimeout"].as_u64().unwrap_or(0), now)
        }),
        _ => fault(
            "UnsupportedOperation",
            &format!("the stub does not serve {target:?}"),
        ),
    }
}

async fn receive(stub: &Stub, req: &Value) -> Response {
    let max = req["MaxNumberOfMessages"]
        .as_u64()
        .unwrap_or(1)
        .clamp(1, 10) as usize;
    // Long polls are capped at one second: enough to avoid spinning, short
    // enough that a benchmark's tail is not padded by idle waits.
    let wait = Duration::from_secs(req["WaitTimeSeconds"].as_u64().unwrap_or(0).min(1));
    let deadline = Instant::now() + wait;
    loop {
        let arrived = stub.arrived.notified();
        let messages = {
            let mut q = stub.queue();
            let m = q.take(max, Instant::now());
            if !m.is_empty() && q.first_receive.is_none() {
                q.first_receive = Some(stub.started.elapsed());
            }
            m
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !messages.is_empty() || left.is_zero() {
            return reply(StatusCode::OK, &json!({"Messages": messages}));
        }
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), arrived).await;
    }
}

fn batch(
    stub: &Stub,
    req: &Value,
    each: impl Fn(&mut Queue, &Value, Instant, Duration) -> bool,
) -> Response {
    let entries = req["Entries"].as_array().cloned().unwrap_or_default();
    let now = Instant::now();
    let at = stub.started.elapsed();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    {
        let mut q = stub.queue();
        for e in &entries {
            let id = e["Id"].clone();
            if each(&mut q, e, now, at) {
                ok.push(json!({"Id": id}));
            } else {
                failed.push(json!({"Id": id, "Code": "ReceiptHandleIsInvalid",
                    "Message": "unknown receipt handle", "SenderFault": true}));
            }
        }
    }
    stub.arrived.notify_waiters();
    reply(StatusCode::OK, &json!({"Successful": ok, "Failed": failed}))
}

async fn stats(stub: Arc<Stub>) -> Response {
    let q = stub.queue();
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    reply(
        StatusCode::OK,
        &json!({
            "total": q.total,
            "ready": q.ready.len(),
            "in_flight": q.in_flight.len(),
            "received": q.received,
            "deleted": q.deleted,
            "first_receive_ms": ms(q.first_receive),
            "last_delete_ms": ms(q.last_delete),
        }),
    )
}

/// The body with its envelope's `time` (the last `"time":"..."`: the
/// envelope's keys follow its detail's) replaced by `stamp`.
fn stamped(body: &str, stamp: &str) -> String {
    const KEY: &str = "\"time\":\"";
    let Some(at) = body.rfind(KEY).map(|i| i + KEY.len()) else {
        return body.to_owned();
    };
    let Some(len) = body[at..].find('"') else {
        return body.to_owned();
    };
    format!("{}{stamp}{}", &body[..at], &body[at + len..])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(addr)) = (args.get(1), args.get(2)) else {
        return Err("usage: sqs-stub <messages.jsonl> <listen address>".into());
    };
    let text = std::fs::read_to_string(file)?;
    let mut queue = Queue::default();
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        queue.ready.push_back(Message {
            id: format!("m-{n:08}"),
            body: Arc::from(line),
            receives: 0,
        });
    }
    queue.total = queue.ready.len();
    let stub = Arc::new(Stub {
        queue: Mutex::new(queue),
        arrived: Notify::new(),
        started: Instant::now(),
    });
    let s1 = Arc::clone(&stub);
    let s2 = Arc::clone(&stub);
    let app = Router::new()
        .route("/stats", get(move || stats(Arc::clone(&s1))))
        .fallback(move |h: HeaderMap, b: Bytes| call(Arc::clone(&s2), h, b));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!(
        "sqs-stub: {} messages on {}",
        stub.queue().total,
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
