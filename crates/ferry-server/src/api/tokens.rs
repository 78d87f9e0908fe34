//! API tokens: created (shown once), listed, revoked. Service tokens (their scopes are their
//! grants) are an admin's to manage; personal tokens act as their user and may be managed by
//! that user or an admin.

use axum::extract::State;
use axum::http::StatusCode;
use ferry_api as api;
use ferry_core::Grant;

use crate::auth::{audit_failure, require_audited, Identity};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::AppState;

/// Parses `ROLE[@PROJECT[/ENVIRONMENT]]` entries (`Grant::parse` checks the names in them).
pub(crate) fn parse_grants(entries: &[String]) -> Result<Vec<Grant>, ApiError> {
    entries
        .iter()
        .map(|e| {
            Grant::parse(e)
                .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_grant", m))
        })
        .collect()
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_token", message)
}

/// The API shape of a token, with its owner's name and its scopes.
async fn describe(state: &AppState, token: ferry_engine::model::Token) -> ApiResult<api::Token> {
    let (owner, scopes) = state.engine.token_owner_and_scopes(&token).await?;
    let user = owner.map(|u| u.name);
    let mut out = convert::token(token);
    out.user = user;
    out.scopes = scopes.iter().map(Grant::to_string).collect();
    Ok(out)
}

/// Creates a token. Its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = api::TokenCreate,
    responses((status = 201, body = api::TokenCreated), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn tokens_create(
    State(state): State<AppState>,
    identity: Identity,
    Json(body): Json<api::TokenCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::TokenCreated>)> {
    let target = format!("token/{}", body.name);
    // Your own personal token, or an admin's doing.
    let own = body.user.is_some() && body.user == identity.user;
    require_audited(
        &state,
        &identity,
        identity.admin || own,
        "token.create",
        &target,
        "only an admin may create service tokens or another user's tokens",
    )
    .await?;
    let result = async {
        super::projects::check_name("token", &body.name)?;
        let scopes = parse_grants(&body.scopes)?;
        if body.admin && (body.user.is_some() || !scopes.is_empty()) {
            return Err(invalid(
                "an admin token has no user and no scopes: it may do everything",
            ));
        }
        if let Some(expires) = &body.expires_at {
            let at = chrono::DateTime::parse_from_rfc3339(expires).map_err(|e| {
                invalid(format!(
                    "expires_at `{expires}` is not an RFC 3339 time: {e}"
                ))
            })?;
            if at <= chrono::Utc::now() {
                return Err(invalid(format!("expires_at `{expires}` is in the past")));
            }
        }
        let new = ferry_engine::identity::NewToken {
            name: &body.name,
            admin: body.admin,
            user: body.user.as_deref(),
            scopes: &scopes,
            expires_at: body.expires_at.as_deref(),
        };
        let (token, secret) = state.engine.create_token(&identity.actor(), &new).await?;
        Ok((describe(&state, token).await?, secret))
    }
    .await;
    let (token, secret) = audit_failure(&state, &identity, "token.create", &target, result).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(api::TokenCreated { token, secret }),
    ))
}

/// Every named token (an admin), or the caller's own personal tokens (a user).
#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<api::Token>), (status = 403, body = api::ErrorBody)))]
pub(crate) async fn tokens_list(
    State(state): State<AppState>,
    identity: Identity,
) -> ApiResult<axum::Json<Vec<api::Token>>> {
    if !identity.admin && identity.user.is_none() {
        return Err(ApiError::forbidden(
            "only an admin or a user may list tokens",
        ));
    }
    let mut out = Vec::new();
    for token in state.engine.list_tokens().await? {
        let described = describe(&state, token).await?;
        if identity.admin || described.user == identity.user {
            out.push(described);
        }
    }
    Ok(axum::Json(out))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path)),
    responses((status = 200, body = api::Token), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody)))]
pub(crate) async fn tokens_revoke(
    State(state): State<AppState>,
    identity: Identity,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<api::Token>> {
    let target = format!("token/{name}");
    let own = match (&identity.user, identity.admin) {
        (Some(user), false) => {
            let user_id = state.engine.user(user).await?.id;
            state
                .engine
                .list_tokens()
                .await?
                .iter()
                .any(|t| t.name == name && t.revoked_at.is_none() && t.user_id == Some(user_id))
        }
        _ => false,
    };
    require_audited(
        &state,
        &identity,
        identity.admin || own,
        "token.revoke",
        &target,
        "only an admin may revoke tokens other than your own",
    )
    .await?;
    let result = state
        .engine
        .revoke_token(&identity.actor(), &name)
        .await
        .map_err(ApiError::from);
    let token = audit_failure(&state, &identity, "token.revoke", &target, result).await?;
    Ok(axum::Json(describe(&state, token).await?))
}
