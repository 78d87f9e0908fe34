//! Promotion, retry, rollback, the history of each environment, and approvals: the routes
//! that move a commit through environments and show approvers what they decide on.

use axum::extract::State;
use axum::http::StatusCode;
use ferry_api as api;
use ferry_core::RunId;
use serde::Deserialize;

use crate::auth::{audit_failure, Identity};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::AppState;

/// Runs a failed, interrupted or cancelled run again on the same commit, from its first
/// environment that did not complete. It re-plans; it never applies an old plan.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", params(("id" = i64, Path)),
    request_body(content = Option<Object>, description = "Optional: an empty JSON object (a retry takes no options)", content_type = "application/json"),
    responses((status = 201, body = api::Run), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn runs_retry(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<api::Run>)> {
    // A retry takes no options: the body, if any, is an empty JSON object (or `null`).
    if !body.iter().all(u8::is_ascii_whitespace) {
        let options: Option<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!("the body must be a JSON object: {e}"))
            })?;
        if let Some(field) = options.iter().flat_map(|o| o.keys()).next() {
            return Err(ApiError::bad_request(format!(
                "unknown field `{field}`: a retry takes no options"
            )));
        }
    }
    let result = state
        .engine
        .retry(&identity.actor(), RunId(id))
        .await
        .map_err(ApiError::from);
    let run = audit_failure(&state, &identity, "run.retry", &format!("run/{id}"), result).await?;
    Ok((StatusCode::CREATED, axum::Json(convert::run(run))))
}

/// Starts an environment (and the ones after it) for a commit that completed every earlier
/// environment of the pipeline.
#[utoipa::path(post, path = "/api/v1/projects/{project}/promote", params(("project" = String, Path)), request_body = api::PromoteCreate,
    responses((status = 201, body = api::Run), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn promote(
    State(state): State<AppState>,
    identity: Identity,
    Path(project): Path<String>,
    Json(body): Json<api::PromoteCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::Run>)> {
    let result = state
        .engine
        .promote(
            &identity.actor(),
            &project,
            body.pipeline.as_deref(),
            &body.environment,
            body.git_ref.as_deref(),
            body.from_run.map(RunId),
        )
        .await
        .map_err(ApiError::from);
    let run = audit_failure(
        &state,
        &identity,
        "run.promote",
        &format!("project/{project}"),
        result,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(convert::run(run))))
}

/// Returns an environment to the commit of an earlier run that completed it. The rollback is
/// planned, policy-checked and approved like any other run.
#[utoipa::path(post, path = "/api/v1/projects/{project}/rollback", params(("project" = String, Path)), request_body = api::RollbackCreate,
    responses((status = 201, body = api::Run), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    identity: Identity,
    Path(project): Path<String>,
    Json(body): Json<api::RollbackCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::Run>)> {
    let result = state
        .engine
        .rollback(
            &identity.actor(),
            &project,
            body.pipeline.as_deref(),
            &body.environment,
            body.to_run.map(RunId),
        )
        .await
        .map_err(ApiError::from);
    let run = audit_failure(
        &state,
        &identity,
        "run.rollback",
        &format!("project/{project}"),
        result,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(convert::run(run))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeploymentsQuery {
    /// Optional when the project has one pipeline.
    pipeline: Option<String>,
    /// Only this environment.
    environment: Option<String>,
    /// 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The commits each environment ran, newest first: every environment a run completed.
#[utoipa::path(get, path = "/api/v1/projects/{project}/deployments", params(("project" = String, Path), DeploymentsQuery),
    responses((status = 200, body = [api::Deployment]), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn deployments(
    State(state): State<AppState>,
    _identity: Identity,
    Path(project): Path<String>,
    Query(query): Query<DeploymentsQuery>,
) -> ApiResult<axum::Json<Vec<api::Deployment>>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let list = state
        .engine
        .deployments(
            &project,
            query.pipeline.as_deref(),
            query.environment.as_deref(),
            limit,
        )
        .await?;
    Ok(axum::Json(
        list.into_iter().map(convert::deployment).collect(),
    ))
}

/// The approvals the caller may give now: runs waiting in an environment whose rule lets
/// them decide, on which they have not decided yet.
#[utoipa::path(get, path = "/api/v1/approvals", responses((status = 200, body = [api::PendingApproval])))]
pub(crate) async fn approvals_pending(
    State(state): State<AppState>,
    identity: Identity,
) -> ApiResult<axum::Json<Vec<api::PendingApproval>>> {
    let list = state.engine.approvals_for(&identity.actor()).await?;
    Ok(axum::Json(
        list.into_iter()
            // The rule of the environment may name this identity, but deciding also takes
            // the approver role there.
            .filter(|(run, environment)| {
                identity.allows(
                    ferry_core::Permission::Approve,
                    &ferry_core::Target::Environment(&run.project, environment),
                )
            })
            .map(|(run, environment)| api::PendingApproval {
                run: convert::run(run),
                environment,
            })
            .collect(),
    ))
}

/// What an approver of an environment is shown: the plan (destroys first), the policy and
/// test results, the commit and its diff stat against what the environment runs now, the
/// rule and the decisions so far.
#[utoipa::path(get, path = "/api/v1/runs/{id}/approvals/{environment}", params(("id" = i64, Path), ("environment" = String, Path)),
    responses((status = 200, body = api::ApprovalView), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn approval_view(
    State(state): State<AppState>,
    _identity: Identity,
    Path((id, environment)): Path<(i64, String)>,
) -> ApiResult<axum::Json<api::ApprovalView>> {
    let view = state.engine.approval_view(RunId(id), &environment).await?;
    Ok(axum::Json(convert::approval_view(view)?))
}
