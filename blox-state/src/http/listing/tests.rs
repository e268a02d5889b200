//! List bodies: byte for byte what the API wrote before, one revision while
//! writes land between chunks, work that stops when the client goes away,
//! and gets answered among big lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::http::Request;
use blox_core::model::{Arn, Task};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tower::ServiceExt;

use super::*;
use crate::cache::{CacheWriter, cache};
use crate::http::fixtures::{
    bare_task, full_instance, full_task, old_instance, old_task, old_task_list,
};
use crate::http::{ApiState, router};
use crate::store::memory::MemoryStore;
use crate::store::{Revision, Versioned, WatchEvent};

/// `n` tasks, every other one with every field set and the others with
/// none, each at its own revision (`1:1` to `1:n`).
fn mixed_tasks(n: usize) -> Vec<(Task, Revision)> {
    (0..n)
        .map(|k| {
            let t = if k % 2 == 0 {
                full_task(k)
            } else {
                bare_task(k)
            };
            (t, Revision::new(1, k as u64 + 1))
        })
        .collect()
}

/// `n` tasks with every field set, in ARN order, at revisions `1:1` to `1:n`.
fn full_tasks(n: usize) -> Vec<(Task, Revision)> {
    (0..n)
        .map(|k| (full_task(k), Revision::new(1, k as u64 + 1)))
        .collect()
}

fn page_of<T: Clone>(
    items: &[(T, Revision)],
    revision: Revision,
    next_after: Option<Arn>,
) -> CachePage<T> {
    CachePage {
        items: items
            .iter()
            .map(|(t, r)| Entry::new(Arc::new(t.clone()), *r))
            .collect(),
        next_after,
        revision,
    }
}

/// A page's whole body, and how many chunks it came in.
fn body_of<T: Shape>(page: CachePage<T>) -> (Vec<u8>, usize) {
    let mut body = ListBody::new(page, Arc::default());
    let (mut out, mut chunks) = (Vec::new(), 0);
    while let Some(c) = body.next_chunk() {
        out.extend_from_slice(&c);
        chunks += 1;
    }
    (out, chunks)
}

#[test]
fn a_list_body_is_byte_for_byte_the_old_whole_body() {
    let items = mixed_tasks(700);
    let revision = Revision::new(1, 900);
    let last = items[699].0.task_arn.clone();
    let token = params::encode_token(&last);
    for (next_after, token) in [(None, None), (Some(last), Some(token.as_str()))] {
        let page = page_of(&items, revision, next_after);
        let old = old_task_list(&items, revision, token);
        let (cold, chunks) = body_of(page.clone());
        assert!(chunks > 5, "{chunks} chunks");
        assert_eq!(cold, old, "encoding on the way");
        let (warm, _) = body_of(page);
        assert_eq!(warm, old, "copying the encoded bytes");
    }
    let (empty, chunks) = body_of(page_of::<Task>(&[], revision, None));
    assert_eq!((empty, chunks), (old_task_list(&[], revision, None), 1));
}

#[test]
fn an_instance_list_carries_the_old_entities() {
    let items: Vec<_> = (0..300)
        .map(|n| (full_instance(n), Revision::new(1, n as u64 + 1)))
        .collect();
    let (body, _) = body_of(page_of(&items, Revision::new(1, 300), None));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["metadata"]["entityVersion"], "1:300");
    let listed = body["items"].as_array().unwrap();
    assert_eq!(listed.len(), items.len());
    for (item, (i, r)) in listed.iter().zip(&items) {
        assert_eq!(item["entity"], old_instance(i));
        assert_eq!(item["metadata"]["entityVersion"], r.to_string());
    }
}

/// A cache of `n` full tasks and its writer.
fn loaded(n: usize) -> (crate::cache::Cache, CacheWriter) {
    let (reader, mut writer) = cache();
    let items = full_tasks(n)
        .into_iter()
        .map(|(t, revision)| Versioned {
            entity: t.into(),
            revision,
        })
        .collect();
    writer.replace(items, Revision::new(1, n as u64));
    (reader, writer)
}

