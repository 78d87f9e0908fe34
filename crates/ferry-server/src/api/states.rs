//! Terraform states over the REST API: list, show (resources summarised, never values),
//! versions, raw pull (operator or admin, audited), diff, lock info and force-unlock, rollback, push,
//! soft delete and retention. An environment's main state is `/api/v1/states/{project}/
//! {environment}`; a named state adds `?name=` to every one of those addresses.
//!
//! Writes go through the engine's one sealing path (`Engine::write_state`), the same one the
//! Terraform backend uses, so the lock, serial and lineage rules are the backend's.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_api as api;
use ferry_engine::model::{
    AuditEntry, StateAddr, StateRow, UnlockOutcome, VersionInfo, WriteOutcome,
};
use ferry_state::LockRequest;
use serde::Deserialize;

use crate::auth::{audit_failure, Identity};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only states of this project.
    project: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateQuery {
    /// A named state of the environment; omitted for its main state.
    name: Option<String>,
    /// A version number (default: the current version).
    version: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    name: Option<String>,
    /// The older version number.
    from: i64,
    /// The newer version number.
    to: i64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PushQuery {
    name: Option<String>,
    /// Skip the serial and lineage guard (admin only, audited).
    force: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameQuery {
    name: Option<String>,
}

/// The project's id and the checked segments, resolved into an address.
struct Resolved {
    project_id: i64,
    project: String,
    environment: String,
    name: String,
}

impl Resolved {
    fn addr(&self) -> StateAddr<'_> {
        StateAddr {
            project_id: self.project_id,
            project: &self.project,
            environment: &self.environment,
            name: &self.name,
        }
    }

    fn target(&self) -> String {
        format!("state/{}", self.addr().display())
    }
}

async fn resolve(
    state: &AppState,
    project: String,
    environment: String,
    name: Option<String>,
) -> ApiResult<Resolved> {
    super::projects::check_name("project", &project)?;
    super::projects::check_name("environment", &environment)?;
    let name = name.unwrap_or_default();
    if !name.is_empty() {
        super::projects::check_name("state", &name)?;
    }
    let row = state.engine.project(&project).await?;
    Ok(Resolved {
        project_id: row.id,
        project,
        environment,
        name,
    })
}

fn version(v: &VersionInfo) -> api::StateVersion {
    api::StateVersion {
        number: v.version.number,
        serial: v.version.serial,
        lineage: v.version.lineage.clone(),
        sha256: v.version.sha256.clone(),
        size: v.version.size,
        writer: v.version.writer.clone(),
        created_at: v.version.created_at.clone(),
        pruned: v.pruned_at.is_some(),
    }
}

fn lock(row: &StateRow) -> Option<api::StateLock> {
    row.lock.as_ref().map(|l| api::StateLock {
        id: l.id.clone(),
        operation: l.operation.clone(),
        info: l.info.clone(),
        who: l.who.clone(),
        created: l.created.clone(),
        locked_by: row.locked_by.clone(),
    })
}

fn summary(project: &str, row: &StateRow, current: Option<api::StateVersion>) -> api::StateSummary {
    api::StateSummary {
        project: project.to_owned(),
        environment: row.environment.clone(),
        name: row.name.clone(),
        current,
        lock: lock(row),
        retention_days: row.retention_days,
        retention_keep: row.retention_keep,
    }
}

/// The state and the version asked for (the current one by default).
async fn load(
    state: &AppState,
    r: &Resolved,
    number: Option<i64>,
) -> ApiResult<(StateRow, VersionInfo)> {
    let store = &state.engine;
    let number = match number {
        Some(n) => n,
        None => {
            let (_, current) = store
                .state(r.addr())
                .await?
                .ok_or_else(|| ApiError::not_found(format!("state {} not found", r.target())))?;
            let current = current.ok_or_else(|| {
                ApiError::not_found(format!("{} has no versions yet", r.target()))
            })?;
            current.number
        }
    };
    Ok(store.state_version(r.addr(), number).await?)
}

/// The plaintext of a version, refused if retention pruned it.
fn content(state: &AppState, r: &Resolved, v: &VersionInfo) -> ApiResult<Vec<u8>> {
    if v.pruned_at.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "pruned",
            format!(
                "version {} of {} was pruned by retention",
                v.version.number,
                r.target()
            ),
        ));
    }
    Ok(state.engine.read_state_version(r.addr(), &v.version)?)
}

