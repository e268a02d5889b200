//! Error responses: a status code and a JSON body `{"message": "..."}`.
//!
//! Blox v0.3's spec declares error bodies as plain strings; blox answers with
//! a JSON object instead (the one deliberate departure from the spec), so
//! clients can always parse a body as JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Why a request failed; each variant maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: unknown or repeated query parameter, invalid
    /// status, cluster, ARN, `maxResults`, `nextToken` or `entityVersion` (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such entity, or it is not in the cluster named in the path (404).
    #[error("{0}")]
    NotFound(String),
    /// The stream cannot resume from the requested `entityVersion` (compacted,
    /// from another store epoch, or in the future): list again and stream
    /// from the list's `metadata.entityVersion` (410).
    #[error("{0}")]
    Gone(String),
    /// The cache has not loaded yet, or the store is unreachable; retry (503).
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
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.needs_relist() {
            let message = e.to_string();
            if message.contains("relist") {
                ApiError::Gone(message)
            } else {
                ApiError::Gone(format!(
                    "{message}; relist and stream from the list's metadata.entityVersion"
                ))
            }
        } else if e.is_unavailable() {
            ApiError::Unavailable(e.to_string())
        } else if let StoreError::Invalid(m) = e {
            ApiError::BadRequest(m)
        } else {
            ApiError::Internal(e.to_string())
        }
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
