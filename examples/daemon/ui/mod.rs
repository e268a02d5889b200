//! The cluster map page served at `/`: plain HTML, CSS and JS compiled into
//! the binary (no build step, no separate web server). The page reads the
//! API like any client, asking for the `--api-token` when a call answers 401,
//! so the page itself is served without a token.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The paths the page is served at; they need no token.
const PUBLIC: &[&str] = &["/", "/ui/app.js", "/ui/style.css"];

/// Whether a path is one of the page's own (served without a token).
pub fn is_public(path: &str) -> bool {
    PUBLIC.contains(&path)
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The page's routes.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_page_and_its_assets_are_public() {
        assert!(is_public("/"));
        assert!(is_public("/ui/app.js"));
        assert!(!is_public("/v1/instances"));
        assert!(!is_public("/ui/other.js"));
    }

    #[test]
    fn the_page_loads_the_assets_it_is_served_with() {
        assert!(INDEX.contains(r#"src="/ui/app.js""#));
        assert!(INDEX.contains(r#"href="/ui/style.css""#));
    }
}