/// A write's outcome as an API answer: 409 for every refusal, with the reason.
fn written(outcome: WriteOutcome) -> ApiResult<Option<ferry_engine::model::StateVersion>> {
    match outcome {
        WriteOutcome::Written(v) => Ok(Some(v)),
        WriteOutcome::Idempotent => Ok(None),
        WriteOutcome::Refused(refusal) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "state_conflict",
            refusal.to_string(),
        )),
        WriteOutcome::LockMissing(holder) | WriteOutcome::LockMismatch(Some(holder)) => {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "state_locked",
                format!(
                    "the state is locked by {} ({}, lock {}); unlock it first",
                    holder.who, holder.operation, holder.id
                ),
            ))
        }
        WriteOutcome::LockMismatch(None) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "state_locked",
            "the state is not locked by this write",
        )),
    }
}

async fn write(
    state: &AppState,
    identity: &Identity,
    r: &Resolved,
    body: &[u8],
    force: bool,
) -> ApiResult<Option<ferry_engine::model::StateVersion>> {
    let outcome = state
        .engine
        .write_state(&identity.actor(), r.addr(), body, None, force)
        .await
        .map_err(|e| match e {
            // Well-formed JSON that is not a state Ferry can keep (no serial, `1.0` as one).
            ferry_engine::state::WriteError::Invalid(message) => ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state",
                message,
            ),
            ferry_engine::state::WriteError::Engine(e) => e.into(),
        })?;
    written(outcome)
}

/// Every live state, with its current version and lock holder.
#[utoipa::path(get, path = "/api/v1/states", params(ListQuery),
    responses((status = 200, body = Vec<api::StateSummary>)))]
pub(crate) async fn states_list(
    State(state): State<AppState>,
    identity: Identity,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<api::StateSummary>>> {
    let rows = state.engine.list_states(query.project.as_deref()).await?;
    Ok(axum::Json(
        rows.iter()
            .filter(|l| {
                identity.allows(
                    ferry_core::Permission::Read,
                    &ferry_core::Target::Environment(&l.project, &l.state.environment),
                )
            })
            .map(|l| {
                let current = l.current.clone().map(|v| {
                    version(&VersionInfo {
                        version: v,
                        pruned_at: None,
                    })
                });
                summary(&l.project, &l.state, current)
            })
            .collect(),
    ))
}

/// A state version's metadata and its resources, summarised: never attribute values.
#[utoipa::path(get, path = "/api/v1/states/{project}/{environment}",
    params(("project" = String, Path), ("environment" = String, Path), StateQuery),
    responses((status = 200, body = api::StateDetail), (status = 404, body = api::ErrorBody), (status = 410, body = api::ErrorBody)))]
pub(crate) async fn state_show(
    State(state): State<AppState>,
    _identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<StateQuery>,
) -> ApiResult<axum::Json<api::StateDetail>> {
    let r = resolve(&state, project, environment, query.name).await?;
    let (row, v) = load(&state, &r, query.version).await?;
    let body = content(&state, &r, &v)?;
    let meta = ferry_state::parse_state(&body).map_err(ApiError::internal)?;
    let resources = ferry_state::resources(&body)
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|s| api::StateResource {
            address: s.address,
            kind: s.kind,
            instances: s.instances,
        })
        .collect();
    let current = match state.engine.state(r.addr()).await? {
        Some((_, Some(current))) => Some(version(&VersionInfo {
            version: current,
            pruned_at: None,
        })),
        _ => None,
    };
    Ok(axum::Json(api::StateDetail {
        state: summary(&r.project, &row, current),
        version: version(&v),
        resources,
        encrypted: meta.encrypted,
    }))
}

