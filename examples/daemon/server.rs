//! The daemon's HTTP server: the state service's and the daemon scheduler's
//! routes on one port, plus `/v1/ping`, `/v1/ready`, `/metrics` and (with
//! `--simulate`) the simulator's controls; bearer-token auth; HTTP or HTTPS.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::metrics::{HttpMetrics, Sources, metrics, registry, track_http};

/// An error response in the API's one form (v0.3's): `text/plain`, the
/// message and a newline.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    blox_state::http::text_response(status, &message.into())
}

/// What `/v1/ready` checks.
#[derive(Clone)]
pub struct Readiness {
    /// The cache holds a complete view.
    pub cache: blox_state::Cache,
    /// The bootstrap reconcile is done (on the leader) or this process follows.
    pub bootstrapped: watch::Receiver<bool>,
    /// Whether this process leads (followers are ready once their view is loaded).
    pub leader: watch::Receiver<bool>,
}

async fn ready(State(r): State<Readiness>) -> Response {
    let view = r.cache.is_ready();
    let leader = *r.leader.borrow();
    let bootstrapped = *r.bootstrapped.borrow();
    let ok = view && (!leader || bootstrapped);
    let body = Json(json!({
        "ready": ok,
        "viewLoaded": view,
        "leader": leader,
        "bootstrapReconcileDone": bootstrapped,
    }));
    if ok {
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn require_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/v1/ping" || super::ui::is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time so the token cannot be guessed byte by byte
    // (tower-http's deprecated `bearer()` check does not).
    let ok = presented.is_some_and(|p| {
        p.len() == token.len()
            && p.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        next.run(req).await
    } else {
        let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such path")
}

/// Everything the router needs.
pub struct RouterParts {
    /// The state service's routes.
    pub state: Router,
    /// The daemon scheduler's routes.
    pub sched: Router,
    /// What `/v1/ready` checks.
    pub readiness: Readiness,
    /// What `/metrics` reports.
    pub metrics: Sources,
    /// The simulator's controls, with `--simulate`.
    pub simulator: Option<Router>,
    /// The API token, with `--api-token`.
    pub api_token: Option<String>,
    /// HTTP latency recorder.
    pub http: Arc<HttpMetrics>,
}

/// The daemon's whole router.
pub fn router(parts: RouterParts) -> Router {
    // `/v1/ping` comes with the daemon scheduler's routes.
    let mut app = Router::new()
        .merge(
            Router::new()
                .route("/v1/ready", get(ready))
                .with_state(parts.readiness),
        )
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .with_state(Arc::new(registry(parts.metrics))),
        )
        .merge(parts.state)
        .merge(parts.sched)
        .merge(super::ui::router());
    if let Some(simulator) = parts.simulator {
        app = app.merge(simulator);
    }
    app = app
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(parts.http, track_http));
    if let Some(token) = parts.api_token {
        app = app.layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ));
    }
    app
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error("cannot load TLS {what} from {path}: {message}")]
    Tls {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Binds the listener (so startup errors surface before anything else runs).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Loads a rustls server configuration from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |what: &'static str, path: &Path, message: String| ServeError::Tls {
        what,
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "certificate",
            cert,
            "no certificate in the file".into(),
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err("key", key, e.to_string()))?;
    Ok(Arc::new(config))
}

/// Serves `app` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => serve_tls(listener, app, config, shutdown).await,
    }
}

async fn serve_tls(
    listener: TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        conns.spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Let in-flight connections finish, for a while.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
