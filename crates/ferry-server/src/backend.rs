//! Terraform's standard `http` state backend under `/tf/state/{project}/{environment}[/{name}]`.
//!
//! Wire behaviour follows Terraform's and OpenTofu's own client code (see
//! `shared/design/terraform-http-backend.md`): GET answers the exact bytes last written (404
//! when there is no state), writes honour `?ID=` against the current lock, LOCK/UNLOCK are
//! Terraform's default extension methods at the same address (dispatched by hand, since
//! axum's method filter does not know them), GitLab-style POST/DELETE on `…/lock` work too,
//! and a held lock answers 423 with the holder's LockInfo so Terraform prints who holds it.
//! Auth is HTTP basic with a Ferry token as the password, checked by `authz` like every route. Never a 5xx for a client mistake:
//! Terraform retries every 5xx.

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use ferry_engine::model::{StateAddr, UnlockOutcome, WriteOutcome};
use ferry_state::{LockDecision, LockInfo, LockRequest};
use serde::Deserialize;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::AppState;

/// Largest state body accepted (axum's default of 2 MB is far too small for real states).
pub(crate) const MAX_STATE_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tf/state/{project}/{environment}", any(main_state))
        .route("/tf/state/{project}/{environment}/{name}", any(named_state))
        .route(
            "/tf/state/{project}/{environment}/{name}/lock",
            any(named_state_lock),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_STATE_BYTES))
}

#[derive(Debug, Deserialize, Default)]
pub(crate) struct WriteQuery {
    #[serde(rename = "ID")]
    id: Option<String>,
    /// `ferry state push --force`: skip the serial and lineage guard (admin only, audited).
    force: Option<bool>,
}

async fn main_state(
    State(state): State<AppState>,
    Path((project, environment)): Path<(String, String)>,
    Query(query): Query<WriteQuery>,
    request: Request,
) -> Response {
    dispatch(
        state,
        project,
        environment,
        String::new(),
        false,
        query,
        request,
    )
    .await
}

async fn named_state(
    State(state): State<AppState>,
    Path((project, environment, name)): Path<(String, String, String)>,
    Query(query): Query<WriteQuery>,
    request: Request,
) -> Response {
    // `…/{environment}/lock` is the GitLab-style lock address of the main state.
    if name == "lock" {
        return dispatch(
            state,
            project,
            environment,
            String::new(),
            true,
            query,
            request,
        )
        .await;
    }
    dispatch(state, project, environment, name, false, query, request).await
}

async fn named_state_lock(
    State(state): State<AppState>,
    Path((project, environment, name)): Path<(String, String, String)>,
    Query(query): Query<WriteQuery>,
    request: Request,
) -> Response {
    dispatch(state, project, environment, name, true, query, request).await
}

fn lock_response(status: StatusCode, info: &LockInfo) -> Response {
    let body = serde_json::to_vec(info).unwrap_or_default();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn check_segment(what: &str, value: &str) -> Result<(), ApiError> {
    crate::api::projects::check_name(what, value)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.message))
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: AppState,
    project: String,
    environment: String,
    name: String,
    lock_path: bool,
    query: WriteQuery,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    // Authenticated and authorised by `authz::authorise` (basic auth with a token).
    let Some(identity) = parts.extensions.get::<Identity>().cloned() else {
        return ApiError::unauthorized().into_response();
    };
    let body = match axum::body::to_bytes(body, MAX_STATE_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("state bodies are limited to {MAX_STATE_BYTES} bytes"),
            )
            .into_response()
        }
    };
    match handle(
        &state,
        &identity,
        &project,
        &environment,
        &name,
        lock_path,
        &parts.method,
        &parts.headers,
        query,
        body,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    state: &AppState,
    identity: &Identity,
    project: &str,
    environment: &str,
    name: &str,
    lock_path: bool,
    method: &Method,
    headers: &HeaderMap,
    query: WriteQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_segment("project", project)?;
    check_segment("environment", environment)?;
    if !name.is_empty() {
        check_segment("state", name)?;
    }
    if let Some(md5) = headers.get("content-md5") {
        let ok = md5
            .to_str()
            .map(|v| ferry_state::content_md5_matches(v, &body))
            .unwrap_or(false);
        if !ok {
            return Err(ApiError::bad_request("Content-MD5 does not match the body"));
        }
    }
    let project_row = state.engine.project(project).await?;
    if let Some(scope) = &identity.scope {
        // Answered like an unknown state, so a run's credential learns nothing of others.
        if scope.project_id != project_row.id || scope.environment != environment {
            return Err(ApiError::not_found(format!(
                "state {project}/{environment} not found"
            )));
        }
    }
    let addr = StateAddr {
        project_id: project_row.id,
        project,
        environment,
        name,
    };
    match (lock_path, method.as_str()) {
        (false, "GET") => get(state, addr).await,
        (false, "POST" | "PUT") => write(state, identity, addr, query, &body).await,
        (false, "DELETE") => delete(state, identity, addr).await,
        (false, "LOCK") | (true, "POST" | "LOCK" | "PUT") => {
            lock(state, identity, addr, &body).await
        }
        (false, "UNLOCK") | (true, "DELETE" | "UNLOCK") => {
            unlock(state, identity, addr, &body, &query).await
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not a state backend method here"),
        )),
    }
}

