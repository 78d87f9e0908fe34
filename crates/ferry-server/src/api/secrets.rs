//! Secrets and parameters under `/api/v1/secrets` and `/api/v1/params`: list metadata, set a
//! new version (value in the body), remove; a parameter's value is also readable. No route
//! returns a secret's value, and no error quotes a request body (a malformed body gets a
//! fixed message, since serde's messages can quote the offending input). Setting and
//! removing need an admin token; listing and reading parameters any token.

use axum::body::Bytes;
use axum::extract::State;
use ferry_api as api;
use ferry_engine::model::{Scope, SecretKind, SecretMeta, SecretName};

use ferry_core::{Permission, Target};

use crate::auth::{audit_failure, require_audited, Identity};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::AppState;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this project's values (and the global ones).
    project: Option<String>,
}

fn info(meta: SecretMeta) -> api::SecretInfo {
    api::SecretInfo {
        kind: meta.kind.as_str().to_owned(),
        name: meta.name,
        project: meta.scope.project().map(str::to_owned),
        environment: meta.scope.environment().map(str::to_owned),
        version: meta.version,
        created_at: meta.created_at,
        created_by: meta.created_by,
        updated_at: meta.updated_at,
        updated_by: meta.updated_by,
        last_used_at: meta.last_used_at,
        last_used_run: meta.last_used_run,
    }
}

/// A scope names a project and an environment, with the same names as anywhere else, so
/// `../../etc` or a NUL byte never reaches the store, an audit target or a message.
fn check_scope(project: Option<&str>, environment: Option<&str>) -> ApiResult<()> {
    for (what, part) in [("project", project), ("environment", environment)] {
        if let Some(part) = part.filter(|p| !p.is_empty()) {
            super::projects::check_name(what, part)?;
        }
    }
    Ok(())
}

fn parse(name: &str, scope: &api::ScopeQuery) -> ApiResult<(SecretName, Scope)> {
    let name = SecretName::parse(name).map_err(ApiError::bad_request)?;
    check_scope(scope.project.as_deref(), scope.env.as_deref())?;
    let scope =
        Scope::from_parts(scope.project.as_deref(), scope.env.as_deref()).map_err(|message| {
            ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_scope",
                message,
            )
        })?;
    Ok((name, scope))
}

/// What a scope is, for authorisation: admin on it to change a value, read on it to see one.
fn scope_target(scope: &api::ScopeQuery) -> Target<'_> {
    match (scope.project.as_deref(), scope.env.as_deref()) {
        (Some(project), Some(environment)) => Target::Environment(project, environment),
        (Some(project), None) => Target::Project(project),
        _ => Target::Global,
    }
}

/// Refuses (audited) unless the identity is an admin of the value's scope.
async fn require_scope_admin(
    state: &AppState,
    identity: &Identity,
    scope: &api::ScopeQuery,
    action: &str,
    target: &str,
) -> ApiResult<()> {
    let allowed = identity.allows(Permission::Admin, &scope_target(scope));
    require_audited(
        state,
        identity,
        allowed,
        action,
        target,
        "managing secrets and parameters needs the admin role on their scope",
    )
    .await
}

fn target(kind: SecretKind, name: &str, scope: &api::ScopeQuery) -> String {
    let mut t = format!("{kind}/");
    for part in [&scope.project, &scope.env].into_iter().flatten() {
        t.push_str(part);
        t.push('/');
    }
    t.push_str(name);
    t
}

/// Metadata of the values whose scope the identity can see (global ones, and those of the
/// projects it has a role in).
async fn list(
    state: &AppState,
    identity: &Identity,
    kind: SecretKind,
    q: ListQuery,
) -> ApiResult<Vec<api::SecretInfo>> {
    check_scope(q.project.as_deref(), None)?;
    let metas = state
        .engine
        .list_secrets(kind, q.project.as_deref())
        .await?;
    Ok(metas
        .into_iter()
        .filter(|m| m.scope.project().is_none_or(|p| identity.sees(p)))
        .map(info)
        .collect())
}

async fn set(
    state: &AppState,
    identity: &Identity,
    kind: SecretKind,
    name: &str,
    scope: &api::ScopeQuery,
    body: &[u8],
) -> ApiResult<api::SecretInfo> {
    let action = format!("{kind}.set");
    check_scope(scope.project.as_deref(), scope.env.as_deref())?;
    let target = target(kind, name, scope);
    require_scope_admin(state, identity, scope, &action, &target).await?;
    let result = async {
        let (name, scope) = parse(name, scope)?;
        let body: api::SecretSet = serde_json::from_slice(body).map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_body",
                "the body must be a JSON object {\"value\": \"…\"}",
            )
        })?;
        let meta = state
            .engine
            .set_secret(
                &identity.actor(),
                kind,
                &scope,
                &name,
                body.value.as_bytes(),
            )
            .await?;
        Ok(info(meta))
    }
    .await;
    audit_failure(state, identity, &action, &target, result).await
}

