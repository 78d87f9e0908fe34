//! Identities: who a presented token or session cookie is (and with which grants), logging
//! in and out, users and their passwords, teams, role grants, and API tokens.
//!
//! Secrets never cross this boundary in either direction except where they are born: a new
//! token's plaintext and a new session's cookie are returned once, to be handed to their
//! owner; everything stored is a SHA-256 hash (tokens, cookies) or an argon2id hash
//! (passwords). Password hashing runs on a blocking thread: argon2id is slow on purpose.

use ferry_core::{Actor, Grant, Grants, Role};
use ferry_store::{NewTokenRow, Session, Subject, Team, Token, TokenScope, User};

use crate::{Engine, Error, Result};

/// Who a token or a session is, and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The audit log's name: the user, or the token's name.
    pub name: String,
    /// The user acted as (personal tokens and sessions).
    pub user: Option<String>,
    pub grants: Grants,
    /// A run's per-action credential: only this project's environment's state.
    pub scope: Option<TokenScope>,
}

/// How many failed logins are tolerated, and how long a session lasts.
#[derive(Debug, Clone)]
pub struct LoginPolicy {
    pub window: chrono::Duration,
    pub max_per_account: i64,
    pub max_per_source: i64,
    pub session_absolute: chrono::Duration,
}

/// How a login attempt ended. Every attempt is audited.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Too many failures for the account or the source address: no password was checked.
    Throttled { reason: &'static str },
    /// Unknown user, wrong password or disabled user; which one is only in the audit log.
    Refused,
    /// A new session, and the cookie value that proves it (returned only here).
    Started { session: Session, cookie: String },
}

/// A token to create (its name, role and owner already checked by the caller).
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub admin: bool,
    pub user: Option<&'a str>,
    pub scopes: &'a [Grant],
    pub expires_at: Option<&'a str>,
}

/// The grants of a non-admin service token without recorded scopes (tokens made before
/// scopes existed, and `ferry token create` without `--scope`): reviewer tokens, which read
/// everything and approve (never their own runs). Anything more needs explicit scopes.
fn legacy_grants() -> Vec<Grant> {
    vec![Grant::everywhere(Role::Approver)]
}

/// Refuses a password shorter than the minimum.
fn check_password(password: &str) -> Result<()> {
    let min = ferry_secrets::password::MIN_PASSWORD_LEN;
    if password.chars().count() < min {
        return Err(Error::WeakPassword { min });
    }
    Ok(())
}

async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || ferry_secrets::password::hash_password(&password))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))
}

/// Whether `password` matches `stored`; an unknown user costs the same verification.
async fn verify_password(password: String, stored: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let stored = stored.as_deref();
        let hash = stored.unwrap_or(ferry_secrets::password::decoy_hash());
        ferry_secrets::password::verify_password(&password, hash) && stored.is_some()
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))
}

impl Engine {
    /// Resolves a presented token; `None` for an unknown, revoked or expired token, or one
    /// whose user is disabled. Marks the token used.
    pub async fn authenticate_token(&self, secret: &str) -> Result<Option<(i64, Principal)>> {
        if !ferry_secrets::looks_like_token(secret) {
            return Ok(None);
        }
        let store = &self.inner.store;
        let Some(found) = store
            .token_by_hash(&ferry_secrets::hash_token(secret))
            .await?
        else {
            return Ok(None);
        };
        if let Some(expires) = &found.expires_at {
            let expired = chrono::DateTime::parse_from_rfc3339(expires)
                .map(|e| e <= chrono::Utc::now())
                .unwrap_or(true);
            if expired {
                return Ok(None);
            }
        }
        let scopes = store.token_scopes(found.id).await?;
        let (name, user, grants) = if let Some(run_scope) = &found.scope {
            // The narrowest role that lets a Terraform action work: read, write and lock
            // its own state (operator) in one project and environment.
            let project = store.project_name(run_scope.project_id).await?;
            let grant = Grant {
                role: Role::Operator,
                project: Some(project),
                environment: Some(run_scope.environment.clone()),
            };
            (found.name.clone(), None, Grants::new(vec![grant]))
        } else if let Some(user_id) = found.user_id {
            let user = store.user_by_id(user_id).await?;
            if user.disabled {
                return Ok(None);
            }
            let mut grants = Grants::new(store.user_grants(user_id).await?);
            if !scopes.is_empty() {
                grants.limit = Some(scopes);
            }
            (user.name.clone(), Some(user.name), grants)
        } else if found.admin {
            (
                found.name.clone(),
                None,
                Grants::new(vec![Grant::everywhere(Role::Admin)]),
            )
        } else if scopes.is_empty() {
            (found.name.clone(), None, Grants::new(legacy_grants()))
        } else {
            (found.name.clone(), None, Grants::new(scopes))
        };
        store.touch_token(found.id).await?;
        Ok(Some((
            found.id,
            Principal {
                name,
                user,
                grants,
                scope: found.scope,
            },
        )))
    }

    /// Resolves a session cookie; `None` for an unknown, ended, idle or expired session, a
    /// forged cookie, or a disabled user.
    pub async fn authenticate_session(
        &self,
        cookie: &str,
        idle: chrono::Duration,
    ) -> Result<Option<(Session, Principal)>> {
        if !ferry_secrets::looks_like_token(cookie) {
            return Ok(None);
        }
        let store = &self.inner.store;
        let Some(session) = store
            .session_by_hash(&ferry_secrets::hash_token(cookie), idle)
            .await?
        else {
            return Ok(None);
        };
        let grants = Grants::new(store.user_grants(session.user.id).await?);
        let principal = Principal {
            name: session.user.name.clone(),
            user: Some(session.user.name.clone()),
            grants,
            scope: None,
        };
        Ok(Some((session, principal)))
    }