async fn get(state: &AppState, addr: StateAddr<'_>) -> Result<Response, ApiError> {
    let Some((_, Some(version))) = state.engine.state(addr).await? else {
        return Err(ApiError::not_found(format!(
            "state {} has no versions yet",
            addr.display()
        )));
    };
    let body = state.engine.read_state_version(addr, &version)?;
    // No Content-MD5 on the answer: Terraform computes the digest itself when the header is
    // absent, and hashing 1 MiB on every GET costs more than the rest of the request.
    Ok((StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response())
}

async fn write(
    state: &AppState,
    identity: &Identity,
    addr: StateAddr<'_>,
    query: WriteQuery,
    body: &[u8],
) -> Result<Response, ApiError> {
    // A forced write needs admin: the route's rule says so (see `authz::RULES`).
    let force = query.force.unwrap_or(false);
    let outcome = state
        .engine
        .write_state(&identity.actor(), addr, body, query.id.as_deref(), force)
        .await
        .map_err(|e| match e {
            ferry_engine::state::WriteError::Invalid(message) => ApiError::bad_request(message),
            ferry_engine::state::WriteError::Engine(e) => e.into(),
        })?;
    Ok(match outcome {
        WriteOutcome::Written(_) | WriteOutcome::Idempotent => StatusCode::OK.into_response(),
        WriteOutcome::Refused(refusal) => {
            ApiError::new(StatusCode::CONFLICT, "state_conflict", refusal.to_string())
                .into_response()
        }
        WriteOutcome::LockMissing(holder) => lock_response(StatusCode::LOCKED, &holder),
        WriteOutcome::LockMismatch(Some(holder)) => lock_response(StatusCode::CONFLICT, &holder),
        WriteOutcome::LockMismatch(None) => ApiError::new(
            StatusCode::CONFLICT,
            "lock_mismatch",
            "the write names a lock, but the state is not locked (was it force-unlocked?)",
        )
        .into_response(),
    })
}

/// DELETE: a soft delete (admin only, audited; refused while locked). Terraform's CLI never
/// sends it; other tools (GitLab-style clients) do. Versions stay until retention prunes them.
async fn delete(
    state: &AppState,
    identity: &Identity,
    addr: StateAddr<'_>,
) -> Result<Response, ApiError> {
    // Admin only: the route's rule says so (see `authz::RULES`).
    state.engine.delete_state(&identity.actor(), addr).await?;
    Ok(StatusCode::OK.into_response())
}

async fn lock(
    state: &AppState,
    identity: &Identity,
    addr: StateAddr<'_>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut info =
        match ferry_state::parse_lock(body).map_err(|e| ApiError::bad_request(e.to_string()))? {
            LockRequest::Lock(info) => info,
            LockRequest::Force => {
                return Err(ApiError::bad_request(
                    "a lock request needs a LockInfo body with an ID",
                ))
            }
        };
    info = info.with_created_default(chrono::Utc::now());
    match state
        .engine
        .state_lock(&identity.actor(), &identity.lock_owner(), addr, &info)
        .await?
    {
        LockDecision::Acquired | LockDecision::AlreadyHeld => {
            Ok(lock_response(StatusCode::OK, &info))
        }
        LockDecision::Conflict(holder) => Ok(lock_response(StatusCode::LOCKED, &holder)),
    }
}

async fn unlock(
    state: &AppState,
    identity: &Identity,
    addr: StateAddr<'_>,
    body: &[u8],
    query: &WriteQuery,
) -> Result<Response, ApiError> {
    let may_force = identity.allows(
        ferry_core::Permission::Admin,
        &ferry_core::Target::Environment(addr.project, addr.environment),
    );
    let mut request =
        ferry_state::parse_lock(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // GitLab-style clients may name the lock in the query instead of the body.
    if let (LockRequest::Force, Some(id)) = (&request, &query.id) {
        request = LockRequest::Lock(LockInfo {
            id: id.clone(),
            ..ferry_state::LockInfo::default()
        });
    }
    match state
        .engine.state_unlock(
            &identity.actor(),
            &identity.lock_owner(),
            addr,
            &request,
            may_force,
        )
        .await?
    {
        UnlockOutcome::Released | UnlockOutcome::ForceReleased(_) | UnlockOutcome::NotLocked => {
            Ok(StatusCode::OK.into_response())
        }
        UnlockOutcome::Conflict(holder) => Ok(lock_response(StatusCode::CONFLICT, &holder)),
        UnlockOutcome::ForceDenied { holder, locked_by } => Err(ApiError::forbidden(format!(
            "lock {} is held by {}; releasing another identity's lock is a force-unlock, which needs an admin token",
            holder.id,
            locked_by.as_deref().unwrap_or("another identity")
        ))),
    }
}
