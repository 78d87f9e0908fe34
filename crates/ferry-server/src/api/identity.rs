//! Users, teams, role grants, and browser sessions (login and logout).
//!
//! Login is the one state-changing route without a credential, so it carries its own
//! defences: failed attempts are counted per account and per source address and, past the
//! limits, refused with 429 before any password is checked; every attempt is audited; an
//! unknown user costs the same argon2 verification as a wrong password, and both answer
//! the same message.

use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_api as api;
use ferry_core::Grant;
use ferry_engine::identity::LoginOutcome;
use ferry_engine::model::Subject;

use super::tokens::parse_grants;
use crate::auth::{audit_failure, client_address, csrf_token, Credential, Identity};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::AppState;

/// Starts a browser session. Accepts JSON or an HTML form.
#[utoipa::path(post, path = "/api/v1/login", security(), request_body = api::Login,
    responses((status = 200, body = api::SessionInfo, description = "Sets the session cookie"), (status = 401, body = api::ErrorBody), (status = 429, body = api::ErrorBody)))]
pub(crate) async fn login(State(state): State<AppState>, request: Request) -> Response {
    match login_inner(&state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn login_inner(state: &AppState, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let source = client_address(&parts, &state.access.trusted_proxies);
    let form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let request = Request::from_parts(parts, body);
    let login: api::Login = if form {
        axum::Form::<api::Login>::from_request(request, state)
            .await
            .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", r.body_text()))?
            .0
    } else {
        Json::<api::Login>::from_request(request, state).await?.0
    };
    let policy = ferry_engine::identity::LoginPolicy {
        window: chrono::Duration::from_std(state.access.login_window)
            .unwrap_or(chrono::Duration::minutes(15)),
        max_per_account: state.access.login_max_per_account,
        max_per_source: state.access.login_max_per_source,
        session_absolute: chrono::Duration::from_std(state.access.session_absolute)
            .unwrap_or(chrono::Duration::hours(12)),
    };
    let absolute = policy.session_absolute;
    let (session, cookie_value) = match state
        .engine
        .login(&login.username, login.password, &source, &policy)
        .await?
    {
        LoginOutcome::Throttled { reason } => {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("{reason}; try again later"),
            )
            .into_response();
            response.headers_mut().insert(
                "retry-after",
                HeaderValue::from(state.access.login_window.as_secs()),
            );
            return Ok(response);
        }
        LoginOutcome::Refused => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "login_failed",
                "invalid username or password, or the user is disabled",
            ))
        }
        LoginOutcome::Started { session, cookie } => (session, cookie),
    };
    let cookie = cookie::Cookie::build((state.access.cookie_name(), cookie_value.clone()))
        .http_only(true)
        .secure(state.access.cookie_secure)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(absolute.num_seconds()))
        .build();
    let body = api::SessionInfo {
        user: session.user.name.clone(),
        csrf_token: csrf_token(&cookie_value),
        expires_at: session.expires_at,
    };
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie.to_string()).map_err(ApiError::internal)?,
    );
    Ok(response)
}

/// Ends the caller's browser session on the server and clears its cookie.
#[utoipa::path(post, path = "/api/v1/logout",
    responses((status = 204, description = "Session ended"), (status = 401, body = api::ErrorBody),
        (status = 403, description = "The caller is a token, not a browser session", body = api::ErrorBody)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    identity: Identity,
) -> ApiResult<Response> {
    // A well-formed request from an identity that has no session to end: refused, not
    // malformed (a token is revoked by name, which logout cannot guess).
    let Credential::Session { id, .. } = identity.credential else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_session",
            "logout ends a browser session; revoke a token with DELETE /api/v1/tokens/{name}",
        ));
    };
    state.engine.logout(&identity.actor(), id).await?;
    let cookie = cookie::Cookie::build((state.access.cookie_name(), ""))
        .http_only(true)
        .secure(state.access.cookie_secure)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie.to_string()).map_err(ApiError::internal)?,
    );
    Ok(response)
}

async fn user_view(state: &AppState, user: ferry_engine::model::User) -> ApiResult<api::User> {
    let store = &state.engine;
    let grants = store
        .list_grants()
        .await?
        .into_iter()
        .filter(|(s, _)| *s == Subject::User(user.name.clone()))
        .map(|(_, g)| g.to_string())
        .collect();
    Ok(api::User {
        teams: store.user_teams(&user.name).await?,
        grants,
        has_password: user.password_hash.is_some(),
        name: user.name,
        disabled: user.disabled,
        created_at: user.created_at,
    })
}

