//! How the scheduler's failures become error responses.
//!
//! The response type is the cluster-state routes' [`ApiError`] (a status and
//! a `text/plain` body that starts with v0.3's text); this module maps the
//! environment store's errors onto it with the daemon scheduler's v0.3 texts
//! ([`text`]) and phrases a store's 410 for environment streams.

use blox_state::http::detailed;
use blox_state::store::StoreError;

pub use blox_state::http::ApiError;

/// The message texts of Blox v0.3's daemon scheduler that clients match on
/// (where they differ from the cluster-state service's).
pub mod text {
    /// A query key the route does not know.
    pub const UNSUPPORTED_FILTER: &str = "At least one of the filters provided is not supported";
    /// Any other failure (500).
    pub const INTERNAL: &str = "Server Error";
    /// An environment's cluster that ECS reports INACTIVE (404).
    pub const CLUSTER_INACTIVE: &str = "Cluster is inactive";
    /// An environment's task definition that ECS reports INACTIVE (404).
    pub const TASK_DEFINITION_INACTIVE: &str = "TaskDefinition is inactive";
}

use crate::daemon::{EnvironmentError, ErrorClass};

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
                ApiError::Internal(detailed(text::INTERNAL, message))
            }
        }
    }
}

/// A store error as a response; a 410 says to list environments again (not
/// the cluster state, as `From<StoreError>` would).
pub(crate) fn store_error(e: StoreError) -> ApiError {
    ApiError::from_store(
        e,
        "list environments and stream from the list's metadata.entityVersion",
        text::INTERNAL,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::ValidationError;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
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
                StatusCode::BAD_REQUEST,
            ),
            (
                EnvironmentError::BeingDeleted("web".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                EnvironmentError::Contended("web".into()),
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
    fn unexpected_failures_are_500_with_v03_text_first() {
        let corrupt = serde_json::from_str::<u8>("x").unwrap_err();
        let api = ApiError::from(EnvironmentError::Corrupt {
            key: "k".into(),
            source: corrupt,
        });
        assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(api.to_string().starts_with(text::INTERNAL), "{api}");
    }

    #[test]
    fn a_compacted_revision_is_410_and_says_to_relist() {
        let api = store_error(StoreError::EpochMismatch {
            requested: Revision::new(1, 2),
            current: 3,
        });
        assert_eq!(api.status(), StatusCode::GONE);
        assert!(api.to_string().contains("list environments"));
        let api = store_error(StoreError::Invalid("x".into()));
        assert_eq!(api.status(), StatusCode::BAD_REQUEST);
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
