//! Who is calling. A request proves an identity with one of:
//!
//! - `Authorization: Bearer <token>` on the API: a personal token (acts as its user, within
//!   the user's grants and the token's own scopes), a service token (its scopes are its
//!   grants), or the bootstrap admin token;
//! - HTTP basic auth with a token as the password, on the state backend only (that is what
//!   Terraform's `http` backend sends), which is also how a run's per-action credential
//!   arrives;
//! - the session cookie a browser got from `POST /api/v1/login`; state-changing requests
//!   made with it must also carry the session's CSRF token in `X-CSRF-Token`.
//!
//! Tokens and session cookies are looked up by their SHA-256 hash (never stored in clear).
//! The result is an [`Identity`]: a name for the audit log plus the [`Grants`] that
//! [`crate::authz`] checks against the route's rule.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::Engine as _;
use ferry_core::{Actor, Grants, Permission, Target};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// Identity and session settings of a server. `Debug` never shows the admin password.
#[derive(Clone)]
pub struct AccessConfig {
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after login, used or not.
    pub session_absolute: Duration,
    /// Mark the session cookie `Secure` (and name it `__Host-ferry_session`). Turn off only
    /// for plain HTTP on loopback.
    pub cookie_secure: bool,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies). Others' is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// The address users reach Ferry at, when it differs from the listener (behind a proxy).
    pub public_url: Option<String>,
    /// The first admin's password; when absent one is generated into `admin.password`.
    pub admin_password: Option<String>,
    /// Failed logins per account within `login_window` before further attempts are refused.
    pub login_max_per_account: i64,
    /// Failed logins per source address within `login_window` before it is refused.
    pub login_max_per_source: i64,
    pub login_window: Duration,
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(12 * 3600),
            cookie_secure: true,
            trusted_proxies: Vec::new(),
            public_url: None,
            admin_password: None,
            login_max_per_account: 5,
            login_max_per_source: 20,
            login_window: Duration::from_secs(15 * 60),
        }
    }
}

impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("session_idle", &self.session_idle)
            .field("session_absolute", &self.session_absolute)
            .field("cookie_secure", &self.cookie_secure)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("public_url", &self.public_url)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("login_max_per_account", &self.login_max_per_account)
            .field("login_max_per_source", &self.login_max_per_source)
            .field("login_window", &self.login_window)
            .finish()
    }
}

impl AccessConfig {
    pub(crate) fn cookie_name(&self) -> &'static str {
        if self.cookie_secure {
            "__Host-ferry_session"
        } else {
            "ferry_session"
        }
    }
}

/// How the identity proved itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Credential {
    Token {
        id: i64,
    },
    /// A browser session; `csrf` is the token its state-changing requests must echo.
    Session {
        id: i64,
        csrf: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    /// A global admin (may manage users, teams, tokens and settings).
    pub admin: bool,
    pub grants: Grants,
    /// The user behind a personal token or session; `None` for service tokens.
    pub user: Option<String>,
    /// A run's per-action credential reaches only its own project and environment state.
    pub scope: Option<ferry_engine::model::TokenScope>,
    pub credential: Credential,
    /// The client address, for the audit log (see [`client_address`]).
    pub source: String,
}

impl Identity {
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            source: self.source.clone(),
        }
    }

    /// Who this identity is when it holds a state lock: its run for a run's credential, the
    /// person for a session or personal token, the token itself for a service token.
    pub(crate) fn lock_owner(&self) -> ferry_engine::model::LockOwner {
        match (&self.scope, &self.user, &self.credential) {
            (Some(scope), _, _) => ferry_engine::model::LockOwner::Run(scope.run_id),
            (None, Some(user), _) => ferry_engine::model::LockOwner::User(user.clone()),
            (None, None, Credential::Token { id }) => ferry_engine::model::LockOwner::Token(*id),
            (None, None, Credential::Session { .. }) => {
                ferry_engine::model::LockOwner::User(self.name.clone())
            }
        }
    }

    pub(crate) fn allows(&self, permission: Permission, target: &Target<'_>) -> bool {
        self.grants.allows(permission, target)
    }

    pub(crate) fn sees(&self, project: &str) -> bool {
        self.grants.sees(project)
    }
}