#[utoipa::path(get, path = "/api/v1/users", responses((status = 200, body = Vec<api::User>), (status = 403, body = api::ErrorBody)))]
pub(crate) async fn users_list(
    State(state): State<AppState>,
    _identity: Identity,
) -> ApiResult<axum::Json<Vec<api::User>>> {
    let mut out = Vec::new();
    for user in state.engine.list_users().await? {
        out.push(user_view(&state, user).await?);
    }
    Ok(axum::Json(out))
}

/// Creates a local user.
#[utoipa::path(post, path = "/api/v1/users", request_body = api::UserCreate,
    responses((status = 201, body = api::User), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn users_create(
    State(state): State<AppState>,
    identity: Identity,
    Json(body): Json<api::UserCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::User>)> {
    let target = format!("user/{}", body.name);
    let result = async {
        super::projects::check_name("user", &body.name)?;
        let user = state
            .engine
            .create_user(&identity.actor(), &body.name, body.password)
            .await?;
        user_view(&state, user).await
    }
    .await;
    let user = audit_failure(&state, &identity, "user.create", &target, result).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Disables or enables a user, or sets their password. Either ends their sessions.
#[utoipa::path(patch, path = "/api/v1/users/{name}", params(("name" = String, Path)), request_body = api::UserUpdate,
    responses((status = 200, body = api::User), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn users_update(
    State(state): State<AppState>,
    identity: Identity,
    Path(name): Path<String>,
    Json(body): Json<api::UserUpdate>,
) -> ApiResult<axum::Json<api::User>> {
    let target = format!("user/{name}");
    let result = async {
        let store = &state.engine;
        if body.disabled.is_none() && body.password.is_none() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "nothing_to_change",
                "give `disabled` or `password`",
            ));
        }
        if let Some(password) = body.password {
            store
                .set_password(&identity.actor(), &name, password)
                .await?;
        }
        if let Some(disabled) = body.disabled {
            store
                .set_user_disabled(&identity.actor(), &name, disabled)
                .await?;
        }
        user_view(&state, store.user(&name).await?).await
    }
    .await;
    let user = audit_failure(&state, &identity, "user.update", &target, result).await?;
    Ok(axum::Json(user))
}

async fn team_view(state: &AppState, team: ferry_engine::model::Team) -> ApiResult<api::Team> {
    let grants = state
        .engine
        .list_grants()
        .await?
        .into_iter()
        .filter(|(s, _)| *s == Subject::Team(team.name.clone()))
        .map(|(_, g)| g.to_string())
        .collect();
    Ok(api::Team {
        name: team.name,
        members: team.members,
        grants,
        created_at: team.created_at,
    })
}

async fn team_named(state: &AppState, name: &str) -> ApiResult<api::Team> {
    let team = state
        .engine
        .list_teams()
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            ApiError::from(ferry_engine::model::StoreError::NotFound {
                what: "team",
                id: name.to_owned(),
            })
        })?;
    team_view(state, team).await
}

#[utoipa::path(get, path = "/api/v1/teams", responses((status = 200, body = Vec<api::Team>), (status = 403, body = api::ErrorBody)))]
pub(crate) async fn teams_list(
    State(state): State<AppState>,
    _identity: Identity,
) -> ApiResult<axum::Json<Vec<api::Team>>> {
    let mut out = Vec::new();
    for team in state.engine.list_teams().await? {
        out.push(team_view(&state, team).await?);
    }
    Ok(axum::Json(out))
}

