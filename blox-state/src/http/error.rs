//! Error responses: a status code and a JSON body `{"message": "..."}`.
//!
//! Blox v0.3's spec declares error bodies as plain strings; blox answers with
//! a JSON object instead (the one deliberate departure from the spec), so
//! clients can always parse a body as JSON. The daemon scheduler's routes
//! (`blox_sched::http`) answer with this same type.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Why a request failed; each variant maps to one HTTP status, and the
/// response body is `{"message": "<the variant's text>"}`.
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

    /// A store error as a response: 410 when the caller must relist (its
    /// message phrased by `gone`, which gets the store's message and says
    /// what to list again), 503 when the store is unreachable, 400 for an
    /// invalid request, 500 otherwise.
    ///
    /// `From<StoreError>` uses this with the cluster-state routes' phrasing;
    /// routes that list something else phrase their own 410.
    pub fn from_store(e: StoreError, gone: impl FnOnce(String) -> String) -> Self {
        if e.needs_relist() {
            ApiError::Gone(gone(e.to_string()))
        } else if e.is_unavailable() {
            ApiError::Unavailable(e.to_string())
        } else if let StoreError::Invalid(m) = e {
            ApiError::BadRequest(m)
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from_store(e, |message| {
            if message.contains("relist") {
                message
            } else {
                format!("{message}; relist and stream from the list's metadata.entityVersion")
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(serde_json::json!({ "message": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
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
        assert!(api.to_string().contains("relist"));
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
