//! Named API tokens: created (shown once), listed, revoked. Admin only.

use axum::extract::State;
use axum::http::StatusCode;
use ferry_api as api;

use crate::auth::{audit_failure, require_admin_audited, Identity};
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::AppState;

/// Creates a named token. Its secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = api::TokenCreate,
    responses((status = 201, body = api::TokenCreated), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn tokens_create(
    State(state): State<AppState>,
    identity: Identity,
    Json(body): Json<api::TokenCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::TokenCreated>)> {
    let target = format!("token/{}", body.name);
    require_admin_audited(&state, &identity, "token.create", &target).await?;
    let new = ferry_secrets::generate_token();
    let result = async {
        super::projects::check_name("token", &body.name)?;
        Ok(state
            .engine
            .store()
            .create_token(
                &identity.actor(),
                &body.name,
                &new.hash,
                &new.hint,
                body.admin,
            )
            .await?)
    }
    .await;
    let token = audit_failure(&state, &identity, "token.create", &target, result).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(api::TokenCreated {
            token: convert::token(token),
            secret: new.plaintext,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<api::Token>), (status = 403, body = api::ErrorBody)))]
pub(crate) async fn tokens_list(
    State(state): State<AppState>,
    identity: Identity,
) -> ApiResult<axum::Json<Vec<api::Token>>> {
    identity.require_admin()?;
    let tokens = state.engine.store().list_tokens().await?;
    Ok(axum::Json(tokens.into_iter().map(convert::token).collect()))
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
    require_admin_audited(&state, &identity, "token.revoke", &target).await?;
    let result = state
        .engine
        .store()
        .revoke_token(&identity.actor(), &name)
        .await
        .map_err(ApiError::from);
    let token = audit_failure(&state, &identity, "token.revoke", &target, result).await?;
    Ok(axum::Json(convert::token(token)))
}
