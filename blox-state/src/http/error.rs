//! Error responses as Blox v0.3 wrote them (Go's `http.Error`): a status
//! code and a `text/plain; charset=utf-8` body of the message and a newline.
//!
//! Clients generated from the v0.3 specs decode an error body as a string
//! and match on v0.3's message text, so every message starts with it (the
//! constants of [`text`]); blox's detail may follow after `": "`. The daemon
//! scheduler's routes (`blox_sched::http`) and the daemon's own answers
//! (401, 404, 503) use the same form through [`text_response`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// The message texts of Blox v0.3 that clients match on.
pub mod text {
    /// A task get found nothing (v0.3's 404).
    pub const TASK_NOT_FOUND: &str = "Task not found";
    /// An instance get found nothing (v0.3's 404).
    pub const INSTANCE_NOT_FOUND: &str = "Instance not found";
    /// A `status` filter that is not a status of the listed kind.
    pub const INVALID_STATUS: &str = "Invalid status";
    /// A `cluster` filter that is neither a cluster name nor a cluster ARN.
    pub const INVALID_CLUSTER: &str = "Invalid cluster ARN or name";
    /// A query key the route does not know (the cluster-state routes' text).
    pub const UNSUPPORTED_FILTER: &str = "At least one of the filters provided is unsupported";
    /// A query key given more than once.
    pub const REDUNDANT_FILTER: &str =
        "At least one of the filters provided is specified multiple times";
    /// A stream's `entityVersion` that is not a revision.
    pub const INVALID_ENTITY_VERSION: &str = "Invalid entity version";
    /// A stream's `entityVersion` the store no longer has (or never had).
    pub const ENTITY_VERSION_OUT_OF_RANGE: &str = "Entity version is out of range";
    /// Any other failure of the cluster-state routes (500).
    pub const INTERNAL: &str = "Unexpected internal server error";
}

/// `text: detail`, the form of every message with detail after v0.3's text.
pub fn detailed(text: &str, detail: impl std::fmt::Display) -> String {
    format!("{text}: {detail}")
}

/// A plain-text error response as v0.3 wrote it: `status`, `text/plain;
/// charset=utf-8`, the message and a newline (and `Retry-After: 1` on a 503).
pub fn text_response(status: StatusCode, message: &str) -> Response {
    let mut body = String::with_capacity(message.len() + 1);
    body.push_str(message);
    body.push('\n');
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Why a request failed; each variant maps to one HTTP status, and the
/// response body is the variant's text (see [`text_response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: unknown, repeated or empty query parameter,
    /// an invalid value (status, cluster, ARN, `maxResults`, `nextToken`,
    /// `entityVersion`), an unreadable body or a missing field (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such entity or route, or the entity is not in the cluster named in
    /// the path (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request body is larger than the server accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// The request conflicts with the current state, e.g. the thing to
    /// create exists already (409).
    #[error("{0}")]
    Conflict(String),
    /// A stream cannot resume from the requested `entityVersion` (compacted,
    /// from another store epoch, or in the future): list again and stream
    /// from the list's `metadata.entityVersion` (410).
    #[error("{0}")]
    Gone(String),
    /// The cache has not loaded yet, or the store is unreachable; retry (503,
    /// with `Retry-After: 1`).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A store error as a response: 410 when the caller must relist (v0.3's
    /// [`text::ENTITY_VERSION_OUT_OF_RANGE`], then the store's message and
    /// what to list again, `relist`), 503 when the store is unreachable, 400
    /// for an invalid request, 500 otherwise (`internal`, the service's v0.3
    /// text, then the store's message).
    ///
    /// `From<StoreError>` uses this with the cluster-state routes' phrasing;
    /// the scheduler's routes phrase their own.
    pub fn from_store(e: StoreError, relist: &str, internal: &str) -> Self {
        if e.needs_relist() {
            ApiError::Gone(detailed(
                text::ENTITY_VERSION_OUT_OF_RANGE,
                format_args!("{e}; {relist}"),
            ))
        } else if e.is_unavailable() {
            ApiError::Unavailable(e.to_string())
        } else if let StoreError::Invalid(m) = e {
            ApiError::BadRequest(m)
        } else {
            ApiError::Internal(detailed(internal, e))
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from_store(
            e,
            "relist and stream from the list's metadata.entityVersion",
            text::INTERNAL,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        text_response(self.status(), &self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Revision;

    #[test]
    fn store_errors_that_need_a_relist_become_410_gone() {
        let e = StoreError::EpochMismatch {
            requested: Revision::new(1, 2),
            current: 3,
        };
        let api = ApiError::from(e);
        assert_eq!(api.status(), StatusCode::GONE);
        assert!(
            api.to_string()
                .starts_with(text::ENTITY_VERSION_OUT_OF_RANGE)
        );
        assert!(api.to_string().contains("relist"));
    }

    #[test]
    fn other_store_failures_are_500_with_v03_text_first() {
        let api = ApiError::from(StoreError::Invalid("x".into()));
        assert_eq!(api.status(), StatusCode::BAD_REQUEST);
        let api = ApiError::from(StoreError::Corrupt {
            key: "k".into(),
            message: "bad".into(),
        });
        assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(api.to_string().starts_with(text::INTERNAL), "{api}");
    }

    #[tokio::test]
    async fn errors_are_plain_text_with_a_newline_as_v03_wrote_them() {
        let response = ApiError::NotFound(text::TASK_NOT_FOUND.into()).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap_or_default();
        assert_eq!(&body[..], b"Task not found\n");
    }

    #[test]
    fn a_future_revision_is_410_and_says_to_relist() {
        let api = ApiError::from(StoreError::FutureRevision {
            requested: Revision::new(1, 9),
            current: Revision::new(1, 2),
        });
        assert_eq!(api.status(), StatusCode::GONE);
        assert!(api.to_string().contains("relist"));
    }

    #[test]
    fn unreachable_store_becomes_503_with_retry_after() {
        let api = ApiError::from(StoreError::Unavailable {
            message: "down".into(),
            source: None,
        });
        let response = api.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
