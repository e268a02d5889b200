//! The accept loop: HTTP/1.1 and HTTP/2 (hyper-util's automatic builder),
//! plain or TLS, with a limit on open connections, each connection's
//! timeouts ([`super::conn`]), and a bounded drain at shutdown: no new
//! connections, in-flight requests finish, idle kept-alive connections
//! close, and whatever is still open when the drain bound passes is
//! dropped. Streams end at shutdown on their own (see
//! [`super::server::end_streams_at`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use super::conn::{self, Activity, Timeouts, Tracked, Watched};
use super::metrics::HttpMetrics;

/// How the server treats connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS, with `--tls-cert`/`--tls-key`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Each connection's header and idle timeouts.
    pub timeouts: Timeouts,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long in-flight requests get at shutdown.
    pub drain: Duration,
    /// Where the open-connection count goes.
    pub metrics: Arc<HttpMetrics>,
}

/// Resolves once `stop` holds `true` (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves `app` on `listener` until `stop` turns `true`, then drains (at
/// most `options.drain`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let mut conns = tokio::task::JoinSet::new();
    let mut warned_full = false;
    loop {
        while conns.try_join_next().is_some() {}
        // Beyond the limit, clients wait in the listen backlog.
        if slots.available_permits() == 0 && !warned_full {
            tracing::warn!(
                limit = options.max_connections,
                "the HTTP connection limit is reached; new clients wait until one closes"
            );
        }
        warned_full = slots.available_permits() == 0;
        let slot = tokio::select! {
            _ = stopped(&mut stop) => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = stopped(&mut stop) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, for example: do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tune(&tcp, peer);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let timeouts = options.timeouts;
        let metrics = options.metrics.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            metrics.open_connections.fetch_add(1, Ordering::Relaxed);
            let activity = Activity::new();
            let io = Watched::new(tcp, activity.clone());
            let served = async {
                match acceptor {
                    None => connection(io, app, activity.clone(), peer, stop).await,
                    Some(acceptor) => match acceptor.accept(io).await {
                        Ok(tls) => connection(tls, app, activity.clone(), peer, stop).await,
                        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    },
                }
            };
            tokio::select! {
                _ = served => {}
                _ = conn::expired(activity.clone(), timeouts) => {
                    tracing::debug!(%peer, "closing a connection: idle, or its headers too slow");
                }
            }
            metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    // In-flight requests finish (streams have ended); then the rest goes.
    let drained = tokio::time::timeout(options.drain, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "closing HTTP connections still busy after the drain bound"
        );
        conns.shutdown().await;
    }
}

/// Sets up an accepted connection: Nagle's algorithm off (`TCP_NODELAY`).
///
/// With it on, the small write that ends a response (a streamed list's
/// last chunk, a short response after a long one on a kept-alive
/// connection) waits for the client's ACK of the previous segment, and
/// clients delay their ACKs by up to 40 ms: lists of a few hundred tasks
/// took 40 ms instead of 2 (`benches/RESULTS.md`, issue 17).
fn tune(tcp: &TcpStream, peer: SocketAddr) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot turn Nagle's algorithm off");
    }
}

/// Serves one connection; at shutdown, finishes its in-flight requests and
/// closes it.
async fn connection<I>(
    io: I,
    app: Router,
    activity: Arc<Activity>,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = Builder::new(TokioExecutor::new());
    let service = TowerToHyperService::new(Tracked::new(app, activity));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once()
    -> Result<(), Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let _client = TcpStream::connect(addr).await?;
        let (tcp, peer) = listener.accept().await?;
        tune(&tcp, peer);
        assert!(tcp.nodelay()?, "Nagle's algorithm must be off");
        Ok(())
    }
}