#[tokio::test]
async fn a_list_is_the_view_at_its_revision_while_writes_land_between_chunks() {
    const TASKS: usize = 600;
    let (reader, mut writer) = loaded(TASKS);
    let app = router(ApiState::new(reader, Arc::new(MemoryStore::new())));
    let mut view: BTreeMap<Arn, (Task, Revision)> = full_tasks(TASKS)
        .into_iter()
        .map(|(t, r)| (t.task_arn.clone(), (t, r)))
        .collect();
    let mut seq = TASKS as u64;
    // Each write replaces (a new version) or deletes a task, all over the list.
    let write =
        |seq: &mut u64, writer: &mut CacheWriter, view: &mut BTreeMap<Arn, (Task, Revision)>| {
            *seq += 1;
            let seq = *seq;
            let revision = Revision::new(1, seq);
            let k = (seq as usize * 7) % TASKS;
            let mut t = full_task(k);
            if seq.is_multiple_of(5) {
                view.remove(&t.task_arn);
                writer.apply(&WatchEvent::Delete {
                    arn: t.task_arn,
                    last: None,
                    revision,
                });
            } else {
                t.version = Some(seq);
                view.insert(t.task_arn.clone(), (t.clone(), revision));
                writer.apply(&WatchEvent::Put(Versioned {
                    entity: t.into(),
                    revision,
                }));
            }
        };
    for _ in 0..3 {
        let expected: Vec<(Task, Revision)> = view.values().cloned().collect();
        let at = Revision::new(1, seq);
        let request = Request::get("/v1/tasks").body(AxumBody::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let mut chunks = response.into_body().into_data_stream();
        let mut body = Vec::new();
        let mut between = 0;
        while let Some(chunk) = chunks.next().await {
            body.extend_from_slice(&chunk.unwrap());
            // Writes land while the list is being sent.
            for _ in 0..20 {
                write(&mut seq, &mut writer, &mut view);
                between += 1;
            }
        }
        assert!(
            between > 100,
            "only {between} writes landed during the list"
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            String::from_utf8(old_task_list(&expected, at, None)).unwrap(),
            "the list is the view at its revision {at}"
        );
    }
}

/// A server over a cache of `n` full tasks, its state and the cache's writer.
async fn serve(n: usize) -> (SocketAddr, ApiState, CacheWriter) {
    let (reader, writer) = loaded(n);
    let state = ApiState::new(reader, Arc::new(MemoryStore::new()));
    let app = router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state, writer)
}

/// A connection that has sent `GET path`; with a small receive buffer when
/// the client means to read slowly or not at all.
async fn send(addr: SocketAddr, path: &str, small_buffer: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if small_buffer {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let mut s = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    s
}

/// The head and (de-chunked) body of the response on `s`.
async fn response(mut s: TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut rest = &raw[split + 4..];
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&rest[..line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (head, body);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Waits (up to a minute, polling) until `done` holds.
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..6_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_the_work_of_its_list() {
    const TASKS: usize = 20_000;
    let (addr, state, _writer) = serve(TASKS).await;
    let mut s = send(addr, "/v1/tasks", true).await;
    let mut start = [0u8; 4096];
    s.read_exact(&mut start).await.unwrap();
    assert_eq!(state.lists().open(), 1, "the list is being sent");
    drop(s);
    wait_until("the list's end", || state.lists().open() == 0).await;
    let written = state.lists().items_written();
    assert!(
        written < TASKS as u64 / 2,
        "{written} of {TASKS} items were written for a client that left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_answered_while_many_big_lists_stream() {
    const TASKS: usize = 4_000;
    const STALLED: usize = 4;
    const READING: usize = 8;
    let (addr, state, _writer) = serve(TASKS).await;
    // Big lists whose clients read nothing more, holding their bodies open...
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = send(addr, "/v1/tasks", true).await;
        let mut start = [0u8; 1024];
        s.read_exact(&mut start).await.unwrap();
        stalled.push(s);
    }
    // ...and big lists being read in full.
    let readers: Vec<_> = (0..READING)
        .map(|_| tokio::spawn(async move { response(send(addr, "/v1/tasks", false).await).await }))
        .collect();
    let one = full_task(7);
    let path = format!("/v1/tasks/prod/{}", one.task_arn);
    let (head, body) = response(send(addr, &path, false).await).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let item: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(item["entity"], old_task(&one));
    assert!(
        state.lists().open() >= STALLED,
        "the get was answered while the big lists were still open"
    );
    let expected = old_task_list(&full_tasks(TASKS), Revision::new(1, TASKS as u64), None);
    for r in readers {
        let (head, body) = r.await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            body == expected,
            "a full list differs from the expected body"
        );
    }
    drop(stalled);
    wait_until("the stalled lists' end", || state.lists().open() == 0).await;
}