    /// A login attempt by `username` from `source`: throttled past the policy's limits
    /// before any password is checked, audited whatever the outcome.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        source: &str,
        policy: &LoginPolicy,
    ) -> Result<LoginOutcome> {
        let store = &self.inner.store;
        // The audit log names the account tried; a name that cannot be a user is not repeated.
        let valid_name = ferry_core::is_name(username);
        let actor = Actor {
            name: if valid_name {
                username.to_owned()
            } else {
                "invalid-username".to_owned()
            },
            source: source.to_owned(),
        };
        let (by_account, by_source) = store
            .login_failures(&actor.name, source, chrono::Utc::now() - policy.window)
            .await?;
        if by_account >= policy.max_per_account || by_source >= policy.max_per_source {
            let reason = if by_account >= policy.max_per_account {
                "too many failed logins for this account"
            } else {
                "too many failed logins from this address"
            };
            store
                .record_login_refusal(&actor, "throttled", reason)
                .await?;
            return Ok(LoginOutcome::Throttled { reason });
        }
        let user = if valid_name {
            match store.user(username).await {
                Ok(user) => Some(user),
                Err(ferry_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let matches = verify_password(
            password,
            user.as_ref().and_then(|u| u.password_hash.clone()),
        )
        .await?;
        let refusal = match &user {
            None => Some(("failed", "unknown user")),
            Some(_) if !matches => Some(("failed", "wrong password")),
            Some(u) if u.disabled => Some(("denied", "user disabled")),
            Some(_) => None,
        };
        let Some(user) = user.filter(|_| refusal.is_none()) else {
            let (outcome, reason) = refusal.unwrap_or(("failed", "unknown user"));
            store.record_login_refusal(&actor, outcome, reason).await?;
            return Ok(LoginOutcome::Refused);
        };
        let cookie = ferry_secrets::generate_token();
        let session = store
            .create_session(&actor, &user, &cookie.hash, policy.session_absolute)
            .await?;
        Ok(LoginOutcome::Started {
            session,
            cookie: cookie.plaintext,
        })
    }

    /// Ends a browser session.
    pub async fn logout(&self, actor: &Actor, session: i64) -> Result<()> {
        Ok(self.inner.store.revoke_session(actor, session).await?)
    }

    /// A user, with a password (checked and hashed here) or without one (tokens only).
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        password: Option<String>,
    ) -> Result<User> {
        let hash = match password {
            Some(password) => {
                check_password(&password)?;
                Some(hash_password(password).await?)
            }
            None => None,
        };
        Ok(self
            .inner
            .store
            .create_user(actor, name, hash.as_deref())
            .await?)
    }

    pub async fn set_password(&self, actor: &Actor, name: &str, password: String) -> Result<()> {
        check_password(&password)?;
        let hash = hash_password(password).await?;
        Ok(self.inner.store.set_password(actor, name, &hash).await?)
    }

    pub async fn set_user_disabled(
        &self,
        actor: &Actor,
        name: &str,
        disabled: bool,
    ) -> Result<User> {
        Ok(self
            .inner
            .store
            .set_user_disabled(actor, name, disabled)
            .await?)
    }

    pub async fn user(&self, name: &str) -> Result<User> {
        Ok(self.inner.store.user(name).await?)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        Ok(self.inner.store.list_users().await?)
    }

    pub async fn user_teams(&self, user: &str) -> Result<Vec<String>> {
        Ok(self.inner.store.user_teams(user).await?)
    }

    pub async fn create_team(&self, actor: &Actor, name: &str) -> Result<Team> {
        Ok(self.inner.store.create_team(actor, name).await?)
    }

    pub async fn list_teams(&self) -> Result<Vec<Team>> {
        Ok(self.inner.store.list_teams().await?)
    }

    pub async fn set_team_member(
        &self,
        actor: &Actor,
        team: &str,
        user: &str,
        member: bool,
    ) -> Result<()> {
        Ok(self
            .inner
            .store
            .set_team_member(actor, team, user, member)
            .await?)
    }

    pub async fn list_grants(&self) -> Result<Vec<(Subject, Grant)>> {
        Ok(self.inner.store.list_grants().await?)
    }

    pub async fn set_grant(
        &self,
        actor: &Actor,
        subject: &Subject,
        grant: &Grant,
        granted: bool,
    ) -> Result<()> {
        Ok(self
            .inner
            .store
            .set_grant(actor, subject, grant, granted)
            .await?)
    }

    /// Creates a token; its plaintext is in the answer only.
    pub async fn create_token(&self, actor: &Actor, new: &NewToken<'_>) -> Result<(Token, String)> {
        let secret = ferry_secrets::generate_token();
        let row = NewTokenRow {
            name: new.name,
            hash: &secret.hash,
            hint: &secret.hint,
            admin: new.admin,
            user: new.user,
            scopes: new.scopes,
            expires_at: new.expires_at,
        };
        let token = self.inner.store.create_scoped_token(actor, &row).await?;
        Ok((token, secret.plaintext))
    }

    pub async fn list_tokens(&self) -> Result<Vec<Token>> {
        Ok(self.inner.store.list_tokens().await?)
    }

    /// A token's owner (for a personal token) and its scopes.
    pub async fn token_owner_and_scopes(
        &self,
        token: &Token,
    ) -> Result<(Option<User>, Vec<Grant>)> {
        let owner = match token.user_id {
            Some(id) => Some(self.inner.store.user_by_id(id).await?),
            None => None,
        };
        Ok((owner, self.inner.store.token_scopes(token.id).await?))
    }

    pub async fn revoke_token(&self, actor: &Actor, name: &str) -> Result<Token> {
        Ok(self.inner.store.revoke_token(actor, name).await?)
    }
}
