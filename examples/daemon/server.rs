//! The daemon's HTTP routes: the state service's and the daemon
//! scheduler's routes on one port, plus `/v1/ping`, `/v1/ready`, `/metrics`
//! and (with `--simulate`) the simulator's controls; bearer-token auth; the
//! TLS configuration. `/v1/ping` and `/v1/ready` answer from the moment the
//! port is bound ([`front`]); the rest once the store is there. The accept
//! loop is [`super::serve`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::body;
use super::limits::{ListLimit, bound_lists};
use super::metrics::{HttpMetrics, Sources, metrics, registry, track_http};
use super::readiness::Readiness;

/// An error response in the API's one form (v0.3's): `text/plain`, the
/// message and a newline.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    blox_state::http::text_response(status, &message.into())
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

/// Everything the application's router needs.
pub struct RouterParts {
    /// The state service's routes.
    pub state: Router,
    /// The daemon scheduler's routes.
    pub sched: Router,
    /// What `/metrics` reports.
    pub metrics: Sources,
    /// The simulator's controls, with `--simulate`.
    pub simulator: Option<Router>,
    /// HTTP latency recorder.
    pub http: Arc<HttpMetrics>,
    /// The bound on whole lists.
    pub lists: Arc<ListLimit>,
    /// Turns `true` at shutdown: open streams end then.
    pub stop: watch::Receiver<bool>,
}

/// The application's router: every route but `/v1/ping` and `/v1/ready`
/// (see [`front`]), once the store is there.
pub fn router(parts: RouterParts) -> Router {
    let mut app = Router::new()
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
    app.fallback(not_found)
        .layer(middleware::from_fn_with_state(parts.lists, bound_lists))
        .layer(middleware::from_fn_with_state(parts.stop, end_streams_at))
        .layer(middleware::from_fn_with_state(parts.http, track_http))
}

/// Middleware: a stream response ([`blox_state::http::STREAM_TYPE`]) ends
/// cleanly at shutdown, so that a stream client never holds the daemon up
/// (the client resumes elsewhere from the last line it read).
pub async fn end_streams_at(
    State(stop): State<watch::Receiver<bool>>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t == blox_state::http::STREAM_TYPE);
    if !is_stream {
        return response;
    }
    let mut stop = stop;
    body::ending_at(response, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
}

/// Where the application's router goes once it is built (see [`front`]).
#[derive(Clone, Default)]
pub struct AppSlot(Arc<OnceLock<Router>>);

impl AppSlot {
    /// Puts the application in (once; later calls are ignored).
    pub fn fill(&self, app: Router) {
        let _ = self.0.set(app);
    }
}

/// The application's answer, or a 503 naming what startup waits for.
async fn delegate(State((slot, readiness)): State<(AppSlot, Readiness)>, req: Request) -> Response {
    match slot.0.get() {
        Some(app) => app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {}),
        None => {
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the daemon is starting (waiting for: {}); retry shortly",
                    readiness.waiting_for().join(", ")
                ),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}

/// `GET /v1/ping`: the process answers.
async fn ping() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// What the port serves from the moment it is bound: `/v1/ping`,
/// `/v1/ready`, and the application once [`AppSlot::fill`] puts it in
/// (503 with `Retry-After` until then); the bearer token around it all.
pub fn front(
    readiness: Readiness,
    app: AppSlot,
    api_token: Option<String>,
    http: Arc<HttpMetrics>,
) -> Router {
    let mut front = Router::new()
        .route("/v1/ping", get(ping))
        .route(
            "/v1/ready",
            get(super::readiness::ready).with_state(readiness.clone()),
        )
        .method_not_allowed_fallback(method_not_allowed)
        // The application records its own requests.
        .route_layer(middleware::from_fn_with_state(http, track_http))
        .fallback(delegate)
        .with_state((app, readiness));
    if let Some(token) = api_token {
        front = front.layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ));
    }
    front
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
