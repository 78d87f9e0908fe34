//! Extractors whose rejections are `ApiError`s, so a malformed body, query or path answers
//! with the same JSON error shape as everything else instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
pub(crate) struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let rejected = |rejection: axum::extract::rejection::JsonRejection| {
            let status = rejection.status();
            let code = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                "unsupported_media_type"
            } else {
                "invalid_body"
            };
            ApiError::new(status, code, rejection.body_text())
        };
        // Every body Ferry takes is a JSON object; serde would also read a struct from an
        // array of its fields in order, which no client means.
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) if value.is_object() => serde_path_to_error::deserialize(value)
                .map(Json)
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_body",
                        format!("Failed to deserialize the JSON body into the target type: {e}"),
                    )
                }),
            Ok(_) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body must be a JSON object",
            )),
            Err(rejection) => Err(rejected(rejection)),
        }
    }
}

/// Query parameters.
pub(crate) struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text()))
    }
}

/// Path parameters.
pub(crate) struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text()))
    }
}
