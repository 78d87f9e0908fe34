//! Health, readiness, identity, the environment queue, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use ferry_api as api;
use utoipa::OpenApi;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", security(), responses((status = 200, body = api::Health)))]
pub(crate) async fn healthz() -> Json<api::Health> {
    Json(api::Health {
        sandbox: None,
        status: "ok".into(),
    })
}

/// The server can serve requests: its database answers and it is not shutting down.
#[utoipa::path(get, path = "/readyz", security(), responses((status = 200, body = api::Health), (status = 503, body = api::ErrorBody)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> ApiResult<Json<api::Health>> {
    if state.shutting_down() {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    state.engine.ping().await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            e.to_string(),
        )
    })?;
    // A server that would refuse every action is not ready for its main job.
    let sandbox = state.engine.sandbox_status();
    if !sandbox.actions_allowed {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no_sandbox",
            format!(
                "actions cannot be sandboxed on this host ({}); start the server with --insecure-no-sandbox to run them unconfined",
                sandbox.detail
            ),
        ));
    }
    Ok(Json(api::Health {
        status: "ready".into(),
        sandbox: Some(match sandbox.mode {
            "disabled" => format!("disabled: {}", sandbox.detail),
            _ => sandbox.detail,
        }),
    }))
}

/// The calling identity and its grants.
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = api::Whoami), (status = 401, body = api::ErrorBody)))]
pub(crate) async fn whoami(identity: Identity) -> Json<api::Whoami> {
    let show = |list: &[ferry_core::Grant]| list.iter().map(|g| g.to_string()).collect();
    Json(api::Whoami {
        grants: show(&identity.grants.grants),
        limited_to: identity.grants.limit.as_deref().map(show),
        name: identity.name,
        admin: identity.admin,
        user: identity.user,
    })
}

/// Who holds each environment, and which runs wait for it.
#[utoipa::path(get, path = "/api/v1/queue", responses((status = 200, body = Vec<api::EnvironmentQueue>)))]
pub(crate) async fn queue(
    State(state): State<AppState>,
    identity: Identity,
) -> ApiResult<Json<Vec<api::EnvironmentQueue>>> {
    let queue = state.engine.queue().await?;
    Ok(Json(
        queue
            .into_iter()
            .filter(|q| identity.sees(&q.project))
            .map(|q| api::EnvironmentQueue {
                project: q.project,
                pipeline: q.pipeline,
                environment: q.environment,
                held_by: q.holder.as_ref().map(|h| h.0 .0),
                held_since: q.holder.map(|h| h.1),
                waiting: q.waiting.into_iter().map(|r| r.0).collect(),
            })
            .collect(),
    ))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", security(),
    responses((status = 200, description = "Prometheus/OpenMetrics text exposition", content_type = "application/openmetrics-text")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = state.engine.run_counts().await?;
    let body = state.metrics.render(&counts);
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", security(),
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::ApiDoc::openapi())
}
