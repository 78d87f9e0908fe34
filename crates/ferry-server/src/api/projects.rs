//! Projects (a git repository Ferry watches) and the pipelines found in them.

use axum::extract::State;
use axum::http::StatusCode;
use ferry_api as api;
use serde::Deserialize;

use crate::auth::{audit_failure, Identity};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::AppState;

/// Project names become path segments and directory names, so they are kept simple.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            format!(
                "{what} name `{name}` must match [a-z0-9][a-z0-9_-]* and be at most 63 characters"
            ),
        ))
    }
}

/// Registers a project. The repository must be reachable now.
#[utoipa::path(post, path = "/api/v1/projects", request_body = api::ProjectCreate,
    responses((status = 201, body = api::Project), (status = 409, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn projects_create(
    State(state): State<AppState>,
    identity: Identity,
    Json(body): Json<api::ProjectCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::Project>)> {
    let result = async {
        check_name("project", &body.name)?;
        if ferry_engine::git::has_embedded_credentials(&body.repo) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "credentials_in_url",
                "the repository address contains a password or token; use a git credential helper instead",
            ));
        }
        ferry_engine::git::check_remote(&body.repo)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "repo_unreachable",
                    format!("repository `{}` is not reachable: {e}", body.repo),
                )
            })?;
        Ok(state
            .engine
            .store()
            .create_project(&identity.actor(), &body.name, &body.repo)
            .await?)
    }
    .await;
    let project = audit_failure(
        &state,
        &identity,
        "project.create",
        &format!("project/{}", body.name),
        result,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(convert::project(project))))
}

#[utoipa::path(get, path = "/api/v1/projects", responses((status = 200, body = Vec<api::Project>)))]
pub(crate) async fn projects_list(
    State(state): State<AppState>,
    identity: Identity,
) -> ApiResult<axum::Json<Vec<api::Project>>> {
    let projects = state.engine.store().list_projects().await?;
    Ok(axum::Json(
        projects
            .into_iter()
            .filter(|p| identity.sees(&p.name))
            .map(convert::project)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/projects/{project}", params(("project" = String, Path)),
    responses((status = 200, body = api::Project), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn projects_get(
    State(state): State<AppState>,
    _identity: Identity,
    Path(project): Path<String>,
) -> ApiResult<axum::Json<api::Project>> {
    Ok(axum::Json(convert::project(
        state.engine.store().project(&project).await?,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefQuery {
    /// Branch, tag or commit; the default branch when absent.
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

/// Pipelines (ferry.yaml files) in the project at a ref.
#[utoipa::path(get, path = "/api/v1/projects/{project}/pipelines", params(("project" = String, Path), RefQuery),
    responses((status = 200, body = api::PipelineList), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn pipelines_list(
    State(state): State<AppState>,
    _identity: Identity,
    Path(project): Path<String>,
    Query(query): Query<RefQuery>,
) -> ApiResult<axum::Json<api::PipelineList>> {
    let (commit, pipelines) = state
        .engine
        .pipelines(&project, query.git_ref.as_deref())
        .await?;
    Ok(axum::Json(api::PipelineList {
        commit,
        pipelines: pipelines
            .into_iter()
            .map(|p| api::Pipeline {
                name: p.name,
                path: p.path,
                environments: p.environments,
                errors: p.errors,
            })
            .collect(),
    }))
}
