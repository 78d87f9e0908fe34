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
    if ferry_core::is_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_name",
            format!(
                "{what} name `{}` must match {} and be at most {} characters",
                name.escape_debug(),
                ferry_core::NAME_RULE,
                ferry_core::NAME_MAX_LEN
            ),
        ))
    }
}

/// The git credentials named by a request: both a username and a secret name, or neither.
fn git_credentials(
    username: Option<&str>,
    secret: Option<&str>,
) -> Result<Option<ferry_engine::model::GitCredentials>, ApiError> {
    let invalid = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_credentials",
            message,
        )
    };
    match (username, secret) {
        (None, None) => Ok(None),
        (Some(username), Some(secret)) => {
            if username.is_empty()
                || username.chars().count() > 255
                || username.contains(':')
                || username.chars().any(char::is_control)
            {
                return Err(invalid(
                    "the git username must be 1 to 255 characters, without `:` or control characters"
                        .to_owned(),
                ));
            }
            ferry_engine::model::SecretName::parse(secret)
                .map_err(|e| invalid(format!("git secret: {e}")))?;
            Ok(Some(ferry_engine::model::GitCredentials {
                username: username.to_owned(),
                secret: secret.to_owned(),
            }))
        }
        _ => Err(invalid(
            "git credentials need both a username and a secret name (or neither)".to_owned(),
        )),
    }
}

/// Checks that `repo` is reachable, with the credentials when there are any (their secret
/// resolved for project `name`, or only globally while it is being registered).
async fn check_reachable(
    state: &AppState,
    name: &str,
    project_id: Option<i64>,
    repo: &str,
    git: Option<&ferry_engine::model::GitCredentials>,
) -> Result<(), ApiError> {
    let auth = match git {
        Some(git) => Some(state.engine.resolve_git_auth(name, project_id, git).await?),
        None => None,
    };
    state
        .engine
        .check_remote(repo, auth.as_ref())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "repo_unreachable",
                format!("repository `{repo}` is not reachable: {e}"),
            )
        })
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
                "the repository address contains a password or token; name a secret with `git_username` and `git_secret` instead",
            ));
        }
        let git = git_credentials(body.git_username.as_deref(), body.git_secret.as_deref())?;
        check_reachable(&state, &body.name, None, &body.repo, git.as_ref()).await?;
        Ok(state
            .engine.create_project_with(&identity.actor(), &body.name, &body.repo, git.as_ref())
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
    let projects = state.engine.list_projects().await?;
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
        state.engine.project(&project).await?,
    )))
}

/// Sets (both fields) or clears (neither) the git credentials a project is fetched with.
/// New credentials must reach the repository now.
#[utoipa::path(patch, path = "/api/v1/projects/{project}", params(("project" = String, Path)),
    request_body = api::ProjectUpdate,
    responses((status = 200, body = api::Project), (status = 404, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn projects_update(
    State(state): State<AppState>,
    identity: Identity,
    Path(project): Path<String>,
    Json(body): Json<api::ProjectUpdate>,
) -> ApiResult<axum::Json<api::Project>> {
    let result = async {
        let git = git_credentials(body.git_username.as_deref(), body.git_secret.as_deref())?;
        let current = state.engine.project(&project).await?;
        if git.is_some() {
            check_reachable(
                &state,
                &current.name,
                Some(current.id),
                &current.repo,
                git.as_ref(),
            )
            .await?;
        }
        Ok(state
            .engine
            .set_project_git(&identity.actor(), &project, git.as_ref())
            .await?)
    }
    .await;
    let updated = audit_failure(
        &state,
        &identity,
        "project.update",
        &format!("project/{project}"),
        result,
    )
    .await?;
    Ok(axum::Json(convert::project(updated)))
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
