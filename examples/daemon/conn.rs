//! One HTTP connection's timeouts. A connection with no request in
//! progress (new, or kept alive after a response) is closed after the idle
//! timeout if no new request starts; once a request's first byte (or, with
//! TLS, the handshake's) has arrived, its headers must be complete within
//! the header timeout, however slowly the bytes trickle in. While a request
//! is in progress (its response not yet sent, e.g. a stream) neither
//! applies. Whatever the connection does, a write that cannot progress
//! (the client reads nothing) for the send timeout closes it, so that a
//! client that stops reading cannot hold a connection, or a list's turn,
//! forever.
//!
//! [`Watched`] notes reads, [`Tracked`] notes requests and their responses,
//! and [`expired`] resolves when the connection should be closed.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Bytes, HttpBody};
use axum::extract::Request;
use axum::response::Response;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

use super::body;

/// A connection's two timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request (or TLS handshake) to its last header.
    pub header: Duration,
    /// With no request in progress, until the next one starts.
    pub idle: Duration,
    /// A write the client does not take (a full send buffer).
    pub send: Duration,
}

#[derive(Debug)]
struct State {
    /// Requests whose response is not yet sent.
    in_flight: usize,
    /// When the connection last became idle (accepted, a response ended,
    /// or the last write went out with no request in progress).
    idle_since: Instant,
    /// When the first byte of the next request arrived, if one has.
    head_since: Option<Instant>,
    /// Since when a write has been waiting for the client to read.
    blocked_since: Option<Instant>,
}

/// What a connection is doing, as its reads and requests report it.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                head_since: None,
                blocked_since: None,
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        let mut s = self.state();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A write could not go out (`blocked`) or went out.
    fn wrote(&self, blocked: bool) {
        let mut s = self.state();
        match (blocked, s.blocked_since) {
            (true, None) => {
                s.blocked_since = Some(Instant::now());
                drop(s);
                self.changed.notify_one();
            }
            (false, _) => {
                s.blocked_since = None;
                // The last slices of a response may still be going out
                // after its body ended: idle counts from the last write.
                if s.in_flight == 0 {
                    s.idle_since = Instant::now();
                }
            }
            (true, Some(_)) => {}
        }
    }

    /// A request's headers are complete: it is in progress until the
    /// returned mark is dropped (its response sent, or abandoned).
    fn request(self: &Arc<Self>) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        s.head_since = None;
        drop(s);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// When the connection is to be closed if nothing changes; `None`
    /// while a request is in progress and its writes go out.
    fn deadline(&self, t: Timeouts) -> Option<Instant> {
        let s = self.state();
        let send = s.blocked_since.map(|b| b + t.send);
        let waiting = match (s.in_flight, s.head_since) {
            (0, Some(head)) => Some(head + t.header),
            (0, None) => Some(s.idle_since + t.idle),
            _ => None,
        };
        match (send, waiting) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A request in progress; dropping it ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

/// Resolves when the connection has been idle, or has been sending a
/// request's headers, for longer than `t` allows.
pub async fn expired(activity: Arc<Activity>, t: Timeouts) {
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        // Registered before reading the state, so no change is missed.
        changed.as_mut().enable();
        match activity.deadline(t) {
            None => changed.await,
            Some(deadline) if deadline <= Instant::now() => return,
            Some(deadline) => {
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
    }
}

/// A connection's byte stream, reporting reads to its [`Activity`].
pub struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// `io`, reporting to `activity`.
    pub fn new(io: T, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.activity.wrote(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The application as one connection serves it: each request is in
/// progress from its last header until its response is sent.
#[derive(Clone)]
pub struct Tracked {
    app: Router,
    activity: Arc<Activity>,
}

impl Tracked {
    /// `app` on a connection reporting to `activity`.
    pub fn new(app: Router, activity: Arc<Activity>) -> Self {
        Tracked { app, activity }
    }
}

impl<B> tower::Service<Request<B>> for Tracked
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let in_flight = self.activity.request();
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(req.map(axum::body::Body::new)).await?;
            Ok(body::holding(response, in_flight))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        send: Duration::from_secs(30),
    };

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_after_the_idle_timeout() {
        let a = Activity::new();
        let start = Instant::now();
        expired(a, T).await;
        assert_eq!(start.elapsed(), T.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_must_complete_within_the_header_timeout() {
        let a = Activity::new();
        tokio::time::advance(Duration::from_secs(5)).await;
        a.read();
        let start = Instant::now();
        // Later bytes do not extend it.
        a.read();
        expired(a, T).await;
        assert_eq!(start.elapsed(), T.header);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_expires_while_a_request_is_in_progress() {
        let a = Activity::new();
        a.read();
        let request = a.request();
        let watchdog = tokio::spawn(expired(a.clone(), T));
        tokio::time::advance(Duration::from_secs(3600)).await;
        tokio::task::yield_now().await;
        assert!(!watchdog.is_finished());
        let sent = Instant::now();
        drop(request);
        watchdog.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            sent.elapsed(),
            T.idle,
            "idle again once the response is sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_the_client_does_not_read_expires_after_the_send_timeout() {
        let a = Activity::new();
        let _request = a.request();
        a.wrote(false);
        tokio::time::advance(Duration::from_secs(100)).await;
        // Blocked, then progress: the clock restarts at the next block.
        a.wrote(true);
        tokio::time::advance(Duration::from_secs(20)).await;
        a.wrote(false);
        a.wrote(true);
        let blocked = Instant::now();
        a.wrote(true);
        expired(a, T).await;
        assert_eq!(blocked.elapsed(), T.send);
    }
}
