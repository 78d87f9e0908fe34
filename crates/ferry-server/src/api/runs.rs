//! Runs: trigger, list, inspect, cancel, and approve or reject.

use axum::extract::State;
use axum::http::StatusCode;
use ferry_api as api;
use ferry_core::{RunId, RunStatus};
use ferry_engine::model::{ApprovalMode, Decision, RunFilter};
use serde::Deserialize;

use crate::auth::{audit_failure, require_audited, Identity};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::AppState;

/// Triggers a run of a pipeline on a branch, tag or commit.
#[utoipa::path(post, path = "/api/v1/projects/{project}/runs", params(("project" = String, Path)), request_body = api::RunCreate,
    responses((status = 201, body = api::Run), (status = 404, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn runs_create(
    State(state): State<AppState>,
    identity: Identity,
    Path(project): Path<String>,
    Json(body): Json<api::RunCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::Run>)> {
    let request = ferry_engine::RunRequest {
        git_ref: body.git_ref,
        pipeline: body.pipeline,
        environment: body.environment,
        destroy: body.destroy,
        targets: body.targets,
        replaces: body.replaces,
    };
    let action = if request.destroy {
        "run.destroy"
    } else {
        "run.create"
    };
    let result = state
        .engine
        .trigger(&identity.actor(), &project, &request)
        .await;
    let run = audit_failure(
        &state,
        &identity,
        action,
        &format!("project/{project}"),
        result.map_err(ApiError::from),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(convert::run(run))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunsQuery {
    /// Only runs of this project.
    project: Option<String>,
    /// Only runs in this status.
    status: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Only runs older than this id (from `next_before`).
    before: Option<i64>,
}

/// Runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", params(RunsQuery), responses((status = 200, body = api::RunPage), (status = 400, body = api::ErrorBody)))]
pub(crate) async fn runs_list(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<RunsQuery>,
) -> ApiResult<axum::Json<api::RunPage>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 500"));
    }
    let status = match &query.status {
        Some(s) => Some(
            s.parse::<RunStatus>()
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        None => None,
    };
    let filter = RunFilter {
        project: query.project,
        status,
        before: query.before.map(RunId),
        limit: limit + 1,
        visible: visible_projects(&state, &identity).await?,
    };
    let mut runs = state.engine.list_runs(&filter).await?;
    let next_before = if runs.len() as i64 > limit {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id.0)
    } else {
        None
    };
    Ok(axum::Json(api::RunPage {
        runs: runs.into_iter().map(convert::run).collect(),
        next_before,
    }))
}

/// `None` when the identity sees every project, else the names of those it sees.
pub(crate) async fn visible_projects(
    state: &AppState,
    identity: &Identity,
) -> ApiResult<Option<Vec<String>>> {
    if identity.grants.sees_all() {
        return Ok(None);
    }
    let projects = state.engine.list_projects().await?;
    Ok(Some(
        projects
            .into_iter()
            .map(|p| p.name)
            .filter(|p| identity.sees(p))
            .collect(),
    ))
}

/// A run with its stages, actions, plan summaries and approvals.
#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = api::RunDetail), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn runs_get(
    State(state): State<AppState>,
    _identity: Identity,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<api::RunDetail>> {
    let store = &state.engine;
    let detail = store.run_detail(RunId(id)).await?;
    let mut detail = convert::run_detail(detail)?;
    detail.policy = store
        .policy_reports(id)
        .await?
        .iter()
        .map(|row| {
            Ok(convert::policy_report(
                ferry_engine::records::policy_report(row)?,
            ))
        })
        .collect::<ApiResult<_>>()?;
    Ok(axum::Json(detail))
}

/// Cancels a run; its running action is terminated.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", params(("id" = i64, Path)),
    responses((status = 200, body = api::Run), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn runs_cancel(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<api::Run>> {
    let result = state
        .engine
        .cancel(&identity.actor(), RunId(id))
        .await
        .map_err(ApiError::from);
    let run = audit_failure(
        &state,
        &identity,
        "run.cancel",
        &format!("run/{id}"),
        result,
    )
    .await?;
    Ok(axum::Json(convert::run(run)))
}

/// Approves or rejects the approval a run waits for, binding the decision to the plan's
/// digest and the state it was planned against. Whoever triggered the run or wrote its
/// commit cannot. `break_glass` (admins only) satisfies the count on its own.
#[utoipa::path(post, path = "/api/v1/runs/{id}/approvals", params(("id" = i64, Path)), request_body = api::ApprovalCreate,
    responses((status = 200, body = api::Run), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn approvals_create(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<i64>,
    Json(body): Json<api::ApprovalCreate>,
) -> ApiResult<axum::Json<api::Run>> {
    let result = async {
        let decision: Decision = body.decision.parse().map_err(ApiError::bad_request)?;
        // The request's own rules (`ferry_core::approval`), before any authorisation.
        let verdict = match decision {
            Decision::Approve => ferry_core::approval::Verdict::Approve,
            Decision::Reject => ferry_core::approval::Verdict::Reject,
        };
        ferry_core::approval::check_request(verdict, body.break_glass, &body.comment)
            .map_err(ApiError::bad_request)?;
        let mode = if body.break_glass {
            let run = state.engine.run(RunId(id)).await?;
            let target = ferry_core::Target::Environment(&run.project, &body.environment);
            require_audited(
                &state,
                &identity,
                identity.allows(ferry_core::Permission::Admin, &target),
                "run.break_glass",
                &format!("run/{id}"),
                "a break-glass approval needs the admin role in the environment",
            )
            .await?;
            ApprovalMode::BreakGlass
        } else {
            ApprovalMode::Normal
        };
        Ok(state
            .engine
            .decide(
                &identity.actor(),
                RunId(id),
                &body.environment,
                decision,
                body.comment.trim(),
                mode,
            )
            .await?)
    }
    .await;
    let run = audit_failure(
        &state,
        &identity,
        "run.decide",
        &format!("run/{id}"),
        result,
    )
    .await?;
    Ok(axum::Json(convert::run(run)))
}
