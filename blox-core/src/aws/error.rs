//! Classification of AWS SDK errors into the ports' error kinds.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::ports::{EcsError, SourceError};

/// Error codes that mean "slow down" across AWS services (ECS, SQS, STS...).
pub(crate) const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "AWS.SimpleQueueService.RequestThrottled",
    "SlowDown",
];

/// Error codes that mean the named resource does not exist.
pub(crate) const NOT_FOUND_CODES: &[&str] = &[
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "ResourceNotFoundException",
    "TaskSetNotFoundException",
    "TargetNotFoundException",
];

/// What an SDK error means to blox, independent of the port.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The service throttled the call.
    Throttled { message: String },
    /// The named resource does not exist.
    NotFound { message: String },
    /// The service answered with an error.
    Service { code: String, message: String },
    /// No usable answer: connection, timeout, truncated response, gateway errors.
    Transport {
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The SDK could not build the request.
    InvalidRequest { message: String },
}

/// Classifies an SDK error by its error code and HTTP status.
pub(crate) fn classify<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().map(str::to_owned);
            let message = ctx
                .err()
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| DisplayErrorContext(ctx.err()).to_string());
            classify_service(code, status, message, || Box::new(err))
        }
        SdkError::ConstructionFailure(_) => Failure::InvalidRequest {
            message: DisplayErrorContext(&err).to_string(),
        },
        // An error answer whose body could not be parsed (an empty 429 from a
        // proxy, an HTML error page): the status still says what happened.
        SdkError::ResponseError(ctx) if ctx.raw().status().as_u16() >= 400 => {
            let status = ctx.raw().status().as_u16();
            let message = format!("HTTP {status} with an unreadable body");
            classify_service(None, status, message, || Box::new(err))
        }
        // Timeouts, dispatch failures (connection refused, DNS, TLS), other
        // responses that could not be read, and any kind added later.
        _ => Failure::Transport {
            source: Box::new(err),
        },
    }
}

fn classify_service(
    code: Option<String>,
    status: u16,
    message: String,
    source: impl FnOnce() -> Box<dyn std::error::Error + Send + Sync>,
) -> Failure {
    let code_is = |set: &[&str]| code.as_deref().is_some_and(|c| set.contains(&c));
    if code_is(THROTTLING_CODES) || status == 429 {
        Failure::Throttled { message }
    } else if code_is(NOT_FOUND_CODES) {
        Failure::NotFound { message }
    } else if code.is_none() && matches!(status, 502..=504) {
        // A gateway or load balancer answered for a service it could not reach.
        Failure::Transport { source: source() }
    } else {
        Failure::Service {
            code: code.unwrap_or_else(|| format!("HTTP {status}")),
            message,
        }
    }
}

impl Failure {
    /// The ECS port's error for this failure of `operation`.
    pub(crate) fn into_ecs(self, operation: &'static str) -> EcsError {
        match self {
            Failure::Throttled { message } => EcsError::Throttled { operation, message },
            Failure::NotFound { message } => EcsError::NotFound { operation, message },
            Failure::Service { code, message } => EcsError::Service {
                operation,
                code,
                message,
            },
            Failure::Transport { source } => EcsError::Transport { operation, source },
            Failure::InvalidRequest { message } => EcsError::InvalidRequest { operation, message },
        }
    }

    /// The event source port's error for this failure of `operation`.
    pub(crate) fn into_source(self, operation: &'static str) -> SourceError {
        match self {
            Failure::Throttled { message } => SourceError::Throttled { operation, message },
            Failure::NotFound { message } => SourceError::Service {
                operation,
                code: "NotFound".to_owned(),
                message,
            },
            Failure::Service { code, message } => SourceError::Service {
                operation,
                code,
                message,
            },
            Failure::Transport { source } => SourceError::Transport { operation, source },
            Failure::InvalidRequest { message } => {
                SourceError::InvalidRequest { operation, message }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: Option<&str>, status: u16) -> Failure {
        classify_service(code.map(str::to_owned), status, "m".to_owned(), || {
            "boom".into()
        })
    }

    #[test]
    fn every_throttling_code_and_http_429_mean_throttled() {
        for code in THROTTLING_CODES {
            assert!(
                matches!(service(Some(code), 400), Failure::Throttled { .. }),
                "{code}"
            );
        }
        assert!(matches!(service(None, 429), Failure::Throttled { .. }));
        assert!(matches!(
            service(Some("WhateverException"), 429),
            Failure::Throttled { .. }
        ));
    }

    #[test]
    fn not_found_codes_mean_not_found() {
        assert!(matches!(
            service(Some("ClusterNotFoundException"), 400),
            Failure::NotFound { .. }
        ));
    }

    #[test]
    fn gateway_errors_without_a_code_are_transport_but_500_is_a_service_error() {
        assert!(matches!(service(None, 503), Failure::Transport { .. }));
        match service(None, 500) {
            Failure::Service { code, .. } => assert_eq!(code, "HTTP 500"),
            other => panic!("{other:?}"),
        }
        match service(Some("InvalidParameterException"), 400) {
            Failure::Service { code, .. } => assert_eq!(code, "InvalidParameterException"),
            other => panic!("{other:?}"),
        }
    }
}
