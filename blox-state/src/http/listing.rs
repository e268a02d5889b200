//! List bodies, streamed: `{"items": [Item], "metadata": {"entityVersion"},
//! "nextToken"?}` written to the socket a chunk at a time.
//!
//! A list is one consistent revision: the handler takes the matching
//! entries (shared handles, no copies of the entities) and the cache's
//! revision under one read of the cache ([`CachePage`]), and the body is
//! produced from that snapshot outside the lock, so writes that land while
//! it streams change nothing in it.
//!
//! The body is produced as the connection takes it: a chunk of at most
//! [`CHUNK_BYTES`] (or [`CHUNK_ITEMS`] items, which bounds the work of a
//! chunk whose entities are encoded for the first time) each time the
//! connection asks for more, so what a request holds beyond its snapshot is
//! one chunk, whatever the size of the list. Between chunks the body
//! yields to the runtime, so a big list never holds a worker for long and
//! small requests keep being answered. When the client goes away the body
//! is dropped and the work stops with it. A list that fits in one chunk is
//! sent whole, with a `Content-Length`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use super::params;
use super::shape::{self, Shape};
use crate::cache::{CachePage, Entry};

/// The size a chunk of a list body is cut at (it ends with the item that
/// crosses it).
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// The most items in one chunk.
pub(crate) const CHUNK_ITEMS: usize = 256;

/// What list bodies have done, for tests and diagnosis.
#[derive(Debug, Default)]
pub(crate) struct ListStats {
    /// Items written to list bodies.
    items_written: AtomicU64,
    /// List bodies not yet finished or dropped.
    open: AtomicUsize,
}

impl ListStats {
    /// Items written to list bodies so far.
    #[cfg(test)]
    pub(crate) fn items_written(&self) -> u64 {
        self.items_written.load(Ordering::Relaxed)
    }

    /// List bodies still alive (being written or waiting for the client).
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The body of a list, produced chunk by chunk from a page of the cache.
struct ListBody<T> {
    /// The items not yet written (dropped as they are written).
    items: std::vec::IntoIter<Entry<T>>,
    /// Whether `{"items":[` has been written.
    started: bool,
    /// Whether an item has been written (the next one needs a comma).
    any: bool,
    /// What ends the body after the items; `None` once written.
    tail: Option<Vec<u8>>,
    stats: Arc<ListStats>,
}

impl<T> Drop for ListBody<T> {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: Shape> ListBody<T> {
    fn new(page: CachePage<T>, stats: Arc<ListStats>) -> Self {
        let mut tail = b"],\"metadata\":".to_vec();
        shape::write_metadata(&mut tail, page.revision, false);
        if let Some(after) = &page.next_after {
            tail.extend_from_slice(b",\"nextToken\":");
            // Writing a string to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut tail, &params::encode_token(after));
        }
        tail.push(b'}');
        stats.open.fetch_add(1, Ordering::Relaxed);
        ListBody {
            items: page.items.into_iter(),
            started: false,
            any: false,
            tail: Some(tail),
            stats,
        }
    }

    /// Whether the whole body has been produced.
    fn done(&self) -> bool {
        self.tail.is_none()
    }

    /// The next chunk of the body; `None` after the last.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done() {
            return None;
        }
        let mut out = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
        if !self.started {
            out.extend_from_slice(b"{\"items\":[");
            self.started = true;
        }
        let mut written = 0;
        while out.len() < CHUNK_BYTES && written < CHUNK_ITEMS {
            let Some(e) = self.items.next() else {
                out.extend(self.tail.take().unwrap_or_default());
                break;
            };
            if self.any {
                out.push(b',');
            }
            self.any = true;
            shape::write_entry(&mut out, &e);
            written += 1;
        }
        self.stats
            .items_written
            .fetch_add(written as u64, Ordering::Relaxed);
        Some(Bytes::from(out))
    }
}

/// The response to a list: the page's items, streamed (see the module
/// docs), as `application/json`.
pub(crate) fn response<T>(page: CachePage<T>, stats: &Arc<ListStats>) -> Response
where
    T: Shape + Send + Sync + 'static,
{
    let mut body = ListBody::new(page, Arc::clone(stats));
    let first = body.next_chunk().unwrap_or_default();
    let body = if body.done() {
        Body::from(first)
    } else {
        let rest = futures::stream::unfold(body, |mut body| async move {
            // Let other requests run between chunks.
            tokio::task::yield_now().await;
            let chunk = body.next_chunk()?;
            Some((Ok::<_, Infallible>(chunk), body))
        });
        Body::from_stream(futures::stream::once(async { Ok(first) }).chain(rest))
    };
    json_response(body)
}

/// A 200 with a JSON body (`application/json`, as lists and gets answer).
pub(crate) fn json_response(body: Body) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests;