#[utoipa::path(post, path = "/api/v1/teams", request_body = api::TeamCreate,
    responses((status = 201, body = api::Team), (status = 403, body = api::ErrorBody), (status = 409, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn teams_create(
    State(state): State<AppState>,
    identity: Identity,
    Json(body): Json<api::TeamCreate>,
) -> ApiResult<(StatusCode, axum::Json<api::Team>)> {
    let target = format!("team/{}", body.name);
    let result = async {
        super::projects::check_name("team", &body.name)?;
        let team = state
            .engine
            .create_team(&identity.actor(), &body.name)
            .await?;
        team_view(&state, team).await
    }
    .await;
    let team = audit_failure(&state, &identity, "team.create", &target, result).await?;
    Ok((StatusCode::CREATED, axum::Json(team)))
}

#[utoipa::path(post, path = "/api/v1/teams/{team}/members", params(("team" = String, Path)), request_body = api::TeamMember,
    responses((status = 200, body = api::Team), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn team_members_add(
    State(state): State<AppState>,
    identity: Identity,
    Path(team): Path<String>,
    Json(body): Json<api::TeamMember>,
) -> ApiResult<axum::Json<api::Team>> {
    let target = format!("team/{team}");
    let result = async {
        state
            .engine
            .set_team_member(&identity.actor(), &team, &body.user, true)
            .await?;
        team_named(&state, &team).await
    }
    .await;
    Ok(axum::Json(
        audit_failure(&state, &identity, "team.add", &target, result).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/teams/{team}/members/{user}", params(("team" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = api::Team), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody)))]
pub(crate) async fn team_members_remove(
    State(state): State<AppState>,
    identity: Identity,
    Path((team, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<api::Team>> {
    let target = format!("team/{team}");
    let result = async {
        state
            .engine
            .set_team_member(&identity.actor(), &team, &user, false)
            .await?;
        team_named(&state, &team).await
    }
    .await;
    Ok(axum::Json(
        audit_failure(&state, &identity, "team.remove", &target, result).await?,
    ))
}

fn grant_view(subject: &Subject, grant: &Grant) -> api::RoleGrant {
    let (user, team) = match subject {
        Subject::User(n) => (Some(n.clone()), None),
        Subject::Team(n) => (None, Some(n.clone())),
    };
    api::RoleGrant {
        user,
        team,
        grant: grant.to_string(),
    }
}

fn parse_role_grant(body: &api::RoleGrant) -> ApiResult<(Subject, Grant)> {
    let subject = match (&body.user, &body.team) {
        (Some(u), None) => Subject::User(u.clone()),
        (None, Some(t)) => Subject::Team(t.clone()),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_grant",
                "name exactly one of `user` and `team`",
            ))
        }
    };
    let grant = parse_grants(std::slice::from_ref(&body.grant))?.remove(0);
    Ok((subject, grant))
}

#[utoipa::path(get, path = "/api/v1/grants", responses((status = 200, body = Vec<api::RoleGrant>), (status = 403, body = api::ErrorBody)))]
pub(crate) async fn grants_list(
    State(state): State<AppState>,
    _identity: Identity,
) -> ApiResult<axum::Json<Vec<api::RoleGrant>>> {
    let grants = state.engine.list_grants().await?;
    Ok(axum::Json(
        grants.iter().map(|(s, g)| grant_view(s, g)).collect(),
    ))
}

/// Grants a role to a user or a team.
#[utoipa::path(post, path = "/api/v1/grants", request_body = api::RoleGrant,
    responses((status = 201, body = api::RoleGrant), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn grants_create(
    State(state): State<AppState>,
    identity: Identity,
    Json(body): Json<api::RoleGrant>,
) -> ApiResult<(StatusCode, axum::Json<api::RoleGrant>)> {
    set_grant(&state, &identity, &body, true)
        .await
        .map(|g| (StatusCode::CREATED, axum::Json(g)))
}

/// Takes a role away from a user or a team.
#[utoipa::path(post, path = "/api/v1/grants/revoke", request_body = api::RoleGrant,
    responses((status = 200, body = api::RoleGrant), (status = 403, body = api::ErrorBody), (status = 404, body = api::ErrorBody), (status = 409, body = api::ErrorBody), (status = 422, body = api::ErrorBody)))]
pub(crate) async fn grants_revoke(
    State(state): State<AppState>,
    identity: Identity,
    Json(body): Json<api::RoleGrant>,
) -> ApiResult<axum::Json<api::RoleGrant>> {
    set_grant(&state, &identity, &body, false)
        .await
        .map(axum::Json)
}

async fn set_grant(
    state: &AppState,
    identity: &Identity,
    body: &api::RoleGrant,
    granted: bool,
) -> ApiResult<api::RoleGrant> {
    let action = if granted { "role.grant" } else { "role.revoke" };
    let target = match (&body.user, &body.team) {
        (Some(u), _) => format!("user/{u}"),
        (_, Some(t)) => format!("team/{t}"),
        _ => "grants".to_owned(),
    };
    let result = async {
        let (subject, grant) = parse_role_grant(body)?;
        state
            .engine
            .set_grant(&identity.actor(), &subject, &grant, granted)
            .await?;
        Ok(grant_view(&subject, &grant))
    }
    .await;
    audit_failure(state, identity, action, &target, result).await
}
