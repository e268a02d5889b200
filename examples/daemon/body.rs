//! Response bodies that carry something along: a value held until the body
//! is sent or dropped (a list permit, a connection's "request in progress"
//! mark), or a stream body that ends cleanly when the daemon shuts down.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use futures::StreamExt;
use http_body::{Frame, SizeHint};

/// Data goes to the connection in slices of at most this size, so that the
/// connection asks for the next one only when it has room to write it: a
/// body is finished when the client has taken (nearly) all of it, not when
/// one big frame was handed over.
const SLICE: usize = 64 * 1024;

/// A body that keeps `held` alive until it is sent in full or dropped.
struct Holding<T> {
    body: Body,
    /// The rest of a frame larger than [`SLICE`].
    rest: Bytes,
    held: Option<T>,
}

impl<T> Holding<T> {
    /// The next slice of `data`, keeping the rest for later.
    fn slice(&mut self, mut data: Bytes) -> Frame<Bytes> {
        if data.len() > SLICE {
            self.rest = data.split_off(SLICE);
        }
        Frame::data(data)
    }
}

impl<T: Send + Unpin + 'static> HttpBody for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if !self.rest.is_empty() {
            let rest = std::mem::take(&mut self.rest);
            return Poll::Ready(Some(Ok(self.slice(rest))));
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(self.slice(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(None) => {
                // Sent in full: let go now, not when the connection drops it.
                self.held = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = u64::try_from(self.rest.len()).unwrap_or(u64::MAX);
        let inner = self.body.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

/// `response` with `held` kept alive until its body is sent (the
/// connection has asked for its last slice) or dropped. The body's framing
/// (its length, if known) is unchanged.
pub fn holding<T: Send + Unpin + 'static>(response: Response, held: T) -> Response {
    response.map(|body| {
        Body::new(Holding {
            body,
            rest: Bytes::new(),
            held: Some(held),
        })
    })
}

/// `response` whose body ends cleanly (no further data, a proper end of
/// the chunked body) once `stop` resolves: for streams, which would
/// otherwise run until the client hangs up.
pub fn ending_at(response: Response, stop: impl Future<Output = ()> + Send + 'static) -> Response {
    response.map(|body| Body::from_stream(body.into_data_stream().take_until(Box::pin(stop))))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_held_value_lives_until_the_body_is_sent_and_the_length_is_kept() {
        let held = Arc::new(());
        let response = holding("twelve bytes".into_response(), held.clone());
        assert_eq!(response.body().size_hint().exact(), Some(12));
        assert_eq!(Arc::strong_count(&held), 2);
        let mut data = response.into_body().into_data_stream();
        let chunk = data.next().await;
        assert!(chunk.is_some());
        assert!(data.next().await.is_none());
        assert_eq!(Arc::strong_count(&held), 1, "released once sent");
    }

    #[tokio::test]
    async fn a_big_frame_goes_out_in_slices_and_holds_until_the_last() {
        let held = Arc::new(());
        let big = vec![7u8; 3 * SLICE + 1];
        let response = holding(big.clone().into_response(), held.clone());
        assert_eq!(response.body().size_hint().exact(), Some(big.len() as u64));
        let mut body = response.into_body();
        let mut got = Vec::new();
        let mut slices = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let data = frame
                .ok()
                .and_then(|f| f.into_data().ok())
                .unwrap_or_default();
            assert!(data.len() <= SLICE);
            got.extend_from_slice(&data);
            slices += 1;
            if got.len() < big.len() {
                assert_eq!(Arc::strong_count(&held), 2, "held until the last slice");
                let left = u64::try_from(big.len() - got.len()).unwrap_or(u64::MAX);
                assert_eq!(body.size_hint().exact(), Some(left));
            }
        }
        assert_eq!((got, slices), (big, 4));
        assert_eq!(Arc::strong_count(&held), 1);
    }

    #[tokio::test]
    async fn a_dropped_body_releases_what_it_holds() {
        let held = Arc::new(());
        drop(holding("x".into_response(), held.clone()));
        assert_eq!(Arc::strong_count(&held), 1);
    }

    #[tokio::test]
    async fn a_stream_ends_cleanly_when_stop_resolves() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let lines = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("a\n"))])
            .chain(futures::stream::pending());
        let response = ending_at(Body::from_stream(lines).into_response(), async {
            let _ = rx.await;
        });
        let mut data = response.into_body().into_data_stream();
        assert_eq!(
            data.next().await.and_then(Result::ok),
            Some(Bytes::from("a\n"))
        );
        let _ = tx.send(());
        assert!(data.next().await.is_none(), "a clean end, no error");
    }
}