/// The address a request came from: the peer's IP (never its port: login throttling counts
/// per address, and a new connection must not be a new address), or — when the peer is a
/// trusted proxy — the nearest untrusted address in `X-Forwarded-For`.
pub(crate) fn client_address(parts: &Parts, trusted: &[IpAddr]) -> String {
    let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
        return "local".to_owned();
    };
    if !trusted.contains(&peer.ip()) {
        return peer.ip().to_string();
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    // Walk from the nearest hop back; the first address not ours is the client.
    forwarded
        .iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .or(forwarded.first())
        .map(|a| a.to_string())
        .unwrap_or_else(|| peer.ip().to_string())
}

/// The CSRF token of a session: derived from the cookie value, so nothing more is stored and
/// it is as unguessable as the cookie, yet learning it does not reveal the cookie.
pub(crate) fn csrf_token(cookie_value: &str) -> String {
    let digest = Sha256::digest(format!("ferry-csrf\0{cookie_value}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// The session cookie's value, if the request carries one.
pub(crate) fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Resolves a presented token to an identity; `None` for an unknown, revoked or expired
/// token, or one whose user is disabled (`Engine::authenticate_token`).
pub(crate) async fn identity_for_token(
    state: &AppState,
    token: &str,
    source: String,
) -> Result<Option<Identity>, ApiError> {
    let Some((id, principal)) = state.engine.authenticate_token(token).await? else {
        return Ok(None);
    };
    Ok(Some(Identity {
        name: principal.name,
        admin: principal.grants.is_admin(),
        grants: principal.grants,
        user: principal.user,
        scope: principal.scope,
        credential: Credential::Token { id },
        source,
    }))
}

/// Resolves a session cookie to an identity; `None` for an unknown, ended, idle or expired
/// session, a forged or tampered cookie, or a disabled user.
pub(crate) async fn identity_for_session(
    state: &AppState,
    cookie_value: &str,
    source: String,
) -> Result<Option<Identity>, ApiError> {
    let idle = chrono::Duration::from_std(state.access.session_idle)
        .unwrap_or(chrono::Duration::minutes(30));
    let Some((session, principal)) = state
        .engine
        .authenticate_session(cookie_value, idle)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Identity {
        name: principal.name,
        admin: principal.grants.is_admin(),
        grants: principal.grants,
        user: principal.user,
        scope: None,
        credential: Credential::Session {
            id: session.id,
            csrf: csrf_token(cookie_value),
        },
        source,
    }))
}

/// Authenticates a request. `basic` accepts HTTP basic auth (the state backend). `Ok(None)`
/// means no usable credential: the caller answers 401.
pub(crate) async fn authenticate(
    state: &AppState,
    parts: &Parts,
    basic: bool,
) -> Result<Option<Identity>, ApiError> {
    let source = client_address(parts, &state.access.trusted_proxies);
    if let Some(header) = parts.headers.get(AUTHORIZATION) {
        let Ok(header) = header.to_str() else {
            return Ok(None);
        };
        let token = if let Some(bearer) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        {
            bearer.trim().to_owned()
        } else if let (true, Some(encoded)) = (basic, header.strip_prefix("Basic ")) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((_, password)) => password.to_owned(),
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        return identity_for_token(state, &token, source).await;
    }
    match session_cookie(&parts.headers, state.access.cookie_name()) {
        Some(value) => identity_for_session(state, &value, source).await,
        None => Ok(None),
    }
}

/// Handlers take the identity the authorisation middleware established for the request.
impl FromRequestParts<AppState> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// Records a failed state-changing request. Successful changes are audited by the store in
/// the same transaction as the change, and refusals (403) where they are decided, so
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
        if error.status != axum::http::StatusCode::FORBIDDEN {
            let entry = ferry_engine::model::AuditEntry::new(action, target)
                .outcome("failed")
                .details(
                    serde_json::json!({ "code": error.code, "status": error.status.as_u16() }),
                );
            if let Err(audit_error) = state.engine.audit(&identity.actor(), entry).await {
                return Err(ApiError::internal(format!(
                    "{audit_error} (while auditing a failed {action})"
                )));
            }
        }
    }
    result
}

/// Refuses unless the identity holds `permission` on `target`, recording the refusal in the
/// audit log before answering. For checks that depend on the request beyond its route (a
/// token for someone else); the route's own rule is checked by [`crate::authz`].
pub(crate) async fn require_audited(
    state: &AppState,
    identity: &Identity,
    allowed: bool,
    action: &str,
    target: &str,
    message: &str,
) -> Result<(), ApiError> {
    if !allowed {
        let entry = ferry_engine::model::AuditEntry::new(action, target).outcome("denied");
        state.engine.audit(&identity.actor(), entry).await?;
        return Err(ApiError::forbidden(message.to_owned()));
    }
    Ok(())
}