/// A state's versions, newest first.
#[utoipa::path(get, path = "/api/v1/states/{project}/{environment}/versions",
    params(("project" = String, Path), ("environment" = String, Path), NameQuery),
    responses((status = 200, body = Vec<api::StateVersion>), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn state_versions(
    State(state): State<AppState>,
    _identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
) -> ApiResult<axum::Json<Vec<api::StateVersion>>> {
    let r = resolve(&state, project, environment, query.name).await?;
    let versions = state.engine.state_versions(r.addr()).await?;
    Ok(axum::Json(versions.iter().map(version).collect()))
}

/// The exact bytes of a version (the current one by default). Needs the operator or admin role (raw state holds secret values in clear); audited as `state.pull`.
#[utoipa::path(get, path = "/api/v1/states/{project}/{environment}/raw",
    params(("project" = String, Path), ("environment" = String, Path), StateQuery),
    responses((status = 200, content_type = "application/json", body = Object, description = "the state as Terraform wrote it"), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 410, body = api::ErrorBody, description = "the version was pruned by retention")))]
pub(crate) async fn state_raw(
    State(state): State<AppState>,
    identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<StateQuery>,
) -> ApiResult<Response> {
    let target = format!(
        "state/{project}/{environment}{}",
        query
            .name
            .as_deref()
            .map(|n| format!("/{n}"))
            .unwrap_or_default()
    );
    let result = async {
        let r = resolve(&state, project, environment, query.name).await?;
        let (_, v) = load(&state, &r, query.version).await?;
        let body = content(&state, &r, &v)?;
        Ok((r, v, body))
    }
    .await;
    let (r, v, body) = audit_failure(&state, &identity, "state.pull", &target, result).await?;
    let entry = AuditEntry::new("state.pull", r.target()).details(serde_json::json!({
        "version": v.version.number, "serial": v.version.serial, "sha256": v.version.sha256,
    }));
    state.engine.audit(&identity.actor(), entry).await?;
    Ok((StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response())
}

/// Resource addresses added, removed and changed between two versions.
#[utoipa::path(get, path = "/api/v1/states/{project}/{environment}/diff",
    params(("project" = String, Path), ("environment" = String, Path), DiffQuery),
    responses((status = 200, body = api::StateDiff), (status = 404, body = api::ErrorBody), (status = 422, body = api::ErrorBody), (status = 410, body = api::ErrorBody, description = "the version was pruned by retention")))]
pub(crate) async fn state_diff(
    State(state): State<AppState>,
    _identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<DiffQuery>,
) -> ApiResult<axum::Json<api::StateDiff>> {
    let r = resolve(&state, project, environment, query.name).await?;
    let (_, a) = load(&state, &r, Some(query.from)).await?;
    let (_, b) = load(&state, &r, Some(query.to)).await?;
    let a_body = content(&state, &r, &a)?;
    let b_body = content(&state, &r, &b)?;
    // An encrypted (OpenTofu) version cannot be compared: say so rather than fail.
    let d = ferry_state::diff(&a_body, &b_body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot_diff",
            e.to_string(),
        )
    })?;
    Ok(axum::Json(api::StateDiff {
        from: query.from,
        to: query.to,
        added: d.added,
        removed: d.removed,
        changed: d.changed,
    }))
}

