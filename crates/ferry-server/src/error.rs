//! `ApiError`: every failure of a handler becomes a JSON body with a stable `code`.
//!
//! Client mistakes get a 4xx that says what was wrong. Server faults get a 500 whose body
//! holds only the request id; the detail travels in a response extension to the
//! `request_context` middleware, which logs it once inside the request's span.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_api::ErrorBody;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<String>,
}

/// The hidden cause of a 5xx, for the logging middleware only.
#[derive(Debug, Clone)]
pub(crate) struct InternalError(pub(crate) String);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is required (Authorization: Bearer <token>)",
        )
    }

    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            cause.to_string(),
        )
    }

    pub fn with_details(mut self, details: Vec<String>) -> ApiError {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let body = ErrorBody {
                code: self.code.to_owned(),
                message: "internal server error".to_owned(),
                details: Vec::new(),
                request_id: None,
            };
            let mut response = (self.status, Json(body)).into_response();
            response
                .extensions_mut()
                .insert(InternalError(self.message));
            return response;
        }
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            details: self.details,
            request_id: None,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ferry_engine::model::StoreError> for ApiError {
    fn from(e: ferry_engine::model::StoreError) -> ApiError {
        use ferry_engine::model::StoreError as E;
        match e {
            E::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            E::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string())
            }
            E::Conflict(_) | E::InvalidTransition(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            E::Denied(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
            E::Invalid(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::internal(e),
        }
    }
}

impl From<ferry_engine::Error> for ApiError {
    fn from(e: ferry_engine::Error) -> ApiError {
        use ferry_engine::git::GitError;
        use ferry_engine::Error as E;
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            E::Store(e) => e.into(),
            E::Git(GitError::RefNotFound(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, "ref_not_found", e.to_string())
            }
            E::Git(GitError::InvalidRef(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_ref", e.to_string())
            }
            E::Git(GitError::Failed { .. }) => ApiError::new(status, "git_error", e.to_string()),
            E::Git(GitError::Timeout { .. }) => ApiError::new(status, "git_timeout", e.to_string()),
            E::Git(GitError::Spawn(_)) => ApiError::internal(e),
            E::NoPipeline { .. } => ApiError::new(status, "no_pipeline", e.to_string()),
            E::PipelineNotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "pipeline_not_found", e.to_string())
            }
            E::AmbiguousPipeline { .. } => {
                ApiError::new(status, "pipeline_required", e.to_string())
            }
            E::InvalidPipeline {
                ref path,
                ref diagnostics,
            } => ApiError::new(
                status,
                "invalid_pipeline",
                format!("{path} is not a valid pipeline"),
            )
            .with_details(diagnostics.clone()),
            E::MissingSecret { .. } => ApiError::new(status, "missing_secret", e.to_string()),
            E::Terraform(_) => ApiError::new(status, "terraform_unavailable", e.to_string()),
            E::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
            E::RunFinished { .. } => {
                ApiError::new(StatusCode::CONFLICT, "run_finished", e.to_string())
            }
            E::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            E::Refused(_) => ApiError::new(status, "refused", e.to_string()),
            E::InvalidOffset(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_offset", e.to_string())
            }
            E::WeakPassword { .. } => ApiError::new(status, "weak_password", e.to_string()),
            E::StalePlan(_) => ApiError::new(StatusCode::CONFLICT, "stale_plan", e.to_string()),
            E::Escape(_) => ApiError::new(status, "path_escapes_checkout", e.to_string()),
            E::NoSandbox(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_sandbox", e.to_string())
            }
            E::Io(_) => ApiError::internal(e),
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Rewrites an error answer that is not JSON (axum's extractor rejections: `413 length limit
/// exceeded`, `415`, `400 Failed to parse…`) into Ferry's JSON error body, keeping its status
/// and its text as the message. JSON answers and successes pass untouched.
pub(crate) async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are a line or two; anything longer is cut, never buffered whole.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}
