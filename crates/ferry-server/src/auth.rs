//! Who is calling: every API request carries `Authorization: Bearer <token>`; the token is
//! looked up by its SHA-256 hash (never stored in clear) and becomes the request's
//! [`Identity`], which names the actor in the audit log.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ferry_core::Actor;

use crate::error::ApiError;
use crate::AppState;

#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    pub admin: bool,
    /// A run's per-action credential reaches only its own project and environment state.
    pub scope: Option<ferry_store::TokenScope>,
    /// The peer address, for the audit log.
    pub source: String,
}

impl Identity {
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            source: self.source.clone(),
        }
    }

    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an admin token"))
        }
    }
}

pub(crate) fn peer(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string())
        .unwrap_or_else(|| "local".to_owned())
}

impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        if !ferry_secrets::looks_like_token(token) {
            return Err(ApiError::unauthorized());
        }
        let hash = ferry_secrets::hash_token(token);
        let store = state.engine.store();
        let found = store
            .token_by_hash(&hash)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if found.scope.is_some() {
            return Err(ApiError::forbidden(
                "a run's credential only works on the state backend",
            ));
        }
        store.touch_token(found.id).await?;
        Ok(Identity {
            name: found.name,
            admin: found.admin,
            scope: None,
            source: peer(parts),
        })
    }
}

/// Records a failed state-changing request. Successful changes are audited by the store in
/// the same transaction as the change, and refusals (`forbidden`) where they are decided, so
/// this covers the rest: bad input, conflicts, unknown targets, server faults. Only the error
/// code is recorded, never the request body.
pub(crate) async fn audit_failure<T>(
    state: &AppState,
    identity: &Identity,
    action: &str,
    target: &str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Err(error) = &result {
        if error.code != "forbidden" {
            let entry = ferry_store::AuditEntry::new(action, target)
                .outcome("failed")
                .details(
                    serde_json::json!({ "code": error.code, "status": error.status.as_u16() }),
                );
            if let Err(audit_error) = state.engine.store().audit(&identity.actor(), entry).await {
                return Err(ApiError::internal(format!(
                    "{audit_error} (while auditing a failed {action})"
                )));
            }
        }
    }
    result
}

/// Refuses a non-admin, recording the refusal in the audit log before answering.
pub(crate) async fn require_admin_audited(
    state: &AppState,
    identity: &Identity,
    action: &str,
    target: &str,
) -> Result<(), ApiError> {
    if let Err(denied) = identity.require_admin() {
        let entry = ferry_store::AuditEntry::new(action, target).outcome("denied");
        state.engine.store().audit(&identity.actor(), entry).await?;
        return Err(denied);
    }
    Ok(())
}
