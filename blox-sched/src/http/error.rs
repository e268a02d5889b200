//! Error responses: a status code and a JSON body `{"message": "..."}`.
//!
//! Blox v0.3's spec declares error bodies as plain strings; blox answers with
//! a JSON object instead (as the cluster-state routes do), so clients can
//! always parse a body as JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use blox_state::store::StoreError;

use crate::daemon::{EnvironmentError, ErrorClass};

/// Why a request failed; each variant maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON body, missing or invalid field,
    /// unknown or repeated query parameter, stale deployment token (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such environment, deployment or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The request body is larger than the server accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// The request conflicts with the current state: the environment exists
    /// or is being deleted, or concurrent writers won every retry (409).
    #[error("{0}")]
    Conflict(String),
    /// A stream cannot resume from the requested `entityVersion` (compacted,
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
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<EnvironmentError> for ApiError {
    fn from(e: EnvironmentError) -> Self {
        let message = e.to_string();
        match e.class() {
            ErrorClass::BadRequest => ApiError::BadRequest(message),
            ErrorClass::NotFound => ApiError::NotFound(message),
            ErrorClass::Conflict => ApiError::Conflict(message),
            ErrorClass::Unavailable => ApiError::Unavailable(message),
            ErrorClass::Internal => {
                tracing::error!(error = %message, "environment store failed");
                ApiError::Internal(message)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.needs_relist() {
            ApiError::Gone(format!(
                "{e}; list environments and stream from the list's metadata.entityVersion"
            ))
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
    use crate::daemon::ValidationError;
    use blox_state::store::Revision;

    #[test]
    fn environment_errors_map_to_their_class_status() {
        let cases = [
            (
                EnvironmentError::Invalid(ValidationError::Name("a/b".into())),
                StatusCode::BAD_REQUEST,
            ),
            (
                EnvironmentError::StaleToken {
                    environment: "web".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (
                EnvironmentError::NotFound("web".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                EnvironmentError::AlreadyExists("web".into()),
                StatusCode::CONFLICT,
            ),
            (
                EnvironmentError::BeingDeleted("web".into()),
                StatusCode::CONFLICT,
            ),
        ];
        for (e, status) in cases {
            let text = e.to_string();
            let api = ApiError::from(e);
            assert_eq!(api.status(), status, "{text}");
            assert_eq!(api.to_string(), text);
        }
    }

    #[test]
    fn a_compacted_revision_is_410_and_says_to_relist() {
        let api = ApiError::from(StoreError::EpochMismatch {
            requested: Revision::new(1, 2),
            current: 3,
        });
        assert_eq!(api.status(), StatusCode::GONE);
        assert!(api.to_string().contains("list environments"));
    }

    #[test]
    fn an_unreachable_store_is_503_with_retry_after() {
        let response = ApiError::from(StoreError::Unavailable {
            message: "down".into(),
            source: None,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
