//! Policy waivers: granted for one finding of one run (rule, resource address, environment,
//! reason, expiry), listed per project, revoked. Every grant, refusal and revocation is
//! audited. The rules (known rule id, expiry limit, not the change's author) are the
//! engine's (`Engine::create_waiver`).

use axum::extract::State;
use axum::http::StatusCode;
use ferry_api as api;
use ferry_core::RunId;
use serde::Deserialize;

use crate::auth::{audit_failure, require_audited, Identity};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::AppState;

/// Audits a refused request (403), which `audit_failure` leaves to the refusing check.
async fn audit_denied<T>(
    state: &AppState,
    identity: &Identity,
    action: &str,
    target: &str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(error) = &result {
        if error.status == axum::http::StatusCode::FORBIDDEN {
            let entry = ferry_engine::model::AuditEntry::new(action, target).outcome("denied");
            state.engine.audit(&identity.actor(), entry).await?;
        }
    }
    audit_failure(state, identity, action, target, result).await
}

/// Waives one finding of a run.
#[utoipa::path(post, path = "/api/v1/projects/{project}/waivers", params(("project" = String, Path)),
    request_body = api::WaiverCreate,
    responses((status = 201, body = api::Waiver), (status = 400, body = api::ErrorBody),
        (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn waivers_create(
    State(state): State<AppState>,
    identity: Identity,
    Path(project): Path<String>,
    Json(body): Json<api::WaiverCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::Waiver>)> {
    let target = format!("run/{}", body.run_id);
    let result = async {
        let expires_at = chrono::DateTime::parse_from_rfc3339(body.expires_at.trim())
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "`expires_at` is not an RFC 3339 time ({e}): {}",
                    body.expires_at
                ))
            })?
            .with_timezone(&chrono::Utc);
        let run = state.engine.run(RunId(body.run_id)).await?;
        if run.project != project {
            return Err(ApiError::not_found(format!(
                "run {} is not in project {project}",
                body.run_id
            )));
        }
        let request = ferry_engine::WaiverRequest {
            run: RunId(body.run_id),
            rule: body.rule.trim().to_owned(),
            address: body.address.trim().to_owned(),
            environment: body.environment.trim().to_owned(),
            reason: body.reason.trim().to_owned(),
            expires_at,
        };
        Ok(state
            .engine
            .create_waiver(&identity.actor(), &request)
            .await?)
    }
    .await;
    let waiver = audit_denied(&state, &identity, "policy.waive", &target, result).await?;
    Ok((StatusCode::CREATED, axum::Json(convert::waiver(waiver))))
}

#[derive(Debug, Deserialize)]
pub(crate) struct WaiverQuery {
    /// Include revoked waivers.
    #[serde(default)]
    all: bool,
}

/// A project's waivers, newest first (revoked ones too with `all=true`).
#[utoipa::path(get, path = "/api/v1/projects/{project}/waivers",
    params(("project" = String, Path), ("all" = Option<bool>, Query)),
    responses((status = 200, body = Vec<api::Waiver>), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn waivers_list(
    State(state): State<AppState>,
    _identity: Identity,
    Path(project): Path<String>,
    Query(query): Query<WaiverQuery>,
) -> ApiResult<axum::Json<Vec<api::Waiver>>> {
    let project = state.engine.project(&project).await?;
    let waivers = state.engine.waivers(project.id, query.all).await?;
    Ok(axum::Json(
        waivers.into_iter().map(convert::waiver).collect(),
    ))
}

/// Revokes a waiver: the next policy check no longer applies it.
#[utoipa::path(delete, path = "/api/v1/waivers/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = api::Waiver), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn waivers_revoke(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<api::Waiver>> {
    let target = format!("waiver/{id}");
    let waiver = state.engine.waiver(id).await?;
    if !identity.sees(&waiver.project) {
        return Err(ApiError::not_found(format!("waiver `{id}` not found")));
    }
    let allowed = identity.allows(
        ferry_core::Permission::Approve,
        &ferry_core::Target::Environment(&waiver.project, &waiver.environment),
    );
    require_audited(
        &state,
        &identity,
        allowed,
        "policy.unwaive",
        &target,
        "revoking a waiver needs the approver role in its environment",
    )
    .await?;
    let result = state
        .engine
        .revoke_waiver(&identity.actor(), id)
        .await
        .map_err(ApiError::from);
    let waiver = audit_failure(&state, &identity, "policy.unwaive", &target, result).await?;
    Ok(axum::Json(convert::waiver(waiver)))
}
