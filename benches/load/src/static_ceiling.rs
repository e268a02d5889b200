//! `static-ceiling`: the physical limit of a list on this machine. It serves
//! a prebuilt body (a file read once into memory, e.g. a saved
//! `GET /v1/tasks` response) at `GET /body` on the same server stack as the
//! daemon (axum over hyper, HTTP/1.1), and a trivial `GET /v1/ping`, so the
//! load benchmark can set the daemon's figures against both.
//!
//! Usage: `static-ceiling <body file> <listen address>`.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(addr)) = (args.get(1), args.get(2)) else {
        return Err("usage: static-ceiling <body file> <listen address>".into());
    };
    let body = Bytes::from(std::fs::read(file)?);
    let app = Router::new()
        .route(
            "/body",
            get(move || {
                let body = body.clone();
                async move {
                    let mut r: Response = body.into_response();
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
            }),
        )
        .route("/v1/ping", get(|| async { "" }));
    // Nagle's algorithm off, as the daemon's connections have it.
    let listener = tokio::net::TcpListener::bind(addr).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