async fn delete(
    state: &AppState,
    identity: &Identity,
    kind: SecretKind,
    name: &str,
    scope: &api::ScopeQuery,
) -> ApiResult<api::SecretInfo> {
    let action = format!("{kind}.remove");
    check_scope(scope.project.as_deref(), scope.env.as_deref())?;
    let target = target(kind, name, scope);
    require_scope_admin(state, identity, scope, &action, &target).await?;
    let result = async {
        let (name, scope) = parse(name, scope)?;
        let meta = state
            .engine
            .remove_secret(&identity.actor(), kind, &scope, &name)
            .await?;
        Ok(info(meta))
    }
    .await;
    audit_failure(state, identity, &action, &target, result).await
}

/// Metadata of every secret (never a value).
#[utoipa::path(get, path = "/api/v1/secrets", params(ListQuery),
    responses((status = 200, body = Vec<api::SecretInfo>)))]
pub(crate) async fn secrets_list(
    State(state): State<AppState>,
    identity: Identity,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<api::SecretInfo>>> {
    Ok(axum::Json(
        list(&state, &identity, SecretKind::Secret, q).await?,
    ))
}

/// Sets a new version of a secret. The answer is its metadata; the value is never returned.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", params(("name" = String, Path), api::ScopeQuery),
    request_body = api::SecretSet,
    responses((status = 200, body = api::SecretInfo), (status = 400, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn secrets_set(
    State(state): State<AppState>,
    identity: Identity,
    Path(name): Path<String>,
    Query(scope): Query<api::ScopeQuery>,
    body: Bytes,
) -> ApiResult<axum::Json<api::SecretInfo>> {
    Ok(axum::Json(
        set(&state, &identity, SecretKind::Secret, &name, &scope, &body).await?,
    ))
}

/// Removes a secret: it no longer resolves and its stored versions are erased.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", params(("name" = String, Path), api::ScopeQuery),
    responses((status = 200, body = api::SecretInfo), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn secrets_delete(
    State(state): State<AppState>,
    identity: Identity,
    Path(name): Path<String>,
    Query(scope): Query<api::ScopeQuery>,
) -> ApiResult<axum::Json<api::SecretInfo>> {
    Ok(axum::Json(
        delete(&state, &identity, SecretKind::Secret, &name, &scope).await?,
    ))
}

/// Metadata of every parameter.
#[utoipa::path(get, path = "/api/v1/params", params(ListQuery),
    responses((status = 200, body = Vec<api::SecretInfo>)))]
pub(crate) async fn params_list(
    State(state): State<AppState>,
    identity: Identity,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<api::SecretInfo>>> {
    Ok(axum::Json(
        list(&state, &identity, SecretKind::Param, q).await?,
    ))
}

/// A parameter's current value at exactly the given scope.
#[utoipa::path(get, path = "/api/v1/params/{name}", params(("name" = String, Path), api::ScopeQuery),
    responses((status = 200, body = api::ParamValue), (status = 400, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn params_get(
    State(state): State<AppState>,
    identity: Identity,
    Path(name): Path<String>,
    Query(scope): Query<api::ScopeQuery>,
) -> ApiResult<axum::Json<api::ParamValue>> {
    if !identity.allows(Permission::Read, &scope_target(&scope)) {
        // Not visible: answered like a missing value, so its existence is not revealed.
        return Err(ApiError::not_found(format!("param `{name}` not found")));
    }
    let (name, scope) = parse(&name, &scope)?;
    let (meta, value) = state.engine.param_value(&scope, &name).await?;
    Ok(axum::Json(api::ParamValue {
        param: info(meta),
        value: String::from_utf8_lossy(value.expose()).into_owned(),
    }))
}

/// Sets a new version of a parameter.
#[utoipa::path(put, path = "/api/v1/params/{name}", params(("name" = String, Path), api::ScopeQuery),
    request_body = api::SecretSet,
    responses((status = 200, body = api::SecretInfo), (status = 400, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn params_set(
    State(state): State<AppState>,
    identity: Identity,
    Path(name): Path<String>,
    Query(scope): Query<api::ScopeQuery>,
    body: Bytes,
) -> ApiResult<axum::Json<api::SecretInfo>> {
    Ok(axum::Json(
        set(&state, &identity, SecretKind::Param, &name, &scope, &body).await?,
    ))
}

/// Removes a parameter.
#[utoipa::path(delete, path = "/api/v1/params/{name}", params(("name" = String, Path), api::ScopeQuery),
    responses((status = 200, body = api::SecretInfo), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn params_delete(
    State(state): State<AppState>,
    identity: Identity,
    Path(name): Path<String>,
    Query(scope): Query<api::ScopeQuery>,
) -> ApiResult<axum::Json<api::SecretInfo>> {
    Ok(axum::Json(
        delete(&state, &identity, SecretKind::Param, &name, &scope).await?,
    ))
}