/// Who holds the state's lock; `null` when it is not locked.
#[utoipa::path(get, path = "/api/v1/states/{project}/{environment}/lock",
    params(("project" = String, Path), ("environment" = String, Path), NameQuery),
    responses((status = 200, body = Option<api::StateLock>), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn state_lock_info(
    State(state): State<AppState>,
    _identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
) -> ApiResult<axum::Json<Option<api::StateLock>>> {
    let r = resolve(&state, project, environment, query.name).await?;
    let (row, _) = state
        .engine
        .state(r.addr())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{} not found", r.target())))?;
    Ok(axum::Json(lock(&row)))
}

/// Force-unlocks the state, whoever holds it. Admin only; audited with the removed holder.
#[utoipa::path(delete, path = "/api/v1/states/{project}/{environment}/lock",
    params(("project" = String, Path), ("environment" = String, Path), NameQuery),
    responses((status = 200, body = Option<api::StateLock>), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn state_unlock(
    State(state): State<AppState>,
    identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
) -> ApiResult<axum::Json<Option<api::StateLock>>> {
    let target = format!("state/{project}/{environment}");
    let result = async {
        let r = resolve(&state, project, environment, query.name).await?;
        let store = &state.engine;
        let (row, _) = store
            .state(r.addr())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{} not found", r.target())))?;
        match store
            .state_unlock(
                &identity.actor(),
                &identity.lock_owner(),
                r.addr(),
                &LockRequest::Force,
                true,
            )
            .await?
        {
            UnlockOutcome::Released
            | UnlockOutcome::ForceReleased(_)
            | UnlockOutcome::NotLocked => Ok(lock(&row)),
            UnlockOutcome::Conflict(_) | UnlockOutcome::ForceDenied { .. } => Err(ApiError::new(
                StatusCode::CONFLICT,
                "state_locked",
                "the lock could not be released",
            )),
        }
    }
    .await;
    let released = audit_failure(&state, &identity, "state.force_unlock", &target, result).await?;
    Ok(axum::Json(released))
}

/// Writes version N's content as a new version whose serial follows the current one.
/// Refused (409) while the state is locked. Audited as `state.rollback`.
#[utoipa::path(post, path = "/api/v1/states/{project}/{environment}/rollback",
    params(("project" = String, Path), ("environment" = String, Path), NameQuery), request_body = api::StateRollback,
    responses((status = 200, body = api::StateVersion), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody), (status = 410, body = api::ErrorBody, description = "the version was pruned by retention")))]
pub(crate) async fn state_rollback(
    State(state): State<AppState>,
    identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
    Json(body): Json<api::StateRollback>,
) -> ApiResult<axum::Json<api::StateVersion>> {
    let target = format!("state/{project}/{environment}");
    let result = async {
        let r = resolve(&state, project, environment, query.name).await?;
        let store = &state.engine;
        let (row, current) = store
            .state(r.addr())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{} not found", r.target())))?;
        if let Some(holder) = &row.lock {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "state_locked",
                format!(
                    "{} is locked by {} ({}); a rollback waits for the lock to go",
                    r.target(),
                    holder.who,
                    holder.operation
                ),
            ));
        }
        let current = current
            .ok_or_else(|| ApiError::not_found(format!("{} has no versions yet", r.target())))?;
        let (_, old) = load(&state, &r, Some(body.version)).await?;
        let old_body = content(&state, &r, &old)?;
        let rewritten = ferry_state::with_serial(&old_body, current.serial as u64 + 1)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let new = write(&state, &identity, &r, &rewritten, false)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "state_conflict",
                    "the rollback wrote nothing",
                )
            })?;
        let entry = AuditEntry::new("state.rollback", r.target()).details(serde_json::json!({
            "from_version": old.version.number, "new_version": new.number,
            "serial": new.serial, "previous_serial": current.serial, "comment": body.comment,
        }));
        let reason = format!(
            "{} rolled back to version {} (now version {}, serial {})",
            r.target(),
            old.version.number,
            new.number,
            new.serial
        );
        store
            .audit_state_event(
                &identity.actor(),
                entry,
                ferry_core::EventType::StateRolledBack,
                (r.addr().project, r.addr().environment),
                &reason,
            )
            .await?;
        Ok(new)
    }
    .await;
    let new = audit_failure(&state, &identity, "state.rollback", &target, result).await?;
    Ok(axum::Json(version(&VersionInfo {
        version: new,
        pruned_at: None,
    })))
}

