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

/// A body that keeps `held` alive until it is sent in full or dropped.
struct Holding<T> {
    body: Body,
    held: Option<T>,
}

impl<T: Send + Unpin + 'static> HttpBody for Holding<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            // Sent in full: let go now, not when the connection drops it.
            self.held = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `response` with `held` kept alive until its body is sent or dropped.
/// The body's framing (its length, if known) is unchanged.
pub fn holding<T: Send + Unpin + 'static>(response: Response, held: T) -> Response {
    response.map(|body| {
        Body::new(Holding {
            body,
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
