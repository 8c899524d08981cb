//! The API's errors: a status and `{"error": {"code", "message", "parameter"}}`.
//!
//! Every 4xx names what was wrong and how to fix it; a 5xx says what failed without row
//! values (those never reach an error message or a log line).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A failed request.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable machine-readable code (`invalid_parameter`, `unauthorized`, ...).
    pub code: &'static str,
    pub message: String,
    /// The query parameter or field at fault.
    pub parameter: Option<String>,
    /// More detail (the problems of a job definition, the failing checks of a gate).
    pub details: Option<serde_json::Value>,
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `invalid_parameter`, `unknown_parameter`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `invalid_definition`, `internal`, ...
    pub code: String,
    /// What was wrong and how to fix it.
    pub message: String,
    /// The query parameter or field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// More detail: the located problems of a definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            parameter: None,
            details: None,
        }
    }

    /// 400 for `parameter`.
    pub fn parameter(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            parameter: Some(parameter.to_owned()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
        }
    }

    /// 400 for a query parameter the route does not take; `message` says which it takes.
    pub fn unknown_parameter(parameter: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: "unknown_parameter",
            ..ApiError::parameter(parameter, message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500: `what` failed; the cause chain goes to the log and the body (no row values reach
    /// either: errors of the lake name tables and files, not values).
    pub fn internal(what: &str, err: &(dyn std::error::Error + 'static)) -> ApiError {
        let chain = crate::report::chain(err);
        tracing::error!(what, error = %chain, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{what}: {chain}"),
        )
    }

    /// 503: the lake cannot be read now; worth a retry.
    pub fn unavailable(what: &str, err: &(dyn std::error::Error + 'static)) -> ApiError {
        let chain = crate::report::chain(err);
        tracing::warn!(what, error = %chain, "API request could not read the lake");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what}: {chain}; retry shortly"),
        )
    }

    pub fn with_details(mut self, details: serde_json::Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                parameter: self.parameter.clone(),
                details: self.details.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"walaudit\""),
            );
        }
        response
    }
}