/// Writes the body as a new version, under the backend's serial and lineage rules, or
/// skipping them with `?force=true` (admin only, audited). Refused while locked.
#[utoipa::path(post, path = "/api/v1/states/{project}/{environment}/push",
    params(("project" = String, Path), ("environment" = String, Path), PushQuery), request_body(content = Object, description = "A Terraform state (JSON object)", content_type = "application/json"),
    responses((status = 200, body = Option<api::StateVersion>), (status = 400, body = api::ErrorBody), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn state_push(
    State(state): State<AppState>,
    identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<PushQuery>,
    body: Bytes,
) -> ApiResult<axum::Json<Option<api::StateVersion>>> {
    let force = query.force.unwrap_or(false);
    let target = format!("state/{project}/{environment}");
    // `?force=true` needs admin: the route's rule says so (see `authz::RULES`).
    let result = async {
        let r = resolve(&state, project, environment, query.name).await?;
        write(&state, &identity, &r, &body, force).await
    }
    .await;
    let action = if force {
        "state.push_force"
    } else {
        "state.push"
    };
    let new = audit_failure(&state, &identity, action, &target, result).await?;
    Ok(axum::Json(new.map(|v| {
        version(&VersionInfo {
            version: v,
            pruned_at: None,
        })
    })))
}

/// Soft-deletes the state: the backend answers 404 for it from now on, and its versions stay
/// until retention prunes them. Admin only; audited; refused while locked.
#[utoipa::path(delete, path = "/api/v1/states/{project}/{environment}",
    params(("project" = String, Path), ("environment" = String, Path), NameQuery),
    responses((status = 204), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn state_delete(
    State(state): State<AppState>,
    identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
) -> ApiResult<StatusCode> {
    let target = format!("state/{project}/{environment}");
    let result = async {
        let r = resolve(&state, project, environment, query.name).await?;
        state
            .engine
            .delete_state(&identity.actor(), r.addr())
            .await?;
        Ok(())
    }
    .await;
    audit_failure(&state, &identity, "state.delete", &target, result).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets how long versions are kept: `days` days, and always the newest `keep`, and applies
/// retention at once. Admin only; audited.
#[utoipa::path(put, path = "/api/v1/states/{project}/{environment}/retention",
    params(("project" = String, Path), ("environment" = String, Path), NameQuery), request_body = api::StateRetention,
    responses((status = 200, body = api::StateRetention), (status = 400, body = api::ErrorBody), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn state_retention(
    State(state): State<AppState>,
    identity: Identity,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<NameQuery>,
    Json(body): Json<api::StateRetention>,
) -> ApiResult<axum::Json<api::StateRetention>> {
    let target = format!("state/{project}/{environment}");
    let result = async {
        if !(0..=api::MAX_RETENTION_DAYS).contains(&body.days)
            || !(1..=api::MAX_RETENTION_KEEP).contains(&body.keep)
        {
            return Err(ApiError::bad_request(format!(
                "retention needs days from 0 to {} and keep from 1 to {}",
                api::MAX_RETENTION_DAYS,
                api::MAX_RETENTION_KEEP
            )));
        }
        let r = resolve(&state, project, environment, query.name).await?;
        Ok(state
            .engine
            .set_state_retention(&identity.actor(), r.addr(), body.days, body.keep)
            .await?)
    }
    .await;
    let row = audit_failure(&state, &identity, "state.retention", &target, result).await?;
    // New settings apply at once rather than at the next hourly pass.
    state
        .engine
        .prune_state_versions(
            &ferry_core::Actor::system("retention"),
            chrono::Utc::now(),
            state.engine.data_dir(),
        )
        .await?;
    Ok(axum::Json(api::StateRetention {
        days: row.retention_days,
        keep: row.retention_keep,
    }))
}
